"""FactorAnalysis: a noise variance per feature, by exact EM (Rubin & Thayer 1982).

The model is probabilistic PCA's with a diagonal noise covariance Psi in place
of sigma^2 I. Scaling each feature by 1 / sqrt(psi_j) turns it into PPCA with
unit noise, so the E-step, the log-densities (matrix-inversion lemma, O(n d q),
no d x d inverse per row), missing values and the joint regression of
[W, mean] are ProbabilisticPCA's, in the scaled coordinates; the M-step's
noise is then per feature (``skem.decomposition._lowrank``).
"""

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from .._core import ONLINE_PARAMETER_CONSTRAINTS, BaseEM, check_missing, weighted_moments
from ..exceptions import VarianceFloorWarning
from ._lowrank import (
    factor_analysis_step,
    feature_noise_floors,
    latent_precision_terms,
    moments_log_likelihood,
    orthogonal_loadings,
    ppca_m_step,
    ppca_posterior,
    ppca_sufficient_statistics,
)
from ._lowrank_device import factor_analysis_device_function
from ._ppca import ProbabilisticPCA


class FactorAnalysis(ProbabilisticPCA):
    """Factor analysis, ``x = W z + mean + noise`` with ``noise ~ N(0, Psi)``, by exact EM.

    ``z ~ N(0, I_q)`` and Psi is diagonal: each feature has its own noise
    variance (``noise_variance_``), where probabilistic PCA has one for all.
    The data are Gaussian with covariance ``W W^T + Psi``. EM (Rubin & Thayer
    1982) reaches the maximum-likelihood optimum that scikit-learn's
    :class:`~sklearn.decomposition.FactorAnalysis` finds by another
    iteration; it also takes sample weights, missing values (NaN, integrated
    out exactly: the bound of the observed values never falls), dask arrays
    and chunked data as the other skem models do. Log-densities use the
    matrix-inversion lemma and the determinant lemma, O(n d q).

    A noise variance that EM drives towards zero (a Heywood case: a feature
    the factors explain entirely) is held at the floor, ``noise_variance_floor``
    times the mean variance of the features, and named in a
    :class:`~skem.VarianceFloorWarning`.

    Parameters
    ----------
    n_components : int, default=None
        Number of factors q; None gives ``n_features - 1``.
    noise_variance_floor : float, default=1e-6
        Floor of each feature's noise variance, relative to that feature's
        variance in the training data (so the fit is the same in any units;
        a constant feature's is relative to the mean variance of the others).
    accelerate : bool, default=True
        Accelerate EM by SQUAREM (Varadhan & Roland 2008; see
        ``skem._core._accelerate``): two EM steps, an extrapolation along
        their path, and plain EM whenever the extrapolation would lower the
        bound, so ``lower_bounds_`` never falls. It cuts the iterations
        several-fold where EM crawls (strongly correlated features, near
        Heywood cases). Its accept-or-drop decisions compare bounds, so its
        path depends on rounding: the same data in other chunks (a dask
        array) may stop at another point within ``tol``; plain EM's path
        does not.
    tol : float, default=1e-6
        Convergence threshold on the change of the per-sample log-likelihood.
        EM for factor analysis converges linearly and can be slow (hundreds
        of iterations on strongly correlated data).
    max_iter : int, default=1000
        Maximum number of EM iterations.
    n_init, random_state, warm_start, verbose, verbose_interval
        As for :class:`skem.ProbabilisticPCA` (the start is PPCA's solution,
        from a randomized SVD).
    learning_decay, learning_offset
        Online EM (``partial_fit``), as for :class:`skem.ProbabilisticPCA`:
        the running mean and covariance are averaged with step sizes
        ``(learning_offset + t) ** -learning_decay``, and each step fits the
        factors to them (EM steps on the d x d covariance alone, to ``tol``).

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        The loadings W, transposed (scikit-learn's name and shape).
    mean_ : ndarray of shape (n_features,)
    noise_variance_ : ndarray of shape (n_features,)
        The diagonal of Psi.
    lower_bounds_, lower_bound_, n_iter_, converged_, n_features_in_
        As for every skem model (the bound is the mean log-likelihood).

    Examples
    --------
    >>> import numpy as np
    >>> from skem import FactorAnalysis
    >>> rng = np.random.RandomState(0)
    >>> X = rng.standard_normal((2000, 1)) * [1.0, 2.0, 1.0, 0.5]
    >>> X += rng.standard_normal((2000, 4)) * [0.3, 0.3, 1.0, 1.0]
    >>> model = FactorAnalysis(1, random_state=0).fit(X)
    >>> np.sqrt(model.noise_variance_).round(1)
    array([0.3, 0.3, 1. , 1. ])
    >>> np.abs(model.components_).round(1)
    array([[1. , 1.9, 1. , 0.5]])
    """

    _parameter_constraints: dict = {
        **BaseEM._parameter_constraints,
        **ONLINE_PARAMETER_CONSTRAINTS,
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "noise_variance_floor": [Interval(Real, 0.0, None, closed="neither")],
        "accelerate": ["boolean"],
    }
    _terms_from = ("components_", "noise_variance_")

    def __init__(
        self,
        n_components=None,
        *,
        noise_variance_floor=1e-6,
        accelerate=True,
        tol=1e-6,
        max_iter=1000,
        n_init=1,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        learning_decay=0.7,
        learning_offset=10.0,
    ):
        BaseEM.__init__(
            self,
            tol=tol,
            max_iter=max_iter,
            n_init=n_init,
            random_state=random_state,
            warm_start=warm_start,
            verbose=verbose,
            verbose_interval=verbose_interval,
        )
        self.n_components = n_components
        self.noise_variance_floor = noise_variance_floor
        self.accelerate = accelerate
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset

    def _check_parameters(self, X, sample_weight):
        n_latent = self._latent_dimension(X.shape[1])
        if n_latent > X.shape[1]:
            raise ValueError(f"n_components={n_latent} must be at most n_features={X.shape[1]}.")
        check_missing(X, sample_weight)

    def _uses_eigen_solver(self):
        return False

    def _prepare_fit(self, X, sample_weight, random_state):
        super()._prepare_fit(X, sample_weight, random_state)
        variances = weighted_moments(X, sample_weight)[1]
        self._noise_floors = feature_noise_floors(variances, self.noise_variance_floor)

    def _start_scaling(self):
        """PPCA's start of the standardised features, so that the fit is the same in
        any units (a constant feature is scaled as ``feature_noise_floors`` sets
        its floor)."""
        scales = np.sqrt(self._noise_floors / self.noise_variance_floor)
        return scales, float(self._noise_floors.size), self.noise_variance_floor

    def _initialize(self, X, sample_weight, random_state):
        super()._initialize(X, sample_weight, random_state)  # PPCA's solution, scaled back
        noise = np.broadcast_to(self.noise_variance_, (X.shape[1],))
        self.noise_variance_ = np.maximum(noise, self._noise_floors)

    # ------------------------------------------------------------------ E and M

    _device_function = factor_analysis_device_function  # (the E-step on an accelerator)

    def _derive_terms(self):
        """The scaling by 1 / sqrt(psi) and PPCA's q x q terms in scaled coordinates."""
        deviations = np.sqrt(np.asarray(self.noise_variance_, dtype=np.float64))
        scaled_components = self.components_ / deviations
        return deviations, scaled_components, latent_precision_terms(scaled_components, 1.0)

    def _posterior(self, X):
        """PPCA's posterior of the rows scaled by 1 / sqrt(psi), unit noise.

        log N(x; mean, W W^T + Psi) = log N(x / s; mean / s, W' W'^T + I) - sum log s_j
        over the observed features (s = sqrt(psi), W' = W / s); the
        posterior of z is the same in both coordinates.
        """
        deviations, scaled_components, precision_terms = self._terms()
        log_density, posterior = ppca_posterior(
            X / deviations, scaled_components, self.mean_ / deviations, 1.0, precision_terms
        )
        log_deviations = np.log(deviations)
        log_density -= log_deviations.sum()
        observed = posterior["observed_incomplete"]
        if observed is not None:
            log_density[~posterior["complete"]] += (~observed) @ log_deviations
        return log_density, posterior

    def _sufficient_statistics(self, X, sample_weight, posterior):
        return ppca_sufficient_statistics(
            X, sample_weight, posterior, self._has_missing, per_feature=True
        )

    def _m_step(self, statistics):
        """The M-step in the scaled coordinates, then scaled back (feature by feature)."""
        deviations = self._terms()[0]
        variances = deviations**2
        components, shift, noise = ppca_m_step(
            statistics, self._noise_floors / variances, per_feature=True
        )
        self.components_ = components * deviations
        self.mean_ = self.mean_ + shift * deviations
        self.noise_variance_ = np.maximum(noise * variances, self._noise_floors)

    def _after_fit(self, X, sample_weight):
        """Rotate W to orthogonal columns (same likelihood); name the Heywood cases."""
        self.components_ = orthogonal_loadings(self.components_)[0]
        floored = np.flatnonzero(self.noise_variance_ <= self._noise_floors * (1 + 1e-9))
        if floored.size:
            warnings.warn(
                f"The noise variance of {floored.size} of {self.noise_variance_.size} "
                f"features (features {floored[:10].tolist()}) went to their floor, "
                f"noise_variance_floor={self.noise_variance_floor:g} times the "
                "feature's variance (a Heywood case: the factors explain those "
                "features entirely). It is held there, so scores stay finite; consider "
                "fewer components, or removing features that are copies or sums of others.",
                VarianceFloorWarning,
            )

    # ------------------------------------------------------------------ online

    def _m_step_from_moments(self, moments):
        """Factor analysis of a mean and covariance (the running moments of ``partial_fit``).

        The mean and covariance of the rows are sufficient for any Gaussian
        model, so the M-step of online EM is the factor analysis of the
        running moments: EM steps on the covariance alone (O(d^2 q) each, no
        rows), from the current parameters, until the Gaussian
        log-likelihood of the moments gains less than ``tol`` per row (at
        most ``max_iter`` steps). The first batch starts from PPCA's closed
        form of its moments, as ``fit`` starts from PPCA's solution.
        """
        mean, covariance = moments["means"][0], moments["covariances"][0]
        if getattr(self, "components_", None) is None or np.shape(self.noise_variance_) != (
            mean.shape[0],
        ):
            super()._set_from_covariance(mean, covariance.copy())
            self.noise_variance_ = np.full(mean.shape[0], float(self.noise_variance_))
        components, noise = self.components_[np.newaxis], self.noise_variance_[np.newaxis]
        covariance = covariance[np.newaxis]
        previous = moments_log_likelihood(covariance[0], components[0], noise[0])
        for _ in range(self.max_iter):
            components, noise = factor_analysis_step(
                covariance, components, noise, self._noise_floors
            )
            value = moments_log_likelihood(covariance[0], components[0], noise[0])
            if value - previous < self.tol:
                break
            previous = value
        self.mean_, self.components_, self.noise_variance_ = mean, components[0], noise[0]
        self._after_fit(None, None)

    def _parameter_vector(self):
        """The parameters for SQUAREM's extrapolation (``skem._core._accelerate``)."""
        return np.concatenate([self.components_.ravel(), self.mean_, np.log(self.noise_variance_)])

    def _set_parameter_vector(self, vector):
        n_latent, n_features = self.components_.shape
        self.components_ = vector[: n_latent * n_features].reshape(n_latent, n_features)
        self.mean_ = vector[n_latent * n_features : -n_features]
        self.noise_variance_ = np.maximum(np.exp(vector[-n_features:]), self._noise_floors)

    # ------------------------------------------------------------------ results

    def get_precision(self):
        """Inverse of the model covariance ``W W^T + Psi``, by the matrix-inversion lemma.

        Returns
        -------
        precision : ndarray of shape (n_features, n_features)
        """
        check_is_fitted(self)
        deviations, scaled_components, (precision_inverse, _) = self._terms()
        scaled = -(scaled_components.T @ precision_inverse @ scaled_components)
        scaled.flat[:: scaled.shape[0] + 1] += 1.0
        return scaled / deviations / deviations[:, np.newaxis]

    def _n_parameters(self):
        n_latent, n_features = self.components_.shape
        return int(n_features * n_latent - n_latent * (n_latent - 1) / 2 + 2 * n_features)
