"""Full covariance matrices, one per component ('full') or shared ('tied').

Rows with missing values condition on their observed coordinates by
missingness pattern (``skem._core._missing``).
"""

from typing import NamedTuple

import numpy as np

from ._blocks import Lazy
from ._linalg import (
    SKIP_MIN_FEATURES,
    cholesky_lower,
    cholesky_with_jitter,
    contributing_rows,
    inverse_lower_transposed,
    kept_scatter,
    precision_cholesky_from_precision,
)
from ._missing import condition_on_observed
from ._structure import EPS, ILL_DEFINED_COVARIANCE, Covariance, gram


class _Matrices(Covariance):
    """Full covariance matrices: one per component ('full') or shared ('tied')."""

    matrices = True

    def from_precisions(self, precisions, name):
        stacked = precisions.reshape(-1, *precisions.shape[-2:])
        for matrix in stacked:
            symmetric = np.allclose(matrix, matrix.T)
            if not (symmetric and np.all(np.linalg.eigvalsh(matrix) > 0.0)):
                raise ValueError(f"'{name}' should be symmetric, positive-definite")
        factors = np.array([precision_cholesky_from_precision(p) for p in stacked])
        covariances = np.array([np.linalg.inv(p) for p in stacked])
        return factors.reshape(precisions.shape), covariances.reshape(precisions.shape)

    def factorize(self, covariances, reg_covar, n_components):
        """The floor, then upper factors of the precisions; jitter, or raise, if singular.

        The floor is reg_covar, raised to the rounding level of each matrix:
        on data of an extreme scale the rounding error of a singular
        direction (about eps times the variances) exceeds reg_covar, and
        flooring there keeps the factorisation, and the fit, the same from
        one iteration to the next. The Cholesky factorisation and triangular
        inverse call scipy's LAPACK once per component, outside the loop over
        rows (see ``_linalg``).
        """
        stacked = covariances.reshape(-1, *covariances.shape[-2:])  # (a view, or a copy)
        diagonal = np.einsum("kii->ki", stacked)
        floors = np.zeros(stacked.shape[0])
        if reg_covar > 0:
            rounding = 16 * EPS * np.abs(diagonal).mean(axis=1)
            floors = np.maximum(reg_covar, rounding)
            diagonal += floors[:, np.newaxis]
        factors = np.empty_like(stacked)
        repaired = []
        for k, covariance in enumerate(stacked):
            cholesky = cholesky_lower(covariance)
            if cholesky is None:
                if reg_covar == 0:
                    raise ValueError(ILL_DEFINED_COVARIANCE)
                cholesky, jitter = cholesky_with_jitter(covariance, reg_covar)
                covariance.flat[:: covariance.shape[0] + 1] += jitter
                repaired.append(k)
            factors[k] = inverse_lower_transposed(cholesky)
        if self.shared:  # one matrix for every component
            floors = np.repeat(floors, n_components)
            repaired = list(range(n_components)) if repaired else []
        shape = covariances.shape
        return stacked.reshape(shape), floors, factors.reshape(shape), repaired

    def degenerate(self, covariances, floors, rounding):
        """Components whose covariance minus its floor is singular, scale-free.

        A covariance minus its floor is scaled to unit diagonal, which makes
        the test independent of the features' scales: it is singular when a
        feature has no variance or when the smallest eigenvalue of that
        correlation matrix is zero up to rounding.
        """
        stacked = covariances.reshape(-1, *covariances.shape[-2:])
        n_features = stacked.shape[-1]
        singular = []
        for covariance, floor in zip(stacked, floors):
            empirical = covariance - floor * np.eye(n_features)
            spread = np.diag(empirical)
            if np.any(spread <= rounding * np.diag(covariance)):
                singular.append(True)
                continue
            root = np.sqrt(spread)  # (outer product first would underflow at tiny scales)
            correlation = empirical / root[:, np.newaxis] / root[np.newaxis, :]
            singular.append(np.linalg.eigvalsh(correlation)[0] <= rounding * n_features)
        if self.shared:
            return np.arange(floors.shape[0]) if singular[0] else np.array([], dtype=int)
        return np.flatnonzero(singular)

    def conditioned(self, centered, missing, terms):
        means = terms.centered_means
        stacked, precisions, floors = terms.missing.get()
        residuals = centered[np.newaxis] - means[:, np.newaxis, :]
        residuals *= ~missing
        mahalanobis, log_det_missing, conditionals = condition_on_observed(
            residuals, missing, stacked, means, floors, precisions
        )
        # log|S_OO|^(-1/2) = log|U| - log|P_MM| / 2
        return mahalanobis, terms.log_det - 0.5 * log_det_missing, conditionals


class FullTerms(NamedTuple):
    """The E-step terms of 'full' covariances.

    ``factor`` stacks the precision factors side by side (d, K d) and
    ``offsets`` the whitened means (K d,), both rounded to the data's dtype,
    as the E-step uses them; ``shift`` (the means up to that rounding) and
    ``basis`` (the inverses of the rounded factors) undo the whitening.
    """

    log_det: np.ndarray
    factor: np.ndarray
    offsets: np.ndarray
    shift: np.ndarray
    basis: np.ndarray
    centered_means: np.ndarray
    missing: Lazy


class FullCovariance(_Matrices):
    """Each component has its own full covariance matrix."""

    name = "full"
    template = ("K", "d", "d")

    def terms(self, centered_means, factors, floors, dtype):
        n_features = centered_means.shape[1]
        # the factors and offsets as the E-step uses them (rounded to the
        # data's dtype), and what the M-step needs to undo the whitening
        rounded = factors.astype(dtype).astype(np.float64)
        offsets = np.einsum("kd,kde->ke", centered_means, factors).astype(dtype)
        inverse_factors = np.array([inverse_lower_transposed(u.T) for u in rounded])
        return FullTerms(
            log_det=np.log(np.diagonal(factors, axis1=1, axis2=2)).sum(axis=1),
            factor=rounded.transpose(1, 0, 2).reshape(n_features, -1).astype(dtype),
            offsets=offsets.ravel(),
            shift=np.einsum("ke,ked->kd", offsets.astype(np.float64), inverse_factors),
            basis=inverse_factors,
            centered_means=centered_means,
            missing=Lazy(lambda: missing_terms(centered_means, factors, floors)),
        )

    def mahalanobis(self, centered, centered64, terms, workspace):
        # one product against all components: the whitened residuals
        # y_k = x U_k - m_k U_k, kept for the statistics of the same rows
        whitened = centered @ terms.factor
        whitened -= terms.offsets
        stacked = whitened.reshape(centered.shape[0], -1, centered.shape[1])
        workspace["whitened"] = whitened
        squared = np.einsum("nkd,nkd->nk", stacked, stacked, dtype=np.float64)
        if centered.shape[1] >= SKIP_MIN_FEATURES:  # (for ``second_moments``)
            workspace["squared"] = squared.copy()  # (the caller makes densities of its own)
        return squared

    def second_moments(self, centered, centered64, responsibilities, terms, workspace=None):
        """The whitened scatters sum r y y^T, or, without the E-step's
        workspace, the scatters about the terms' shift.

        Of the rows that change them (``contributing_rows``), component by
        component, when they are fewer than half of all (the usual case once
        the responsibilities settle) and the features many enough for that
        to pay (``SKIP_MIN_FEATURES``); otherwise in one batched product.
        """
        if workspace is None:
            scatters = shifted_scatters(centered, responsibilities, terms.shift)
            return in_basis(scatters, terms)
        whitened = workspace["whitened"]
        n_samples, n_components = responsibilities.shape
        stacked = whitened.reshape(n_samples, n_components, -1)
        roots = np.sqrt(responsibilities).astype(whitened.dtype)
        contributing = None
        if "squared" in workspace:
            contributing, dropped = contributing_rows(
                responsibilities, workspace["squared"], stacked.shape[2]
            )
        if contributing is None or 2 * np.count_nonzero(contributing) >= contributing.size:
            stacked *= roots[:, :, np.newaxis]
            per_component = stacked.transpose(1, 0, 2)
            return np.matmul(per_component.transpose(0, 2, 1), per_component)
        scatters = np.empty((n_components, stacked.shape[2], stacked.shape[2]), whitened.dtype)
        for k in range(n_components):
            rows = np.flatnonzero(contributing[:, k])
            scatter = kept_scatter(stacked[rows, k], roots[rows, k], dropped[k])
            if scatter is None:  # (a far row leaves a direction to the others: all of them)
                rows = np.flatnonzero(responsibilities[:, k])
                scatter = kept_scatter(stacked[rows, k], roots[rows, k], 0.0)
            scatters[k] = scatter
        return scatters

    def expected_second_moments(self, conditionals, responsibilities, terms):
        """The expected scatters about the shift, whitened as the complete rows' are.

        In the fit loop the complete rows give the whitened scatter
        ``sum r y y^T`` with ``y = (x - s_k) U_k``; a filled row gives
        ``E[y y^T] = U_k^T ((f - s_k)(f - s_k)^T + C) U_k``, f its
        conditional mean and C its conditional covariance, so the expected
        scatter S_k is whitened with the same factors. In a first M-step the
        plain scatter about the shift.
        """
        scatters = filled_scatters(conditionals, responsibilities, terms.shift)
        scatters += conditionals.covariance_sum(responsibilities)
        return in_basis(scatters, terms)

    def covariances(self, statistics, centered_means, nk, terms):
        """sum_n r (x - mean)(x - mean)^T / N_k from the sums about the shift s.

        In the whitening basis (the fit loop) the whitened scatter
        W_k = sum r y y^T of the E-step's residuals y = x U_k - o_k is the
        scatter about s_k = o_k U_k^-1 (the current mean, up to the rounding
        of the E-step's factors): U_k^-T W_k U_k^-1. The residuals are small
        numbers, so float32 data lose no more accuracy here than in the
        E-step itself. Then scatter - t d^T - d t^T + R d d^T with
        t = sum r (x - s), d = mean - s, R = sum r: positive semi-definite
        even for an empty component.
        """
        scatter, shift = statistics["second"], terms.shift
        if terms.basis is not None:
            scatter = np.swapaxes(terms.basis, 1, 2) @ scatter
            scatter = scatter @ terms.basis
            scatter += np.swapaxes(scatter, 1, 2)
            scatter *= 0.5
        offset = centered_means - shift
        residual_sum = statistics["sum_x"] - statistics["nk"][:, np.newaxis] * shift
        cross = residual_sum[:, :, np.newaxis] * offset[:, np.newaxis, :]
        covariances = scatter - cross
        covariances -= np.swapaxes(cross, 1, 2)
        covariances += statistics["nk"][:, None, None] * (
            offset[:, :, np.newaxis] * offset[:, np.newaxis, :]
        )
        covariances /= nk[:, None, None]
        return covariances


class TiedTerms(NamedTuple):
    """The E-step terms of a 'tied' covariance: the factor U (d, d) in the data's
    dtype, and the projected means ``offsets`` (d, K)."""

    log_det: np.ndarray
    factor: np.ndarray
    offsets: np.ndarray
    centered_means: np.ndarray
    missing: Lazy


class TiedCovariance(_Matrices):
    """All components share one full covariance matrix."""

    name = "tied"
    template = ("d", "d")
    shared = True

    def terms(self, centered_means, factors, floors, dtype):
        offsets = centered_means @ factors
        return TiedTerms(
            log_det=np.full(centered_means.shape[0], np.log(np.diag(factors)).sum()),
            factor=factors.astype(dtype),
            offsets=offsets.T.copy(),
            centered_means=centered_means,
            missing=Lazy(lambda: missing_terms(centered_means, factors, floors)),
        )

    def mahalanobis(self, centered, centered64, terms, workspace):
        # |y - o_k|^2 with y = x U, from the differences (expanded squares
        # would cancel for clusters far from the centre)
        projected = (centered @ terms.factor).astype(np.float64, copy=False)
        difference = projected[:, np.newaxis, :] - terms.offsets.T
        return np.einsum("nkd,nkd->nk", difference, difference)

    def second_moments(self, centered, centered64, responsibilities, terms, workspace=None):
        """The scatter about the centre of all the rows (their responsibilities' sum)."""
        row_weight = np.sqrt(responsibilities.sum(axis=1, dtype=np.float64))
        return gram(centered64 * row_weight[:, np.newaxis])

    def expected_second_moments(self, conditionals, responsibilities, terms):
        """The expected scatter about the centre: filled rows, plus the conditional covariances."""
        means = conditionals.means
        scatters = filled_scatters(conditionals, responsibilities, np.zeros_like(means))
        return scatters.sum(axis=0) + conditionals.covariance_sum(responsibilities, pooled=True)

    def covariances(self, statistics, centered_means, nk, terms):
        between = (statistics["sum_x"].T / nk) @ statistics["sum_x"]
        return (statistics["second"] - between) / nk.sum()


# ---------------------------------------------------------------------- helpers


def missing_terms(centered_means, factors, floors):
    stacked = np.reshape(factors, (-1, centered_means.shape[1], centered_means.shape[1]))
    return (
        stacked,
        np.matmul(stacked, np.swapaxes(stacked, 1, 2)),  # the precisions, J d^3
        floors[: stacked.shape[0]],
    )


def filled_scatters(conditionals, responsibilities, shift):
    """``sum_n r_nk (f_nk - s_k)(f_nk - s_k)^T`` of the rows f_nk filled for k, (K, d, d)."""
    residuals, means = conditionals.residuals, conditionals.means
    root_responsibilities = np.sqrt(responsibilities)
    n_components, _, n_features = residuals.shape
    scatters = np.empty((n_components, n_features, n_features))
    for k in range(n_components):
        weighted = residuals[k] + (means[k] - shift[k])
        weighted *= root_responsibilities[:, k, np.newaxis]
        scatters[k] = gram(weighted)
    return scatters


def in_basis(scatters, terms):
    """Scatters about the shift in the terms' basis: U_k^T S_k U_k (or S_k in none)."""
    if terms.basis is None:
        return scatters
    n_features = scatters.shape[1]
    factor = terms.factor.astype(np.float64)
    factors = factor.reshape(n_features, -1, n_features).transpose(1, 0, 2)
    return np.swapaxes(factors, 1, 2) @ scatters @ factors


def shifted_scatters(centered, responsibilities, shift):
    """The matrices sum_n r_nk (x_n - m_k)(x_n - m_k)^T, m_k the old mean.

    Shifting by the current mean keeps the later subtraction of the mean's
    outer product free of cancellation. Rows whose responsibility is
    exactly zero contribute nothing and are skipped.
    """
    n_samples, n_features = centered.shape
    shift = shift.astype(centered.dtype)
    root_responsibilities = np.sqrt(responsibilities)
    scatters = np.zeros((responsibilities.shape[1], n_features, n_features))
    buffer = np.empty_like(centered)
    for k in range(responsibilities.shape[1]):
        root = root_responsibilities[:, k]
        rows = np.flatnonzero(root)
        if rows.size < n_samples // 2:
            weighted = centered[rows] - shift[k]
            weighted *= root[rows, np.newaxis]
        else:
            weighted = np.subtract(centered, shift[k], out=buffer)
            weighted *= root[:, np.newaxis]
        if rows.size:
            scatters[k] = gram(weighted)
    return scatters
