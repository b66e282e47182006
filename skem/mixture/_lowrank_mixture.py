"""Mixtures of low-rank-plus-noise Gaussians: the per-component maths of MixtureOfPPCA.

The sums the E-step gives each component and the two M-steps of
:class:`skem.MixtureOfPPCA`, as functions of arrays stacked over the
components (first axis), not of a model. The maths of one such Gaussian is
in ``skem.decomposition._lowrank``.
"""

import numpy as np

from .._core._linalg import SKIP_MIN_FEATURES, contributing_rows, kept_scatter
from .._core._parallel import single_blas_thread
from ..decomposition._lowrank import factor_analysis_update, ppca_log_density
from ._base import RESPONSIBILITY_FLOOR


def component_log_density(
    residual,
    squared_norms,
    projected,
    loadings,
    precision_inverse,
    noise_variance,
    log_det_precision,
    log_scale,
    deviations=None,
):
    """Log-density of rows under one component, and their posterior means.

    From the E-step's residuals r, |r|^2 and r W (``loadings`` W, d x q, in
    the coordinates of the residuals, with ``noise_variance`` there) by
    ``ppca_log_density``, minus ``log_scale`` (the log-Jacobian of those
    coordinates). With ``deviations`` (a factor analyser's) those
    coordinates are r / deviations, and ``residual`` is r itself: only the
    rows the lemma takes again are divided (``ppca_log_density``).
    """

    def latent_terms(rows_residual, rows):
        rows_projected = rows_residual @ loadings
        return rows_projected, rows_projected @ precision_inverse

    with np.errstate(over="ignore", invalid="ignore"):  # far rows: ppca_log_density
        posterior_mean = projected @ precision_inverse
    log_density = ppca_log_density(
        residual,
        squared_norms,
        projected,
        posterior_mean,
        latent_terms,
        residual.shape[1],
        loadings.shape[1],
        noise_variance,
        log_det_precision,
        lambda rows_mean, rows: rows_mean @ loadings.T,
        deviations,
    )
    log_density -= log_scale
    return log_density, posterior_mean


def positive_rows(responsibility):
    """The rows of positive responsibility (a slice if all) and their float64 weights."""
    rows = np.flatnonzero(responsibility)
    if rows.size == responsibility.shape[0]:
        return slice(None), responsibility.astype(np.float64)
    return rows, responsibility[rows].astype(np.float64)


def scatter_statistics(X, responsibilities, means, residuals=None, squared_norms=None):
    """``sum_residual`` and the shifted ``scatter`` of every component.

    Both are sums weighted by the responsibilities about the component's
    current mean ``means[k]``: ``sum_residual`` = sum r (x - m) and
    ``scatter`` = sum r (x - m)(x - m)^T (d x d). Rows of zero responsibility
    are skipped. ``residuals`` (K x n x d), if given, are the E-step's x - m
    of these rows, used (and overwritten) instead of being computed again;
    with their ``squared_norms`` (K x n) and ``SKIP_MIN_FEATURES`` features
    or more, the scatter also skips the rows that change it by less than its
    rounding (``contributing_rows``) when they are at least half.
    """
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    statistics = {
        "sum_residual": np.zeros((n_components, n_features)),
        "scatter": np.zeros((n_components, n_features, n_features)),
    }
    contributing = None
    if squared_norms is not None and n_features >= SKIP_MIN_FEATURES:
        contributing, dropped = contributing_rows(responsibilities, squared_norms.T, n_features)
    buffer = np.empty((n_samples, n_features))  # for every component (fresh pages are slow)
    for k in range(n_components):
        rows, weight = positive_rows(responsibilities[:, k])
        if weight.size == 0:
            continue
        if residuals is None:
            residual = np.subtract(X[rows], means[k], dtype=np.float64, out=buffer[: weight.size])
        else:
            residual = residuals[k][rows]
        statistics["sum_residual"][k] = weight @ residual
        if contributing is not None:
            kept = contributing[rows, k]
            if 2 * np.count_nonzero(kept) < weight.size:
                scatter = kept_scatter(residual[kept], np.sqrt(weight[kept]), dropped[k])
                if scatter is not None:  # (else a far row leaves a direction to the others)
                    statistics["scatter"][k] = scatter
                    continue
        residual *= np.sqrt(weight)[:, np.newaxis]
        # numpy sees a product with its own transpose and calls syrk in
        # numpy's BLAS (no scipy BLAS here: its thread pool would compete)
        statistics["scatter"][k] = residual.T @ residual
    return statistics


def factor_statistics(residuals, posterior_means, responsibilities):
    """The sums one factor-analysis step needs, from the E-step's rows: O(n d q).

    With r = x - m_k each row's residual under component k (``residuals``,
    K x n x d, from the E-step) and ``posterior_means`` its E[z | x, k],
    weighted by the responsibilities: ``sum_residual`` (sum r), ``cross``
    (sum r E[z]^T, d x q) and ``feature_squares`` (sum r**2, per feature).
    Rows of zero responsibility are skipped (a far row's residual may be
    infinite). The weights multiply the q posterior means, not the d
    residuals; ``residuals`` are not changed.
    """
    n_components, n_samples, n_features = residuals.shape
    n_latent = posterior_means[0].shape[1]
    statistics = {
        "sum_residual": np.zeros((n_components, n_features)),
        "cross": np.zeros((n_components, n_features, n_latent)),
        "feature_squares": np.zeros((n_components, n_features)),
    }
    squares = np.empty((n_samples, n_features))  # for every component (fresh pages are slow)
    for k in range(n_components):
        rows, weight = positive_rows(responsibilities[:, k])
        if weight.size == 0:
            continue
        residual = residuals[k][rows]
        statistics["sum_residual"][k] = weight @ residual
        statistics["cross"][k] = residual.T @ (posterior_means[k][rows] * weight[:, np.newaxis])
        statistics["feature_squares"][k] = weight @ np.square(residual, out=squares[: weight.size])
    return statistics


def factor_mixture_step(statistics, means, projections, precision_inverses, floors):
    """One factor-analysis EM step per component from ``factor_statistics``.

    The same step as ``factor_analysis_step`` on the local covariance S_k
    about the new mean, with S_k never formed: the sums about the current
    mean m_k give ``S_k beta_k^T`` and ``diag(S_k)``, with beta_k =
    M_k^-1 W_k^T Psi_k^-1 (``precision_inverses`` times ``projections``, of
    the parameters of the E-step: beta_k (x - m_k) is the posterior mean),
    recentred as ``local_covariances`` does. Returns the new ``(means,
    components, noise_variances)``.
    """
    counts = statistics["nk"]
    nk = counts + RESPONSIBILITY_FLOOR
    residual_sums = statistics["sum_residual"]  # t = sum r (x - m)
    shifts = residual_sums / nk[:, np.newaxis]
    beta = np.matmul(precision_inverses, projections)  # (K, q, d)
    beta_sums = np.einsum("kqd,kd->kq", beta, residual_sums)
    beta_shifts = beta_sums / nk[:, np.newaxis]
    # (sum r (x - m)(x - m)^T - t s^T - s t^T + R s s^T) beta^T / nk, s the shift
    cross = statistics["cross"] - residual_sums[:, :, np.newaxis] * beta_shifts[:, np.newaxis, :]
    cross -= shifts[:, :, np.newaxis] * beta_sums[:, np.newaxis, :]
    cross += counts[:, np.newaxis, np.newaxis] * (
        shifts[:, :, np.newaxis] * beta_shifts[:, np.newaxis, :]
    )
    cross /= nk[:, np.newaxis, np.newaxis]
    diagonal = statistics["feature_squares"] - 2 * residual_sums * shifts
    diagonal += counts[:, np.newaxis] * shifts**2
    diagonal /= nk[:, np.newaxis]
    components, noise = factor_analysis_update(cross, diagonal, beta, precision_inverses, floors)
    return means + shifts, components, noise


def expected_scatter_statistics(conditionals, responsibilities):
    """``scatter_statistics`` in expectation over the missing values.

    The residuals of ``conditionals`` (K x n x d) are filled with their
    conditional means, and each component's scatter adds the
    responsibility-weighted sum of their conditional covariances.
    """
    residuals = conditionals.residuals
    scatter = conditionals.covariance_sum(responsibilities)
    root_responsibilities = np.sqrt(responsibilities)
    for k in range(residuals.shape[0]):
        weighted = residuals[k] * root_responsibilities[:, k, np.newaxis]
        scatter[k] += weighted.T @ weighted
    return {
        "sum_residual": np.einsum("nk,knd->kd", responsibilities, residuals),
        "scatter": scatter,
    }


def local_covariances(means, statistics):
    """Each component's weighted mean and covariance about it (float64).

    From ``nk`` and the ``scatter_statistics`` about the current ``means``.
    """
    counts = statistics["nk"]
    nk = counts + RESPONSIBILITY_FLOOR
    residual_sums = statistics["sum_residual"]
    shifts = residual_sums / nk[:, np.newaxis]
    # sum r (x - m - shift)(x - m - shift)^T from the sums about the old
    # mean m: scatter - t shift^T - shift t^T + R shift shift^T with
    # t = sum r (x - m), R = sum r; exactly symmetric, and positive
    # semi-definite up to rounding (zero for an empty component)
    cross = residual_sums[:, :, np.newaxis] * shifts[:, np.newaxis, :]
    covariances = statistics["scatter"] - cross
    covariances -= np.swapaxes(cross, 1, 2)
    covariances += counts[:, np.newaxis, np.newaxis] * (
        shifts[:, :, np.newaxis] * shifts[:, np.newaxis, :]
    )
    covariances /= nk[:, np.newaxis, np.newaxis]
    return means + shifts, covariances


def ppca_closed_form(covariances, n_latent, noise_floor):
    """PPCA's maximum-likelihood loadings and noise variance of each covariance.

    With l_1 >= ... >= l_d the eigenvalues of a covariance, of eigenvectors
    U: the noise variance is the mean of the d - q smallest (at least
    ``noise_floor``; the floor itself if q = d) and the loadings are
    U_q diag(max(l_i - s, 0))^(1/2). Returns ``(components,
    noise_variances)``, components of shape (K, q, d) (W_k transposed).
    """
    n_components, n_features = covariances.shape[:2]
    # numpy's LAPACK, one d x d problem per component, outside the row
    # loop, on one BLAS thread: for d <= CLOSED_FORM_MAX_FEATURES (of
    # _mixture_ppca) two threads were at best 20% faster than one (fastest
    # of 40 calls, on 2 cores), and on a busy machine their synchronisation
    # made eigh 5 to 80 times slower
    with single_blas_thread():
        eigenvalues, eigenvectors = np.linalg.eigh(covariances)
    if n_latent < n_features:
        discarded = eigenvalues[:, : n_features - n_latent].mean(axis=1)
        noise_variances = np.maximum(discarded, noise_floor)
    else:
        noise_variances = np.full(n_components, float(noise_floor))
    leading = eigenvalues[:, ::-1][:, :n_latent]
    scales = np.sqrt(np.maximum(leading - noise_variances[:, np.newaxis], 0.0))
    directions = np.swapaxes(eigenvectors[:, :, ::-1][:, :, :n_latent], 1, 2)
    return np.ascontiguousarray(directions * scales[:, :, np.newaxis]), noise_variances


def ppca_one_step(statistics, means, components, noise_variances, precision_inverses, noise_floor):
    """One PPCA EM step per component, with S_k never formed.

    ``W_k <- S_k W_k (s I + M^-1 W_k^T S_k W_k)^-1`` (Tipping & Bishop's
    two-stage procedure), S_k the local covariance about the new mean, from
    ``nk``, ``sum_residual``, ``scatter_loadings`` and ``sum_squares`` (sums
    about the current ``means``) and ``precision_inverses`` (M_k^-1). Returns
    the new ``(means, components, noise_variances)``, each noise variance at
    least ``noise_floor``.
    """
    nk = statistics["nk"] + RESPONSIBILITY_FLOOR
    n_features = means.shape[1]
    identity = np.eye(components.shape[1])
    new_means, new_components, new_noise_variances = [], [], []
    for k in range(means.shape[0]):
        loadings = components[k].T
        shift = statistics["sum_residual"][k] / nk[k]
        # the local covariance S_k about the new mean, times W_k, and tr(S_k)
        scatter_loadings = statistics["scatter_loadings"][k] / nk[k] - np.outer(
            shift, shift @ loadings
        )
        trace = statistics["sum_squares"][k] / nk[k] - shift @ shift
        inverse = precision_inverses[k]
        noise_variance = noise_variances[k]
        inner = noise_variance * identity + inverse @ loadings.T @ scatter_loadings
        new_loadings = np.linalg.solve(inner.T, scatter_loadings.T).T
        explained = np.einsum("dq,qr,dr->", scatter_loadings, inverse, new_loadings)
        new_noise_variances.append(max((trace - explained) / n_features, noise_floor))
        new_means.append(means[k] + shift)
        new_components.append(new_loadings.T)
    return np.array(new_means), np.array(new_components), np.array(new_noise_variances)


def mixture_parameter_vector(weights, means, components, noise_variances):
    """A mixture's parameters as one vector for SQUAREM: log-weights, means,
    loadings and log noise variances, so that every vector is valid."""
    return np.concatenate(
        [np.log(weights), np.ravel(means), np.ravel(components), np.log(noise_variances).ravel()]
    )


def set_mixture_parameter_vector(vector, means_shape, components_shape, noise_shape):
    """``(weights, means, components, noise_variances)`` of a ``mixture_parameter_vector``."""
    sizes = np.cumsum([means_shape[0], np.prod(means_shape), np.prod(components_shape)])
    log_weights = vector[: sizes[0]]
    weights = np.exp(log_weights - log_weights.max())
    return (
        weights / weights.sum(),
        vector[sizes[0] : sizes[1]].reshape(means_shape),
        vector[sizes[1] : sizes[2]].reshape(components_shape),
        np.exp(vector[sizes[2] :]).reshape(noise_shape),
    )
