"""Small numerical helpers shared by the models: log-space sums and Cholesky factors.

Everything here works on plain numpy arrays and never forms an explicit inverse
or determinant of a covariance matrix. The factorisations call scipy's LAPACK
(numpy has no triangular inverse): they run once per component per M-step, on
d x d matrices, outside the loop over rows, where the separate thread pool of
scipy's OpenBLAS does not compete with numpy's matrix products.
"""

import numpy as np
from scipy import linalg
from scipy.linalg import lapack


def logsumexp_rows(log_values):
    """Return ``log(sum(exp(log_values), axis=1))`` computed stably.

    Rows whose entries are all ``-inf`` give ``-inf`` (not NaN).
    """
    row_max = np.max(log_values, axis=1)
    row_max[~np.isfinite(row_max)] = 0.0
    shifted = np.exp(log_values - row_max[:, np.newaxis])
    with np.errstate(divide="ignore"):
        return np.log(np.sum(shifted, axis=1)) + row_max


def normalize_log_rows(log_values):
    """Turn log joint probabilities into (log normaliser, probabilities), in place.

    ``log_values`` (n, K) is overwritten with the normalised probabilities
    ``exp(log_values - log_norm)`` so that no second (n, K) buffer is made.
    """
    row_max = np.max(log_values, axis=1)
    row_max[~np.isfinite(row_max)] = 0.0
    log_values -= row_max[:, np.newaxis]
    np.exp(log_values, out=log_values)
    total = np.sum(log_values, axis=1)
    with np.errstate(divide="ignore"):
        log_norm = np.log(total) + row_max
    impossible = total == 0  # every entry was -inf: no information, uniform
    log_values[impossible] = 1.0
    total[impossible] = log_values.shape[1]
    log_values *= (1.0 / total)[:, np.newaxis]
    return log_norm, log_values


#: Half the float64 epsilon: the rounding of one operation.
ROUNDING = np.finfo(np.float64).eps / 2

#: With fewer features the scatters sum every row: their products are cheap,
#: and choosing the rows (``contributing_rows``) costs more than it saves.
SKIP_MIN_FEATURES = 32


def contributing_rows(responsibilities, squared_norms, n_features):
    """Which rows a component's scatter sum r y y^T needs, and the share of the others.

    ``responsibilities`` and the rows' squared residual norms
    ``squared_norms`` (same shape: (n,) for one component or (n, K)) give
    each row's share r |y|^2 of the trace T of the scatter. Rows of zero
    responsibility are out; so are those whose share is below 2^-53 / n of
    T / d (``n_features``), the mean diagonal entry: together, of total
    share D, they move each entry of the scatter by at most D. Returns the
    rows kept and D per component; ``kept_scatter`` checks that D is below
    the rounding of every entry (one far row can make T large in one
    direction only). Non-finite shares (far rows kept by a positive
    responsibility) stay in; a T of zero (every residual's square
    underflowed) or beyond the float range keeps every row of positive
    responsibility. Only second moments may skip rows: the skipped rows'
    sum r y is bounded by sqrt(n D) only (Cauchy-Schwarz), far above its
    rounding, so first moments sum every row. Near convergence most rows
    belong to other components, and the scatters of the rest cost less.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # (NaN: r = 0 times an infinite norm)
        share = np.multiply(squared_norms, responsibilities, dtype=np.float64)
        total = share.sum(axis=0)
        if not np.all(np.isfinite(total)):
            total = np.sum(share, axis=0, where=share < np.inf)
        threshold = total * (ROUNDING / (share.shape[0] * n_features))
        contributing = share > threshold  # (NaN: False; infinite: True)
        dropped = np.sum(share, axis=0, where=~contributing & (share < np.inf))
    usable = (threshold > 0) & (threshold < np.inf)
    if not np.all(usable):
        contributing = np.where(usable, contributing, responsibilities > 0)
        dropped = np.where(usable, dropped, 0.0)
    return contributing, dropped


def kept_scatter(rows, roots, dropped):
    """``sum r y y^T`` of the kept rows (``rows`` the y, ``roots`` their sqrt(r)),
    or None if the rows left out, of total share ``dropped``, could change one
    of its entries beyond its rounding: ``dropped`` above 2^-53 times its
    smallest diagonal entry (below it, entry (i, j) moves by at most 2^-53
    sqrt(S_ii S_jj))."""
    weighted = rows * roots[:, np.newaxis]
    scatter = weighted.T @ weighted  # (numpy's syrk)
    return None if dropped > ROUNDING * np.diagonal(scatter).min() else scatter


def cholesky_lower(matrix):
    """Lower Cholesky factor of a symmetric positive-definite matrix, or None."""
    try:
        return linalg.cholesky(matrix, lower=True, check_finite=False)
    except linalg.LinAlgError:
        return None


def cholesky_with_jitter(matrix, min_jitter):
    """Cholesky factor of ``matrix + jitter * I`` for the smallest working jitter.

    The jitter starts at ``max(min_jitter, eps * mean diagonal)`` and grows
    tenfold until the factorisation succeeds. Returns ``(factor, jitter)``.
    """
    n_features = matrix.shape[0]
    scale = max(float(np.trace(matrix)) / n_features, np.finfo(np.float64).tiny)
    jitter = max(min_jitter, 16 * np.finfo(np.float64).eps * scale)
    identity = np.eye(n_features)
    while True:
        factor = cholesky_lower(matrix + jitter * identity)
        if factor is not None:
            return factor, jitter
        jitter *= 10.0


def inverse_lower_transposed(cholesky_factor):
    """Return ``L^{-T}``, the upper factor U with ``U U^T = (L L^T)^{-1}``.

    LAPACK's triangular inverse (trtri) is an order of magnitude faster than a
    triangular solve against the identity for small matrices.
    """
    (trtri,) = lapack.get_lapack_funcs(("trtri",), (cholesky_factor,))
    inverse, info = trtri(cholesky_factor, lower=1)
    if info != 0:
        raise linalg.LinAlgError(f"singular triangular factor (trtri info={info})")
    return np.triu(inverse.T)


def cholesky_substitutions(factors, vectors):
    """``L^-1 b`` and ``(L L^T)^-1 b`` for stacks of small lower factors L, vectors b.

    ``factors`` (..., m, m) and ``vectors`` (..., m) broadcast against each
    other (one factor may serve several vectors). Forward then backward
    substitution, one coordinate at a time over the whole stack: for the
    thousands of small systems of a missing-value E-step this is several
    times faster than numpy's batched LU (``solve``, ``inv``), which handles
    each system on its own.
    """
    m = vectors.shape[-1]
    shape = np.broadcast_shapes(factors.shape[:-2], vectors.shape[:-1]) + (m,)
    diagonal = np.diagonal(factors, axis1=-2, axis2=-1)
    forward = np.empty(shape)
    for i in range(m):
        inner = np.einsum("...j,...j->...", factors[..., i, :i], forward[..., :i])
        forward[..., i] = (vectors[..., i] - inner) / diagonal[..., i]
    backward = np.empty(shape)
    for i in range(m - 1, -1, -1):
        inner = np.einsum("...j,...j->...", factors[..., i + 1 :, i], backward[..., i + 1 :])
        backward[..., i] = (forward[..., i] - inner) / diagonal[..., i]
    return forward, backward


def precision_cholesky_from_precision(precision):
    """Upper U with ``U U^T = precision``, by Cholesky of the flipped matrix."""
    flipped = precision[::-1, ::-1]
    return linalg.cholesky(flipped, lower=True, check_finite=False)[::-1, ::-1].copy()
