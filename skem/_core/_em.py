"""The fit loop shared by every skem model: restarts, convergence, bound history.

Models plug in through a few hooks built around sufficient statistics that are
sums over samples, so chunked and weighted EM are the same code.
"""

import warnings
from abc import ABCMeta, abstractmethod
from contextlib import contextmanager
from copy import deepcopy
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from . import _blocks
from ._accelerate import accelerated_restart
from ._blocks import fingerprint, row_slices, weighted_sum
from ._missing import clear_pattern_cache
from ._monitor import CallbackSupportMixin, FitMonitor, Restart, with_callbacks
from ._namespaces import where_the_data_are, wrap_boundary_methods
from ._online import OnlineEM
from ._parallel import fit_blas_threads
from ._routes import log_total_weight, route_of


class BaseEM(OnlineEM, CallbackSupportMixin, DensityMixin, BaseEstimator, metaclass=ABCMeta):
    """Base class of the skem models: one fit loop for every EM-type algorithm.

    ``fit`` validates the data, then for each of ``n_init`` restarts
    initialises the model and repeats one *iteration* until the change of the
    bound is below ``tol`` or ``max_iter`` iterations were made, and keeps the
    restart with the highest bound. One iteration is

    1. **E-step**, chunk by chunk: ``_e_step(X_chunk)`` returns the per-row
       bound (for exact EM, the log-likelihood ``log p(x)``) and the posterior
       over the latent variables; ``_sufficient_statistics(X_chunk,
       sample_weight_chunk, posterior)`` turns them into a dict of arrays that
       are (weighted) sums over the rows. The base class adds the dicts of all
       chunks, so memory stays bounded and weights are honoured everywhere.
    2. **M-step**: ``_m_step(statistics)`` sets the parameters from the sums.

    Bound bookkeeping (for all models)
        ``lower_bounds_[i]`` is the weighted per-sample mean of the bound
        computed in the E-step of iteration ``i + 1``, i.e. at the parameters
        *before* that iteration's M-step (as in scikit-learn's
        ``GaussianMixture``). For exact EM it is the log-likelihood of those
        parameters, so it never decreases, and the returned model (after the
        last M-step) is at least as good as ``lower_bound_``. With
        ``max_iter=0`` the model is the initialisation, ``n_iter_=0``,
        ``lower_bound_=-inf`` and ``lower_bounds_`` is empty. A variational
        model (:class:`skem.VariationalGaussianMixture`) records instead the
        ELBO of the iteration's responsibilities and of q(theta) *after* its
        update, as scikit-learn's ``BayesianGaussianMixture`` does: the
        bound's global terms need the updated q.

    Writing a new model
        Subclass :class:`BaseEM` (or :class:`skem.BaseMixture` for a discrete
        latent variable, which needs even less) and implement:

        - if the model adds parameters, ``__init__`` listing every parameter
          explicitly (scikit-learn's rule) and passing the loop's parameters
          to ``super().__init__``; a model that adds none needs no
          ``__init__``;
        - ``_fitted_parameters``: a tuple with the names of the fitted
          attributes that make up the parameters (used to keep the best
          restart and for ``warm_start``);
        - ``_initialize(X, sample_weight, random_state)``: set initial
          parameters, drawing all randomness from ``random_state``;
        - ``_e_step(X)`` -> ``(bound per row, posterior)``;
        - ``_sufficient_statistics(X, sample_weight, posterior)`` -> dict of
          weighted sums over the rows of ``X`` (``sample_weight`` may be None);
        - ``_m_step(statistics)``: set the parameters from the summed dict;
        - ``_log_density(X)``: the log-density of each row (``score_samples``);
        - ``_sample(n_samples, random_state)`` -> ``(X, latent)``;
        - optionally ``_check_parameters(X, sample_weight)`` to validate
          parameters against the data before any work (it only checks),
          ``_prepare_fit(X, sample_weight, random_state)`` to set up what the
          whole fit needs, ``_after_fit(X, sample_weight)`` to finish a model
          that was fitted (not called with ``max_iter=0``), and
          ``_row_width()``, the number of floats of working memory per row in
          the E-step, which sets the chunk size.
        - optionally, for what the E-step derives from the parameters
          (factorisations, log-determinants), ``_terms_from`` (the names of
          the public fitted attributes it reads) and ``_derive_terms()``; read
          the result with ``_terms()``. Nothing derived is stored on the
          estimator by hand: ``_terms()`` rebuilds it whenever those
          attributes change, so a user who sets ``means_`` scores with them,
          and the pool's threads only read it;
        - optionally ``_fitted_structure()`` (and ``_requested_structure()``
          where a parameter does not name the shape directly): the parameters
          that fix the model's shape, which ``warm_start`` and ``partial_fit``
          must find unchanged;
        - optionally, for ``partial_fit`` (``skem._core._online``): a model
          whose statistics are plain sums over rows writes
          ``_statistics_of_parameters()`` (the statistics, per unit of
          weight, whose M-step are the current parameters) and takes the
          defaults; a model whose statistics are taken about its parameters
          writes its own moments (``_batch_moments``, ``_combine_moments``,
          ``_m_step_from_moments``, ``_moments_of_parameters``).

        A model trained otherwise (stochastic gradient ascent on the ELBO, as
        :class:`skem.AmortizedVAE`) overrides ``_em_iteration(X,
        sample_weight)`` instead of the E- and M-step hooks, making one
        iteration one epoch, and may give the fit another monitor
        (``_make_monitor``; see ``skem._core._monitor``).

    Progress
        Every fit reports to a monitor (``skem._core._monitor.FitMonitor``) that
        owns the bound history, the convergence test, the verbose output and,
        with scikit-learn >= 1.9, the callbacks of ``sklearn.callback``:
        ``model.set_callbacks(ProgressBar()).fit(X)`` shows the restarts and
        iterations.

        The gallery example ``plot_custom_em_model.py`` writes a Poisson
        mixture this way; ``tests/test_base.py`` tests that very class.

    Parameters
    ----------
    tol : float, default=1e-3
        Convergence threshold on the change of the per-sample bound.
    max_iter : int, default=100
        Maximum number of iterations per restart.
    n_init : int, default=1
        Number of restarts; the one with the highest final bound is kept.
    random_state : int, RandomState instance or None, default=None
        Source of all randomness in ``fit`` (one generator for all restarts),
        and the seed of the draws made by ``sample``.
    warm_start : bool, default=False
        If True, a second ``fit`` continues from the fitted parameters with a
        single restart.
    verbose : int, default=0
        1 prints restarts and iterations, 2 also the bound change and timing.
    verbose_interval : int, default=10
        Number of iterations between two progress lines.
    """

    _parameter_constraints: dict = {
        "tol": [Interval(Real, 0.0, None, closed="left")],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "verbose_interval": [Interval(Integral, 1, None, closed="left")],
    }

    _fitted_parameters: tuple = ()

    #: Private attributes that live only while ``fit`` runs.
    _fit_scratch: tuple = ("_monitor",)

    #: The public fitted attributes that ``_derive_terms`` reads.
    _terms_from: tuple = ()

    #: Whether NaN entries are missing values the model handles (inf never is).
    _allow_nan: bool = False

    #: Whether ``fit`` is a sum over blocks of rows (so it runs on every route).
    _fits_on_blocks: bool = True

    def __init_subclass__(cls, **kwargs):
        # Every model's public methods take arrays of other libraries through
        # the array-API boundary (``skem._core._namespaces``).
        super().__init_subclass__(**kwargs)
        wrap_boundary_methods(cls)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.array_api_support = True
        return tags

    def __init__(
        self,
        *,
        tol=1e-3,
        max_iter=100,
        n_init=1,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
    ):
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval

    def _drop_fit_scratch(self):
        """Forget what only a fit needs: its scratch, and the pattern groupings of its data."""
        for name in self._fit_scratch:
            self.__dict__.pop(name, None)
        clear_pattern_cache()

    def __getstate__(self):
        # The fit's scratch (the monitor holds the training data) is never
        # pickled: a dask cluster receives the estimator with every pass.
        # Derived terms are rebuilt from the parameters where they are used.
        state = dict(super().__getstate__())
        for name in (*self._fit_scratch, "_terms_memo", "_pass_terms"):
            state.pop(name, None)
        return state

    # ------------------------------------------------------------------ derived terms

    def _derive_terms(self):
        """What the E-step and scores need from the public fitted attributes (``_terms_from``).

        A pure function of those attributes: factorisations, log-determinants,
        offsets. Models without such terms need not implement it.
        """
        raise NotImplementedError

    def _terms(self):
        """``_derive_terms()`` of the public fitted attributes as they are now.

        Nothing derived is kept that could go stale: the value is rebuilt
        whenever one of ``_terms_from`` changed, in place or replaced (a user
        who sets ``means_`` scores with those means), and memoised by a
        fingerprint of them. During a pass over the chunks (``_one_pass``)
        the value built for the pass is returned as it is.
        """
        pinned = self.__dict__.get("_pass_terms")
        if pinned is not None:
            return pinned
        key = tuple(fingerprint(getattr(self, name)) for name in self._terms_from)
        memo = self.__dict__.get("_terms_memo")
        if memo is None or memo[0] != key:
            memo = self._terms_memo = (key, self._derive_terms())
        return memo[1]

    def _has_terms(self):
        return bool(self._terms_from) and all(hasattr(self, name) for name in self._terms_from)

    def _warm_terms(self):
        """Build the terms of the current parameters, if the model has them yet."""
        if self._has_terms():
            self._terms()

    @contextmanager
    def _one_pass(self):
        """The parameters' terms fixed for one pass over the chunks.

        Built once, on the calling thread, before the chunks go to the pool:
        its threads then only read them (no fingerprint of the parameters per
        chunk, no write to the estimator). Parameters do not change during a
        pass.
        """
        if not self._has_terms() or "_pass_terms" in self.__dict__:
            yield
            return
        self._pass_terms = self._terms()
        try:
            yield
        finally:
            del self._pass_terms

    # ------------------------------------------------------------------ hooks

    def _check_parameters(self, X, sample_weight):
        """Validate model parameters against the data; raise ValueError.

        Only checks: the estimator is not changed here.
        """

    def _prepare_fit(self, X, sample_weight, random_state):
        """Set up what the whole fit needs (after the checks, before any restart)."""

    @abstractmethod
    def _initialize(self, X, sample_weight, random_state):
        """Set the initial parameters."""

    def _e_step(self, X):
        """Return (bound of each row, posterior) for a chunk of rows."""
        raise NotImplementedError

    def _sufficient_statistics(self, X, sample_weight, posterior):
        """Return a dict of weighted sums over the rows of a chunk."""
        raise NotImplementedError

    def _m_step(self, statistics):
        """Set the parameters from the summed statistics."""
        raise NotImplementedError

    def _fitted_structure(self):
        """Parameters that fix the fitted model's shape, with their fitted values."""
        return {}

    def _requested_structure(self):
        """What the current parameters ask for, by the names of ``_fitted_structure``."""
        return {name: getattr(self, name) for name in self._fitted_structure()}

    def _check_same_structure(self, continued_by="warm_start=True"):
        """A warm start or ``partial_fit`` continues the fitted model: its shape must not change."""
        requested = self._requested_structure()
        for name, fitted in self._fitted_structure().items():
            if requested[name] != fitted:
                remedy = "warm_start=False" if continued_by.startswith("warm") else "call fit"
                raise ValueError(
                    f"{continued_by} continues the fitted model, which has {name}={fitted!r}; "
                    f"{name}={getattr(self, name)!r} needs a new fit ({remedy}), or set "
                    f"{name}={fitted!r} back."
                )

    def _make_monitor(self, X, sample_weight, n_init):
        """The monitor of this fit (see ``skem._core._monitor``)."""
        return FitMonitor(self, X, sample_weight, n_init)

    @abstractmethod
    def _log_density(self, X):
        """Return the log-density of each row of a chunk."""

    @abstractmethod
    def _sample(self, n_samples, random_state):
        """Return (X, latent) drawn from the fitted model."""

    def _row_width(self):
        """Floats of working memory per row in the E-step (sets the chunk size)."""
        return self.n_features_in_

    def _after_fit(self, X, sample_weight):
        """Called once on the kept parameters at the end of a fit that iterated."""

    def _fit_closed_form(self, X, sample_weight):
        """Fit in one step where the model can; return the bound, or None for EM.

        A model with a closed-form maximum-likelihood solution sets its
        parameters here and returns the per-sample mean log-likelihood of the
        solution, which becomes the single entry of ``lower_bounds_``.
        """
        return None

    def _n_parameters(self):
        """Number of free parameters (used by ``bic`` and ``aic``).

        A model that cannot count them (its likelihood is only bounded, as the
        VAE's) does not override this, and then has no ``bic`` or ``aic``.
        """
        raise NotImplementedError

    def _counts_parameters(self):
        return type(self)._n_parameters is not BaseEM._n_parameters

    # ------------------------------------------------------------------ fit

    @where_the_data_are
    @with_callbacks
    def fit(self, X, y=None, sample_weight=None):
        """Estimate the parameters by EM, keeping the best of ``n_init`` restarts.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : Ignored
            Not used, present for API consistency.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each row; an integer weight counts as that
            many copies of the row. None gives every row weight one.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        with self._unchanged_on_error():
            self._validate_params()
            continuing = self.warm_start and hasattr(self, "converged_")
            previous_features = getattr(self, "n_features_in_", None)
            given_weight = sample_weight  # (validation scales the weights to mean one)
            X, sample_weight = self._validate_fit_data(X, sample_weight)
            if continuing and previous_features not in (None, X.shape[1]):
                raise ValueError(
                    f"warm_start=True continues a fit on {previous_features} features, "
                    f"but X has {X.shape[1]} features."
                )
            if continuing:
                self._check_same_structure()
            self._check_parameters(X, sample_weight)
            random_state = check_random_state(self.random_state)
            for name in self._ONLINE_STATE:  # fit starts over (a warm start too)
                self.__dict__.pop(name, None)
            try:
                self._prepare_fit(X, sample_weight, random_state)
                self._run_em(X, sample_weight, random_state)
                self._warm_terms()  # predictions then leave the estimator as it is
                self._log_fit_weight = log_total_weight(X, given_weight)
            finally:
                self._drop_fit_scratch()
        return self

    #: What scikit-learn's callback machinery keeps on the estimator during fit
    #: and removes after it, also after a failed fit: kept when fit restores.
    _CALLBACK_STATE = ("_callback_fit_ctx", "_skl_callbacks_to_teardown")

    @contextmanager
    def _unchanged_on_error(self):
        """Leave the estimator exactly as it was if fit raises."""
        saved_state = self.__dict__.copy()
        try:
            yield
        except BaseException:
            callback_state = {
                name: self.__dict__[name] for name in self._CALLBACK_STATE if name in self.__dict__
            }
            self.__dict__.clear()
            self.__dict__.update(saved_state)
            self.__dict__.update(callback_state)  # so the callbacks are torn down
            raise

    def _validate_fit_data(self, X, sample_weight, reset=True):
        return route_of(X).validate_fit(self, X, sample_weight, reset)

    def _run_em(self, X, sample_weight, random_state):
        """The restarts and the kept one; a small fit in memory on one BLAS
        thread (``fit_blas_threads``)."""
        if not route_of(X).in_memory:
            return self._run_restarts(X, sample_weight, random_state)
        with fit_blas_threads(*X.shape):
            return self._run_restarts(X, sample_weight, random_state)

    def _run_restarts(self, X, sample_weight, random_state):
        do_init = not (self.warm_start and hasattr(self, "converged_"))
        n_init = self.n_init if do_init else 1
        monitor = self._monitor = self._make_monitor(X, sample_weight, n_init)
        if self.max_iter == 0:  # the initialisation only (the last of n_init)
            for _ in range(n_init if do_init else 0):
                self._initialize(X, sample_weight, random_state)
            best = Restart(self._get_parameters(), -np.inf, [], 0, False)
        else:
            bound = self._fit_closed_form(X, sample_weight)
            if bound is None:
                best = self._best_restart(X, sample_weight, random_state, monitor, do_init)
            else:
                best = Restart(self._get_parameters(), bound, [bound], 1, True)
            if not best.converged:
                warnings.warn(
                    "Best performing initialization did not converge. "
                    "Try different init parameters, or increase max_iter, "
                    "tol, or check for degenerate data.",
                    ConvergenceWarning,
                )
        self._set_parameters(best.parameters)
        self.n_iter_ = best.n_iter
        self.converged_ = best.converged
        self.lower_bound_ = best.lower_bound
        self.lower_bounds_ = np.asarray(best.lower_bounds, dtype=np.float64)
        self._sampling_seed = int(random_state.randint(np.iinfo(np.int32).max))
        self._sampling_state = None
        if self.max_iter > 0:
            self._after_fit(X, sample_weight)
        monitor.end_fit()

    def _best_restart(self, X, sample_weight, random_state, monitor, do_init):
        """Run the restarts of EM; return the best (the monitor keeps it)."""
        for init in range(monitor.n_init):
            monitor.begin_restart(init, -np.inf if do_init else self.lower_bound_)
            if do_init:
                self._initialize(X, sample_weight, random_state)
            if getattr(self, "accelerate", False):  # (models with the parameter)
                accelerated_restart(self, X, sample_weight, monitor, self.max_iter)
            else:
                for _ in range(self.max_iter):
                    monitor.begin_iteration()
                    if monitor.record(self._em_iteration(X, sample_weight)):
                        break
            monitor.end_restart()
        return monitor.best

    def _em_iteration(self, X, sample_weight):
        """One E-step over all blocks of rows, then one M-step; return the mean bound.

        The blocks are processed on all cores (``reduce_rows``), or on a dask
        cluster, so the E-step hooks must not modify the estimator; their sums
        are added in block order (in a tree for dask).
        """
        bound, weight, statistics = self._reduce(self._block_terms, X, sample_weight)
        self._m_step(statistics)
        return bound / weight

    def _block_terms(self, X, sample_weight):
        """E-step of a block: ``(bound sum, weight sum, statistics)``, all additive."""
        bound, posterior = self._e_step(X)
        statistics = self._sufficient_statistics(X, sample_weight, posterior)
        weight = X.shape[0] if sample_weight is None else sample_weight.sum()
        return float(weighted_sum(bound, sample_weight)), float(weight), statistics

    def _chunk_rows(self):
        """Rows per chunk: the E-step's working memory fits in CHUNK_FLOATS."""
        return max(1, _blocks.CHUNK_FLOATS // max(1, self._row_width()))

    def _chunks(self, n_samples):
        """Slices of rows whose E-step working memory fits in CHUNK_FLOATS."""
        return row_slices(n_samples, self._chunk_rows())

    def _reduce(self, function, X, sample_weight):
        """``reduce_rows`` over chunks of the model's size."""
        return route_of(X).reduce(function, X, sample_weight, self._chunk_rows(), self._one_pass)

    def _map_chunks(self, function, X):
        """Apply ``function`` to each chunk of rows (on all cores); stack the results.

        On a dask array the result is a dask array, computed block by block.
        """
        return route_of(X).map(function, X, self._chunk_rows(), self._one_pass)

    def _impute_where(self, X, sample_posterior, random_state, impute):
        """``impute(X, sample_posterior, random_state)``, the model's, where X lives.

        In memory, ``impute`` runs on X. Elsewhere (a dask array) the
        conditional means are computed block by block, lazily; draws are
        refused there: reproducible draws need one generator over all the
        rows, which the blocks, computed anywhere in any order, do not share.
        """
        route = route_of(X)
        if route.in_memory:
            return impute(X, sample_posterior, random_state)
        if sample_posterior:
            route.require_memory(self, "impute(sample_posterior=True)")
        check_is_fitted(self)
        X = route.validate_predict(self, X)
        return self._map_chunks(lambda chunk: impute(chunk, False, None), X)

    def _get_parameters(self):
        return {name: deepcopy(getattr(self, name)) for name in self._fitted_parameters}

    def _set_parameters(self, parameters):
        for name, value in parameters.items():
            setattr(self, name, value)

    # ------------------------------------------------------------------ use

    def _validate_predict_data(self, X):
        check_is_fitted(self)
        return route_of(X).validate_predict(self, X)

    @where_the_data_are
    def score_samples(self, X):
        """Log-density of each row under the fitted model, in nats.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data.

        Returns
        -------
        log_density : ndarray of shape (n_samples,)
            ``log p(x)`` of each row (higher means more typical).
        """
        X = self._validate_predict_data(X)
        return self._map_chunks(self._log_density, X)

    @where_the_data_are
    def score(self, X, y=None, sample_weight=None):
        """Mean log-density of the rows of ``X`` (weighted if weights are given).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data.
        y : Ignored
            Not used, present for API consistency.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each row in the mean.

        Returns
        -------
        score : float
            Per-sample mean log-likelihood; higher is better.
        """
        log_density = self.score_samples(X)
        return route_of(log_density).mean(log_density, sample_weight)

    @available_if(_counts_parameters)
    @where_the_data_are
    def bic(self, X):
        """Bayesian information criterion on ``X``: lower is better.

        ``-2 * n_samples * score(X) + n_parameters * log(n_samples)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data.

        Returns
        -------
        bic : float
        """
        n_samples = np.shape(X)[0]
        return -2 * self.score(X) * n_samples + self._n_parameters() * np.log(n_samples)

    @available_if(_counts_parameters)
    @where_the_data_are
    def aic(self, X):
        """Akaike information criterion on ``X``: lower is better.

        ``-2 * n_samples * score(X) + 2 * n_parameters``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data.

        Returns
        -------
        aic : float
        """
        return -2 * self.score(X) * np.shape(X)[0] + 2 * self._n_parameters()

    @where_the_data_are
    def sample(self, n_samples=1, random_state=None):
        """Draw samples from the fitted joint distribution of data and latents.

        Parameters
        ----------
        n_samples : int, default=1
            Number of samples.
        random_state : int, RandomState instance or None, default=None
            If given, the draw is made with it and is reproducible. If None,
            draws come from a generator seeded by ``fit`` (from the
            estimator's ``random_state``) and advance with each call, so
            repeated calls give fresh samples.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
            Samples.
        latent : ndarray of shape (n_samples,) or (n_samples, n_latent)
            The latent draw of each sample (component labels for mixtures).
        """
        check_is_fitted(self)
        if not isinstance(n_samples, Integral) or n_samples < 1:
            raise ValueError(
                f"Invalid value for 'n_samples': {n_samples!r}. The sampling "
                "requires at least one sample."
            )
        if random_state is None:
            if self._sampling_state is None:
                self._sampling_state = np.random.RandomState(self._sampling_seed)
            random_state = self._sampling_state
        return self._sample(int(n_samples), check_random_state(random_state))
