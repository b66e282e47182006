"""ProbabilisticPCA: Tipping & Bishop's PPCA by exact EM or in closed form.

EM handles missing values (NaN) exactly; log-densities use the matrix-inversion
lemma, so no d x d matrix is formed, inverted or factorised.
"""

from contextlib import nullcontext
from numbers import Integral, Real

import numpy as np
from scipy import linalg
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted

from .._core import (
    ONLINE_PARAMETER_CONSTRAINTS,
    BaseEM,
    check_missing,
    route_of,
    row_weights,
    sample_rows,
    take_rows,
    weighted_moments,
)
from .._core._covariance import combine_moments
from .._core._missing import condition_on_observed, missing_mask
from .._core._parallel import single_blas_thread
from ._lowrank import (
    latent_precision_terms,
    orthogonal_loadings,
    ppca_covariance,
    ppca_m_step,
    ppca_posterior,
    ppca_precision,
    ppca_precision_factor,
    ppca_sufficient_statistics,
    principal_subspace,
    weighted_column_sums,
    weighted_covariance,
)
from ._lowrank_device import ppca_device_function

#: Above this many features the 'auto' solver prefers EM to the eigen-solution.
EIGEN_SOLVER_MAX_FEATURES = 1000


class ProbabilisticPCA(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEM):
    """Probabilistic PCA: ``x = W z + mean + noise``, fitted by exact EM.

    ``z ~ N(0, I_q)`` and ``noise ~ N(0, noise_variance * I_d)``, so the data
    are Gaussian with covariance ``W W^T + noise_variance * I``
    (Tipping & Bishop, 1999).

    - ``solver='em'``: exact EM, O(n_samples * n_features * n_components) per
      iteration. Missing values (NaN) are marginalised exactly: the E-step
      uses each row's observed coordinates, the M-step regresses every row of
      ``W`` jointly with its mean on the posterior moments. The
      log-likelihood of the observed values never decreases.
    - ``solver='eig'``: the closed-form maximum-likelihood solution from the
      eigen-decomposition of the 1/N covariance; ``lower_bounds_`` holds its
      one log-likelihood. Both solvers reach the same optimum.

    Relation to scikit-learn's PCA: the maximum-likelihood covariance divides
    by N, while :class:`sklearn.decomposition.PCA` divides by N - 1. Scaling
    ``components_`` by ``sqrt(N / (N - 1))`` and ``noise_variance_`` by
    ``N / (N - 1)`` gives ``PCA(n_components).score_samples`` (for
    N > n_features and no whitening).

    The noise variance has a floor, ``noise_variance_floor`` times the mean
    variance of the features, so ``n_components`` at or above the rank of the
    data, constant columns, or ``n_components == n_features`` give finite
    scores (where PCA gives a zero noise variance and infinite scores).

    Parameters
    ----------
    n_components : int, default=None
        Latent dimension q. None means ``max(1, n_features - 1)``.
    solver : {'auto', 'em', 'eig'}, default='auto'
        'auto' is 'em' when values are missing or there are more than 1000
        features, 'eig' otherwise.
    noise_variance_floor : float, default=1e-6
        Floor of the noise variance, relative to the mean feature variance of
        the training data (absolute if that variance is zero).
    tol : float, default=1e-6
        EM stops when the mean log-likelihood changes by less than ``tol``.
    max_iter : int, default=1000
        Maximum number of EM iterations.
    n_init : int, default=1
        Number of EM restarts (the PPCA likelihood has no local maxima other
        than the global one, so one is enough).
    random_state : int, RandomState instance or None, default=None
        Seeds the random initial loadings of EM and ``sample``.
    warm_start : bool, default=False
        Continue EM from the fitted parameters on the next ``fit``.
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
    components_ : ndarray of shape (n_components, n_features)
        The loading matrix ``W`` transposed, rotated so that its rows are
        orthogonal and sorted by decreasing norm (the likelihood does not
        depend on the rotation).
    mean_ : ndarray of shape (n_features,)
        Mean of the model.
    noise_variance_ : float
        Isotropic noise variance.
    explained_variance_ : ndarray of shape (n_components,)
        The q leading eigenvalues of the model covariance
        ``W W^T + noise_variance_ I`` (of the 1/N sample covariance at the
        optimum).
    lower_bounds_ : ndarray
        Mean log-likelihood of the training data before each M-step (EM) or
        of the solution ('eig').
    lower_bound_ : float
        The last entry of ``lower_bounds_``.
    n_iter_ : int
        Number of EM iterations (1 for 'eig').
    converged_ : bool
        Whether EM converged.
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

    Examples
    --------
    >>> import numpy as np
    >>> from skem import ProbabilisticPCA
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(500, 2)) @ rng.normal(size=(2, 6)) + 0.1 * rng.normal(size=(500, 6))
    >>> model = ProbabilisticPCA(n_components=2).fit(X)
    >>> model.transform(X).shape
    (500, 2)
    >>> round(float(model.noise_variance_), 2)
    0.01
    >>> X[::7, 0] = np.nan
    >>> em = ProbabilisticPCA(n_components=2, random_state=0).fit(X)
    >>> bool(np.all(np.diff(em.lower_bounds_) >= 0))
    True
    """

    _parameter_constraints: dict = {
        **BaseEM._parameter_constraints,
        **ONLINE_PARAMETER_CONSTRAINTS,
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "solver": [StrOptions({"auto", "em", "eig"})],
        "noise_variance_floor": [Interval(Real, 0.0, None, closed="neither")],
    }

    _fitted_parameters = ("components_", "mean_", "noise_variance_")
    _terms_from = ("components_", "noise_variance_")
    _allow_nan = True

    def __init__(
        self,
        n_components=None,
        *,
        solver="auto",
        noise_variance_floor=1e-6,
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
        super().__init__(
            tol=tol,
            max_iter=max_iter,
            n_init=n_init,
            random_state=random_state,
            warm_start=warm_start,
            verbose=verbose,
            verbose_interval=verbose_interval,
        )
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset
        self.n_components = n_components
        self.solver = solver
        self.noise_variance_floor = noise_variance_floor

    # ------------------------------------------------------------------ checks

    def _fitted_structure(self):
        return {"n_components": self.components_.shape[0]}

    def _requested_structure(self):
        return {"n_components": self._latent_dimension(self.n_features_in_)}

    def _latent_dimension(self, n_features):
        return max(1, n_features - 1) if self.n_components is None else self.n_components

    def _check_parameters(self, X, sample_weight):
        n_features = X.shape[1]
        n_latent = self._latent_dimension(n_features)
        if n_latent > n_features:
            raise ValueError(f"n_components={n_latent} must be at most n_features={n_features}.")
        if check_missing(X, sample_weight) and self.solver == "eig":
            raise ValueError(
                "solver='eig' needs complete data; X has missing values (NaN). "
                "Use solver='em' or 'auto'."
            )

    def _prepare_fit(self, X, sample_weight, random_state):
        super()._prepare_fit(X, sample_weight, random_state)
        n_features = X.shape[1]
        self._n_latent = self._latent_dimension(n_features)
        column_sums, total_weight, n_missing = self._reduce(
            lambda block, weights: (
                weighted_column_sums(block, weights),
                row_weights(weights, block.shape[0]).sum(),
                # a column sum is NaN when the column has a missing value (or,
                # rarely, when the float64 sum overflowed both ways): only then
                # is the block scanned for NaN
                float(np.isnan(weighted_column_sums(block, None)).any() and np.isnan(block).any()),
            ),
            X,
            sample_weight,
        )
        self._has_missing = bool(n_missing)
        self._noise_floor = None
        if self._has_missing:
            self._data_mean, variance = weighted_moments(X, sample_weight)
            self._set_total_variance(float(variance.sum()), n_features)
        else:
            self._data_mean = column_sums / total_weight
            # The closed form gets the total variance as the trace of the covariance
            # it forms anyway; EM (also a warm start, which skips _initialize) needs
            # the noise floor now.
            if not (self._uses_eigen_solver() and self.max_iter > 0):
                self._set_total_variance(
                    self._total_variance_of(X, sample_weight, self._data_mean), n_features
                )

    def _set_total_variance(self, total_variance, n_features):
        """Keep the total variance of the data and the noise floor it implies."""
        self._total_variance = total_variance
        scale = total_variance / n_features
        self._noise_floor = max(
            self.noise_variance_floor * (scale if scale > 0 else 1.0), np.finfo(np.float64).tiny
        )

    def _total_variance_of(self, X, sample_weight, mean):
        """Weighted mean of ``|x - mean|^2`` over complete rows, block by block."""

        def sums(block, weights):
            block = np.subtract(block, mean, dtype=np.float64)
            squared_norms = np.einsum("nd,nd->n", block, block)
            if weights is None:
                return squared_norms.sum(), float(block.shape[0])
            return weights @ squared_norms, weights.sum()

        total, weight = self._reduce(sums, X, sample_weight)
        return total / weight

    def _uses_eigen_solver(self):
        if self.solver == "auto":
            return not self._has_missing and self.n_features_in_ <= EIGEN_SOLVER_MAX_FEATURES
        return self.solver == "eig"

    # ------------------------------------------------------------------ closed form

    def _fit_closed_form(self, X, sample_weight):
        if not self._uses_eigen_solver():
            return None
        n_samples, n_features = X.shape
        mean = self._data_mean
        if n_samples >= n_features:
            self._set_from_covariance(mean, weighted_covariance(X, sample_weight, mean))
        else:
            rows, weights = X, row_weights(sample_weight, n_samples)
            # fewer rows than features: here (from a cluster, the rows come here)
            rows, weights = take_rows(X, weights)
            scaled = (rows - mean) * np.sqrt(weights / weights.sum())[:, np.newaxis]
            # numpy's LAPACK: the SVD of the few rows, once
            _, singular_values, right = np.linalg.svd(scaled, full_matrices=False)
            total_variance = float(np.einsum("nd,nd->", scaled, scaled))
            del scaled
            self._set_from_spectrum(mean, singular_values**2, right.T, total_variance)
        return self._mean_log_likelihood(X, sample_weight)

    def _set_from_covariance(self, mean, covariance):
        """The maximum-likelihood parameters of data with this mean and covariance.

        ``covariance`` (float64, d x d) is overwritten.
        """
        n_features, n_latent = covariance.shape[0], self._n_latent
        total_variance = float(np.trace(covariance))
        # Only the q leading eigenpairs are needed (the rest of the spectrum
        # enters through the trace). numpy has no partial eigensolver; scipy's
        # (LAPACK syevr on an index range) skips most of the work of numpy's
        # full eigh: 3x faster at d = 1000 on one thread. It is scipy's LAPACK,
        # one call after the loop over rows, never inside it. Up to the size
        # 'auto' sends here it runs on one BLAS thread: its reduction to
        # tridiagonal form synchronises the threads at every column, and right
        # after numpy's products (whose pool still spins) that made it 6 times
        # slower in the median and up to 100 times (0.3 s, up to 7 s, against
        # 0.05 s) on a busy 2-core machine; two threads gained ~20% at best.
        limit = single_blas_thread() if n_features <= EIGEN_SOLVER_MAX_FEATURES else nullcontext()
        with limit:
            eigenvalues, eigenvectors = linalg.eigh(
                covariance,
                subset_by_index=[n_features - n_latent, n_features - 1],
                driver="evr",
                overwrite_a=True,
                check_finite=False,
            )
        self._set_from_spectrum(mean, eigenvalues[::-1], eigenvectors[:, ::-1], total_variance)

    def _set_from_spectrum(self, mean, eigenvalues, eigenvectors, total_variance):
        """PPCA's closed form from the leading eigenpairs of the covariance."""
        n_features, n_latent = eigenvectors.shape[0], self._n_latent
        missing_directions = n_latent - eigenvalues.shape[0]
        if missing_directions > 0:  # fewer samples than latent dimensions
            eigenvalues = np.pad(eigenvalues, (0, missing_directions))
            eigenvectors = np.pad(eigenvectors, ((0, 0), (0, missing_directions)))
        if self._noise_floor is None:
            self._set_total_variance(total_variance, n_features)
        leading = np.maximum(eigenvalues[:n_latent], 0.0)
        noise_variance = 0.0
        if n_latent < n_features:
            noise_variance = (total_variance - leading.sum()) / (n_features - n_latent)
        self.noise_variance_ = max(noise_variance, self._noise_floor)
        scales = np.sqrt(np.maximum(leading - self.noise_variance_, 0.0))
        self.components_ = (eigenvectors[:, :n_latent] * scales).T
        self.mean_ = mean

    def _mean_log_likelihood(self, X, sample_weight):
        """Weighted mean log-density of the rows of X under the current parameters."""

        def sums(block, weights):
            log_density = self._posterior(block)[0]
            if weights is None:
                return log_density.sum(), float(block.shape[0])
            return weights @ log_density, weights.sum()

        total, weight = self._reduce(sums, X, sample_weight)
        return float(total / weight)

    # ------------------------------------------------------------------ online

    def _batch_moments(self, X, sample_weight):
        """The batch's mean and covariance, and its mean log-likelihood before the step.

        They are the sufficient statistics of PPCA, and the closed form is
        their M-step, so online EM here is a running mean and covariance
        followed by the eigen-solution. With missing values they are
        expected under the current parameters: each missing block filled
        with its conditional mean, its conditional covariance added (the
        E-step of exact EM for a Gaussian, ``skem._core._missing``).
        """
        bound = self._mean_log_likelihood(X, sample_weight)
        if missing_mask(X) is not None:  # (a column of the batch may have no value)
            mean, covariance = self._expected_moments(X, sample_weight)
        else:
            mean = weighted_moments(X, sample_weight)[0]
            covariance = weighted_covariance(X, sample_weight, mean)
        return bound, {"n": np.ones(1), "means": mean[np.newaxis], "covariances": covariance[None]}

    def _expected_moments(self, X, sample_weight):
        """Mean and covariance of the rows completed by the current model, in expectation."""
        factor = ppca_precision_factor(self.components_, self.noise_variance_)[np.newaxis]
        center = self.mean_

        def sums(block, weights):
            weights = row_weights(weights, block.shape[0])
            missing = np.isnan(block)
            residuals = np.where(missing, 0.0, block - center)[np.newaxis]
            conditionals = condition_on_observed(residuals, missing, factor, center[None])[2]
            filled = conditionals.residuals[0]  # E[x | x_observed] - center
            scatter = (filled * weights[:, np.newaxis]).T @ filled
            scatter += conditionals.covariance_sum(weights[:, np.newaxis])[0]
            return weights.sum(), weights @ filled, scatter

        weight, residual_sum, scatter = self._reduce(sums, X, sample_weight)
        shift = residual_sum / weight
        return center + shift, scatter / weight - np.outer(shift, shift)

    def _first_moments(self, X, sample_weight, random_state):
        """The batch's own mean and covariance (not the fitted model's, which
        keeps q directions of it). Complete rows need no EM: the closed form of
        their moments is the fit; rows with missing values need EM first."""
        if not self._has_missing:
            mean = weighted_moments(X, sample_weight)[0]
            moments = {
                "n": np.ones(1),
                "means": mean[np.newaxis],
                "covariances": weighted_covariance(X, sample_weight, mean)[np.newaxis],
            }
            self._m_step_from_moments(moments)
            return self._mean_log_likelihood(X, sample_weight), moments
        self._run_em(X, sample_weight, random_state)
        return self._batch_moments(X, sample_weight)

    def _combine_moments(self, running, batch, step):
        return combine_moments(running, batch, step)

    def _m_step_from_moments(self, moments):
        self._set_from_covariance(moments["means"][0], moments["covariances"][0].copy())
        self._after_fit(None, None)  # the signs and explained_variance_ of fit

    def _moments_of_parameters(self):
        return {
            "n": np.ones(1),
            "means": self.mean_[np.newaxis],
            "covariances": self.get_covariance()[np.newaxis],
        }

    # ------------------------------------------------------------------ EM

    #: Most rows whose SVD starts EM.
    INIT_SIZE = 20_000

    def _initialize(self, X, sample_weight, random_state):
        """Start from a randomized SVD of the centred data (missing values as 0).

        This puts EM close to the optimum, which matters because PPCA's EM
        converges linearly and slowly when eigenvalues are close. Every
        loading column keeps a positive norm: a zero column is a fixed point.
        Beyond ``INIT_SIZE`` rows the SVD is that of ``INIT_SIZE`` rows drawn
        at random (EM does the rest): no copy of the data is made, so a
        memory-mapped file stays on disk, and a dask array sends only these
        rows to the client.
        """
        mean = self._data_mean
        if self._noise_floor is None:  # deferred for the closed form, not run (max_iter=0)
            self._set_total_variance(self._total_variance_of(X, sample_weight, mean), X.shape[1])
        if X.shape[0] > self.INIT_SIZE:
            indices = sample_rows(X.shape[0], self.INIT_SIZE, sample_weight, random_state)
            X, sample_weight = take_rows(X, sample_weight, indices)
        else:  # (every row, here)
            X, sample_weight = take_rows(X, sample_weight)
        weights = row_weights(sample_weight, X.shape[0])
        centered = X - mean
        if self._has_missing:
            centered[np.isnan(centered)] = 0.0
        centered *= np.sqrt(weights / weights.sum())[:, np.newaxis]
        scales, total_variance, noise_floor = self._start_scaling()
        if scales is not None:
            centered /= scales
        self.components_, self.noise_variance_ = principal_subspace(
            centered, self._n_latent, total_variance, noise_floor, random_state
        )
        if scales is not None:
            self.components_ = self.components_ * scales
            self.noise_variance_ = self.noise_variance_ * scales**2
        self.mean_ = mean

    def _start_scaling(self):
        """``(feature scales or None, total variance, noise floor)`` of the start's SVD:
        PPCA's is of the data as they are."""
        return None, self._total_variance, self._noise_floor

    def _row_width(self):
        # A complete row needs its float64 residual, byte masks and O(q) terms;
        # a row with missing values needs one more float row (its observed
        # weights) in the statistics, so chunks of such rows may take up to
        # about twice CHUNK_FLOATS. (The former 3 d per row made chunks of ~300
        # rows at d = 1000: when each chunk's product runs on all BLAS threads,
        # their synchronisation made a pass 3-4x slower than with ~1000 rows on
        # a busy 2-core machine; on one thread both cost the same.)
        n_features = self.n_features_in_
        n_latent = self.components_.shape[0] if hasattr(self, "components_") else 1
        return n_features + n_features // 4 + 3 * (n_latent + 1) ** 2

    _device_methods = frozenset({"fit", "score_samples", "score", "bic", "aic"})
    _device_function = ppca_device_function  # (the E-step on an accelerator)

    def _derive_terms(self):
        """M^{-1} and log|M| of the parameters: once per set of them, not per chunk."""
        return latent_precision_terms(self.components_, self.noise_variance_)

    def _posterior(self, X):
        """Posterior of z for each row, and the log-density of its observed values.

        Complete rows share one posterior covariance; a row with missing
        values gets its own, from the rows of W of its observed coordinates.
        """
        return ppca_posterior(X, self.components_, self.mean_, self.noise_variance_, self._terms())

    def _e_step(self, X):
        return self._posterior(X)

    def _sufficient_statistics(self, X, sample_weight, posterior):
        """Weighted sums for the joint regression of [W, mean] on [E z, 1]."""
        return ppca_sufficient_statistics(X, sample_weight, posterior, self._has_missing)

    def _m_step(self, statistics):
        self.components_, shift, self.noise_variance_ = ppca_m_step(statistics, self._noise_floor)
        self.mean_ = self.mean_ + shift

    def _log_density(self, X):
        return self._posterior(X)[0]

    def _after_fit(self, X, sample_weight):
        """Rotate W to orthogonal columns of decreasing norm (same likelihood)."""
        # once, after the fit loop
        self.components_, singular_values = orthogonal_loadings(self.components_)
        self.explained_variance_ = singular_values**2 + self.noise_variance_

    # ------------------------------------------------------------------ use

    def transform(self, X):
        """Posterior mean E[z | x] of the latent coordinates of each row.

        Rows with missing values (NaN) use their observed coordinates.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data; NaN marks a missing value.

        Returns
        -------
        Z : ndarray of shape (n_samples, n_components)
            Posterior means.
        """
        X = self._validate_predict_data(X)
        latent = self._map_posterior(lambda log_density, posterior: posterior["mean"], X)
        return latent.astype(X.dtype, copy=False)

    def inverse_transform(self, Z):
        """Decoder mean ``W z + mean`` of latent coordinates.

        Parameters
        ----------
        Z : array-like of shape (n_samples, n_components)
            Latent coordinates (a dask array gives a lazy dask array).

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
            Reconstructions.
        """
        check_is_fitted(self)
        route = route_of(Z)
        if not route.in_memory:
            return route.map(self.inverse_transform, Z, self._chunk_rows())
        Z = check_array(Z, dtype=[np.float64, np.float32], input_name="Z")
        if Z.shape[1] != self.components_.shape[0]:
            raise ValueError(
                f"Z has {Z.shape[1]} columns, but the model has "
                f"{self.components_.shape[0]} latent dimensions."
            )
        return Z @ self.components_ + self.mean_

    def score_samples(self, X):
        """Log-density of each row; of its observed values if some are NaN.

        Computed with the matrix-inversion lemma, O(n_features * n_components)
        per row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data; NaN marks a missing value.

        Returns
        -------
        log_density : ndarray of shape (n_samples,)
            ``log p(x_observed)`` of each row, in nats.
        """
        X = self._validate_predict_data(X)
        return self._map_posterior(lambda log_density, posterior: log_density, X)

    def _map_posterior(self, extract, X):
        """Stack ``extract(log_density, posterior)`` over the chunks of rows of X.

        The q x q terms of the parameters are computed once, not per chunk. A
        row without any observed value shows in its chunk's count of observed
        values (no separate pass over X) and raises the error of
        ``check_rows_observed``.
        """

        def chunk_values(chunk):
            log_density, posterior = self._posterior(chunk)
            if not posterior["n_observed"].all():
                route_of(X).reject_empty_rows(X, block=chunk)
            return extract(log_density, posterior)

        return self._map_chunks(chunk_values, X)

    def get_covariance(self):
        """Model covariance ``W W^T + noise_variance_ I`` (n_features x n_features).

        Returns
        -------
        covariance : ndarray of shape (n_features, n_features)
        """
        check_is_fitted(self)
        return ppca_covariance(self.components_, self.noise_variance_)

    def get_precision(self):
        """Inverse of the model covariance, by the matrix-inversion lemma.

        Returns
        -------
        precision : ndarray of shape (n_features, n_features)
        """
        check_is_fitted(self)
        return ppca_precision(self.components_, self.noise_variance_)

    def _sample(self, n_samples, random_state):
        n_latent, n_features = self.components_.shape
        latent = random_state.standard_normal(size=(n_samples, n_latent))
        noise = random_state.standard_normal(size=(n_samples, n_features))
        X = latent @ self.components_ + self.mean_ + np.sqrt(self.noise_variance_) * noise
        return X, latent

    def _n_parameters(self):
        n_latent, n_features = self.components_.shape
        return int(n_features * n_latent - n_latent * (n_latent - 1) / 2 + 1 + n_features)

    @property
    def _n_features_out(self):
        return self.components_.shape[0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    def impute(self, X, *, sample_posterior=False, random_state=None):
        """Fill the missing values (NaN) of X from the fitted Gaussian.

        The model is ``N(mean, W W^T + s I)``, so given the observed values
        ``x_o`` of a row the missing ones are ``x_m = mean_m + W_m z + noise``
        with ``z ~ p(z | x_o)``, the posterior that ``transform`` averages.
        The conditional mean is ``mean_m + W_m E[z | x_o]``; a draw takes
        ``z`` from the posterior and adds noise of variance ``s``. A row with
        no observed value gets the mean of the model (or a draw from it).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data; NaN marks a missing value.
        sample_posterior : bool, default=False
            If False, fill in the conditional mean ``E[x_m | x_o]``; if True,
            one draw from ``p(x_m | x_o)`` (for multiple imputation).
        random_state : int, RandomState instance or None, default=None
            Source of the draws when ``sample_posterior=True``.

        Returns
        -------
        X_imputed : ndarray of shape (n_samples, n_features)
            A float copy of X with its observed values unchanged.
        """
        return self._impute_where(X, sample_posterior, random_state, self._impute)

    def _impute(self, X, sample_posterior, random_state):
        X = self._validate_predict_data(X)
        imputed = X.copy()
        missing = np.isnan(imputed)
        incomplete_rows = np.flatnonzero(missing.any(axis=1))
        random_state = check_random_state(random_state) if sample_posterior else None
        # chunks in order (not on all cores), so that the draws are reproducible
        for chunk in self._chunks(incomplete_rows.size):
            rows = incomplete_rows[chunk]
            # every row of the chunk is incomplete: each has its own posterior
            _, posterior = self._posterior(imputed[rows])
            latent = posterior["mean"]
            chunk_missing = missing[rows]
            if sample_posterior:
                factors = np.linalg.cholesky(posterior["covariance_incomplete"])
                noise = random_state.standard_normal(latent.shape)
                latent = latent + np.einsum("nij,nj->ni", factors, noise)
            reconstruction = (latent @ self.components_ + self.mean_)[chunk_missing]
            if sample_posterior:
                noise = random_state.standard_normal(reconstruction.shape)
                deviations = np.sqrt(self.noise_variance_) * np.ones(chunk_missing.shape[1])
                reconstruction += deviations[np.nonzero(chunk_missing)[1]] * noise
            block = imputed[rows]
            block[chunk_missing] = reconstruction
            imputed[rows] = block
        return imputed
