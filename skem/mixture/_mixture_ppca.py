"""MixtureOfPPCA: a mixture of probabilistic PCA models (Tipping & Bishop, 1999).

Each component is a Gaussian whose covariance is low rank plus isotropic noise,
so a log-density costs O(n_features * n_latent) per row and component. The
M-step is exact, in closed form, up to CLOSED_FORM_MAX_FEATURES features.
"""

import warnings
from math import log, pi
from numbers import Integral, Real

import numpy as np
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils._param_validation import Interval

from .._core import ONLINE_PARAMETER_CONSTRAINTS, Lazy, check_missing, route_of, weighted_moments
from .._core._covariance import combine_moments
from .._core._missing import (
    condition_on_observed,
    conditioning_row_width,
    missing_mask,
    observed_moments,
)
from ..decomposition._lowrank import (
    latent_precision_terms,
    ppca_precision_factor,
    principal_subspace,
)
from ..exceptions import DegenerateComponentWarning
from ._base import RESPONSIBILITY_FLOOR, BaseMixture, MissingWorkspace
from ._lowrank_mixture import (
    component_log_density,
    expected_scatter_statistics,
    local_covariances,
    mixture_parameter_vector,
    positive_rows,
    ppca_closed_form,
    ppca_one_step,
    scatter_statistics,
    set_mixture_parameter_vector,
)
from ._lowrank_mixture_device import DeviceTwins

#: Up to this many features the M-step is the exact closed form, above it one
#: PPCA EM step per component (see ``MixtureOfPPCA._uses_closed_form``).
CLOSED_FORM_MAX_FEATURES = 200


class MixtureOfPPCA(ClassNamePrefixFeaturesOutMixin, TransformerMixin, DeviceTwins, BaseMixture):
    """Mixture of probabilistic principal component analysers, fitted by EM.

    Component k is ``N(means_[k], W_k W_k^T + noise_variance_[k] I)`` with
    ``W_k = components_[k].T`` of ``n_latent`` columns: a Gaussian that is
    low-rank plus isotropic noise. In d dimensions a component has
    ``d q - q (q - 1) / 2 + 1 + d`` free parameters instead of the
    ``d (d + 3) / 2`` of a full-covariance Gaussian, so few samples per
    component suffice in high dimension.

    Each EM iteration computes responsibilities (E-step), then per component
    the weight and mean and, with the new mean, ``W_k`` and the noise
    variance (M-step). How depends on the number of features d:

    - d <= 200 (``CLOSED_FORM_MAX_FEATURES`` in this module): the exact
      maximiser, in closed form (Tipping & Bishop, 1999, section 3.2). The
      E-step sums each component's weighted scatter
      ``sum_n r_nk (x_n - m_k)(x_n - m_k)^T`` about its current mean m_k,
      O(n_samples * d^2); the M-step recentres it on the new mean,
      eigen-decomposes the local covariance S_k it gives, O(d^3), sets the
      noise variance to the mean of the d - q smallest eigenvalues and
      ``W_k = U_q (Lambda_q - noise_variance I)^(1/2)`` from the q leading
      ones (with the noise variance at its floor, a leading eigenvalue below
      it gives a zero column).
    - d > 200: one PPCA EM step, ``W_k <- S_k W_k (s I + M^-1 W_k^T S_k
      W_k)^-1`` (Tipping & Bishop's two-stage procedure), O(n_samples * d *
      n_latent) per component, with S_k never formed. It raises the
      likelihood too, but converges more slowly.

    At the default ``tol`` the closed form needs up to 8 times fewer
    iterations (median 2.5 over 18 fits of 2 to 10 components to iris, wine,
    breast cancer and digits; dequantised digits, 10 components,
    ``n_latent=10``: 11 against 36; standardised breast cancer, 5
    components, ``n_latent=10``: 37 against 158) and stops nearer the
    optimum. An iteration of it costs about 1.5 times one of the one-step
    update up to d = 128 and 2 to 3 times at d = 200 (2000 rows, 5
    components), more beyond as the d^3 eigen-decompositions take over:
    hence the threshold.

    Where its assumption fails, the numbers show it. On the digits images,
    pixel noise differs from pixel to pixel and the border pixels barely
    vary, so isotropic noise fits poorly. Dequantised (uniform noise in
    [0, 1) added), split 3:1 (``random_state=0``), 10 components, held-out
    mean log-likelihood and parameter count:

    ===================================================  ==========  ==========
    model                                                nats/image  parameters
    ===================================================  ==========  ==========
    MixtureOfPPCA, n_latent=10                           -141.6      6609
    MixtureOfPPCA, n_latent=20                           -136.5      11559
    EMGaussianMixture, covariance_type='full'            -134.1      21449
    EMGaussianMixture, covariance_type='diag'            -126.3      1289
    ===================================================  ==========  ==========

    Per-pixel variances (diag) win there. Where the assumption holds (low
    rank plus isotropic noise in high dimension, few rows per component),
    the mixture of PPCA beats the full-covariance mixture with far fewer
    parameters: see ``benchmarks/bench_mixture_ppca.py``.

    Missing values (NaN, missing at random) are integrated out exactly, as in
    :class:`skem.EMGaussianMixture`: responsibilities and ``score_samples``
    use the marginal Gaussian of each row's observed values, and the
    closed-form M-step is applied to the expected scatter (each missing block
    filled with its conditional mean, its conditional covariance added),
    which makes it the exact M-step, so the log-likelihood of the observed
    values never decreases. The one-step update of the M-step beyond 200
    features has no such form here: data with NaN and more features are
    refused with a ``ValueError`` (``ProbabilisticPCA`` takes them). The
    start fills each component's missing values with the mean of its
    observed ones; ``transform`` and ``impute`` use the conditional mean of
    the missing values.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    n_latent : int, default=2
        Latent dimension q of every component (at most n_features).
    noise_variance_floor : float, default=1e-6
        Floor of every component's noise variance, relative to the mean
        feature variance of the training data. A component that reaches it
        has collapsed (onto duplicated rows or fewer points than
        ``n_latent + 1``); it is kept, with a
        :class:`~skem.exceptions.DegenerateComponentWarning`, and scores stay
        finite.
    accelerate : bool, default=False
        SQUAREM (see :class:`skem.FactorAnalysis`), never lowering the
        bound. Off by default: with the closed-form M-step EM needs few
        iterations, and SQUAREM saved none on digits (K=5, q=10), wine,
        breast cancer (11 to 38 iterations), only 18 -> 10 on iris.
    tol : float, default=1e-4
        Convergence threshold on the change of the mean log-likelihood.
    max_iter : int, default=200
        Maximum number of EM iterations per restart.
    n_init : int, default=1
        Number of restarts; the best is kept.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, \
            default='kmeans'
        Initial responsibilities; each component then starts from the
        principal subspace of its rows.
    init_size : int, default=None
        Rows drawn at random to compute the start on; None uses all rows in
        memory and ``max(20_000, 50 * n_components)`` rows of a dask array (see
        :class:`skem.BaseMixture`).
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
        ``(learning_offset + t) ** -learning_decay``; in (0.5, 1]. Online EM
        averages each component's weight, mean and covariance, and takes the
        closed-form M-step at every size (K d x d scatters per batch).
    learning_offset : float, default=10.0
        Online EM: at least 1; larger values make the early steps smaller.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
        Mixing weights.
    means_ : ndarray of shape (n_components, n_features)
        Component means.
    components_ : ndarray of shape (n_components, n_latent, n_features)
        Loading matrix of each component, transposed.
    noise_variance_ : ndarray of shape (n_components,)
        Noise variance of each component.
    lower_bounds_, lower_bound_, n_iter_, converged_, n_features_in_
        As in :class:`skem.BaseEM`: the mean log-likelihood before each
        M-step; it never decreases.
    n_steps_ : int
        Number of ``partial_fit`` calls since the model was created or last
        fitted by ``fit`` (absent after ``fit``). After ``partial_fit``,
        ``n_iter_`` equals it, ``converged_`` is False, ``lower_bounds_``
        holds the bound of each call's batch before its step (a noisy
        progress signal, not monotone), and ``lower_bound_`` the last one.
    n_samples_seen_ : int
        Rows passed to ``partial_fit`` (the rows of a ``fit`` before it are
        not counted).

    Examples
    --------
    >>> import numpy as np
    >>> from skem import MixtureOfPPCA
    >>> rng = np.random.RandomState(0)
    >>> centers = rng.normal(scale=5, size=(2, 20))
    >>> X = np.vstack([c + rng.normal(size=(100, 2)) @ rng.normal(size=(2, 20))
    ...                + 0.1 * rng.normal(size=(100, 20)) for c in centers])
    >>> model = MixtureOfPPCA(n_components=2, n_latent=2, random_state=0).fit(X)
    >>> np.bincount(model.predict(X)).tolist()
    [100, 100]
    >>> model.transform(X).shape
    (200, 2)
    """

    _parameter_constraints: dict = {
        **BaseMixture._parameter_constraints,
        **ONLINE_PARAMETER_CONSTRAINTS,
        "n_latent": [Interval(Integral, 1, None, closed="left")],
        "noise_variance_floor": [Interval(Real, 0.0, None, closed="neither")],
        "accelerate": ["boolean"],
    }

    _fitted_parameters = ("weights_", "means_", "components_", "noise_variance_")
    _fit_scratch = (*BaseMixture._fit_scratch, "_missing_row_width", "_column_means", "_keep")
    _allow_nan = True

    def __init__(
        self,
        n_components=1,
        n_latent=2,
        *,
        noise_variance_floor=1e-6,
        accelerate=False,
        tol=1e-4,
        max_iter=200,
        n_init=1,
        init_params="kmeans",
        init_size=None,
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
        self.n_latent = n_latent
        self.noise_variance_floor = noise_variance_floor
        self.accelerate = accelerate

    # ------------------------------------------------------------------ EM

    def _check_parameters(self, X, sample_weight):
        super()._check_parameters(X, sample_weight)
        if self.n_latent > X.shape[1]:
            raise ValueError(f"n_latent={self.n_latent} must be at most n_features={X.shape[1]}.")
        if not self._uses_closed_form(X.shape[1]):
            if check_missing(X, sample_weight):  # (a second pass, only in this case)
                raise ValueError(
                    f"MixtureOfPPCA fits data with missing values (NaN) by its exact "
                    f"closed-form M-step, used up to {CLOSED_FORM_MAX_FEATURES} features; "
                    f"X has {X.shape[1]} features and NaN. Impute X first (or use "
                    "ProbabilisticPCA, whose EM takes NaN in any dimension)."
                )

    def _fitted_structure(self):
        return {**super()._fitted_structure(), "n_latent": self.components_.shape[1]}

    def _prepare_fit(self, X, sample_weight, random_state):
        super()._prepare_fit(X, sample_weight, random_state)
        self._column_means, variances = weighted_moments(X, sample_weight)
        scale = float(variances.mean())
        self._noise_floor = self.noise_variance_floor * (scale if scale > 0 else 1.0)
        self._closed_form = self._uses_closed_form(X.shape[1])
        share = route_of(X).incomplete_row_share(X)
        self._missing_row_width = conditioning_row_width(share, self.n_components, X.shape[1])
        # in memory without NaN the statistics take the E-step's x - m_k (dask: NaN in any block)
        self._keep = route_of(X).in_memory and self._missing_row_width == 0 and self._closed_form

    def _uses_closed_form(self, n_features):
        """Whether the M-step is the exact closed form (else one PPCA EM step).

        Per iteration and component the closed form adds an O(n_k d^2) scatter
        (n_k rows of nonzero responsibility) and an O(d^3) eigen-decomposition
        to the O(n_k d q) of the one-step update, and K d^2 floats of
        statistics; it saves iterations (up to 8 times fewer, median 2.5, on
        scikit-learn's data sets, where the one-step update crawls along small
        eigenvalue gaps). Measured with 2000 rows and 5 components, an
        iteration costs 1.3 to 1.8 times more up to d = 128, 2 to 3 times at
        d = 200 and 4 to 9 times at d = 256 to 500, so beyond 200 features the
        savings no longer pay for it on typical data. A rule on d alone, not
        on q or the rows, keeps the algorithm, and so the fitted model, the
        same for every n_latent and subsample of the same data.
        """
        return n_features <= CLOSED_FORM_MAX_FEATURES

    def _initialize_from_responsibilities(self, X, sample_weight, responsibilities, random_state):
        """Weights, means and, per component, the principal subspace of its rows.

        With missing values, the means are those of the observed values, and
        the subspace is that of the rows with each missing value at the mean
        (as ``ProbabilisticPCA`` starts).
        """
        weighted = responsibilities.astype(np.float64)
        if sample_weight is not None:
            weighted = weighted * sample_weight[:, np.newaxis]
        nk = weighted.sum(axis=0) + RESPONSIBILITY_FLOOR
        self.weights_ = nk / nk.sum()
        missing = missing_mask(X)
        if missing is None:
            self.means_ = (weighted.T @ X) / nk[:, np.newaxis]
        else:
            # (the data's column means centre a column no start row observes)
            center, means, _ = observed_moments(
                X, missing, weighted, sample_weight, 0.0, self._column_means
            )
            self.means_ = center + means
        components, noise_variances = [], []
        for k in range(self.n_components):
            rows = np.flatnonzero(weighted[:, k])
            if rows.size == 0:  # an empty start (fewer distinct points than components)
                components.append(
                    random_state.normal(
                        scale=np.sqrt(self._noise_floor), size=(self.n_latent, X.shape[1])
                    )
                )
                noise_variances.append(self._noise_floor)
                continue
            centered = (X[rows] - self.means_[k]) * np.sqrt(weighted[rows, k] / nk[k])[:, None]
            if missing is not None:
                centered[missing[rows]] = 0.0
            total_variance = float(np.einsum("nd,nd->", centered, centered))
            loadings, noise_variance = principal_subspace(
                centered, self.n_latent, total_variance, self._noise_floor, random_state
            )
            components.append(loadings)
            noise_variances.append(noise_variance)
        self.components_ = np.array(components)
        self.noise_variance_ = np.array(noise_variances)

    _terms_from = ("components_", "noise_variance_")

    def _derive_terms(self):
        """``M_k^-1`` and ``log|M_k|`` of each component (M = W W^T + s I, q x q),
        and, on first use by rows with NaN, the precision factors (K x d x d)."""
        components = np.asarray(self.components_, dtype=np.float64)
        noise_variances = np.asarray(self.noise_variance_, dtype=np.float64)
        precision_inverses, log_det_precisions = latent_precision_terms(components, noise_variances)
        n_latent, n_features = components.shape[1:]
        return {
            "precision_inverses": precision_inverses,
            "log_det_precisions": log_det_precisions,
            # log|C_k| = (d - q) log s + log|M_k|
            "log_det_covariances": (n_features - n_latent) * np.log(noise_variances)
            + log_det_precisions,
            # E[z | x, k] = M_k^-1 (projections_k (x - m_k)), and the noise in
            # the coordinates of the E-step (see MixtureOfFactorAnalyzers)
            "projections": components,
            "noise": noise_variances,
            "log_scales": np.zeros(components.shape[0]),
            "missing_factors": Lazy(
                lambda: np.array(
                    [ppca_precision_factor(w, s) for w, s in zip(components, noise_variances)]
                )
            ),
        }

    def _row_width(self):
        n_latent = self.components_.shape[1] if hasattr(self, "components_") else self.n_latent
        width = self._fitted_components() + 3 * self.n_features_in_ + 2 * n_latent
        if getattr(self, "_keep", False):  # (while fitting: ``_log_prob_and_workspace``)
            width += self._fitted_components() * self.n_features_in_  # (K norms: in the slack)
        return width + getattr(self, "_missing_row_width", 0)  # (while fitting data with NaN)

    def _component_terms(self, X, k, rows=slice(None), out=None, scratch=None):
        """Residuals (in ``out`` if given), their squared norms and projections
        on W_k (``scratch``, a buffer for a model's temporaries, unused here)."""
        residual = np.subtract(X[rows], self.means_[k], dtype=np.float64, out=out)
        # far rows overflow (inf, or NaN from inf - inf): handled by ppca_log_density
        with np.errstate(over="ignore", invalid="ignore"):
            squared_norms = np.einsum("nd,nd->n", residual, residual)
            return residual, squared_norms, residual @ self._loadings(k)

    def _loadings(self, k):
        """W_k, in the coordinates of the E-step (``_component_terms``)."""
        return self.components_[k].T

    def _estimate_log_prob(self, X):
        return self._log_prob_and_workspace(X, keep=False)[0]

    def _log_prob_and_workspace(self, X, keep=None):
        """``log p(x | k)``, and, if ``keep`` (by default while fitting rows
        without NaN in memory), the residuals x - m_k (K x n x d), for a model
        that asks for them each component's posterior means, and the squared
        norms of the E-step's coordinates (K x n)."""
        n_components = self.components_.shape[0]
        keep = getattr(self, "_keep", False) if keep is None else keep
        terms = self._terms()
        deviations = terms.get("deviations")  # (a factor analyser's: ``component_log_density``)
        log_prob = np.empty((X.shape[0], n_components))
        buffers = np.empty((2, *X.shape))  # residuals unless kept, temporaries: reused
        residuals = np.empty((n_components, *X.shape)) if keep else None
        squared_norms = np.empty((n_components, X.shape[0])) if keep else None
        posterior_means = [] if keep and getattr(self, "_keep_posterior_means", False) else None
        for k in range(n_components):
            out = buffers[0] if residuals is None else residuals[k]
            terms_k = self._component_terms(X, k, out=out, scratch=buffers[1])
            if keep:  # (before ppca_log_density may recompute far rows' norms in place)
                squared_norms[k] = terms_k[1]
            log_prob[:, k], posterior_mean = component_log_density(
                *terms_k,
                self._loadings(k),
                terms["precision_inverses"][k],
                terms["noise"][k],
                terms["log_det_precisions"][k],
                terms["log_scales"][k],
                None if deviations is None else deviations[k],
            )
            if posterior_means is not None:
                posterior_means.append(posterior_mean)
        return log_prob, None if residuals is None else (residuals, posterior_means, squared_norms)

    def _missing_log_prob(self, X, missing):
        """Log-density of the observed values of each row: the marginal Gaussian.

        ``log|C_OO| = log|C| + log|P_MM|`` with ``log|C| = (d - q) log s + log|M|``.
        """
        terms = self._terms()
        means = np.asarray(self.means_, dtype=np.float64)
        residuals = np.subtract(X[np.newaxis], means[:, np.newaxis, :], dtype=np.float64)
        np.copyto(residuals, 0.0, where=missing)
        with np.errstate(over="ignore"):  # a square beyond the float range: density 0
            mahalanobis, log_det_missing, conditionals = condition_on_observed(
                residuals, missing, terms["missing_factors"].get(), means
            )
        n_observed = X.shape[1] - missing.sum(axis=1)
        log_prob = mahalanobis + log_det_missing + terms["log_det_covariances"]
        log_prob += log(2 * pi) * n_observed[:, np.newaxis]
        log_prob *= -0.5
        return log_prob, conditionals

    def _missing_statistics(self, conditionals, responsibilities, initial):
        """The closed form's sums in expectation: filled residuals plus conditional covariances."""
        return expected_scatter_statistics(conditionals, responsibilities)

    def _component_statistics(self, X, responsibilities, workspace=None):
        """Per component, responsibility-weighted sums about its current mean m_k.

        Both M-steps use ``sum_residual`` = sum r (x - m). The closed form
        adds ``scatter`` = sum r (x - m)(x - m)^T (d x d); the one-step
        update instead adds ``scatter_loadings`` = sum r (x - m)(x - m)^T W_k
        (the scatter times the current W_k, the scatter never formed) and
        ``sum_squares`` = sum r |x - m|^2. Summing about the current mean,
        not about zero, keeps the recentring in the M-step free of
        cancellation. Rows of zero responsibility are skipped. ``workspace``:
        the E-step's residuals and norms, if kept (``_log_prob_and_workspace``).
        """
        if self._closed_form:
            residuals, _, squared_norms = workspace or (None, None, None)
            return scatter_statistics(X, responsibilities, self.means_, residuals, squared_norms)
        n_features = X.shape[1]
        statistics = {
            "sum_residual": np.zeros((self.n_components, n_features)),
            "scatter_loadings": np.zeros((self.n_components, n_features, self.n_latent)),
            "sum_squares": np.zeros(self.n_components),
        }
        for k in range(self.n_components):
            rows, weight = positive_rows(responsibilities[:, k])
            if weight.size == 0:
                continue
            residual, squared_norms, projected = self._component_terms(X, k, rows)
            weighted_residual = residual * weight[:, np.newaxis]
            statistics["sum_residual"][k] = weighted_residual.sum(axis=0)
            statistics["scatter_loadings"][k] = weighted_residual.T @ projected
            statistics["sum_squares"][k] = weight @ squared_norms
        return statistics

    def _m_step_components(self, statistics):
        if self._closed_form:
            self._m_step_closed_form(statistics)
            return
        self.means_, self.components_, self.noise_variance_ = ppca_one_step(
            statistics,
            self.means_,
            self.components_,
            self.noise_variance_,
            self._terms()["precision_inverses"],
            self._noise_floor,
        )

    def _m_step_closed_form(self, statistics):
        """Weighted PPCA maximum likelihood per component (Tipping & Bishop, 1999).

        With S_k the weighted local covariance about the new mean and
        l_1 >= ... >= l_d its eigenvalues, of eigenvectors U: the noise
        variance is the mean of the d - q smallest (at least the floor) and
        W_k = U_q diag(max(l_i - s, 0))^(1/2). Given the responsibilities
        this maximises the expected complete-data log-likelihood, under the
        floor too (the likelihood maximised over W_k increases with s up to
        the mean of the discarded eigenvalues and decreases after it, so a
        floor above that mean is the best admissible s), so the bound never
        decreases.
        """
        means, covariances = self._local_covariances(statistics)
        self._set_from_covariances(means, covariances)

    def _local_covariances(self, statistics):
        """Each component's weighted mean and covariance about it (float64)."""
        return local_covariances(self.means_, statistics)

    def _set_from_covariances(self, means, covariances):
        """PPCA's closed form per component, from its mean and covariance."""
        components, noise_variances = ppca_closed_form(
            covariances, self.n_latent, self._noise_floor
        )
        self.means_, self.components_, self.noise_variance_ = means, components, noise_variances

    # ------------------------------------------------------------------ online

    def _batch_moments(self, X, sample_weight):
        """Each component's share, mean and covariance in the batch.

        Online EM takes the closed-form M-step at every size (the one-step
        update's statistics are projected on the current loadings, which
        cannot be averaged across steps): K d x d scatters per batch.
        """
        self._closed_form, self._keep = True, False
        bound, weight, statistics = self._reduce(self._block_terms, X, sample_weight)
        means, covariances = self._local_covariances(statistics)
        moments = {"n": statistics["nk"] / weight, "means": means, "covariances": covariances}
        return bound / weight, moments

    def _combine_moments(self, running, batch, step):
        return combine_moments(running, batch, step)

    def _m_step_from_moments(self, moments):
        n = moments["n"] + RESPONSIBILITY_FLOOR
        self.weights_ = n / n.sum()
        self._set_from_covariances(moments["means"], moments["covariances"].copy())

    def _moments_of_parameters(self):
        covariances = np.einsum("kqd,kqe->kde", self.components_, self.components_)
        covariances += self.noise_variance_[:, None, None] * np.eye(self.means_.shape[1])
        return {
            "n": np.asarray(self.weights_, dtype=np.float64),
            "means": np.asarray(self.means_, dtype=np.float64),
            "covariances": covariances,
        }

    def _after_fit(self, X, sample_weight):
        if self.n_iter_ == 0:
            return
        collapsed = np.flatnonzero(self.noise_variance_ <= self._noise_floor * (1 + 1e-9))
        if collapsed.size:
            warnings.warn(
                f"{collapsed.size} of {self.n_components} components are degenerate "
                f"(components {collapsed.tolist()}): their noise variance is at the "
                "floor, as happens on duplicated rows or when a component holds no "
                "more points than n_latent. They are kept and scores stay finite, "
                "but the density there is sharply peaked; consider fewer components "
                "or a smaller n_latent.",
                DegenerateComponentWarning,
            )

    def _sample_components(self, labels, random_state):
        latent = random_state.standard_normal(size=(labels.shape[0], self.components_.shape[1]))
        noise = random_state.standard_normal(size=(labels.shape[0], self.means_.shape[1]))
        decoded = np.einsum("nq,nqd->nd", latent, self.components_[labels])
        return (
            self.means_[labels] + decoded + np.sqrt(self.noise_variance_[labels])[:, None] * noise
        )

    def _n_component_parameters(self):
        (n_components, q), d = self.components_.shape[:2], self.means_.shape[1]
        return int(n_components * (d * q - q * (q - 1) / 2 + 1 + d))

    def _component_noise_floor(self):
        """The floor of ``noise_variance_`` (one number here)."""
        return self._noise_floor

    def _parameter_vector(self):
        """The parameters for SQUAREM (``skem._core._accelerate``), where every
        vector is valid (``mixture_parameter_vector``)."""
        return mixture_parameter_vector(
            self.weights_, self.means_, self.components_, self.noise_variance_
        )

    def _set_parameter_vector(self, vector):
        self.weights_, self.means_, self.components_, noise = set_mixture_parameter_vector(
            vector, self.means_.shape, self.components_.shape, np.shape(self.noise_variance_)
        )
        self.noise_variance_ = np.maximum(noise, self._component_noise_floor())

    # ------------------------------------------------------------------ use

    def transform(self, X):
        """Posterior mean of the latent coordinates under the most probable component.

        Row i gets ``E[z | x_i, k_i]`` with ``k_i = predict(X)[i]``; the
        coordinates of different components live in different subspaces, so
        use ``predict`` alongside to read them. A row with missing values gets
        ``E[z | x_observed, k_i]``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data; NaN marks a missing value.

        Returns
        -------
        Z : ndarray of shape (n_samples, n_latent)
            Posterior means.
        """
        X = self._validate_predict_data(X)

        terms = self._terms()
        precision_inverses, projections = terms["precision_inverses"], terms["projections"]

        def latent_means(chunk):
            log_prob, workspace = self._chunk_log_prob(chunk)
            labels = np.argmax(log_prob + self._log_weights(log_prob.dtype), axis=1)
            latent = np.empty((chunk.shape[0], self.components_.shape[1]))
            complete = True
            if isinstance(workspace, MissingWorkspace):
                # E[z | x_O, k] = M^-1 W^T E[x - m | x_O, k]: the posterior mean
                # is linear in x, so it takes the conditional mean of the row
                complete = ~workspace.incomplete
                rows = np.flatnonzero(workspace.incomplete)
                label = labels[rows]
                filled = workspace.conditionals.residuals[label, np.arange(rows.size)]
                projected = np.einsum("nd,nqd->nq", filled, projections[label])
                latent[rows] = np.einsum("nq,nqr->nr", projected, precision_inverses[label])
            for k in np.unique(labels):
                rows = np.flatnonzero((labels == k) & complete)
                _, _, projected = self._component_terms(chunk, k, rows)
                latent[rows] = projected @ precision_inverses[k]
            return latent

        return self._map_chunks(latent_means, X).astype(X.dtype, copy=False)

    def impute(self, X, *, sample_posterior=False, random_state=None):
        """Fill the missing values (NaN) of X from the fitted mixture.

        Component k is the Gaussian ``N(means_[k], W_k W_k^T + s_k I)``, so
        given the observed values ``x_o`` of a row the missing ones are filled
        with ``E[x_m | x_o] = sum_k p(k | x_o) E[x_m | x_o, k]``, the
        conditional means of the components weighted by the posterior from the
        marginal density of the observed values. With
        ``sample_posterior=True`` each row instead gets one draw from
        ``p(x_m | x_o)``: a component from ``p(k | x_o)``, then its
        conditional Gaussian. A row without any observed value gets the mean
        of the mixture (or a draw from it).

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
        >>> from skem import MixtureOfPPCA
        >>> rng = np.random.RandomState(0)
        >>> centers = rng.normal(scale=5, size=(2, 6))
        >>> X = np.vstack([c + rng.normal(size=(200, 1)) @ rng.normal(size=(1, 6))
        ...                + 0.1 * rng.normal(size=(200, 6)) for c in centers])
        >>> complete = X.copy()
        >>> X[::3, 0] = np.nan
        >>> model = MixtureOfPPCA(n_components=2, n_latent=1, random_state=0).fit(X)
        >>> error = np.abs(model.impute(X) - complete)[::3, 0].mean()
        >>> bool(error < 0.2)
        True
        """
        return self._impute(X, sample_posterior, random_state)

    @property
    def _n_features_out(self):
        return self.components_.shape[1]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
