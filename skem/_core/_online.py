"""Online (stepwise) EM: ``partial_fit`` for every model, from moments.

Each call takes the batch's E-step, keeps a running average of the
normalised statistics (the *moments*) with a decaying step, and sets the
parameters by their M-step (Cappe & Moulines 2009). A model states how its
moments are formed and combined (the hooks of :class:`OnlineEM`); the
defaults serve a model whose statistics are plain sums over rows, which then
writes only ``_statistics_of_parameters``.
"""

from math import log
from numbers import Real

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.metaestimators import available_if

from ._checks import check_rows_observed
from ._monitor import with_callbacks
from ._namespaces import where_the_data_are
from ._routes import log_total_weight, route_of

#: The parameters of online EM, for the models with ``partial_fit``.
ONLINE_PARAMETER_CONSTRAINTS = {
    "learning_decay": [Interval(Real, 0.5, 1.0, closed="right")],
    "learning_offset": [Interval(Real, 1.0, None, closed="left")],
}


def blend(first, second, a, b=0.0):
    """``a * first + b * second`` for nested dicts and tuples of arrays (second may be None)."""
    if isinstance(first, dict):
        return {
            name: blend(first[name], None if second is None else second[name], a, b)
            for name in first
        }
    if isinstance(first, tuple):
        return tuple(
            blend(value, None if second is None else second[i], a, b)
            for i, value in enumerate(first)
        )
    return a * first if second is None else a * first + b * second


class OnlineEM:
    """``partial_fit`` and its hooks (a base of :class:`skem.BaseEM`)."""

    #: What ``partial_fit`` keeps between calls, and ``fit`` removes.
    _ONLINE_STATE = (
        "_online_moments",
        "_log_online_weight",
        "_log_fit_weight",
        "n_steps_",
        "n_samples_seen_",
    )

    def _batch_moments(self, X, sample_weight):
        """Online EM: ``(bound, moments)`` of a batch at the current parameters.

        ``bound`` is the batch's weighted mean bound; ``moments`` a dict of
        arrays normalised by the batch's weight (so batches of any size and
        weight scale average), each about its own means (so no re-centring is
        left to do when the parameters move).

        By default, the batch's statistics (``_block_terms``) divided by its
        weight: right for a model whose statistics are plain sums over rows,
        not taken about its parameters (a Bernoulli mixture's).
        """
        bound, weight, statistics = self._reduce(self._block_terms, X, sample_weight)
        return bound / weight, blend(statistics, None, 1.0 / weight)

    def _first_moments(self, X, sample_weight, random_state):
        """Online EM's start: ``fit`` on the first batch (its ``n_init`` restarts).

        A start from a small batch can land in a poor local optimum (k-means
        on a thousand rows does, on overlapping clusters); the restarts on the
        batch are the remedy, or a ``fit`` on a larger sample before the
        calls to ``partial_fit``. Returns the batch's bound and the moments of
        the fitted parameters.
        """
        self._run_em(X, sample_weight, random_state)
        return self.lower_bound_, self._moments_of_parameters()

    def _combine_moments(self, running, batch, step):
        """``(1 - step) * running + step * batch``, in the moments' algebra.

        By default the plain weighted sum (moments that are statistics).
        """
        return blend(running, batch, 1.0 - step, step)

    def _m_step_from_moments(self, moments):
        """Set the parameters from (running) moments; by default the M-step's."""
        self._m_step(moments)

    def _moments_of_parameters(self):
        """The moments the current parameters are the M-step of (after ``fit``)."""
        return self._statistics_of_parameters()

    def _statistics_of_parameters(self):
        """The statistics, per unit of weight, whose M-step are the current parameters.

        What a model with plain-sum statistics writes to get ``partial_fit``
        (with the defaults above); a model without it, or without its own
        ``_batch_moments``, has no ``partial_fit``.
        """
        raise NotImplementedError

    def _supports_partial_fit(self):
        own = type(self)
        return (
            own._batch_moments is not OnlineEM._batch_moments
            or own._statistics_of_parameters is not OnlineEM._statistics_of_parameters
        )

    @available_if(_supports_partial_fit)
    @where_the_data_are
    @with_callbacks
    def partial_fit(self, X, y=None, sample_weight=None):
        """One step of online (stepwise) EM on a batch of rows.

        The batch's E-step gives its moments (normalised sufficient
        statistics); the model keeps their running average
        ``s <- (1 - eta) s + eta s_batch`` with the step size
        ``eta = (learning_offset + t) ** -learning_decay``, t the number of
        steps so far (``n_steps_``, plus the weight a ``fit`` before them saw,
        in batches of the mean weight), and sets its parameters by the M-step of ``s``
        (Cappe & Moulines 2009). The first call on an unfitted model fits its
        batch as ``fit`` would (with ``n_init`` restarts: raise it if a start
        from one batch may miss the clusters, or call ``fit`` on a larger
        sample first); a call on a model fitted by ``fit`` continues from its
        parameters and from the weight ``fit`` saw (after a fit on 100,000
        rows, a batch of 100 steps as the 1001st batch would). Every call
        validates the parameters; the structure (``n_components`` and the
        like) must be that of the fitted model. ``fit`` starts over. One pass over data in batches of
        about a thousand rows comes close to a full EM fit (see the user
        guide, "Where the data are").

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A batch of rows (in memory; pass the blocks of a dask array one by
            one).
        y : Ignored
            Not used, present for API consistency.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each row. Weights keep their meaning across calls: the
            step of a batch is scaled by its total weight (its row count when
            unweighted) relative to the mean over the calls so far, so a
            batch of half the usual weight moves the model half as far (and a
            step is at most 1).

        Returns
        -------
        self : object
            The updated estimator.
        """
        with self._unchanged_on_error():
            route_of(X).require_memory(self, "partial_fit")
            fitted = hasattr(self, "converged_")
            self._validate_params()  # at every call, as scikit-learn's partial_fit
            if fitted:
                self._check_same_structure(continued_by="partial_fit")
            X, weights = self._validate_fit_data(X, sample_weight, reset=not fitted)
            if self._allow_nan:  # as fit: a row with no observed value is refused
                check_rows_observed(X)
            # the batch's total weight, before validation scaled it to mean one
            # (in logs: weights near the float limit keep their ratios)
            log_batch_weight = log_total_weight(X, sample_weight)
            n_steps = getattr(self, "n_steps_", 0) if fitted else 0
            log_mean_weight = log_batch_weight
            if n_steps:
                log_mean_weight = np.logaddexp(
                    log(n_steps) + self._log_online_weight, log_batch_weight
                ) - log(n_steps + 1)
            # the steps so far: those of partial_fit, after the weight fit saw
            # counted in batches of the mean weight
            steps_seen = n_steps + np.exp(
                getattr(self, "_log_fit_weight", -np.inf) - log_mean_weight
            )
            step = 1.0
            try:
                if fitted:
                    running = getattr(self, "_online_moments", None)
                    if running is None:
                        running = self._moments_of_parameters()
                    monitor = self._monitor = self._make_monitor(X, weights, 1)
                    monitor.begin_restart(0, getattr(self, "lower_bound_", -np.inf))
                    monitor.begin_iteration()
                    bound, moments = self._batch_moments(X, weights)
                    step = (self.learning_offset + steps_seen) ** -self.learning_decay
                    step = min(1.0, step * np.exp(log_batch_weight - log_mean_weight))
                    moments = self._combine_moments(running, moments, step)
                    monitor.record(bound)
                    monitor.end_restart()
                else:
                    self._check_parameters(X, weights)
                    random_state = check_random_state(self.random_state)
                    self._prepare_fit(X, weights, random_state)
                    bound, moments = self._first_moments(X, weights, random_state)
                    if not hasattr(self, "_sampling_seed"):
                        self._sampling_seed = int(random_state.randint(np.iinfo(np.int32).max))
                        self._sampling_state = None
                self._m_step_from_moments(moments)
                self._set_parameters(self._get_parameters())  # derived attributes (precisions_)
                self._warm_terms()
                if fitted:
                    monitor.end_fit()
            finally:
                self._drop_fit_scratch()
            self._online_moments = moments
            self._log_online_weight = log_mean_weight
            self.lower_bounds_ = np.append(getattr(self, "lower_bounds_", [])[:n_steps], bound)
            self.lower_bound_ = float(bound)
            self.n_steps_ = self.n_iter_ = n_steps + 1
            self.n_samples_seen_ = getattr(self, "n_samples_seen_", 0) + X.shape[0]
            self.converged_ = False
            if self.verbose:
                print(
                    f"partial_fit step {self.n_steps_}: batch of {X.shape[0]} rows, "
                    f"bound {bound:.5f} before the step, step size {step:.4g}"
                )
        return self
