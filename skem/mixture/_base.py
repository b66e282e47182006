"""Base class of the models with a discrete latent variable (finite mixtures).

It turns per-component log-densities into responsibilities, mixing weights,
predictions, information criteria and samples; a model adds its components.
"""

from abc import abstractmethod
from numbers import Integral
from typing import Any, NamedTuple

import numpy as np
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from .._core import (
    BaseEM,
    add_statistics,
    check_missing,
    empty_rows_message,
    route_of,
    sample_rows,
    take_rows,
)
from .._core._linalg import logsumexp_rows, normalize_log_rows
from .._core._missing import fill_with_column_means, impute_rows, missing_mask
from .._core._namespaces import host_dtype
from .._core._parallel import fork_safe_openmp, map_chunks, start_threads

#: Added to every component's total responsibility so an empty one divides safely.
RESPONSIBILITY_FLOOR = 10 * np.finfo(np.float64).eps


class MixturePosterior(NamedTuple):
    """The E-step's posterior of a chunk: responsibilities, and a workspace.

    ``workspace`` holds what the E-step computed that the statistics of the
    same rows can reuse (None when the model keeps nothing).
    """

    responsibilities: np.ndarray
    workspace: Any = None


class MissingWorkspace(NamedTuple):
    """The workspace of a chunk with missing values (NaN).

    ``incomplete`` marks its rows with a missing value; ``complete`` is the
    workspace of the other rows (from ``_log_prob_and_workspace``, or None);
    ``conditionals`` holds the conditional moments of the missing values
    (see ``skem._core._missing``); ``initial`` is True in the initialisation, where
    they come from ``_initial_conditionals``.
    """

    incomplete: np.ndarray
    complete: Any
    conditionals: Any
    initial: bool = False


class BaseMixture(BaseEM):
    """Base class of EM mixtures ``p(x) = sum_k weights_[k] p(x | z=k)``.

    On top of :class:`BaseEM` it provides the E-step (responsibilities), the
    mixing weights, ``init_params`` (k-means, k-means++, random, random rows),
    ``predict``, ``predict_proba``, ``fit_predict``, ``bic``, ``aic`` and
    ``sample``. A mixture model only describes its components:

    - ``_estimate_log_prob(X)`` -> (n_samples, n_components) array of
      ``log p(x | z=k)``;
    - ``_component_statistics(X, responsibilities)`` -> dict of sums over the
      rows, where ``responsibilities`` are already multiplied by the sample
      weights (the base class adds ``"nk"``, their column sums);
    - optionally ``_log_prob_and_workspace(X)`` -> ``(log_prob, workspace)``
      when the statistics can reuse work of the E-step on the same rows: a
      workspace that is not None is passed to ``_component_statistics`` as a
      third argument (it may be overwritten there);
    - ``_m_step_components(statistics)``: set the component parameters
      (``weights_`` is set by the base class, from ``statistics["nk"]``);
    - ``_sample_components(labels, random_state)`` -> one row per label;
    - ``_n_component_parameters()``: free parameters of all components;
    - ``_fitted_parameters``: names of the fitted attributes, ``"weights_"``
      included.

    The gallery example ``plot_custom_em_model.py`` writes a Poisson mixture in
    about twenty lines.

    A mixture that takes missing values (NaN, missing at random) sets
    ``_allow_nan = True`` and integrates them out exactly: chunks without NaN
    take the hooks above unchanged; in a chunk with NaN the complete rows
    still do, and the rows with a missing value go to

    - ``_missing_log_prob(X, missing)`` -> ``(log_prob, conditionals)``: the
      log-density of each row's observed values under each component, and
      the conditional moments of its missing values;
    - ``_missing_statistics(conditionals, responsibilities, initial)`` -> a
      dict with the keys of ``_component_statistics``, in expectation over
      the missing values (so the two add up);
    - ``_initial_conditionals(X, missing)``, if the model starts with the
      base class's M-step from responsibilities: the conditionals that M-step
      fills the missing values with.

    k-means and k-means++ then start on the data with every NaN replaced by
    the weighted mean of its column; rows or columns without an observed
    value are refused, and ``impute`` (through ``_impute``) fills the missing
    values from the fitted density.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, \
            default='kmeans'
        How the initial responsibilities are drawn: one-hot k-means labels,
        one-hot k-means++ seeds, uniform random rows, or one-hot random rows of
        the data. Weighted data are honoured by every method.
    init_size : int, default=None
        Number of rows, drawn at random without replacement, on which
        'kmeans', 'k-means++' and 'random' compute the start. None uses all
        rows of an array in memory (as scikit-learn does), and
        ``max(20_000, 50 * n_components)`` rows of a dask array (read to the
        client once): that start differs from the in-memory one, and so does
        the fit. Set it for data too large for k-means on every row (a
        memory-mapped array, say). 'random_from_data' reads only the
        ``n_components`` rows it draws, the same rows for a dask array as in
        memory.
    tol, max_iter, n_init, random_state, warm_start, verbose, verbose_interval
        See :class:`BaseEM`.
    """

    _parameter_constraints: dict = {
        **BaseEM._parameter_constraints,
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "init_params": [StrOptions({"kmeans", "k-means++", "random", "random_from_data"})],
        "init_size": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(
        self,
        n_components=1,
        *,
        tol=1e-3,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        init_size=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
    ):
        super().__init__(
            tol=tol,
            max_iter=max_iter,
            n_init=n_init,
            random_state=random_state,
            warm_start=warm_start,
            verbose=verbose,
            verbose_interval=verbose_interval,
        )
        self.n_components = n_components
        self.init_params = init_params
        self.init_size = init_size

    # ------------------------------------------------------------------ hooks

    @abstractmethod
    def _estimate_log_prob(self, X):
        """Return log p(x | z=k), shape (n_samples, n_components)."""

    @abstractmethod
    def _component_statistics(self, X, responsibilities):
        """Return a dict of responsibility-weighted sums over the rows of X."""

    @abstractmethod
    def _m_step_components(self, statistics):
        """Set the component parameters from the summed statistics."""

    @abstractmethod
    def _sample_components(self, labels, random_state):
        """Return one sample from component ``labels[i]`` for each i."""

    @abstractmethod
    def _n_component_parameters(self):
        """Number of free parameters of all components together."""

    # ------------------------------------------------------------------ EM

    def _check_parameters(self, X, sample_weight):
        n_samples = X.shape[0] if sample_weight is None else int(np.count_nonzero(sample_weight))
        if n_samples < self.n_components:
            raise ValueError(
                "Expected n_samples >= n_components "
                f"but got n_components = {self.n_components}, "
                f"n_samples = {n_samples}"
                + ("" if sample_weight is None else " (rows of positive weight)")
            )
        if self._allow_nan:
            check_missing(X, sample_weight)

    def _initialize(self, X, sample_weight, random_state):
        X, sample_weight, responsibilities = self._initial_responsibilities(
            X, sample_weight, random_state
        )
        self._initialize_from_responsibilities(X, sample_weight, responsibilities, random_state)

    def _initialize_from_responsibilities(self, X, sample_weight, responsibilities, random_state):
        """One M-step from given responsibilities, accumulated chunk by chunk."""
        statistics = None
        for rows in self._chunks(X.shape[0]):
            weights = None if sample_weight is None else sample_weight[rows]
            posterior = MixturePosterior(responsibilities[rows], self._initial_workspace(X[rows]))
            chunk = self._sufficient_statistics(X[rows], weights, posterior)
            statistics = add_statistics(statistics, chunk)
        self._m_step(statistics)

    #: Rows of data elsewhere (not in memory) the start is computed on when
    #: ``init_size`` is None.
    REMOTE_INIT_SIZE = 20_000

    def _initial_responsibilities(self, X, sample_weight, random_state):
        """``(rows, their weights, responsibilities)`` that the start is computed from.

        Only these rows enter the first M-step: rows with no responsibility
        would add nothing, and X may be a dask array, of which only these rows
        are read.
        """
        n_samples, n_components = X.shape[0], self.n_components
        if self.init_params == "random_from_data":
            probabilities = None
            if sample_weight is not None:
                weights = np.asarray(sample_weight)  # (a dask array: its weights only)
                probabilities = weights / weights.sum()
            indices = random_state.choice(
                n_samples, size=n_components, replace=False, p=probabilities
            )
            X, sample_weight = take_rows(X, sample_weight, indices)
            return X, sample_weight, np.eye(n_components, dtype=X.dtype)
        size = self.init_size
        if size is None and route_of(X).start_on_sample:
            size = max(self.REMOTE_INIT_SIZE, 50 * n_components)
        if size is not None and size < n_samples:
            indices = sample_rows(n_samples, size, sample_weight, random_state)
            X, sample_weight = take_rows(X, sample_weight, indices)
            n_samples = indices.shape[0]
        else:  # init_size >= n_samples: every row, here (from a cluster, to the client)
            clusters = self._clusters_where_the_rows_are(X, sample_weight, random_state)
            X, sample_weight = take_rows(X, sample_weight)
            if clusters is not None:  # (k-means on an accelerator)
                responsibilities = np.zeros((n_samples, n_components), dtype=X.dtype)
                if self.init_params == "kmeans":
                    responsibilities[np.arange(n_samples), clusters] = 1
                else:
                    responsibilities[clusters, np.arange(n_components)] = 1
                return X, sample_weight, responsibilities
        if self.init_params == "random":
            responsibilities = random_state.uniform(size=(n_samples, n_components))
            responsibilities /= responsibilities.sum(axis=1)[:, np.newaxis]
            return X, sample_weight, responsibilities.astype(X.dtype)
        responsibilities = np.zeros((n_samples, n_components), dtype=X.dtype)
        filled = fill_with_column_means(X, sample_weight) if self._allow_nan else X
        with fork_safe_openmp(), start_threads(n_samples, X.shape[1], n_components):
            if self.init_params == "kmeans":
                labels = (
                    KMeans(n_clusters=n_components, n_init=1, random_state=random_state)
                    .fit(filled, sample_weight=sample_weight)
                    .labels_
                )
                responsibilities[np.arange(n_samples), labels] = 1
            else:
                _, indices = kmeans_plusplus(
                    filled, n_components, random_state=random_state, sample_weight=sample_weight
                )
                responsibilities[indices, np.arange(n_components)] = 1
        return X, sample_weight, responsibilities

    #: Whether the k-means start may run on an accelerator: it breaks exact
    #: ties of distances by its own rounding, unlike scikit-learn's on the host
    #: (ties are rare in real-valued data, common in binary data).
    _kmeans_on_device = True

    def _clusters_where_the_rows_are(self, X, sample_weight, random_state):
        """The k-means start's labels (k-means++: seed indices) from X's route where
        it computes them where the rows are (``cluster_start``), else None."""
        start = getattr(route_of(X), "cluster_start", None)
        if start is None or self.init_params not in ("kmeans", "k-means++"):
            return None
        if not self._kmeans_on_device:
            return None
        seeds_only = self.init_params == "k-means++"
        return start(X, sample_weight, self.n_components, random_state, seeds_only)

    def _log_prob_and_workspace(self, X):
        """``log p(x | z=k)`` and what the statistics may reuse (here nothing)."""
        return self._estimate_log_prob(X), None

    def _chunk_log_prob(self, X):
        """``log p(x | z=k)`` of a chunk and its workspace, missing values integrated out.

        A chunk without NaN (found by one sum) is ``_log_prob_and_workspace``'s
        alone; otherwise its complete rows are, and the others
        ``_missing_log_prob``'s, with a :class:`MissingWorkspace`.
        """
        missing = missing_mask(X) if self._allow_nan else None
        if missing is None:
            return self._log_prob_and_workspace(X)
        incomplete = missing.any(axis=1)
        n_empty = np.count_nonzero(missing[incomplete].all(axis=1))
        if n_empty:  # (arrays in memory were checked whole, naming the rows)
            raise ValueError(empty_rows_message(n_empty))
        log_prob = np.empty((X.shape[0], self._fitted_components()))
        complete = ~incomplete
        complete_workspace = None
        if complete.any():
            log_prob[complete], complete_workspace = self._log_prob_and_workspace(X[complete])
        log_prob[incomplete], conditionals = self._missing_log_prob(
            X[incomplete], missing[incomplete]
        )
        return log_prob, MissingWorkspace(incomplete, complete_workspace, conditionals)

    def _initial_workspace(self, X):
        """The workspace of the initial M-step on a chunk: None, or one for its NaN."""
        missing = missing_mask(X) if self._allow_nan else None
        if missing is None:
            return None
        incomplete = missing.any(axis=1)
        conditionals = self._initial_conditionals(X[incomplete], missing[incomplete])
        return MissingWorkspace(incomplete, None, conditionals, initial=True)

    def _missing_log_prob(self, X, missing):
        """``(log p(x_observed | z=k), conditionals)`` of rows with a missing value."""
        raise NotImplementedError

    def _missing_statistics(self, conditionals, responsibilities, initial):
        """The ``_component_statistics`` of rows with missing values, in expectation."""
        raise NotImplementedError

    def _initial_conditionals(self, X, missing):
        """Conditional moments the initial M-step fills the missing values with."""
        raise NotImplementedError

    def _log_weights(self, dtype):
        with np.errstate(divide="ignore"):
            return np.log(self.weights_).astype(dtype, copy=False)

    def _estimate_weighted_log_prob(self, X):
        log_prob = self._chunk_log_prob(X)[0]
        return log_prob + self._log_weights(log_prob.dtype)

    def _e_step(self, X):
        log_prob, workspace = self._chunk_log_prob(X)
        log_prob += self._log_weights(log_prob.dtype)
        log_norm, responsibilities = normalize_log_rows(log_prob)
        return log_norm, MixturePosterior(responsibilities, workspace)

    def _sufficient_statistics(self, X, sample_weight, posterior):
        responsibilities, workspace = posterior
        if sample_weight is not None:
            responsibilities = responsibilities * sample_weight[:, np.newaxis].astype(
                responsibilities.dtype
            )
        if isinstance(workspace, MissingWorkspace):
            statistics = self._statistics_with_missing(X, responsibilities, workspace)
        elif workspace is None:
            statistics = self._component_statistics(X, responsibilities)
        else:
            statistics = self._component_statistics(X, responsibilities, workspace)
        statistics["nk"] = responsibilities.sum(axis=0, dtype=np.float64)
        return statistics

    def _statistics_with_missing(self, X, responsibilities, workspace):
        """Statistics of the rows with a missing value, plus those of the complete rows."""
        incomplete = workspace.incomplete
        statistics = self._missing_statistics(
            workspace.conditionals,
            responsibilities[incomplete].astype(np.float64, copy=False),
            workspace.initial,
        )
        complete = ~incomplete
        if complete.any():
            arguments = (X[complete], responsibilities[complete])
            if workspace.complete is not None:
                arguments += (workspace.complete,)
            for name, value in self._component_statistics(*arguments).items():
                statistics[name] += value
        return statistics

    def _m_step(self, statistics):
        # the weights last: the components' step reads the terms of the
        # parameters the statistics were taken with (``_terms``)
        nk = statistics["nk"] + RESPONSIBILITY_FLOOR
        self._m_step_components(statistics)
        self.weights_ = (nk / nk.sum()).astype(self._parameter_dtype())

    def _parameter_dtype(self):
        """dtype of the fitted parameters: that of the training data."""
        return self._fit_dtype

    def _validate_fit_data(self, X, sample_weight, reset=True):
        X, sample_weight = super()._validate_fit_data(X, sample_weight, reset)
        if reset:  # (partial_fit keeps the dtype of the parameters)
            self._fit_dtype = host_dtype(X.dtype)
        return X, sample_weight

    def _log_density(self, X):
        return logsumexp_rows(self._estimate_weighted_log_prob(X))

    def _fitted_components(self):
        """Number of components of the fitted (or initialised) parameters.

        Everything after fit reads it, never ``n_components``, which
        ``set_params`` may have changed since.
        """
        return self.weights_.shape[0] if hasattr(self, "weights_") else self.n_components

    def _row_width(self):
        return self._fitted_components() + self.n_features_in_

    def _sample(self, n_samples, random_state):
        weights = np.asarray(self.weights_, dtype=np.float64)
        labels = random_state.choice(weights.shape[0], size=n_samples, p=weights / weights.sum())
        return self._sample_components(labels, random_state), labels

    # ------------------------------------------------------------------ use

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit the model and return the most probable component of each row.

        Equal to ``fit(X).predict(X)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : Ignored
            Not used, present for API consistency.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each row (see ``fit``).

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Component labels.
        """
        return self.fit(X, sample_weight=sample_weight).predict(X)

    def predict(self, X):
        """Most probable component of each row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Component labels.
        """
        X = self._validate_predict_data(X)
        return self._map_chunks(
            lambda chunk: np.argmax(self._estimate_weighted_log_prob(chunk), axis=1), X
        )

    def predict_proba(self, X):
        """Posterior probability of each component for each row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data.

        Returns
        -------
        responsibilities : ndarray of shape (n_samples, n_components)
            ``p(z=k | x)``; each row sums to one.
        """
        X = self._validate_predict_data(X)
        return self._map_chunks(
            lambda chunk: normalize_log_rows(self._estimate_weighted_log_prob(chunk))[1], X
        )

    def _fitted_structure(self):
        return {"n_components": self._fitted_components()}

    def _n_parameters(self):
        """Number of free parameters of the mixture."""
        return int(self._n_component_parameters() + self._fitted_components() - 1)

    # ------------------------------------------------------------------ missing values

    def _validate_predict_data(self, X, *, allow_unobserved_rows=False):
        """Validate X; rows without an observed value are refused unless allowed.

        (Checked here, on the whole X, so the error names the rows of X; a
        dask array is checked chunk by chunk in ``_chunk_log_prob``.)
        """
        X = super()._validate_predict_data(X)
        route = route_of(X)
        if not allow_unobserved_rows and self._allow_nan and route.names_empty_rows:
            route.check_rows_observed(X)
        return X

    #: The draws ``impute(sample_posterior=True)`` takes per missing value (a
    #: method of ``RandomState``), given to the conditionals' ``draw``.
    _imputation_noise = "standard_normal"

    #: Uniform draws per row of ``impute(sample_posterior=True)``: the first
    #: chooses the component, any others go to the conditionals' ``draw``.
    _imputation_uniforms = 1

    @available_if(lambda self: self._allow_nan)
    def impute(self, X, *, sample_posterior=False, random_state=None):
        """Fill the missing values (NaN) of X from the fitted mixture.

        The conditional mean ``sum_k p(k | x_O) E[x_M | x_O, k]`` of each
        row's missing values given its observed ones, or with
        ``sample_posterior=True`` one draw from ``p(x_M | x_O)``: a component
        from ``p(k | x_O)``, then the component's conditional. A row with no
        observed value gets the mixture's mean (or a draw from it).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data; NaN marks a missing value.
        sample_posterior : bool, default=False
            If True, one draw from the conditional distribution (for
            multiple imputation) instead of its mean.
        random_state : int, RandomState instance or None, default=None
            Source of the draws when ``sample_posterior=True``.

        Returns
        -------
        X_imputed : ndarray of shape (n_samples, n_features)
            A copy of X with its observed values unchanged.
        """
        return self._impute(X, sample_posterior, random_state)

    def _impute(self, X, sample_posterior, random_state):
        """The missing values of X filled from the fitted density (see ``impute``).

        For a mixture whose components have ``means_`` and whose
        ``_missing_log_prob`` gives conditionals with ``expected`` and
        ``draw`` methods (``skem._core._missing.GaussianImputation``). All
        random numbers are drawn before the chunks run, in one order, so a
        draw is reproducible for a given ``random_state`` however the chunks
        are scheduled.
        """
        check_is_fitted(self)
        return self._impute_where(X, sample_posterior, random_state, self._impute_in_memory)

    def _impute_in_memory(self, X, sample_posterior, random_state):
        X = self._validate_predict_data(X, allow_unobserved_rows=True)
        imputed = X.copy()
        missing = missing_mask(X)
        if missing is None:
            return imputed
        rows = np.flatnonzero(missing.any(axis=1))
        draws = (None, None)
        if sample_posterior:
            random_state = check_random_state(random_state)
            draws = (
                random_state.uniform(size=(rows.size, self._imputation_uniforms)),
                getattr(random_state, self._imputation_noise)(size=(rows.size, X.shape[1])),
            )
        means = np.asarray(self.means_, dtype=np.float64)

        def imputed_rows(batch):
            chunk = rows[batch]
            log_joint, conditionals = self._imputation_terms(X[chunk], missing[chunk])
            chunk_draws = [None if draw is None else draw[batch] for draw in draws]
            return impute_rows(log_joint, conditionals, means, *chunk_draws)

        with self._one_pass():
            values = np.concatenate(list(map_chunks(imputed_rows, self._chunks(rows.size))))
        imputed[rows] = np.where(missing[rows], values, X[rows])
        return imputed

    def _imputation_terms(self, X, missing):
        """``(ln p(x_O, z=k), conditionals)`` of rows with missing values (``impute``)."""
        log_prob, conditionals = self._missing_log_prob(X, missing)
        return log_prob + self._log_weights(np.float64), conditionals

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = self._allow_nan
        return tags
