"""Low-rank-plus-noise Gaussians: the maths PPCA, MixtureOfPPCA and factor analysers share.

A Gaussian of covariance ``W W^T + s I`` (W of rank q, d x q) is handled
through q x q matrices (the matrix-inversion lemma): no d x d matrix is
formed, inverted or factorised but for rows with missing values. The
functions take parameters and data, not a model.
"""

from math import log, pi

import numpy as np
from scipy import linalg
from sklearn import config_context
from sklearn.utils.extmath import randomized_svd, svd_flip

from .._core import CHUNK_FLOATS, reduce_rows, row_weights


def weighted_column_sums(X, sample_weight):
    """Weighted sum of each column in float64, NaN wherever a column has a NaN.

    Not a BLAS matrix-vector product: BLAS may skip the rows of zero weight,
    and with them the NaN they hold.
    """
    if sample_weight is None:
        return X.sum(axis=0, dtype=np.float64)
    return np.einsum("n,nd->d", sample_weight, X)


def weighted_covariance(X, sample_weight, mean):
    """Weighted 1/N covariance of complete rows about ``mean`` (d x d, float64).

    Accumulated over blocks of rows (``reduce_rows``) as numpy's
    ``block.T @ block`` (syrk), so neither a centred copy of X nor a float64
    copy of float32 data is made. A block holds up to the larger of
    CHUNK_FLOATS and the d x d result: syrk keeps its efficiency and the
    accumulation stays a small part of the work.
    """
    n_features = X.shape[1]

    def scatter(block, weights):
        block = np.subtract(block, mean, dtype=np.float64)
        if weights is not None:
            block *= np.sqrt(weights)[:, np.newaxis]
        return block.T @ block, row_weights(weights, block.shape[0]).sum()

    block_rows = max(CHUNK_FLOATS // n_features, n_features, 1)
    covariance, weight = reduce_rows(scatter, X, sample_weight, block_rows)
    return covariance / weight


def principal_subspace(centered, n_latent, total_variance, noise_floor, random_state):
    """Starting PPCA parameters from a randomized SVD of centred, weighted rows.

    ``centered`` holds rows already multiplied by the square root of their
    normalised weights, so its squared singular values are eigenvalues of the
    weighted covariance. Returns ``(components, noise_variance)``; every
    loading keeps a positive norm, since a zero column is a fixed point of EM.
    """
    n_features = centered.shape[1]
    # (arguments of our own making: scikit-learn's validation of them is
    # skipped, 0.15 ms of each call's 1.5 ms on 300 rows of 64 features)
    with config_context(skip_parameter_validation=True):
        _, singular_values, right = randomized_svd(
            centered, n_latent, n_iter=4, random_state=random_state
        )
    leading = singular_values**2
    missing_directions = n_latent - right.shape[0]
    if missing_directions > 0:  # fewer rows than latent dimensions: any directions do
        extra = random_state.normal(size=(missing_directions, n_features))
        right = np.linalg.qr(np.vstack([right, extra]).T)[0].T
        leading = np.pad(leading, (0, missing_directions))
    noise_variance = total_variance / n_features
    if n_latent < n_features:
        noise_variance = (total_variance - leading.sum()) / (n_features - n_latent)
    noise_variance = max(float(noise_variance), noise_floor)
    scales = np.sqrt(np.maximum(leading - noise_variance, 1e-3 * noise_variance))
    return right * scales[:, np.newaxis], noise_variance


def feature_noise_floors(variances, relative_floor):
    """The floor of each feature's noise variance in factor analysis: ``relative_floor``
    times the feature's variance, so that the fit is the same in any units
    (a constant feature's floor is relative to the mean of the others', or 1).
    """
    variances = np.asarray(variances, dtype=np.float64)
    positive = variances[variances > 0]
    fallback = positive.mean() if positive.size else 1.0
    floors = relative_floor * np.where(variances > 0, variances, fallback)
    return np.maximum(floors, np.finfo(np.float64).tiny)


def latent_precision_terms(components, noise_variance):
    """Inverse and log-determinant of M = W^T W + noise_variance I (q x q).

    Also for components stacked over leading axes (K, q, d), with one noise
    variance each (K,): one batched factorisation for a mixture.
    """
    precision = components @ np.swapaxes(components, -1, -2)
    precision += np.multiply.outer(noise_variance, np.eye(precision.shape[-1]))
    # numpy's LAPACK, not scipy's: this runs next to numpy's matrix products
    # (once per pass over the rows), and each wheel's OpenBLAS has its own
    # thread pool.
    cholesky = np.linalg.cholesky(precision)
    inverse_cholesky = np.linalg.inv(cholesky)
    log_det = 2 * np.log(np.diagonal(cholesky, axis1=-2, axis2=-1)).sum(axis=-1)
    return np.swapaxes(inverse_cholesky, -1, -2) @ inverse_cholesky, log_det


def ppca_precision_factor(components, noise_variance):
    """Upper factor U of the model precision, ``U U^T = (W^T W + s I)^-1`` (d x d).

    From the Cholesky factor of the covariance itself (``U = L^-T``), not of a
    precision formed by the matrix-inversion lemma, whose entries lose the
    digits an ill-conditioned model needs. For rows with missing values only.
    """
    covariance = components.T @ components
    covariance.flat[:: covariance.shape[0] + 1] += noise_variance
    return np.linalg.inv(np.linalg.cholesky(covariance)).T


def ppca_covariance(components, noise_variance):
    """The model covariance ``W W^T + noise_variance I`` (d x d), W = ``components.T``."""
    covariance = components.T @ components
    covariance.flat[:: covariance.shape[0] + 1] += noise_variance
    return covariance


def ppca_precision(components, noise_variance):
    """Inverse of the model covariance, by the matrix-inversion lemma (d x d)."""
    loadings = components.T
    precision_inverse, _ = latent_precision_terms(components, noise_variance)
    precision = -(loadings @ precision_inverse @ loadings.T)
    precision.flat[:: precision.shape[0] + 1] += 1.0
    return precision / noise_variance


#: A row's quadratic form is recomputed as a sum of squares when |r|^2 / s
#: exceeds it this many times (``ppca_log_density``).
CANCELLATION = 10.0


def ppca_log_density(
    residual,
    squared_norms,
    projected,
    posterior_mean,
    latent_terms,
    n_observed,
    n_latent,
    noise_variance,
    log_det_precision,
    reconstruction=None,
    deviations=None,
):
    """log N(x | mean, W W^T + s I) by the matrix-inversion lemma.

    With r = x - mean, projected = r W and posterior_mean = M^{-1} W^T r:
    r^T C^{-1} r = (|r|^2 - projected . posterior_mean) / s and
    log|C| = (d - q) log s + log|M|.

    That difference cancels where the factors explain most of |r|^2 (a noise
    variance near its floor: a Heywood case), losing digits in proportion to
    the ratio of |r|^2 / s to it, and more where M is ill-conditioned. Rows
    where the ratio exceeds ``CANCELLATION`` are recomputed as the sum of squares
    ``(|r - W mu|^2 + s |mu|^2) / s`` (mu the posterior mean; equal by
    M = W^T W + s I), with ``reconstruction(mu_rows, rows)`` giving W mu of
    those rows (zero at missing coordinates), if given.

    For a row so far away that |r|^2 nears the float range, or whose
    projection or posterior mean overflowed, the lemma is applied to r / c
    (c = max |r_i|): ``latent_terms(scaled_residual, rows)`` recomputes the
    projection and posterior mean of those rows (``rows`` a boolean mask of
    the block) from the scaled residual, and the difference is multiplied by
    c^2, which is finite when the true value is, and +inf (a log-density of
    -inf) only when the true value is beyond the float range. Never NaN. The
    posterior means of those rows are set in place to c times that of r / c
    (infinite only where the true value is).

    With ``deviations`` (a factor analyser's sqrt(psi), per feature), the
    lemma's coordinates are r / deviations, and ``residual`` is r itself:
    every other argument is in those coordinates, and the rows taken again
    (cancelled or far) are divided here, far ones after the scaling by c, so
    that a quotient beyond the float range is never formed.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        quadratic = squared_norms - np.einsum("nq,nq->n", projected, posterior_mean)
        quadratic /= noise_variance
    far = ~(squared_norms < 1e300) | ~np.isfinite(quadratic)
    if reconstruction is not None:
        with np.errstate(over="ignore"):  # (a far row's quadratic, beyond the float range)
            cancelled = ~far & (squared_norms > CANCELLATION * noise_variance * quadratic)
        if cancelled.any():
            mean = posterior_mean[cancelled]
            rows = residual[cancelled] if deviations is None else residual[cancelled] / deviations
            left = rows - reconstruction(mean, cancelled)
            quadratic[cancelled] = np.einsum("nd,nd->n", left, left) / noise_variance + np.einsum(
                "nq,nq->n", mean, mean
            )
    if far.any():
        quadratic[far], posterior_mean[far] = _far_quadratic(
            residual[far], far, latent_terms, noise_variance, deviations
        )
    log_det_covariance = (n_observed - n_latent) * np.log(noise_variance) + log_det_precision
    return -0.5 * (n_observed * log(2 * pi) + log_det_covariance + quadratic)


def _far_quadratic(residual, rows, latent_terms, noise_variance, deviations=None):
    """r^T C^{-1} r of far rows, the lemma on r / c times c^2, and their posterior means.

    c is the power of two at or just above max |r_i|, so the scaling and its
    undoing are exact and the terms of the lemma are at most d in size. With
    ``deviations`` the lemma's residual is r / deviations, and c a power of
    two at most 4 times its largest magnitude, found from the exponents of
    r and the deviations (their quotient may be beyond the float range).
    """
    if deviations is None:
        exponent = np.frexp(np.abs(residual).max(axis=1))[1]
        scaled = np.ldexp(residual, -exponent[:, np.newaxis])
    else:  # r_i / d_i = (r_i 2^-b_i) / m_i with d_i = m_i 2^b_i (a zero r_i left out of c)
        mantissas, powers = np.frexp(deviations)
        exponents = np.frexp(residual)[1] - powers
        exponent = np.where(residual == 0, np.iinfo(np.int32).min, exponents).max(axis=1) + 1
        scaled = np.ldexp(residual, -(powers + exponent[:, np.newaxis])) / mantissas
    projected, posterior_mean = latent_terms(scaled, rows)
    difference = np.einsum("nd,nd->n", scaled, scaled) - np.einsum(
        "nq,nq->n", projected, posterior_mean
    )
    # rounding may leave this sum of squares a little below 0; a value that
    # is not a finite number means the terms were lost, not that x is near
    difference = np.where(np.isfinite(difference), np.maximum(difference, 0.0), np.inf)
    with np.errstate(over="ignore"):  # +inf exactly when the true value is beyond the range
        return (
            np.ldexp(difference / noise_variance, 2 * exponent),
            np.ldexp(posterior_mean, exponent[:, np.newaxis]),
        )


def ppca_posterior(X, components, model_mean, noise_variance, precision_terms=None):
    """Posterior of z for each row, and the log-density of its observed values.

    Under the PPCA model of loadings ``components`` (q x d, W transposed),
    mean ``model_mean`` and ``noise_variance``; returns ``(log_density,
    posterior)``, ``posterior`` a dict of the posterior means and
    covariances and the terms the sufficient statistics need. Complete rows
    share one posterior covariance; a row with missing values gets its own,
    from the rows of W of its observed coordinates. ``precision_terms`` is
    ``latent_precision_terms`` of the parameters, computed here if not given
    (callers that loop over chunks pass it).
    """
    loadings = components.T
    n_samples, n_latent = X.shape[0], loadings.shape[1]
    if precision_terms is None:
        precision_terms = latent_precision_terms(components, noise_variance)
    precision_inverse, log_det_precision = precision_terms
    # float64 in one pass, also from float32 rows (the model's mean is float64)
    residual = np.subtract(X, model_mean, dtype=np.float64)
    # the squared norm of a row is NaN exactly when one of its values is
    # (X has no infinity), so finding incomplete rows costs no extra pass;
    # a row far enough to overflow is handled by ppca_log_density
    with np.errstate(over="ignore"):
        squared_norms = np.einsum("nd,nd->n", residual, residual)
    incomplete = np.isnan(squared_norms)
    complete = ~incomplete
    n_observed = np.full(n_samples, float(X.shape[1]))
    observed_incomplete = None
    if incomplete.any():
        # zeros in place of the missing values (no float copy of the rows)
        missing = np.isnan(residual)
        observed_incomplete = ~missing[incomplete]
        np.copyto(residual, 0.0, where=missing)
        del missing
        with np.errstate(over="ignore"):
            squared_norms = np.einsum("nd,nd->n", residual, residual)
        n_observed[incomplete] = observed_incomplete.sum(axis=1)
    log_det = np.full(n_samples, log_det_precision)
    covariance_incomplete = inverse = None
    if observed_incomplete is not None:
        outer = (loadings[:, :, np.newaxis] * loadings[:, np.newaxis, :]).reshape(
            loadings.shape[0], -1
        )
        precisions = (observed_incomplete @ outer).reshape(-1, n_latent, n_latent)
        precisions += noise_variance * np.eye(n_latent)
        factors = np.linalg.cholesky(precisions)
        inverse = np.linalg.inv(precisions)
        log_det[incomplete] = 2 * np.log(np.diagonal(factors, axis1=1, axis2=2)).sum(axis=1)
        covariance_incomplete = noise_variance * inverse

    def latent_terms(rows_residual, rows):
        """r W and the posterior mean M^{-1} W^T r of the given rows of the block."""
        rows_projected = rows_residual @ loadings
        rows_mean = rows_projected @ precision_inverse
        if inverse is not None:  # each row with NaN has its own M
            rows_incomplete = incomplete[rows]
            position = (np.cumsum(incomplete) - 1)[rows][rows_incomplete]
            rows_mean[rows_incomplete] = np.einsum(
                "nij,nj->ni", inverse[position], rows_projected[rows_incomplete]
            )
        return rows_projected, rows_mean

    def reconstruction(rows_mean, rows):
        """W mu of the given rows, zero at their missing coordinates."""
        fitted = rows_mean @ components
        if observed_incomplete is not None:
            rows_incomplete = incomplete[rows]
            position = (np.cumsum(incomplete) - 1)[rows][rows_incomplete]
            fitted[rows_incomplete] *= observed_incomplete[position]
        return fitted

    with np.errstate(over="ignore", invalid="ignore"):
        projected, mean = latent_terms(residual, slice(None))
    log_density = ppca_log_density(
        residual,
        squared_norms,
        projected,
        mean,
        latent_terms,
        n_observed,
        n_latent,
        noise_variance,
        log_det,
        reconstruction,
    )
    posterior = {
        "mean": mean,
        "residual": residual,
        "squared_norms": squared_norms,
        "n_observed": n_observed,
        "complete": complete,
        "observed_incomplete": observed_incomplete,
        "covariance_complete": noise_variance * precision_inverse,
        "covariance_incomplete": covariance_incomplete,
    }
    return log_density, posterior


def ppca_sufficient_statistics(X, sample_weight, posterior, has_missing, per_feature=False):
    """Weighted sums for the joint regression of [W, mean] on [E z, 1].

    ``posterior`` is ``ppca_posterior``'s for the rows of X. With
    ``has_missing`` (values are missing somewhere in the data) the sums hold
    per-feature moments of the rows with missing values, zero if X has none.
    With ``per_feature`` (a noise variance per feature, as in factor
    analysis) they also hold each feature's squares and observed weight.
    """
    weights = row_weights(sample_weight, X.shape[0])
    residual, complete = posterior["residual"], posterior["complete"]
    augmented = np.hstack([posterior["mean"], np.ones((X.shape[0], 1))])
    n_latent = posterior["mean"].shape[1]
    weighted_augmented = augmented * weights[:, np.newaxis]

    complete_weight = weights[complete]
    shared = augmented[complete].T @ weighted_augmented[complete]
    shared[:n_latent, :n_latent] += complete_weight.sum() * posterior["covariance_complete"]
    statistics = {
        "shared_moments": shared,
        "cross": residual.T @ weighted_augmented,
        "squares": np.array(weights @ posterior["squared_norms"]),
        "n_observed": np.array(weights @ posterior["n_observed"]),
    }
    if has_missing:
        feature_moments = np.zeros((X.shape[1], (n_latent + 1) ** 2))
        incomplete = ~complete
        if incomplete.any():
            moments = augmented[incomplete, :, np.newaxis] * augmented[incomplete, np.newaxis, :]
            moments[:, :n_latent, :n_latent] += posterior["covariance_incomplete"]
            observed_weight = posterior["observed_incomplete"] * weights[incomplete, None]
            feature_moments = observed_weight.T @ moments.reshape(moments.shape[0], -1)
        statistics["feature_moments"] = feature_moments
    if per_feature:
        statistics["feature_squares"] = weights @ np.square(residual)  # (zeros where missing)
        observed = np.ones(X.shape[1]) * weights.sum()
        if posterior["observed_incomplete"] is not None:
            observed -= (~posterior["observed_incomplete"]).T @ weights[~complete]
        statistics["feature_observed"] = observed
    return statistics


def ppca_m_step(statistics, noise_floor, per_feature=False):
    """The joint regression of [W, mean] on [E z, 1] from ``ppca_sufficient_statistics``.

    Returns ``(components, mean_shift, noise_variance)``: W transposed, the
    change of the mean, and the mean squared residual per observed value,
    at least ``noise_floor``: over all features, or with ``per_feature``
    (statistics taken so) one per feature.
    """
    shared, cross = statistics["shared_moments"], statistics["cross"]
    n_features, width = cross.shape
    if "feature_moments" in statistics:
        moments = shared + statistics["feature_moments"].reshape(n_features, width, width)
        coefficients = np.linalg.solve(moments, cross[:, :, np.newaxis])[:, :, 0]
        fitted = np.einsum("dj,djk,dk->d", coefficients, moments, coefficients)
    else:
        # scipy's solver on one (q + 1) x (q + 1) system per iteration,
        # outside the row loop: too small to start a BLAS thread pool
        coefficients = linalg.solve(shared, cross.T, assume_a="pos").T
        fitted = np.sum((coefficients @ shared) * coefficients, axis=1)
    if per_feature:
        residual = statistics["feature_squares"] - 2 * np.sum(coefficients * cross, axis=1)
        residual += fitted
        noise_variance = np.maximum(residual / statistics["feature_observed"], noise_floor)
    else:
        residual = statistics["squares"] - 2 * np.sum(coefficients * cross) + fitted.sum()
        noise_variance = max(float(residual / statistics["n_observed"]), noise_floor)
    return coefficients[:, :-1].T.copy(), coefficients[:, -1], noise_variance


def factor_analysis_step(covariances, components, noise_variances, noise_floor):
    """One EM step of factor analysis per component, from its local covariance.

    For a Gaussian of covariance W W^T + Psi fitted to a covariance S (Rubin &
    Thayer 1982): with M = I + W^T Psi^-1 W and beta = M^-1 W^T Psi^-1,
    ``W <- S beta^T (M^-1 + beta S beta^T)^-1`` and
    ``Psi <- diag(S - W_new beta S)``, at least ``noise_floor``. It never
    lowers the component's expected log-likelihood. Arrays are stacked over
    the components: ``components`` (K, q, d) is W transposed,
    ``noise_variances`` (K, d). Returns the new ``(components, noise_variances)``.
    """
    n_latent = components.shape[1]
    scaled = components / noise_variances[:, np.newaxis, :]  # W^T Psi^-1, (K, q, d)
    precisions = np.matmul(scaled, np.swapaxes(components, 1, 2))
    precisions += np.eye(n_latent)  # M, (K, q, q)
    beta = np.linalg.solve(precisions, scaled)  # (K, q, d)
    cross = np.matmul(covariances, np.swapaxes(beta, 1, 2))  # S beta^T, (K, d, q)
    diagonal = np.einsum("kdd->kd", covariances)
    return factor_analysis_update(cross, diagonal, beta, np.linalg.inv(precisions), noise_floor)


def factor_analysis_update(cross, diagonal, beta, precision_inverses, noise_floor):
    """``factor_analysis_step`` from ``S beta^T`` and ``diag(S)`` alone.

    ``cross`` (K, d, q) is S beta^T, ``diagonal`` (K, d) the diagonal of S,
    ``beta`` (K, q, d) = M^-1 W^T Psi^-1 and ``precision_inverses`` (K, q, q)
    M^-1, of the current parameters: S itself is not needed, so a mixture
    can take these from its rows in O(n d q) (``S beta^T`` is the weighted
    sum of the residuals times their posterior means). Returns the new
    ``(components, noise_variances)``.
    """
    inner = precision_inverses + np.matmul(beta, cross)
    loadings = np.swapaxes(
        np.linalg.solve(np.swapaxes(inner, 1, 2), np.swapaxes(cross, 1, 2)), 1, 2
    )
    explained = np.einsum("kdq,kdq->kd", loadings, cross)  # diag(W_new beta S)
    noise = np.maximum(diagonal - explained, noise_floor)
    return np.ascontiguousarray(np.swapaxes(loadings, 1, 2)), noise


def moments_log_likelihood(covariance, components, noise_variances):
    """Mean log-likelihood of rows of covariance ``covariance`` about the model mean.

    ``-(d log 2 pi + log|C| + tr(C^-1 S)) / 2`` for the factor model
    ``C = W W^T + Psi`` (``components`` is W transposed, ``noise_variances``
    the diagonal of Psi, or one variance for all), by the determinant lemma
    and the matrix-inversion lemma: O(d^2 q), no d x d factorisation.
    """
    n_features = covariance.shape[0]
    noise_variances = np.broadcast_to(noise_variances, (n_features,))
    scaled = components / noise_variances  # W^T Psi^-1
    precision = np.eye(components.shape[0]) + scaled @ components.T  # M
    factor = np.linalg.cholesky(precision)
    projected = np.linalg.solve(factor, scaled @ covariance @ scaled.T)
    explained = np.trace(np.linalg.solve(factor, projected.T))  # tr(M^-1 W^T Psi^-1 S Psi^-1 W)
    trace = np.diagonal(covariance) @ (1.0 / noise_variances) - explained
    log_det = 2.0 * np.log(np.diagonal(factor)).sum() + np.log(noise_variances).sum()
    return -0.5 * (n_features * log(2 * pi) + log_det + trace)


def orthogonal_loadings(components):
    """``(components, singular values)``: W rotated to orthogonal columns of
    decreasing norm, signs fixed (the same covariance W W^T, so the same model)."""
    left, singular_values, _ = linalg.svd(components.T, full_matrices=False)
    left, _ = svd_flip(left, np.eye(left.shape[1]), u_based_decision=True)
    return (left * singular_values).T, singular_values
