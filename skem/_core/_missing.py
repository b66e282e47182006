"""Missing values (NaN, missing at random): Gaussian marginals and conditionals by pattern.

Exact EM on the observed coordinates of each row (Ghahramani & Jordan, 1994)
needs, per row and component, the log-density of the observed block and the
conditional mean and covariance of the missing block. Rows sharing a
missingness pattern share the conditional covariance, so the work is grouped
by pattern; everything here is pure functions and small value objects.

Conditioning through the precision
    For ``x ~ N(mu, S)`` with precision ``P = S^-1``, observed coordinates O
    and missing ones M, residual ``r = x - mu`` set to zero on M and
    ``g = P r``:

    - ``x_M | x_O ~ N(mu_M - P_MM^-1 g_M, P_MM^-1)``, the same as
      ``mu_M + S_MO S_OO^-1 (x_O - mu_O)`` and ``S_MM - S_MO S_OO^-1 S_OM``;
    - ``(x_O - mu_O)^T S_OO^-1 (x_O - mu_O) = |U^T f|^2`` for ``P = U U^T`` and
      the filled residual f (r with ``-P_MM^-1 g_M`` on M);
    - ``log|S_OO| = log|S| + log|P_MM|``.

    So one product of the zero-filled residuals with each precision, over the
    whole block (BLAS), and one factorisation of the m x m block ``P_MM`` per
    pattern and component (m missing coordinates, usually far fewer than the
    observed ones) give all three. Patterns with the same m are factorised in
    one stacked call.
"""

import functools
from typing import NamedTuple

import numpy as np

from ._blocks import CHUNK_FLOATS, row_weights
from ._checks import may_have_nan
from ._linalg import cholesky_substitutions, normalize_log_rows

#: Floats in one stack of per-pattern matrices (the factorisations and the
#: per-row gathers are cut into stacks of about this size).
STACK_FLOATS = CHUNK_FLOATS // 4


# ---------------------------------------------------------------------- masks


def missing_mask(X):
    """``np.isnan(X)``, or None when X has no NaN (then found without a mask)."""
    if not may_have_nan(X):
        return None
    missing = np.isnan(X)
    return missing if missing.any() else None


def fill_with_column_means(X, sample_weight):
    """X with every NaN replaced by the weighted mean of the observed values of its column.

    X itself when it has no NaN. (For starting points only, such as k-means:
    the filled values carry no variance.)
    """
    missing = missing_mask(X)
    if missing is None:
        return X
    weights = row_weights(sample_weight, X.shape[0])
    observed = ~missing
    column_means = (weights @ np.where(missing, 0.0, X)) / np.maximum(weights @ observed, 1e-300)
    return np.where(missing, column_means.astype(X.dtype), X)


def observed_moments(
    X, missing, responsibilities, sample_weight, fallback_variances, fallback_means=None
):
    """Per-component means and variances of the observed values of each column.

    What a diagonal Gaussian per component fits to the observed values alone,
    given ``responsibilities`` (n, K) already multiplied by the sample
    weights; ``sample_weight`` weighs the rows for the centre. Returns
    ``(center, means, variances)``: the weighted column means (d,), and the
    (K, d) means about them and variances. Where a component has no observed
    value in a column, its mean there is the centre and its variance
    ``fallback_variances``; where no row of X has one (a start's few rows),
    the centre is ``fallback_means`` there (the whole data's column means:
    else 0, and the start would depend on the origin).
    """
    weights = row_weights(sample_weight, X.shape[0])
    observed = (~missing).astype(np.float64)
    centered = np.where(missing, 0.0, X).astype(np.float64)
    center = np.zeros(X.shape[1]) if fallback_means is None else np.array(fallback_means, float)
    column_weight = weights @ observed
    np.divide(weights @ centered, column_weight, out=center, where=column_weight > 0)
    centered -= center
    centered *= observed
    counts = responsibilities.T @ observed
    seen = counts > 0
    means = np.zeros_like(counts)
    np.divide(responsibilities.T @ centered, counts, out=means, where=seen)
    variances = np.array(np.broadcast_to(fallback_variances, counts.shape), dtype=np.float64)
    np.divide(responsibilities.T @ np.square(centered), counts, out=variances, where=seen)
    variances[seen] -= np.square(means[seen])
    return center, means, np.maximum(variances, 0.0)


# ---------------------------------------------------------------------- patterns


class PatternGroup(NamedTuple):
    """Patterns with the same number m of missing coordinates, and their rows.

    ``indices[p]`` are the m missing coordinates of pattern p; ``rows`` are
    the rows of the block with one of these patterns, sorted by pattern;
    ``local[i]`` is the pattern of ``rows[i]``; the rows of pattern p are
    ``rows[starts[p]:starts[p + 1]]``.
    """

    indices: np.ndarray
    rows: np.ndarray
    local: np.ndarray
    starts: np.ndarray

    def pattern_batches(self, n_stacked):
        """Slices of patterns whose ``n_stacked`` m x m matrices fill about one stack."""
        n_patterns, m = self.indices.shape
        size = max(1, STACK_FLOATS // max(1, n_stacked * m * m))
        return [slice(a, min(a + size, n_patterns)) for a in range(0, n_patterns, size)]

    def row_batches(self, patterns, n_stacked):
        """Slices of ``rows`` of the given patterns, each gathering about one stack."""
        first, last = self.starts[patterns.start], self.starts[patterns.stop]
        m = self.indices.shape[1]
        size = max(1, STACK_FLOATS // max(1, n_stacked * m * m))
        return [slice(a, min(a + size, last)) for a in range(first, last, size)]

    def pattern_sums(self, values):
        """Sum of ``values`` (one row per row of the block) over the rows of each pattern."""
        return np.add.reduceat(values[self.rows], self.starts[:-1], axis=0)


#: Pattern groupings of the last blocks seen, by their packed mask: the
#: E-step of every EM iteration sees the same blocks again.
GROUP_CACHE_SIZE = 16


def pattern_groups(missing):
    """Group the rows of a block by missingness pattern, and the patterns by size.

    Rows are told apart by their packed bits (as integers when a row fits
    in 64 bits, else ``np.unique`` on bytes). Returns a list of
    :class:`PatternGroup`, one per number of missing coordinates, in
    increasing order; complete rows (no missing coordinate, nothing to
    condition) are in none. The groupings of the last ``GROUP_CACHE_SIZE``
    masks are kept (read-only arrays).
    """
    packed = np.packbits(missing, axis=1)
    return _pattern_groups(packed.tobytes(), *packed.shape, missing.shape[1])


def clear_pattern_cache():
    """Forget the cached groupings (a fit's end: they hold rows of its data)."""
    _pattern_groups.cache_clear()


@functools.lru_cache(maxsize=GROUP_CACHE_SIZE)
def _pattern_groups(packed_bytes, n_rows, n_bytes, n_features):
    packed = np.frombuffer(packed_bytes, dtype=np.uint8).reshape(n_rows, n_bytes)
    if n_bytes <= 8:
        keys = np.zeros((n_rows, 8), dtype=np.uint8)
        keys[:, :n_bytes] = packed
        keys = keys.view(np.uint64)[:, 0]
        _, first, row_pattern = np.unique(keys, return_index=True, return_inverse=True)
    else:
        _, first, row_pattern = np.unique(packed, axis=0, return_index=True, return_inverse=True)
    row_pattern = row_pattern.reshape(-1)
    patterns = np.unpackbits(packed[first], axis=1, count=n_features).astype(bool)
    sizes = patterns.sum(axis=1)
    by_size = np.argsort(sizes, kind="stable")
    rank = np.empty_like(by_size)
    rank[by_size] = np.arange(by_size.size)
    patterns, sizes, row_pattern = patterns[by_size], sizes[by_size], rank[row_pattern]
    row_order = np.argsort(row_pattern, kind="stable")
    sorted_patterns = row_pattern[row_order]
    groups = []
    for size in np.unique(sizes[sizes > 0]):
        first_pattern, end_pattern = np.searchsorted(sizes, [size, size + 1])
        n_patterns = end_pattern - first_pattern
        begin, end = np.searchsorted(sorted_patterns, [first_pattern, end_pattern])
        local = sorted_patterns[begin:end] - first_pattern
        group = PatternGroup(
            indices=np.nonzero(patterns[first_pattern:end_pattern])[1].reshape(n_patterns, size),
            rows=row_order[begin:end],
            local=local,
            starts=np.searchsorted(local, np.arange(n_patterns + 1)),
        )
        for array in group:
            array.setflags(write=False)
        groups.append(group)
    return groups


def conditioning_row_width(incomplete_share, n_components, n_features):
    """Mean floats per row that ``condition_on_observed`` holds, ``incomplete_share`` of rows with NaN.

    A row with missing values needs its residual and gradient under each of
    the K components; a complete row nothing. (The m x m factors are
    gathered a stack at a time, within ``STACK_FLOATS``.) A model adds this
    to its row width when it fits data with NaN.
    """
    return int(np.ceil(2 * n_components * n_features * incomplete_share))


def embed_blocks(blocks, indices, targets, n_targets, n_features):
    """Sum of m x m ``blocks`` placed at rows and columns ``indices`` of d x d matrices.

    ``blocks`` has shape (n, m, m), ``indices`` (n, m) and ``targets`` (n,):
    block i is added to matrix ``targets[i]`` of the (n_targets, d, d)
    result. One ``np.bincount`` over flat indices: a vectorised scatter-add.
    """
    flat = indices[:, :, np.newaxis] * n_features + indices[:, np.newaxis, :]
    flat = flat + (targets * n_features**2)[:, np.newaxis, np.newaxis]
    return scatter_add(flat, blocks, n_targets, n_features)


def scatter_add(flat, blocks, n_targets, n_features):
    """(n_targets, d, d) zeros plus ``blocks`` at the flat positions ``flat`` (same shape)."""
    total = np.bincount(flat.ravel(), weights=blocks.ravel(), minlength=n_targets * n_features**2)
    return total.reshape(n_targets, n_features, n_features)


def embed_pattern_blocks(blocks, indices, n_features):
    """Sums over patterns of ``blocks`` (P, T, m, m) placed at ``indices`` (P, m): (T, d, d).

    Block ``[p, t]`` is added to the rows and columns ``indices[p]`` of
    matrix t (``embed_blocks`` with every pattern for every target).
    """
    n_targets = blocks.shape[1]
    flat = indices[:, :, np.newaxis] * n_features + indices[:, np.newaxis, :]
    flat = flat[:, np.newaxis] + (np.arange(n_targets) * n_features**2)[:, np.newaxis, np.newaxis]
    return scatter_add(flat, blocks, n_targets, n_features)


# ---------------------------------------------------------------------- Gaussians

#: A stack of missing blocks of at most this many floats is inverted (from
#: its factor): for small blocks and few patterns, one batched inverse costs
#: less than the numpy calls of the substitutions, and serves the
#: conditional covariances too.
SMALL_STACK_FLOATS = 20000

#: Patterns with at least this many rows each on average are also inverted:
#: one inverse per pattern then serves many rows, where the substitutions
#: would run once per row.
ROWS_PER_PATTERN = 2

#: A (pattern, component) pair whose responsibility is below this share of
#: the component's mean over the patterns of the same size (summed over the
#: components when they share a precision) adds nothing but rounding to the
#: conditional covariances (their sum moves by less than this share of the
#: component's weight times a variance), and is skipped.
NEGLIGIBLE_WEIGHT = 1e-14


#: A block ``P_MM`` is ill-conditioned when ``1 / min_i (L_ii^2 / P_ii)`` (a
#: lower bound of the condition number of the block scaled to a unit
#: diagonal) reaches this: its factor is then taken from a QR of the rows of
#: U, and the filled values are refined once. Below it the normal equations
#: lose at most about this many ulps.
ILL = 1e6


def missing_factors(factors, precisions, stacked, indices):
    """Lower factors L with ``L L^T = P_MM`` for pairs (component ``stacked[i]``, ``indices[i]``).

    The Cholesky factor of the block ``P_MM``; for an ill-conditioned block
    (``ILL``) the factor from a QR of ``U_M^T = Q R`` (``P_MM = R^T R``) that
    never forms ``P_MM``, whose condition number is the square of ``U_M``'s.
    The condition is that of the block scaled to a unit diagonal: a
    coordinate of small variance (a pixel held at the floor) is a scale,
    which Cholesky's accuracy does not depend on. Returns the factors
    (n, m, m) and whether any block was ill-conditioned.
    """
    blocks = missing_blocks(precisions, stacked, indices)
    try:
        cholesky = np.linalg.cholesky(blocks)
        scaled = np.diagonal(cholesky, axis1=1, axis2=2) / np.sqrt(
            np.diagonal(blocks, axis1=1, axis2=2)
        )
        ill = scaled.min(axis=1) ** 2 * ILL <= 1.0
    except np.linalg.LinAlgError:  # P_MM singular in floating point
        cholesky, ill = np.zeros_like(blocks), np.ones(len(blocks), dtype=bool)
    if not ill.any():
        return cholesky, False
    rows = factors[stacked[ill, np.newaxis], indices[ill]]  # (n_ill, m, d): U_M
    upper = np.linalg.qr(np.swapaxes(rows, 1, 2), mode="r")
    signs = np.sign(np.diagonal(upper, axis1=1, axis2=2))
    cholesky[ill] = np.swapaxes(upper, 1, 2) * signs[:, np.newaxis, :]
    return cholesky, True


def missing_blocks(precisions, stacked, indices):
    """The blocks ``P_MM`` of precisions ``stacked`` (n,) at ``indices`` (n, m): (n, m, m)."""
    return precisions[
        stacked[:, np.newaxis, np.newaxis], indices[:, :, np.newaxis], indices[:, np.newaxis, :]
    ]


def cholesky_inverse(cholesky):
    """``(L L^T)^-1 = L^-T L^-1`` for a stack of lower factors L (..., m, m).

    The factor is inverted (numpy's batched inverse), never the block.
    """
    inverse_factor = np.linalg.inv(cholesky)
    return np.swapaxes(inverse_factor, -1, -2) @ inverse_factor


def whiten(residuals, factors, back=False):
    """``U_k^T r_nk`` for residuals (K, n, d) and factors (J, d, d), or ``U_k r_nk`` if ``back``."""
    return np.matmul(residuals, np.swapaxes(factors, 1, 2) if back else factors)


def condition_on_observed(residuals, missing, factors, means, floors=None, precisions=None):
    """Marginals of the observed values and conditionals of the missing ones.

    Parameters
    ----------
    residuals : ndarray of shape (K, n, d), float64
        ``x - mean_k`` for each component, zero where x is missing. It is
        overwritten with the filled residuals ``E[x | x_O, k] - mean_k``
        (unchanged on the observed coordinates).
    missing : ndarray of shape (n, d), bool
    factors : ndarray of shape (J, d, d), J = K or 1 (shared)
        Factors U of the components' precisions, ``P = U U^T`` (any square
        root: the precision Cholesky factor of a mixture).
    means : ndarray of shape (K, d)
        The components' means (kept with the conditionals, which are about them).
    floors : ndarray of shape (J,), default=None
        The variance each covariance's floor added (``PatternConditionals``).
    precisions : ndarray of shape (J, d, d), default=None
        ``U U^T``, if the caller keeps it (else formed here).

    Returns
    -------
    mahalanobis : ndarray of shape (n, K)
        ``(x_O - mean_O)^T S_OO^-1 (x_O - mean_O)``.
    log_det_missing : ndarray of shape (n, J)
        ``log|P_MM|``, so that ``log|S_OO| = log|S| + log|P_MM|``.
    conditionals : PatternConditionals
        The filled residuals and the conditional covariances.

    Notes
    -----
    The filled residual f (r with ``-P_MM^-1 g_M`` on M) is the least-squares
    solution of ``min |U^T f|`` over the missing coordinates, and the squared
    distance is that minimum, ``|U^T f|^2``: a sum of squares. The textbook
    difference ``r^T g - g_M^T P_MM^-1 g_M`` of two nearly equal terms loses
    every digit on an ill-conditioned covariance (a column that is the sum of
    others, at a scale of 1000: tens of millions of nats).

    One Cholesky factor ``L`` of each pattern's block ``P_MM`` per component
    gives ``log|P_MM|``, and substitutions with it solve the normal
    equations; where ``P_MM`` is ill-conditioned (``REFINE_CONDITION``), one
    step of refinement with the residual ``(U U^T f)_M`` formed through the
    factor brings the filled values near the accuracy of a QR solution
    (corrected semi-normal equations, Bjorck 1987) for two more products. Only a small group (one
    stack of at most ``SMALL_STACK_FLOATS``), or patterns shared by many rows,
    are inverted, from their factor.
    """
    n_samples, n_stacked = residuals.shape[1], factors.shape[0]
    if precisions is None:
        precisions = np.matmul(factors, np.swapaxes(factors, 1, 2))
    groups = pattern_groups(missing)
    log_det_missing = np.zeros((n_samples, n_stacked))
    kept = {}  # the inverses of small groups (one stack each), by group number
    # a row so far out that its terms overflow (inf - inf) has density 0 either way
    with np.errstate(over="ignore", invalid="ignore"):
        for number, group in enumerate(groups):
            batches = group.pattern_batches(n_stacked)
            for patterns in batches:
                indices = group.indices[patterns]
                n_patterns, m = indices.shape
                cholesky, refine = missing_factors(
                    factors,
                    precisions,
                    np.tile(np.arange(n_stacked), n_patterns),
                    np.repeat(indices, n_stacked, axis=0),
                )
                cholesky = cholesky.reshape(n_patterns, n_stacked, m, m)
                diagonal = np.diagonal(cholesky, axis1=2, axis2=3)
                log_det = 2 * np.log(diagonal).sum(axis=2)
                small = len(batches) == 1 and cholesky.size <= SMALL_STACK_FLOATS
                n_rows = group.starts[patterns.stop] - group.starts[patterns.start]
                shared_rows = n_rows >= ROWS_PER_PATTERN * n_patterns
                # an ill-conditioned block is solved with its factor, never its inverse
                substitute = refine or not (small or shared_rows)
                inverses = cholesky_inverse(cholesky) if small or not substitute else None
                if small:
                    kept[number] = inverses
                for batch in group.row_batches(patterns, n_stacked):
                    rows = group.rows[batch]
                    local = group.local[batch] - patterns.start
                    solver = cholesky[local] if substitute else inverses[local]
                    fill_missing(
                        residuals,
                        rows,
                        indices[local],
                        factors,
                        precisions,
                        solver,
                        substitute,
                        refine,
                    )
                    log_det_missing[rows] = log_det[local]
        mahalanobis = squared_norms(residuals, factors)
    mahalanobis[np.isnan(mahalanobis)] = np.inf
    return (
        mahalanobis,
        log_det_missing,
        PatternConditionals(residuals, means, groups, factors, precisions, kept, floors),
    )


def fill_missing(residuals, rows, columns, factors, precisions, solver, substitute, refine):
    """Fill ``residuals[:, rows]`` on ``columns`` (each row's missing coordinates) in place.

    ``solver`` holds each row's factor L of ``P_MM`` (``substitute``) or the
    inverse ``P_MM^-1``. The normal equations ``P_MM f_M = -(P r)_M``, then
    if ``refine`` one refinement with the residual ``(U U^T f)_M`` of the
    filled rows.
    """
    positions = np.arange(rows.size)[:, np.newaxis]
    for step in range(1 + refine):
        if step == 0:  # P r: one product
            gradients = np.matmul(residuals[:, rows], precisions)
        else:  # the residual of the normal equations, through the factor
            gradients = whiten(whiten(residuals[:, rows], factors), factors, back=True)
        gradient = gradients[:, positions, columns].transpose(1, 0, 2)  # (n, K, m)
        if substitute:
            solved = cholesky_substitutions(solver, gradient)[1]
        else:
            solved = np.matmul(gradient[:, :, np.newaxis], solver)[:, :, 0]
        residuals[:, rows[:, np.newaxis], columns] -= solved.transpose(1, 0, 2)


def squared_norms(residuals, factors):
    """``|U_k^T r_nk|^2`` for residuals (K, n, d) and factors (J, d, d): (n, K).

    Rows are taken a chunk at a time, so the products never hold more than
    one chunk of the (K, n, d) residuals at once.
    """
    n_components, n_samples, n_features = residuals.shape
    norms = np.empty((n_samples, n_components))
    size = max(1, CHUNK_FLOATS // max(1, n_components * n_features))
    for start in range(0, n_samples, size):
        whitened = whiten(residuals[:, start : start + size], factors)
        norms[start : start + size] = np.einsum("knd,knd->nk", whitened, whitened)
    return norms


def conditional_covariances(factors, precisions, stacked, indices):
    """``P_MM^-1`` for the pairs (component ``stacked[i]``, ``indices[i]``): (n, m, m)."""
    return cholesky_inverse(missing_factors(factors, precisions, stacked, indices)[0])


class GaussianImputation:
    """``expected`` and ``draw`` of Gaussian conditionals (``impute_rows``), from
    their ``residuals`` about the means and their ``noise``."""

    def expected(self, posterior, means):
        """``sum_k p(k | x_O) E[x | x_O, k]`` of each row."""
        return np.einsum("nk,knd->nd", posterior, self.residuals) + posterior @ means

    def draw(self, labels, means, standard_normal):
        """One draw of each row from the conditional of its component ``labels``."""
        rows = np.arange(labels.size)
        noise = self.noise(labels, standard_normal)
        return self.residuals[labels, rows] + means[labels] + noise


class PatternConditionals(GaussianImputation):
    """Conditional moments of the missing values of a block, by pattern.

    ``residuals`` (K, n, d) are ``E[x | x_O, k] - means[k]``; the conditional
    covariance of pattern p under component k is ``P_MM^-1`` of that
    component's precision (shared by all components when J = 1).

    A covariance ``S + f I`` with a floor f is that of ``x = x* + e``, e
    independent noise of variance f; ``Cov[x_M | x_O] = Cov[x*_M | x_O] + f I``.
    The statistics (``covariance_sum``) take the clean part, as an observed
    value enters them as it is: the M-step then adds the floor once, as for
    complete data, instead of once more at every step (which made the bound
    fall where a column is observed in a single row of a component). Draws
    (``noise``) have the whole conditional covariance.
    """

    def __init__(
        self, residuals, means, groups, factors, precisions, covariances=None, floors=None
    ):
        self.residuals = residuals
        self.means = means
        self._groups = groups
        self._factors = factors
        self._precisions = precisions
        self._covariances = covariances or {}
        self._floors = floors

    def missing_weights(self, responsibilities):
        """``sum_n r_nk [x_nj missing]``, shape (K, d)."""
        n_components, _, n_features = self.residuals.shape
        total = np.zeros((n_features, n_components))
        for group in self._groups:
            weights = group.pattern_sums(responsibilities)  # (patterns, K)
            m = group.indices.shape[1]
            np.add.at(total, group.indices.ravel(), np.repeat(weights, m, axis=0))
        return total.T

    def mean_sum(self, responsibilities):
        """``sum_n r_nk E[x_n | x_O, k]``, shape (K, d)."""
        total = np.einsum("nk,knd->kd", responsibilities, self.residuals)
        return total + responsibilities.sum(axis=0)[:, np.newaxis] * self.means

    def covariance_sum(self, responsibilities, pooled=False):
        """``sum_n r_nk Cov[x | x_O(n), k]``, zero outside each row's missing block.

        Returns (K, d, d), or (d, d) summed over the components if ``pooled``.
        The covariance of a (pattern, component) pair of negligible weight
        (``NEGLIGIBLE_WEIGHT``) is not formed: with well-separated
        components, most pairs.
        """
        n_components, _, n_features = self.residuals.shape
        shared = self._precisions.shape[0] == 1
        n_targets = 1 if pooled else n_components
        total = np.zeros((n_targets, n_features, n_features))
        for number, group in enumerate(self._groups):
            weights = group.pattern_sums(responsibilities)
            if shared:  # one covariance per pattern, weighted for each component
                pattern_weights = weights.sum(axis=1, keepdims=True)
            else:
                pattern_weights = weights
            covariances = self._covariances.get(number)
            if covariances is not None:  # every pair's, formed in the E-step
                scale = weights if shared and not pooled else pattern_weights
                blocks = covariances * scale[:, :, np.newaxis, np.newaxis]
                if pooled:
                    blocks = blocks.sum(axis=1, keepdims=True)
                total += embed_pattern_blocks(blocks, group.indices, n_features)
                continue
            mean_weight = pattern_weights.mean(axis=0)
            pattern, stacked = np.nonzero(pattern_weights > NEGLIGIBLE_WEIGHT * mean_weight)
            m = group.indices.shape[1]
            size = max(1, STACK_FLOATS // (n_components * m * m))
            for start in range(0, pattern.size, size):
                batch = slice(start, start + size)
                indices = group.indices[pattern[batch]]
                covariance = conditional_covariances(
                    self._factors, self._precisions, stacked[batch], indices
                )
                if pooled or not shared:
                    targets = np.zeros_like(stacked[batch]) if pooled else stacked[batch]
                    scale = pattern_weights[pattern[batch], stacked[batch]]
                else:  # each shared covariance, once per component
                    covariance = np.repeat(covariance, n_components, axis=0)
                    indices = np.repeat(indices, n_components, axis=0)
                    targets = np.tile(np.arange(n_components), len(pattern[batch]))
                    scale = weights[pattern[batch]].ravel()
                covariance *= scale[:, np.newaxis, np.newaxis]
                total += embed_blocks(covariance, indices, targets, n_targets, n_features)
        if self._floors is not None:  # the clean part (see the class)
            floors = np.broadcast_to(self._floors, (n_components,))
            removed = floors[:, np.newaxis] * self.missing_weights(responsibilities)
            diagonal = np.einsum("kii->ki", total)
            diagonal -= removed.sum(axis=0, keepdims=True) if pooled else removed
        return total[0] if pooled else total

    def noise(self, labels, standard_normal):
        """Draws of ``x_M - E[x_M | x_O, k]`` for component ``labels[i]`` of each row.

        ``standard_normal`` (n, d) is read on each row's missing coordinates;
        the result is zero elsewhere.
        """
        noise = np.zeros_like(standard_normal)
        n_stacked = self._precisions.shape[0]
        for group in self._groups:
            m = group.indices.shape[1]
            size = max(1, STACK_FLOATS // (m * m))
            for start in range(0, group.rows.size, size):
                rows = group.rows[start : start + size]
                stacked = np.zeros_like(rows) if n_stacked == 1 else labels[rows]
                # one factor per (pattern, component) drawn from, not per row
                pairs, pair = np.unique(
                    group.local[start : start + size] * n_stacked + stacked, return_inverse=True
                )
                covariance = conditional_covariances(
                    self._factors,
                    self._precisions,
                    pairs % n_stacked,
                    group.indices[pairs // n_stacked],
                )
                columns = group.indices[group.local[start : start + size]]
                noise[rows[:, None], columns] = np.einsum(
                    "nij,nj->ni",
                    np.linalg.cholesky(covariance)[pair.reshape(-1)],
                    standard_normal[rows[:, None], columns],
                )
        return noise


class DiagonalConditionals(GaussianImputation):
    """Conditional moments when coordinates are independent given the component.

    The conditional of the missing values is then their marginal: mean
    ``means[k]`` and variance ``variances[k]`` on each missing coordinate.
    Every sum is a product over the whole block, with the mask, and no
    pattern is looked at. ``centered`` holds the rows with zeros where
    missing, in the coordinates of ``means``.
    """

    def __init__(self, centered, missing, means, variances, floors=None):
        self.centered = centered
        self.missing = missing
        self.means = means
        self.variances = variances
        self._missing_float = missing.astype(np.float64)
        # the clean variances the statistics take (see PatternConditionals)
        self._clean_variances = (
            variances
            if floors is None
            else np.maximum(variances - np.reshape(floors, (-1, 1)), 0.0)
        )

    def _missing_weights(self, responsibilities):
        return responsibilities.T @ self._missing_float

    def mean_sum(self, responsibilities):
        """``sum_n r_nk E[x_n | x_O, k]``, shape (K, d)."""
        return responsibilities.T @ self.centered + self._missing_weights(responsibilities) * (
            self.means
        )

    def second_moment_sum(self, responsibilities):
        """``sum_n r_nk E[x_n ** 2 | x_O, k]`` (elementwise), shape (K, d)."""
        observed = responsibilities.T @ np.square(self.centered)
        return observed + self._missing_weights(responsibilities) * (
            np.square(self.means) + self._clean_variances
        )

    @property
    def residuals(self):
        """``E[x | x_O, k] - means[k]``, shape (K, n, d): zero on the missing coordinates."""
        observed = ~self.missing
        return (self.centered[np.newaxis] - self.means[:, np.newaxis, :]) * observed

    def covariance_sum(self, responsibilities, pooled=False):
        """``sum_n r_nk Cov[x | x_O(n), k]`` as diagonal matrices, (K, d, d) or (d, d)."""
        variances = self._missing_weights(responsibilities) * self._clean_variances
        if pooled:
            return np.diag(variances.sum(axis=0))
        return variances[:, :, np.newaxis] * np.eye(variances.shape[1])

    def noise(self, labels, standard_normal):
        """Draws of ``x_M - means[labels]`` on the missing coordinates (zero elsewhere)."""
        return np.sqrt(self.variances[labels]) * standard_normal * self._missing_float


def impute_rows(log_joint, conditionals, means, uniform=None, noise=None):
    """Imputed rows of a block: the conditional mean or one conditional draw.

    ``log_joint`` (n, K) are ``ln p(x_O, z=k)`` of the observed values under
    each component, ``means`` (K, d) the means the conditionals' residuals
    are about. Without ``uniform`` each row is ``sum_k p(k | x_O) E[x | x_O, k]``
    (the conditionals' ``expected``); with ``uniform`` (n, u) and ``noise``
    (n, d: the model's ``_imputation_noise``), row i draws ``k ~ p(k | x_O)``
    by inverting the cumulative sum at ``uniform[i, 0]``, then
    ``x_M ~ p(x_M | x_O, k)`` (the conditionals' ``draw``, given the other
    columns of ``uniform`` if u > 1). Observed coordinates come back as the
    conditional mean has them (the caller keeps the observed values).
    """
    posterior = normalize_log_rows(log_joint)[1]
    if uniform is None:
        return conditionals.expected(posterior, means)
    cumulative = np.cumsum(posterior, axis=1)
    labels = (cumulative < uniform[:, :1] * cumulative[:, -1:]).sum(axis=1)
    labels = np.minimum(labels, posterior.shape[1] - 1)
    return conditionals.draw(labels, means, noise, *uniform[:, 1:].T)
