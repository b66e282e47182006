"""MixtureOfFactorAnalyzers: a diagonal noise covariance per component (Ghahramani & Hinton 1996).

MixtureOfPPCA's mixture with factor analysis in each component: component k is
``N(means_[k], W_k W_k^T + Psi_k)``, Psi_k diagonal. Scaling the features by
``1 / sqrt(psi_k)`` makes component k a PPCA with unit noise, so the E-step,
its log-densities (matrix-inversion lemma, O(n d q) per component), the
missing values and ``transform`` are MixtureOfPPCA's in those coordinates; the
M-step sets each component's weighted mean and takes one factor-analysis EM
step from its weighted covariance S_k. That step reads S_k only through
``S_k beta_k^T`` and ``diag(S_k)`` (beta_k = M_k^-1 W_k^T Psi_k^-1), which are
sums of each row's residual times its posterior mean: on data in memory
without NaN they are taken so, in O(n d q), from the E-step's residuals and
posterior means (``factor_statistics``); with NaN (the expected scatter), on
dask arrays and in ``partial_fit`` from the d x d scatters, as MixtureOfPPCA's
closed form. The E-step takes each component's |r|^2 and projections in the
scaled coordinates from r = x - m_k itself (``r**2 @ psi_k^-1``, ``r Psi_k^-1
W_k``), without dividing the rows by sqrt(psi_k).
"""

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval

from .._core import ONLINE_PARAMETER_CONSTRAINTS, Lazy, weighted_moments
from ..decomposition._lowrank import (
    factor_analysis_step,
    feature_noise_floors,
    latent_precision_terms,
    ppca_precision_factor,
)
from ..exceptions import VarianceFloorWarning
from ._base import BaseMixture
from ._lowrank_mixture import factor_mixture_step, factor_statistics, ppca_closed_form
from ._mixture_ppca import MixtureOfPPCA


class MixtureOfFactorAnalyzers(MixtureOfPPCA):
    """Mixture of factor analysers, fitted by exact EM (Ghahramani & Hinton 1996).

    Component k is a factor analyser ``x = W_k z + means_[k] + e`` with
    ``z ~ N(0, I_q)`` and ``e ~ N(0, Psi_k)``, Psi_k diagonal
    (``noise_variance_[k]``): each feature of each component has its own
    noise, where :class:`skem.MixtureOfPPCA` has one per component. Each
    iteration's M-step sets the weights and means and takes one factor-analysis
    EM step per component from its weighted covariance, so the bound never
    falls; SQUAREM (``accelerate=True``, see :class:`skem.FactorAnalysis`)
    cuts the iterations. Missing values (NaN) are integrated out exactly;
    ``predict``, ``predict_proba``, ``transform`` (the latent coordinates in
    the most probable component), ``impute``, ``sample``, sample weights,
    ``partial_fit``, dask arrays, ``n_init`` and ``warm_start`` work as in
    :class:`skem.MixtureOfPPCA`. On data in memory without NaN the
    statistics are O(n d q) sums per component; otherwise a d x d scatter
    per component.

    Parameters
    ----------
    n_components : int, default=1
        Number of components.
    n_latent : int, default=2
        Number of factors q of each component.
    noise_variance_floor : float, default=1e-6
        Floor of each noise variance, relative to the feature's variance in
        the training data (as :class:`skem.FactorAnalysis`).
    accelerate : bool, default=True
        SQUAREM acceleration (``skem._core._accelerate``).
    tol, max_iter, n_init, init_params, init_size, random_state, warm_start, \
verbose, verbose_interval, learning_decay, learning_offset
        As for :class:`skem.MixtureOfPPCA`.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
    components_ : ndarray of shape (n_components, n_latent, n_features)
        ``W_k`` transposed.
    noise_variance_ : ndarray of shape (n_components, n_features)
        The diagonal of each Psi_k.
    lower_bounds_, lower_bound_, n_iter_, converged_, n_features_in_
        As for every skem model (the bound is the mean log-likelihood).

    Examples
    --------
    >>> import numpy as np
    >>> from skem import MixtureOfFactorAnalyzers
    >>> rng = np.random.RandomState(0)
    >>> X = np.vstack([rng.normal(size=(1000, 1)) * [2.0, 1.0, 1.0, 0.0] + [10, 0, 0, 0],
    ...                rng.normal(size=(1000, 1)) * [0.0, 1.0, 2.0, 1.0]])
    >>> X += rng.normal(size=X.shape) * [0.1, 0.5, 1.0, 0.3]
    >>> model = MixtureOfFactorAnalyzers(2, n_latent=1, random_state=0).fit(X)
    >>> near_zero = np.argmin(np.abs(model.means_[:, 0]))
    >>> np.sqrt(model.noise_variance_[near_zero]).round(1)
    array([0.1, 0.5, 1. , 0.3])
    """

    _parameter_constraints: dict = {
        **BaseMixture._parameter_constraints,
        **ONLINE_PARAMETER_CONSTRAINTS,
        "n_latent": [Interval(Integral, 1, None, closed="left")],
        "noise_variance_floor": [Interval(Real, 0.0, None, closed="neither")],
        "accelerate": ["boolean"],
    }

    # fmt: off
    def __init__(self, n_components=1, n_latent=2, *, noise_variance_floor=1e-6,
                 accelerate=True, tol=1e-4, max_iter=200, n_init=1, init_params="kmeans",
                 init_size=None, random_state=None, warm_start=False, verbose=0,
                 verbose_interval=10, learning_decay=0.7, learning_offset=10.0):
        BaseMixture.__init__(
            self, n_components, tol=tol, max_iter=max_iter, n_init=n_init,
            init_params=init_params, init_size=init_size, random_state=random_state,
            warm_start=warm_start, verbose=verbose, verbose_interval=verbose_interval)
        self.n_latent, self.noise_variance_floor = n_latent, noise_variance_floor
        self.accelerate = accelerate
        self.learning_decay, self.learning_offset = learning_decay, learning_offset
    # fmt: on

    #: Where the E-step keeps its residuals (``_keep``: data in memory without
    #: NaN) it keeps the posterior means too: the M-step's sums are then
    #: O(n d q), not the d x d scatters (a dask array may have NaN in any block).
    _keep_posterior_means = True

    def _prepare_fit(self, X, sample_weight, random_state):
        super()._prepare_fit(X, sample_weight, random_state)
        variances = weighted_moments(X, sample_weight)[1]
        self._noise_floors = feature_noise_floors(variances, self.noise_variance_floor)

    def _row_width(self):
        width = super()._row_width()
        if getattr(self, "_keep", False):  # (while fitting: the posterior means)
            width += self._fitted_components() * self.n_latent
        return width

    def _component_noise_floor(self):
        return self._noise_floors

    def _uses_closed_form(self, n_features):
        return True  # (the M-step reads each component's covariance, at every size)

    def _initialize_from_responsibilities(self, X, sample_weight, responsibilities, random_state):
        """MixtureOfPPCA's start, its noise variance given to every feature."""
        super()._initialize_from_responsibilities(X, sample_weight, responsibilities, random_state)
        noise = np.repeat(self.noise_variance_[:, np.newaxis], X.shape[1], axis=1)
        self.noise_variance_ = np.maximum(noise, self._noise_floors)

    def _component_statistics(self, X, responsibilities, workspace=None):
        """With the E-step's residuals and posterior means (rows without NaN),
        the sums of ``factor_statistics``, O(n d q); otherwise the d x d scatters."""
        if workspace is None or workspace[1] is None:
            return super()._component_statistics(X, responsibilities, workspace)
        return factor_statistics(*workspace[:2], responsibilities)

    def _m_step_components(self, statistics):
        if "cross" not in statistics:  # (the d x d scatters: rows with NaN)
            super()._m_step_components(statistics)
            return
        terms = self._terms()
        self.means_, self.components_, self.noise_variance_ = factor_mixture_step(
            statistics,
            np.asarray(self.means_, dtype=np.float64),
            terms["projections"],
            terms["precision_inverses"],
            self._noise_floors,
        )

    def _set_from_covariances(self, means, covariances):
        """One factor-analysis step per component from its mean and covariance.

        (With no factors yet, as online EM's first step, PPCA's closed form.)
        """
        if not hasattr(self, "components_"):
            components, noise = ppca_closed_form(covariances, self.n_latent, self._noise_floor)
            noise = np.repeat(noise[:, np.newaxis], means.shape[1], axis=1)
        else:
            components, noise = factor_analysis_step(
                covariances,
                np.asarray(self.components_, dtype=np.float64),
                np.asarray(self.noise_variance_, dtype=np.float64),
                self._noise_floors,
            )
        self.means_, self.components_, self.noise_variance_ = means, components, noise

    # ------------------------------------------------------------------ E-step

    def _derive_terms(self):
        """Each component in the coordinates scaled by 1 / sqrt(psi_k): PPCA's terms
        with unit noise, and log|C_k| = log|M_k| + sum log psi_k."""
        components = np.asarray(self.components_, dtype=np.float64)
        noise = np.asarray(self.noise_variance_, dtype=np.float64)
        deviations = np.sqrt(noise)
        scaled = components / deviations[:, np.newaxis, :]
        precision_inverses, log_det_precisions = latent_precision_terms(
            scaled, np.ones(scaled.shape[0])
        )
        return {
            "precision_inverses": precision_inverses,
            "log_det_precisions": log_det_precisions,
            "log_det_covariances": log_det_precisions + np.log(noise).sum(axis=1),
            "projections": components / noise[:, np.newaxis, :],  # W_k^T Psi_k^-1
            "noise": np.ones(components.shape[0]),
            "log_scales": np.log(deviations).sum(axis=1),
            "deviations": deviations,
            "inverse_noise": 1.0 / noise,
            "scaled_components": scaled,
            "missing_factors": Lazy(
                lambda: np.array([ppca_precision_factor(w, s) for w, s in zip(components, noise)])
            ),
        }

    def _component_terms(self, X, k, rows=slice(None), out=None, scratch=None):
        """Residuals r = x - m_k (in ``out`` if given) and, in the coordinates
        scaled by 1 / sqrt(psi_k), their squared norms ``r**2 @ psi_k^-1``
        (the squares in ``scratch`` if given) and projections ``r Psi_k^-1
        W_k``: the residuals are scaled only where the lemma takes a row again
        (``ppca_log_density`` with ``deviations``)."""
        terms = self._terms()
        residual = np.subtract(X[rows], self.means_[k], dtype=np.float64, out=out)
        with np.errstate(over="ignore", invalid="ignore"):  # far rows: ppca_log_density
            return (
                residual,
                np.square(residual, out=scratch) @ terms["inverse_noise"][k],
                residual @ terms["projections"][k].T,
            )

    def _loadings(self, k):
        return self._terms()["scaled_components"][k].T

    # ------------------------------------------------------------------ results

    def _after_fit(self, X, sample_weight):
        if self.n_iter_ == 0:
            return
        floored = np.argwhere(self.noise_variance_ <= self._noise_floors * (1 + 1e-9))
        if floored.size:
            warnings.warn(
                f"{len(floored)} noise variances went to their floor "
                f"(noise_variance_floor={self.noise_variance_floor:g} times the feature's variance) "
                f"(component, feature: {floored[:10].tolist()}): a Heywood case, where a "
                "component's factors explain a feature entirely, or a component on "
                "too few rows. They are held there, so scores stay finite; consider fewer "
                "components or a smaller n_latent.",
                VarianceFloorWarning,
            )

    def _moments_of_parameters(self):
        covariances = np.einsum("kqd,kqe->kde", self.components_, self.components_)
        np.einsum("kdd->kd", covariances)[...] += self.noise_variance_
        return {
            "n": np.asarray(self.weights_, dtype=np.float64),
            "means": np.asarray(self.means_, dtype=np.float64),
            "covariances": covariances,
        }

    def _sample_components(self, labels, random_state):
        latent = random_state.standard_normal(size=(labels.shape[0], self.components_.shape[1]))
        noise = random_state.standard_normal(size=(labels.shape[0], self.means_.shape[1]))
        decoded = np.einsum("nq,nqd->nd", latent, self.components_[labels])
        return self.means_[labels] + decoded + np.sqrt(self.noise_variance_[labels]) * noise

    def _n_component_parameters(self):
        (n_components, q), d = self.components_.shape[:2], self.means_.shape[1]
        return int(n_components * (d * q - q * (q - 1) / 2 + 2 * d))
