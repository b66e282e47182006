"""EMGaussianMixture: scikit-learn's GaussianMixture, weighted, chunked and faster.

The E-step is one matrix product against all components per chunk of rows; the
M-step reuses it (for 'full', the whitened residuals give the scatters about the
current means), summed over chunks in float64. What differs by covariance type
lives in ``skem._core._covariance``; missing values (NaN) are integrated out exactly,
with the pattern-grouped Gaussian algebra of ``skem._core._missing``.
"""

import warnings
from math import log, pi
from numbers import Real
from typing import Any, NamedTuple

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from .._core import ONLINE_PARAMETER_CONSTRAINTS, route_of, weighted_moments
from .._core._covariance import (
    COVARIANCES,
    StartTerms,
    combine_moments,
    log_normalizer,
    n_parameters,
    precisions,
    row_width,
    sample_noise,
    without_floor,
)
from .._core._missing import DiagonalConditionals, missing_mask, observed_moments
from .._core._namespaces import host_dtype
from ..exceptions import DegenerateComponentWarning, VarianceFloorWarning
from ._base import RESPONSIBILITY_FLOOR, BaseMixture
from ._initial_values import check_means, check_precisions, check_weights


class GaussianTerms(NamedTuple):
    """What the E-step and the statistics need of the parameters: immutable.

    ``center`` is the weighted mean of the means, which the rows are taken
    about; ``means`` the means about it; ``structure`` the covariance
    structure's terms (``skem._core._covariance``); ``log_norm`` the log of
    each component's normalising constant. The first M-step, from
    responsibilities, has the start's centre and means, a
    ``StartTerms`` structure and, with NaN, ``fill_variances``.
    """

    center: np.ndarray
    means: np.ndarray
    structure: Any
    log_norm: Any = None
    fill_variances: Any = None


def start_terms(X, sample_weight, weighted, column_moments):
    """The terms of a first M-step from responsibilities (``weighted``: times the weights).

    Statistics are taken about the weighted mean of X and the start's means;
    with NaN, each component's means and variances of its observed values
    (``observed_moments``: the data's column means and variances, from
    ``column_moments()``, called only then, where the rows observe nothing)
    fill its missing values.
    """
    missing = missing_mask(X)
    if missing is None:
        nk = weighted.sum(axis=0, dtype=np.float64) + RESPONSIBILITY_FLOOR
        center = np.average(X, axis=0, weights=sample_weight).astype(np.float64)
        means = (weighted.T @ X).astype(np.float64) / nk[:, np.newaxis]
        shift = means - center
        return GaussianTerms(center, shift, StartTerms(shift))
    column_means, column_variances = column_moments()
    center, means, variances = observed_moments(
        X, missing, weighted.astype(np.float64), sample_weight, column_variances, column_means
    )
    return GaussianTerms(center, means, StartTerms(means), fill_variances=variances)


def _centered(X, reference):
    """Rows minus the centre of the current means, in the data's dtype."""
    return X - reference.center.astype(X.dtype)


class EMGaussianMixture(BaseMixture):
    """Gaussian mixture fitted by EM: scikit-learn's GaussianMixture and more.

    Same parameters, attributes and numbers as
    :class:`sklearn.mixture.GaussianMixture` (from the same starting point the
    bound, the parameters and the scores agree to about 1e-10 in float64),
    plus:

    - ``fit(X, sample_weight=...)``: weighted EM; integer weights give the
      same fit as repeated rows.
    - ``sample(n_samples, random_state=None)`` gives fresh draws on each call
      (reproducible from the estimator's ``random_state``), or a reproducible
      draw for an explicit ``random_state``; the rows come in random order.
    - float32 data stay float32 and are fitted stably: statistics are centred
      (about the current means for 'full'), summed over chunks in float64,
      and variances cannot go negative; log-densities are float64.
    - A degenerate component (on duplicated rows, a constant feature, more
      components than distinct points) does not make ``fit`` raise: its
      variance in the collapsed direction is held at ``reg_covar``, and a
      :class:`~skem.exceptions.DegenerateComponentWarning` names it. If a
      covariance is still not positive-definite (data on an extreme scale),
      a multiple of the identity, grown tenfold from the rounding level
      until the factorisation succeeds, is added to it, with the same
      warning. Only ``reg_covar=0`` (no floor) raises, as the
      maximum-likelihood estimate then does not exist.
    - ``weights_init``, ``means_init`` and ``precisions_init`` are never
      modified by ``fit``.
    - Rows are processed in chunks with bounded memory; the E-step is one
      matrix product against all components, and the M-step reuses it.
    - A fifth covariance type, ``'tied_diag'``: one diagonal covariance
      shared by all components.
    - Missing values: NaN marks a value missing at random, for every
      covariance type. EM is exact on the observed values of each row
      (Ghahramani & Jordan, 1994): responsibilities come from the marginal
      Gaussian of the observed coordinates, and the statistics fill each
      missing block with its conditional mean given the observed values and
      add its conditional covariance, so the log-likelihood of the observed
      values never decreases (with ``reg_covar=0``). ``score_samples``,
      ``predict`` and ``predict_proba`` use that marginal too, and
      ``impute`` fills the missing values from the fitted density. Rows that
      share a missingness pattern are processed together, and rows and
      chunks without NaN take the same path as complete data, with the same
      numbers. k-means (and k-means++) start on the data with each NaN
      replaced by the weighted mean of its column; the first M-step then
      fills each component's missing values with the mean of its observed
      ones. A row or a column without any observed value is an error.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    covariance_type : {'full', 'tied', 'diag', 'spherical', 'tied_diag'}, \
            default='full'
        Each component has its own full covariance ('full'), all share one
        ('tied'), each has a diagonal one ('diag') or a single variance
        ('spherical'), or all share one diagonal covariance ('tied_diag').
    tol : float, default=1e-3
        Convergence threshold on the change of the mean log-likelihood.
    reg_covar : float, default=1e-6
        Non-negative variance floor added to the diagonal of every covariance
        (scikit-learn's update). With ``reg_covar=0`` the M-step is exact and
        the log-likelihood never decreases; with a floor the update is the
        maximum-likelihood one plus ``reg_covar``, which is not an exact
        maximiser, so near convergence the bound may dip by an amount of the
        order of ``reg_covar`` (scikit-learn takes the same path).
    max_iter : int, default=100
        Maximum number of EM iterations per restart.
    n_init : int, default=1
        Number of restarts; the best is kept.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, \
            default='kmeans'
        Initialisation of the responsibilities (see :class:`skem.BaseMixture`).
    init_size : int, default=None
        Rows drawn at random to compute the start on; None uses all rows in
        memory and ``max(20_000, 50 * n_components)`` rows of a dask array (see
        :class:`skem.BaseMixture`).
    weights_init : array-like of shape (n_components,), default=None
        Initial mixing weights.
    means_init : array-like of shape (n_components, n_features), default=None
        Initial means.
    precisions_init : array-like, default=None
        Initial precisions (inverse covariances), of shape (n_components,)
        for 'spherical', (n_features, n_features) for 'tied',
        (n_components, n_features) for 'diag', (n_features,) for 'tied_diag'
        and (n_components, n_features, n_features) for 'full'.
    random_state : int, RandomState instance or None, default=None
        Controls the initialisation and seeds ``sample``.
    warm_start : bool, default=False
        Continue from the fitted parameters on the next ``fit``.
    verbose : int, default=0
        Verbosity of the fit loop.
    verbose_interval : int, default=10
        Iterations between progress lines.
    learning_decay : float, default=0.7
        Online EM (``partial_fit``): the step size of batch ``t`` is
        ``(learning_offset + t) ** -learning_decay``; in (0.5, 1], as in
        scikit-learn's ``LatentDirichletAllocation``.
    learning_offset : float, default=10.0
        Online EM: at least 1; larger values make the early steps smaller.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
        Mixing weights.
    means_ : ndarray of shape (n_components, n_features)
        Component means.
    covariances_ : ndarray
        Component covariances (shape as ``precisions_init``).
    precisions_ : ndarray
        Inverses of the covariances.
    precisions_cholesky_ : ndarray
        Upper-triangular ``U`` with ``U @ U.T = precision`` (for 'full' and
        'tied'); the square root of the precisions otherwise.
    converged_ : bool
        Whether the kept restart converged.
    n_iter_ : int
        Iterations of the kept restart.
    lower_bound_ : float
        Mean log-likelihood of the training data at the start of the last
        iteration (see :class:`skem.BaseEM` for the convention).
    lower_bounds_ : ndarray of shape ``(n_iter_,)``
        The bound at each iteration of the kept restart.
    n_features_in_ : int
        Number of features seen during fit.
    n_steps_ : int
        Number of ``partial_fit`` calls since the model was created or last
        fitted by ``fit`` (absent after ``fit``). After ``partial_fit``,
        ``n_iter_`` equals it, ``converged_`` is False, ``lower_bounds_``
        holds the bound of each call's batch before its step (a noisy
        progress signal, not monotone), and ``lower_bound_`` the last one.
    n_samples_seen_ : int
        Rows passed to ``partial_fit`` (the rows of a ``fit`` before it are
        not counted).
    feature_names_in_ : ndarray of shape ``(n_features_in_,)``
        Feature names seen during fit, if they were all strings.

    See Also
    --------
    sklearn.mixture.GaussianMixture : the reference implementation.

    Examples
    --------
    >>> import numpy as np
    >>> from skem import EMGaussianMixture
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
    >>> gm = EMGaussianMixture(n_components=2, random_state=0).fit(X)
    >>> gm.means_
    array([[10.,  2.],
           [ 1.,  2.]])
    >>> gm.predict([[0, 0], [12, 3]])
    array([1, 0])
    >>> weighted = EMGaussianMixture(n_components=2, random_state=0).fit(
    ...     X, sample_weight=[1, 1, 1, 3, 3, 3])
    >>> weighted.weights_.round(2)
    array([0.75, 0.25])
    """

    _parameter_constraints: dict = {
        **BaseMixture._parameter_constraints,
        **ONLINE_PARAMETER_CONSTRAINTS,
        "covariance_type": [StrOptions(set(COVARIANCES))],
        "reg_covar": [Interval(Real, 0.0, None, closed="left")],
        "weights_init": ["array-like", None],
        "means_init": ["array-like", None],
        "precisions_init": ["array-like", None],
    }

    _fitted_parameters = (
        "weights_",
        "means_",
        "covariances_",
        "precisions_cholesky_",
        "_variance_floors",
        "_repaired_components",
        "_covariance",
    )

    _fit_scratch = (
        *BaseMixture._fit_scratch,
        "_floored_columns",
        "_column_variances",
        "_column_means",
        "_initial",
        "_incomplete_share",
    )

    _allow_nan = True

    #: The methods that run where the data are, for arrays on an accelerator:
    #: the E-step and the log-densities have device twins (``_device_function``).
    _device_methods = frozenset(
        {"fit", "fit_predict", "score_samples", "score", "bic", "aic", "predict", "predict_proba"}
    )

    def _device_function(self, function, xp, device):
        """The device twin of the E-step or of the log-densities (``skem._core._device``),
        or None: the first M-step's pass and every other pass read their blocks
        on the host."""
        from .._core._device import GaussianDeviceTerms

        if "_start_reference" in self.__dict__:
            return None
        if function != self._block_terms and function != self._log_density:
            return None
        terms = GaussianDeviceTerms(
            self._covariance,
            self._terms(),
            self._log_weights(np.float64),
            xp,
            device,
            self.means_.dtype,
        )
        return terms.block_terms if function == self._block_terms else terms.log_density

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        init_size=None,
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        learning_decay=0.7,
        learning_offset=10.0,
    ):
        super().__init__(
            n_components=n_components,
            tol=tol,
            max_iter=max_iter,
            n_init=n_init,
            init_params=init_params,
            init_size=init_size,
            random_state=random_state,
            warm_start=warm_start,
            verbose=verbose,
            verbose_interval=verbose_interval,
        )
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init

    # ------------------------------------------------------------------ checks

    def _initial_values(self, n_features):
        """The user's initial parameters, validated (None where not given)."""
        return {
            "weights": None
            if self.weights_init is None
            else check_weights(self.weights_init, self.n_components),
            "means": None
            if self.means_init is None
            else check_means(self.means_init, self.n_components, n_features),
            "precisions": None
            if self.precisions_init is None
            else check_precisions(
                self.precisions_init, self.covariance_type, self.n_components, n_features
            ),
        }

    def _fitted_structure(self):
        return {**super()._fitted_structure(), "covariance_type": self._covariance.name}

    def _prepare_fit(self, X, sample_weight, random_state):
        super()._prepare_fit(X, sample_weight, random_state)
        self._covariance = COVARIANCES[self.covariance_type]
        self._initial = self._initial_values(X.shape[1])  # validated here, once
        column_means, variances = weighted_moments(X, sample_weight)
        self._floored_columns = np.flatnonzero((variances > 0) & (variances <= self.reg_covar))
        self._column_variances = variances
        self._column_means = column_means
        self._incomplete_share = route_of(X).incomplete_row_share(X)

    # ------------------------------------------------------------------ init

    def _initialize(self, X, sample_weight, random_state):
        self._variance_floors = np.full(self.n_components, float(self.reg_covar))
        self._repaired_components = ()
        if any(value is None for value in self._initial.values()):
            super()._initialize(X, sample_weight, random_state)
        self._set_initial_values(host_dtype(X.dtype))  # (X may be on a device)

    def _initialize_from_responsibilities(self, X, sample_weight, responsibilities, random_state):
        """One M-step from responsibilities; with NaN, on the observed values.

        With missing values each component's missing coordinates are filled
        with the mean of its observed values there, and the variance of these
        values is added to the second moments (the conditional moments of a
        diagonal Gaussian per component): the first M-step of EM from a
        start that knows nothing of the correlations.
        """
        weighted = responsibilities.astype(X.dtype)
        if sample_weight is not None:
            weighted *= sample_weight[:, np.newaxis].astype(X.dtype)
        self._start_reference = start_terms(
            X, sample_weight, weighted, lambda: (self._column_means, self._column_variances)
        )
        try:
            super()._initialize_from_responsibilities(
                X, sample_weight, responsibilities, random_state
            )
        finally:
            del self._start_reference

    def _set_initial_values(self, dtype):
        """Apply the user's initial values over the computed ones."""
        initial = self._initial
        if initial["weights"] is not None:
            self.weights_ = initial["weights"].astype(dtype)
        if initial["means"] is not None:
            self.means_ = initial["means"].astype(dtype)
        if initial["precisions"] is not None:
            factors, covariances = self._covariance.from_precisions(
                np.asarray(initial["precisions"], dtype=np.float64), "precisions_init"
            )
            self.precisions_cholesky_ = factors.astype(dtype)
            self.covariances_ = covariances.astype(dtype)

    # ------------------------------------------------------------------ EM

    def _row_width(self):
        # (rows with NaN widen it while fitting data with NaN)
        share = getattr(self, "_incomplete_share", 0.0)
        return row_width(self._covariance, self._fitted_components(), self.n_features_in_, share)

    def _component_statistics(self, X, responsibilities, workspace=None):
        """Responsibility-weighted sums of a chunk, about the current parameters.

        With the E-step's workspace of the same rows (the fit loop), nothing
        the E-step computed is computed again: for 'full' the whitened
        residuals ``y_k = (x - m_k) U_k`` give ``sum_n r_nk y_nk y_nk^T`` in
        one batched product, turned into the scatter about ``m_k`` in the
        M-step; the diagonal types reuse the squares. Without it (the
        initialisation), the statistics are formed from the data.
        """
        reference = self._reference
        centered = _centered(X, reference) if workspace is None else workspace["centered"]
        centered64 = centered.astype(np.float64, copy=False)
        second = self._covariance.second_moments(
            centered, centered64, responsibilities, reference.structure, workspace
        )
        sum_x = responsibilities.astype(np.float64, copy=False).T @ centered64
        return {"sum_x": sum_x, "second": second}

    def _m_step_components(self, statistics):
        self._set_components(*self._local_moments(statistics)[1:])

    def _local_moments(self, statistics):
        """``(counts, means, covariances)`` of summed statistics: the responsibilities'
        sums (floored), the weighted means and the covariances about them
        (unfloored), from the terms the statistics were taken about."""
        nk = statistics["nk"] + RESPONSIBILITY_FLOOR
        centered_means = statistics["sum_x"] / nk[:, np.newaxis]
        reference = self._reference
        covariances = self._covariance.covariances(
            statistics, centered_means, nk, reference.structure
        )
        return nk, centered_means + reference.center, covariances

    def _set_components(self, means, covariances):
        """Set the means and the floored, factorised covariances (float64 in)."""
        covariances, self._variance_floors, factors, repaired = self._covariance.factorize(
            covariances, self.reg_covar, means.shape[0]
        )
        self._repaired_components = tuple(repaired)
        dtype = self._parameter_dtype()
        self.means_ = means.astype(dtype)
        self.covariances_ = covariances.astype(dtype)
        self.precisions_cholesky_ = factors.astype(dtype)

    # ------------------------------------------------------------------ online

    def _batch_moments(self, X, sample_weight):
        bound, weight, statistics = self._reduce(self._block_terms, X, sample_weight)
        _, means, covariances = self._local_moments(statistics)
        moments = {"n": statistics["nk"] / weight, "means": means, "covariances": covariances}
        return bound / weight, moments

    def _combine_moments(self, running, batch, step):
        return combine_moments(running, batch, step, self._covariance)

    def _m_step_from_moments(self, moments):
        n = moments["n"] + RESPONSIBILITY_FLOOR
        self.weights_ = (n / n.sum()).astype(self._parameter_dtype())
        self._set_components(moments["means"], moments["covariances"].copy())

    def _moments_of_parameters(self):
        covariances = without_floor(
            self._covariance, np.asarray(self.covariances_, dtype=np.float64), self._variance_floors
        )
        return {
            "n": np.asarray(self.weights_, dtype=np.float64),
            "means": np.asarray(self.means_, dtype=np.float64),
            "covariances": covariances,
        }

    _terms_from = ("weights_", "means_", "precisions_cholesky_")

    def _derive_terms(self):
        """The E-step's terms: the centre of the means, the means about it, the
        covariance type's terms, and those of rows with missing values."""
        weights = np.asarray(self.weights_, dtype=np.float64)
        means = np.asarray(self.means_, dtype=np.float64)
        factors = np.asarray(self.precisions_cholesky_, dtype=np.float64)
        floors = np.array(self._variance_floors, dtype=np.float64)
        center = (weights / weights.sum()) @ means
        shift = means - center
        # (what only rows with NaN need is built on their first use: J d^3 for 'full')
        structure = self._covariance.terms(shift, factors, floors, self.means_.dtype)
        return GaussianTerms(center, shift, structure, log_normalizer(structure, means.shape[1]))

    @property
    def _reference(self):
        """The point the statistics are taken about, and the E-step's terms.

        The start's centre and means (and fill variances) while the first
        M-step runs; then ``_derive_terms`` of the current parameters.
        """
        start = self.__dict__.get("_start_reference")
        return self._terms() if start is None else start

    def _estimate_log_prob(self, X):
        return self._log_prob_and_workspace(X)[0]

    def _log_prob_and_workspace(self, X):
        """Log-densities of a chunk under each component, and the E-step's work.

        The workspace holds the centred rows and what the covariance type
        computed on the way (whitened residuals, squares), which the
        statistics of the same rows reuse. Log-densities are float64 for
        every dtype of the data (scikit-learn returns float32 for float32
        data, where the log-density of a far row can overflow to -inf).
        """
        reference = self._reference
        structure = reference.structure
        centered = _centered(X, reference)
        workspace = {"centered": centered}
        with np.errstate(over="ignore"):  # a square beyond the float range: density 0
            mahalanobis = self._covariance.mahalanobis(
                centered, centered.astype(np.float64, copy=False), structure, workspace
            )
        mahalanobis *= -0.5
        mahalanobis += reference.log_norm
        return mahalanobis, workspace

    # ------------------------------------------------------------------ missing values

    def _missing_log_prob(self, X, missing):
        """Log-densities of the observed values of each row (float64), and conditionals."""
        mahalanobis, log_det, conditionals = self._observed_terms(X, missing)
        n_observed = X.shape[1] - missing.sum(axis=1)
        log_prob = log_det - 0.5 * mahalanobis
        log_prob -= (0.5 * log(2 * pi)) * n_observed[:, np.newaxis]
        return log_prob, conditionals

    def _observed_terms(self, X, missing):
        """The covariance type's ``conditioned`` of rows with missing values, about the terms."""
        reference = self._reference
        centered = np.subtract(X, reference.center, dtype=np.float64)
        np.copyto(centered, 0.0, where=missing)
        # a square beyond the float range: density 0 (and inf - inf in the expansion)
        with np.errstate(over="ignore", invalid="ignore"):
            return self._covariance.conditioned(centered, missing, reference.structure)

    def _missing_statistics(self, conditionals, responsibilities, initial):
        # (a first M-step is told by its terms: about the start's means, in no basis)
        second = self._covariance.expected_second_moments(
            conditionals, responsibilities, self._reference.structure
        )
        return {"sum_x": conditionals.mean_sum(responsibilities), "second": second}

    def _initial_conditionals(self, X, missing):
        """Each component's observed means and variances (see the initialisation)."""
        reference = self._reference
        centered = np.subtract(X, reference.center, dtype=np.float64)
        np.copyto(centered, 0.0, where=missing)
        return DiagonalConditionals(centered, missing, reference.means, reference.fill_variances)

    # ------------------------------------------------------------------ results

    def _set_parameters(self, parameters):
        super()._set_parameters(parameters)
        self.precisions_ = precisions(self._covariance, self.precisions_cholesky_)

    def _degenerate_components(self):
        """Components whose empirical covariance (before the floor) is singular."""
        degenerate = self._covariance.degenerate(
            np.asarray(self.covariances_, dtype=np.float64),
            np.asarray(self._variance_floors, dtype=np.float64),
            10 * np.finfo(self.covariances_.dtype).eps,
        )
        return set(degenerate.tolist()) | set(self._repaired_components)

    def _after_fit(self, X, sample_weight):
        columns = self._floored_columns
        if columns.size:
            smallest = float(self._column_variances[columns].min())
            warnings.warn(
                f"reg_covar={self.reg_covar!r} is at least the variance of "
                f"{columns.size} of {X.shape[1]} columns (columns {columns[:10].tolist()}, "
                f"the smallest {smallest:.3g}): the floor, not the data, sets the fitted "
                "variance there, and the log-density is far from that of the rescaled "
                "data. Standardise X (sklearn's StandardScaler) or lower reg_covar.",
                VarianceFloorWarning,
            )
            return
        degenerate = sorted(self._degenerate_components())
        if degenerate:
            precision = ""
            if self.covariances_.dtype == np.float32:
                precision = (
                    " With float32 data a covariance is also singular at that precision "
                    "when its condition number passes about 1e6: fit float64 data then."
                )
            warnings.warn(
                f"{len(degenerate)} of {self.n_components} components are degenerate "
                f"(components {degenerate}): their empirical covariance is singular, "
                "as happens on duplicated rows, constant features, a discrete feature "
                "(counts, categories) on one value of which a component sits, or more "
                "components than distinct points. Their variance in the collapsed directions is "
                f"held at the floor reg_covar={self.reg_covar!r}, so scores stay "
                "finite but the density there is sharply peaked; consider fewer "
                "components, a larger reg_covar or removing constant features." + precision,
                DegenerateComponentWarning,
            )

    def _sample_components(self, labels, random_state):
        n_features = self.means_.shape[1]
        noise = random_state.standard_normal(size=(labels.shape[0], n_features))
        noise = sample_noise(self._covariance, noise, self.precisions_cholesky_, labels)
        return (self.means_[labels] + noise).astype(self.means_.dtype)

    def _n_component_parameters(self):
        n_components, n_features = self.means_.shape
        covariance_parameters = n_parameters(self._covariance, n_components, n_features)
        return int(covariance_parameters + n_features * n_components)

    # ------------------------------------------------------------------ use

    def impute(self, X, *, sample_posterior=False, random_state=None):
        """Fill the missing values (NaN) of X from the fitted mixture.

        Given the observed values ``x_o`` of a row, its missing values are
        filled with their conditional mean under the mixture,
        ``E[x_m | x_o] = sum_k p(k | x_o) (mu_m + S_mo S_oo^-1 (x_o - mu_o))``
        (component k's mean and covariance), with ``p(k | x_o)`` from the
        marginal density of the observed values. With
        ``sample_posterior=True`` each row instead gets one draw from
        ``p(x_m | x_o)``: a component from ``p(k | x_o)``, then the
        conditional Gaussian of that component. A row without any observed
        value gets the mean of the mixture (or a draw from it).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data; NaN marks a missing value.
        sample_posterior : bool, default=False
            If False, fill in the conditional mean; if True, one draw from the
            conditional distribution (for multiple imputation).
        random_state : int, RandomState instance or None, default=None
            Source of the draws when ``sample_posterior=True``; an int gives
            the same draws on every call.

        Returns
        -------
        X_imputed : ndarray of shape (n_samples, n_features)
            A copy of X, of its float dtype, with the observed values
            unchanged and every NaN filled.

        Examples
        --------
        >>> import numpy as np
        >>> from skem import EMGaussianMixture
        >>> rng = np.random.RandomState(0)
        >>> X = rng.multivariate_normal([0, 0], [[1, 0.9], [0.9, 1]], size=1000)
        >>> X[::4, 1] = np.nan
        >>> gm = EMGaussianMixture(random_state=0).fit(X)
        >>> gm.impute([[1.0, np.nan], [np.nan, -2.0]]).round(2)
        array([[ 1. ,  0.9],
               [-1.8, -2. ]])
        >>> draws = gm.impute([[1.0, np.nan]] * 2000, sample_posterior=True, random_state=0)
        >>> round(float(draws[:, 1].mean()), 1), round(float(draws[:, 1].std()), 1)
        (0.9, 0.4)
        """
        return self._impute(X, sample_posterior, random_state)
