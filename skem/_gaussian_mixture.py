"""EMGaussianMixture: scikit-learn's GaussianMixture, weighted, chunked and faster.

The E-step is one matrix product against all components per chunk of rows; the
M-step accumulates shifted (numerically centred) scatter matrices in float64.
"""

import warnings
from math import log, pi

import numpy as np
from sklearn.utils import check_array
from sklearn.utils._param_validation import Interval, StrOptions
from numbers import Real

from ._linalg import (
    cholesky_lower,
    cholesky_with_jitter,
    inverse_lower_transposed,
    precision_cholesky_from_precision,
)
from ._mixture import RESPONSIBILITY_FLOOR, BaseMixture
from .exceptions import DegenerateComponentWarning

ILL_DEFINED_COVARIANCE = (
    "Fitting the mixture model failed because some components have "
    "ill-defined empirical covariance (for instance caused by singleton "
    "or collapsed samples). Try to decrease the number of components, "
    "increase reg_covar, or scale the input data. (reg_covar=0 disables "
    "the variance floor that otherwise keeps such components finite.)"
)

PRECISION_SHAPES = {
    "full": lambda k, d: (k, d, d),
    "tied": lambda k, d: (d, d),
    "diag": lambda k, d: (k, d),
    "spherical": lambda k, d: (k,),
}


def _check_shape(array, shape, name):
    if array.shape != shape:
        raise ValueError(
            f"The parameter '{name}' should have the shape of {shape}, "
            f"but got {array.shape}"
        )


def _as_float_array(value, name, allow_nd=False):
    return check_array(
        value,
        dtype=[np.float64, np.float32],
        ensure_2d=False,
        allow_nd=allow_nd,
        input_name=name,
    )


def check_weights(weights, n_components):
    """Validate initial mixing weights: shape, range [0, 1] and sum one."""
    weights = _as_float_array(weights, "weights_init")
    _check_shape(weights, (n_components,), "weights")
    if np.any(weights < 0.0) or np.any(weights > 1.0):
        raise ValueError(
            "The parameter 'weights' should be in the range [0, 1], but got "
            f"min value {np.min(weights):.5f}, max value {np.max(weights):.5f}"
        )
    atol = 1e-6 if weights.dtype == np.float32 else 1e-8
    if abs(1.0 - float(np.sum(weights))) > atol:
        raise ValueError(
            "The parameter 'weights' should be normalized, "
            f"but got sum(weights) = {np.sum(weights):.5f}"
        )
    return weights


def check_means(means, n_components, n_features):
    """Validate initial means: shape (n_components, n_features)."""
    means = _as_float_array(means, "means_init")
    _check_shape(means, (n_components, n_features), "means")
    return means


def check_precisions(precisions, covariance_type, n_components, n_features):
    """Validate initial precisions: shape and positive-definiteness."""
    precisions = _as_float_array(
        precisions, "precisions_init", allow_nd=covariance_type == "full"
    )
    name = f"{covariance_type} precision"
    _check_shape(precisions, PRECISION_SHAPES[covariance_type](n_components, n_features), name)
    if covariance_type in ("diag", "spherical"):
        if np.any(precisions <= 0.0):
            raise ValueError(f"'{name}' should be positive")
        return precisions
    for matrix in precisions.reshape(-1, n_features, n_features):
        symmetric = np.allclose(matrix, matrix.T)
        if not (symmetric and np.all(np.linalg.eigvalsh(matrix) > 0.0)):
            raise ValueError(f"'{name}' should be symmetric, positive-definite")
    return precisions


def _gram(X):
    """``X.T @ X``, symmetric, with one BLAS syrk call (half the flops of a GEMM).

    numpy recognises the product of an array with its own transpose and calls
    syrk in numpy's BLAS. Calling scipy's ``dsyrk`` instead would run in
    scipy's separate OpenBLAS, whose thread pool then competes with numpy's
    between the E-step products (3x slower on 2 cores).
    """
    return X.T @ X


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
      and accumulated in float64, so variances cannot go negative.
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
      matrix product against all components.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
        Each component has its own full covariance ('full'), all share one
        ('tied'), each has a diagonal one ('diag') or a single variance
        ('spherical').
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
    weights_init : array-like of shape (n_components,), default=None
        Initial mixing weights.
    means_init : array-like of shape (n_components, n_features), default=None
        Initial means.
    precisions_init : array-like, default=None
        Initial precisions (inverse covariances), of shape (n_components,)
        for 'spherical', (n_features, n_features) for 'tied',
        (n_components, n_features) for 'diag' and
        (n_components, n_features, n_features) for 'full'.
    random_state : int, RandomState instance or None, default=None
        Controls the initialisation and seeds ``sample``.
    warm_start : bool, default=False
        Continue from the fitted parameters on the next ``fit``.
    verbose : int, default=0
        Verbosity of the fit loop.
    verbose_interval : int, default=10
        Iterations between progress lines.

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
        "covariance_type": [StrOptions({"full", "tied", "diag", "spherical"})],
        "reg_covar": [Interval(Real, 0.0, None, closed="left")],
        "weights_init": ["array-like", None],
        "means_init": ["array-like", None],
        "precisions_init": ["array-like", None],
    }

    _fitted_parameters = (
        "weights_", "means_", "covariances_", "precisions_cholesky_",
        "_variance_floors", "_repaired_components",
    )

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
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
    ):
        super().__init__(
            n_components=n_components,
            tol=tol,
            max_iter=max_iter,
            n_init=n_init,
            init_params=init_params,
            random_state=random_state,
            warm_start=warm_start,
            verbose=verbose,
            verbose_interval=verbose_interval,
        )
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init

    # ------------------------------------------------------------------ checks

    def _check_parameters(self, X, sample_weight):
        super()._check_parameters(X, sample_weight)
        n_features = X.shape[1]
        self._initial_values = {
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

    # ------------------------------------------------------------------ init

    def _initialize(self, X, sample_weight, random_state):
        self._variance_floors = np.full(self.n_components, float(self.reg_covar))
        self._repaired_components = ()
        initial = self._initial_values
        if all(value is not None for value in initial.values()):
            self._set_initial_values(X.dtype)
            return
        super()._initialize(X, sample_weight, random_state)
        self._set_initial_values(X.dtype)

    def _initialize_from_responsibilities(self, X, sample_weight, responsibilities, random_state):
        weighted = responsibilities.astype(X.dtype)
        if sample_weight is not None:
            weighted *= sample_weight[:, np.newaxis].astype(X.dtype)
        nk = weighted.sum(axis=0, dtype=np.float64) + RESPONSIBILITY_FLOOR
        center = np.average(X, axis=0, weights=sample_weight).astype(np.float64)
        means = (weighted.T @ X).astype(np.float64) / nk[:, np.newaxis]
        self._reference = {"center": center, "shift": means - center}
        super()._initialize_from_responsibilities(
            X, sample_weight, responsibilities, random_state
        )

    def _set_initial_values(self, dtype):
        """Apply the user's initial values over the computed ones."""
        initial = self._initial_values
        if initial["weights"] is not None:
            self.weights_ = initial["weights"].astype(dtype)
        if initial["means"] is not None:
            self.means_ = initial["means"].astype(dtype)
        if initial["precisions"] is not None:
            self._set_precisions(initial["precisions"], dtype)
        self._refresh_caches()

    def _set_precisions(self, precisions, dtype):
        precisions = np.asarray(precisions, dtype=np.float64)
        if self.covariance_type in ("diag", "spherical"):
            self.precisions_cholesky_ = np.sqrt(precisions).astype(dtype)
            self.covariances_ = (1.0 / precisions).astype(dtype)
            return
        stacked = precisions.reshape(-1, *precisions.shape[-2:])
        cholesky = np.array([precision_cholesky_from_precision(p) for p in stacked])
        covariances = np.array([np.linalg.inv(p) for p in stacked])
        self.precisions_cholesky_ = cholesky.reshape(precisions.shape).astype(dtype)
        self.covariances_ = covariances.reshape(precisions.shape).astype(dtype)

    # ------------------------------------------------------------------ EM

    def _row_width(self):
        n_features, n_components = self.n_features_in_, self.n_components
        if self.covariance_type == "full":
            return n_components * (n_features + 1) + 3 * n_features
        if self.covariance_type == "tied":
            return 2 * n_components + 4 * n_features
        return 2 * n_components + 4 * n_features

    def _component_statistics(self, X, responsibilities, workspace=None):
        """Responsibility-weighted sums of a chunk, about the current parameters.

        With the E-step's workspace of the same rows (the fit loop), nothing
        the E-step computed is computed again: for 'full' the whitened
        residuals ``y_k = (x - m_k) U_k`` give ``sum_n r_nk y_nk y_nk^T`` in
        one batched product, turned into the scatter about ``m_k`` in the
        M-step; for 'diag' and 'spherical' the squares are reused. Without it
        (the initialisation), the scatters are formed directly.
        """
        if workspace is None:
            return self._direct_statistics(X, responsibilities)
        responsibilities64 = responsibilities.astype(np.float64, copy=False)
        centered64 = workspace["centered64"]
        statistics = {"sum_x": responsibilities64.T @ centered64}
        if self.covariance_type == "full":
            whitened = workspace["whitened"]
            stacked = whitened.reshape(whitened.shape[0], self.n_components, -1)
            stacked *= np.sqrt(responsibilities)[:, :, np.newaxis].astype(whitened.dtype)
            per_component = stacked.transpose(1, 0, 2)
            statistics["whitened_scatter"] = np.matmul(
                per_component.transpose(0, 2, 1), per_component
            )
        elif self.covariance_type == "tied":
            row_weight = np.sqrt(responsibilities64.sum(axis=1))
            statistics["scatter"] = _gram(centered64 * row_weight[:, np.newaxis])
        else:
            statistics["sum_x2"] = responsibilities64.T @ workspace["squares"]
        return statistics

    def _direct_statistics(self, X, responsibilities):
        center = self._reference["center"]
        centered = X - center.astype(X.dtype)
        centered64 = centered.astype(np.float64, copy=False)
        responsibilities64 = responsibilities.astype(np.float64, copy=False)
        statistics = {"sum_x": responsibilities64.T @ centered64}
        if self.covariance_type == "full":
            statistics["scatter"] = self._shifted_scatters(centered, responsibilities)
        elif self.covariance_type == "tied":
            row_weight = np.sqrt(responsibilities64.sum(axis=1))
            statistics["scatter"] = _gram(centered64 * row_weight[:, np.newaxis])
        else:
            statistics["sum_x2"] = responsibilities64.T @ np.square(centered64)
        return statistics

    def _shifted_scatters(self, centered, responsibilities):
        """The matrices sum_n r_nk (x_n - m_k)(x_n - m_k)^T, m_k the old mean.

        Shifting by the current mean keeps the later subtraction of the mean's
        outer product free of cancellation. Rows whose responsibility is
        exactly zero contribute nothing and are skipped.
        """
        n_samples, n_features = centered.shape
        shift = self._reference["shift"].astype(centered.dtype)
        root_responsibilities = np.sqrt(responsibilities)
        scatters = np.zeros((self.n_components, n_features, n_features))
        buffer = np.empty_like(centered)
        for k in range(self.n_components):
            root = root_responsibilities[:, k]
            rows = np.flatnonzero(root)
            if rows.size < n_samples // 2:
                weighted = centered[rows] - shift[k]
                weighted *= root[rows, np.newaxis]
            else:
                weighted = np.subtract(centered, shift[k], out=buffer)
                weighted *= root[:, np.newaxis]
            if rows.size:
                scatters[k] = _gram(weighted)
        return scatters

    def _full_scatters(self, statistics):
        """Scatters sum_n r_nk (x_n - s_k)(x_n - s_k)^T and the shifts s_k.

        The fit loop accumulates the whitened scatter W_k = sum r y y^T of
        the E-step's residuals y = x U_k - o_k. Since y U_k^-1 = x - s_k with
        s_k = o_k U_k^-1 (the current mean, up to the rounding of the
        E-step's factors), the scatter about s_k is U_k^-T W_k U_k^-1. The
        residuals are small numbers, so float32 data lose no more accuracy
        here than in the E-step itself.
        """
        if "scatter" in statistics:
            return statistics["scatter"], self._reference["shift"]
        inverse_factor = self._estep_cache["inverse_factor"]
        scatter = np.swapaxes(inverse_factor, 1, 2) @ statistics["whitened_scatter"]
        scatter = scatter @ inverse_factor
        scatter += np.swapaxes(scatter, 1, 2)
        scatter *= 0.5
        return scatter, self._estep_cache["shift"]

    def _m_step_components(self, statistics):
        nk = statistics["nk"] + RESPONSIBILITY_FLOOR
        center = self._reference["center"]
        centered_means = statistics["sum_x"] / nk[:, np.newaxis]
        n_features = centered_means.shape[1]
        if self.covariance_type == "full":
            # sum_n r (x - mean)(x - mean)^T from the sums about the old mean s:
            # scatter - t d^T - d t^T + R d d^T with t = sum r (x - s), d = mean - s,
            # R = sum r. It is positive semi-definite even for an empty component.
            scatter, shift = self._full_scatters(statistics)
            offset = centered_means - shift
            residual_sum = statistics["sum_x"] - statistics["nk"][:, np.newaxis] * shift
            cross = residual_sum[:, :, np.newaxis] * offset[:, np.newaxis, :]
            covariances = scatter - cross
            covariances -= np.swapaxes(cross, 1, 2)
            covariances += statistics["nk"][:, None, None] * (
                offset[:, :, np.newaxis] * offset[:, np.newaxis, :]
            )
            covariances /= nk[:, None, None]
            self._variance_floors = self._add_variance_floor(covariances)
        elif self.covariance_type == "tied":
            between = (statistics["sum_x"].T / nk) @ statistics["sum_x"]
            covariances = (statistics["scatter"] - between) / nk.sum()
            floor = self._add_variance_floor(covariances[np.newaxis])
            self._variance_floors = np.repeat(floor, self.n_components)
        else:
            second_moment = statistics["sum_x2"] / nk[:, np.newaxis]
            variances = second_moment - centered_means**2
            # Below the rounding of the second moment a variance is zero (a
            # collapsed component), not noise that would hide the collapse.
            variances[variances <= 10 * np.finfo(np.float64).eps * second_moment] = 0.0
            if self.covariance_type == "spherical":
                variances = variances.mean(axis=1)
            covariances = variances + self.reg_covar
            self._variance_floors = np.full(self.n_components, float(self.reg_covar))
        dtype = self._parameter_dtype()
        self.means_ = (centered_means + center).astype(dtype)
        precision_factors = self._precision_cholesky(covariances)  # may repair in place
        self.covariances_ = covariances.astype(dtype)
        self.precisions_cholesky_ = precision_factors.astype(dtype)
        self._refresh_caches()

    def _add_variance_floor(self, covariances):
        """Add reg_covar, raised to the rounding level of each matrix, in place.

        On data of an extreme scale the rounding error of a singular direction
        (about eps times the variances) exceeds reg_covar; flooring there keeps
        the factorisation, and the fit, the same from one iteration to the
        next. Elsewhere the floor is exactly reg_covar.
        """
        diagonal = np.einsum("kii->ki", covariances)
        floors = np.zeros(covariances.shape[0])
        if self.reg_covar > 0:
            rounding = 16 * np.finfo(np.float64).eps * np.abs(diagonal).mean(axis=1)
            floors = np.maximum(self.reg_covar, rounding)
            diagonal += floors[:, np.newaxis]
        return floors

    def _precision_cholesky(self, covariances):
        """Upper factors of the precisions; floors or raises on a singular covariance."""
        if self.covariance_type in ("diag", "spherical"):
            if np.any(covariances <= 0.0):
                raise ValueError(ILL_DEFINED_COVARIANCE)
            self._repaired_components = ()
            return 1.0 / np.sqrt(covariances)
        stacked = covariances.reshape(-1, *covariances.shape[-2:])
        factors = np.empty_like(stacked)
        repaired = []
        for k, covariance in enumerate(stacked):
            cholesky = cholesky_lower(covariance)
            if cholesky is None:
                if self.reg_covar == 0:
                    raise ValueError(ILL_DEFINED_COVARIANCE)
                cholesky, jitter = cholesky_with_jitter(covariance, self.reg_covar)
                covariance.flat[:: covariance.shape[0] + 1] += jitter
                repaired.append(k)
            factors[k] = inverse_lower_transposed(cholesky)
        if self.covariance_type == "tied" and repaired:
            repaired = list(range(self.n_components))
        self._repaired_components = tuple(repaired)
        return factors.reshape(covariances.shape)

    def _refresh_caches(self):
        """Recompute what the E-step needs from the current parameters."""
        weights = np.asarray(self.weights_, dtype=np.float64)
        means = np.asarray(self.means_, dtype=np.float64)
        center = (weights / weights.sum()) @ means
        self._reference = {"center": center, "shift": means - center}
        self._estep_cache = self._estep_terms(means - center)

    def _estep_terms(self, centered_means):
        dtype = self.means_.dtype
        factor = np.asarray(self.precisions_cholesky_, dtype=np.float64)
        n_components, n_features = centered_means.shape
        if self.covariance_type == "full":
            log_det = np.log(np.diagonal(factor, axis1=1, axis2=2)).sum(axis=1)
            # the factors and offsets as the E-step uses them (rounded to the
            # data's dtype), and what the M-step needs to undo the whitening
            rounded = factor.astype(dtype).astype(np.float64)
            offsets = np.einsum("kd,kde->ke", centered_means, factor).astype(dtype)
            inverse_factor = np.array([inverse_lower_transposed(u.T) for u in rounded])
            shift = np.einsum("ke,ked->kd", offsets.astype(np.float64), inverse_factor)
            terms = {
                "factor": rounded.transpose(1, 0, 2).reshape(n_features, -1).astype(dtype),
                "offsets": offsets.ravel(),
                "inverse_factor": inverse_factor,
                "shift": shift,
            }
        elif self.covariance_type == "tied":
            log_det = np.full(n_components, np.log(np.diag(factor)).sum())
            offsets = centered_means @ factor
            terms = {
                "factor": factor.astype(dtype),
                "offsets": offsets.T.copy(),
                "offset_norms": np.einsum("kd,kd->k", offsets, offsets),
            }
        elif self.covariance_type == "diag":
            precisions = factor**2
            log_det = np.log(factor).sum(axis=1)
            terms = {
                "precisions": precisions.T,
                "linear": (centered_means * precisions).T,
                "constant": (centered_means**2 * precisions).sum(axis=1),
            }
        else:
            precisions = factor**2
            log_det = n_features * np.log(factor)
            terms = {
                "precisions": precisions,
                "linear": centered_means.T,
                "constant": (centered_means**2).sum(axis=1),
            }
        terms["log_norm"] = log_det - 0.5 * n_features * log(2 * pi)
        return terms

    def _estimate_log_prob(self, X):
        return self._log_prob_and_workspace(X)[0]

    def _log_prob_and_workspace(self, X):
        """Log-densities of a chunk under each component, and the E-step's work.

        The workspace holds the centred rows (in float64 and in the data's
        dtype), the whitened residuals ('full') or the squared deviations
        ('diag', 'spherical'), which the statistics of the same rows reuse.
        """
        with np.errstate(over="ignore"):  # a square beyond the float range: density 0
            return self._log_gaussian_densities(X)

    def _log_gaussian_densities(self, X):
        terms = self._estep_cache
        centered = X - self._reference["center"].astype(X.dtype)
        centered64 = centered.astype(np.float64, copy=False)
        workspace = {"centered": centered, "centered64": centered64}
        n_samples, n_features = centered.shape
        if self.covariance_type == "full":
            whitened = centered @ terms["factor"]
            whitened -= terms["offsets"]
            stacked = whitened.reshape(n_samples, self.n_components, n_features)
            mahalanobis = np.einsum("nkd,nkd->nk", stacked, stacked, dtype=np.float64)
            workspace["whitened"] = whitened
        elif self.covariance_type == "tied":
            # |y - o_k|^2 expanded in float64, y = x U: one product for all k
            projected = (centered @ terms["factor"]).astype(np.float64, copy=False)
            mahalanobis = projected @ terms["offsets"]
            mahalanobis *= -2.0
            mahalanobis += np.einsum("nd,nd->n", projected, projected)[:, np.newaxis]
            mahalanobis += terms["offset_norms"]
            np.maximum(mahalanobis, 0, out=mahalanobis)
        elif self.covariance_type == "diag":
            # expanded squares cancel when clusters lie far apart: use float64
            squares = np.square(centered64)
            mahalanobis = squares @ terms["precisions"]
            mahalanobis -= 2 * (centered64 @ terms["linear"])
            mahalanobis += terms["constant"]
            np.maximum(mahalanobis, 0, out=mahalanobis)
            workspace["squares"] = squares
        else:
            squares = np.square(centered64)
            squared_norms = squares.sum(axis=1)
            mahalanobis = squared_norms[:, np.newaxis] - 2 * (centered64 @ terms["linear"])
            mahalanobis += terms["constant"]
            np.maximum(mahalanobis, 0, out=mahalanobis)
            mahalanobis *= terms["precisions"]
            workspace["squares"] = squares
        mahalanobis *= -0.5
        mahalanobis += terms["log_norm"]
        return mahalanobis.astype(X.dtype, copy=False), workspace

    # ------------------------------------------------------------------ results

    def _set_parameters(self, parameters):
        super()._set_parameters(parameters)
        self._refresh_caches()
        factor = self.precisions_cholesky_
        if self.covariance_type == "full":
            self.precisions_ = np.einsum("kij,klj->kil", factor, factor)
        elif self.covariance_type == "tied":
            self.precisions_ = factor @ factor.T
        else:
            self.precisions_ = factor**2

    def _degenerate_components(self):
        """Components whose empirical covariance (before the floor) is singular.

        Diagonal and spherical variances are tested one by one. A full
        covariance minus its floor is scaled to unit diagonal, which makes the
        test independent of the features' scales: it is singular when a
        feature has no variance or when the smallest eigenvalue of that
        correlation matrix is zero up to rounding.
        """
        covariances = np.asarray(self.covariances_, dtype=np.float64)
        rounding = 10 * np.finfo(self.covariances_.dtype).eps
        floors = np.asarray(self._variance_floors, dtype=np.float64)
        if self.covariance_type in ("diag", "spherical"):
            variances = covariances.reshape(self.n_components, -1)
            collapsed = (variances - floors[:, None] <= rounding * variances).any(axis=1)
            return set(np.flatnonzero(collapsed).tolist()) | set(self._repaired_components)
        stacked = covariances.reshape(-1, *covariances.shape[-2:])
        n_features = stacked.shape[-1]
        singular = []
        for covariance, floor in zip(stacked, floors):
            empirical = covariance - floor * np.eye(n_features)
            spread = np.diag(empirical)
            if np.any(spread <= rounding * np.diag(covariance)):
                singular.append(True)
                continue
            correlation = empirical / np.sqrt(np.outer(spread, spread))
            singular.append(np.linalg.eigvalsh(correlation)[0] <= rounding * n_features)
        if self.covariance_type == "tied":
            singular = singular * self.n_components
        return set(np.flatnonzero(singular).tolist()) | set(self._repaired_components)

    def _after_fit(self, X, sample_weight):
        if self.n_iter_ == 0:
            return
        degenerate = sorted(self._degenerate_components())
        if degenerate:
            warnings.warn(
                f"{len(degenerate)} of {self.n_components} components are degenerate "
                f"(components {degenerate}): their empirical covariance is singular, "
                "as happens on duplicated rows, constant features or more components "
                "than distinct points. Their variance in the collapsed directions is "
                f"held at the floor reg_covar={self.reg_covar!r}, so scores stay "
                "finite but the density there is sharply peaked; consider fewer "
                "components, a larger reg_covar or removing constant features.",
                DegenerateComponentWarning,
            )

    def _sample_components(self, labels, random_state):
        n_features = self.means_.shape[1]
        noise = random_state.standard_normal(size=(labels.shape[0], n_features))
        covariances = np.asarray(self.covariances_, dtype=np.float64)
        if self.covariance_type == "full":
            factors = np.linalg.cholesky(covariances)
            noise = np.einsum("nd,ned->ne", noise, factors[labels])
        elif self.covariance_type == "tied":
            noise = noise @ np.linalg.cholesky(covariances).T
        elif self.covariance_type == "diag":
            noise *= np.sqrt(covariances[labels])
        else:
            noise *= np.sqrt(covariances[labels])[:, np.newaxis]
        return (self.means_[labels] + noise).astype(self.means_.dtype)

    def _n_component_parameters(self):
        n_features = self.means_.shape[1]
        n_components = self.n_components
        covariance_parameters = {
            "full": n_components * n_features * (n_features + 1) / 2,
            "diag": n_components * n_features,
            "tied": n_features * (n_features + 1) / 2,
            "spherical": n_components,
        }[self.covariance_type]
        return int(covariance_parameters + n_features * n_components)
