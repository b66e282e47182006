"""Covariance structures of a Gaussian mixture: one small stateless class per type.

Everything that differs between 'full', 'tied', 'diag', 'spherical' and
'tied_diag' lives here: the shapes and free parameters, the E-step terms and
Mahalanobis distances, the sufficient statistics of a block of rows, the
covariance update with its floor, the precision factors and their repair, the
degeneracy test, the sampling noise, and for rows with missing values the
marginal terms and expected statistics (the matrix types condition through
``skem._core._missing``'s pattern groups, the diagonal ones with the mask alone).
``EMGaussianMixture`` picks one at fit and delegates to it; a new type is one
class and one line in ``COVARIANCES``.

Conventions shared by every class: rows arrive centred on ``center`` (the
weighted mean of the current means), ``centered_means`` are the means minus
that centre, statistics are sums over rows (added over chunks in float64),
and a precision factor
``U`` satisfies ``U U^T = covariance^-1`` (upper-triangular for matrices, the
inverse standard deviations for variances).
"""

from math import log, pi

import numpy as np

from ._linalg import (
    cholesky_lower,
    cholesky_with_jitter,
    inverse_lower_transposed,
    precision_cholesky_from_precision,
)
from ._missing import DiagonalConditionals, condition_on_observed, conditioning_row_width

ILL_DEFINED_COVARIANCE = (
    "Fitting the mixture model failed because some components have "
    "ill-defined empirical covariance (for instance caused by singleton "
    "or collapsed samples). Try to decrease the number of components, "
    "increase reg_covar, or scale the input data. (reg_covar=0 disables "
    "the variance floor that otherwise keeps such components finite.)"
)

EPS = np.finfo(np.float64).eps


def gram(X):
    """``X.T @ X``, symmetric, with one BLAS syrk call (half the flops of a GEMM).

    numpy recognises the product of an array with its own transpose and calls
    syrk in numpy's BLAS. Calling scipy's ``dsyrk`` instead would run in
    scipy's separate OpenBLAS, whose thread pool then competes with numpy's
    between the E-step products (3x slower on 2 cores).
    """
    return X.T @ X


class Covariance:
    """What a covariance structure must say (see the module docstring)."""

    #: The value of ``covariance_type``.
    name = ""

    def precision_shape(self, n_components, n_features):
        """Shape of ``precisions_init``, ``covariances_`` and the factors."""
        raise NotImplementedError

    def n_parameters(self, n_components, n_features):
        """Free parameters of all covariances together."""
        raise NotImplementedError

    def row_width(self, n_components, n_features):
        """Floats of E-step working memory per row (sets the chunk size)."""
        return 2 * n_components + 4 * n_features

    def check_precisions(self, precisions, name):
        """Raise ValueError unless the user's precisions are valid."""
        raise NotImplementedError

    def from_precisions(self, precisions):
        """``(precision factors, covariances)`` of valid float64 precisions."""
        raise NotImplementedError

    def precisions(self, factors):
        """Precisions from their factors."""
        raise NotImplementedError

    def estep_terms(self, centered_means, factors, dtype):
        """What the E-step needs from the parameters, computed once per M-step.

        Must contain ``"log_det"``: the log-determinant of each component's
        precision factor, shape (n_components,).
        """
        raise NotImplementedError

    def mahalanobis(self, centered, centered64, terms, workspace):
        """Squared Mahalanobis distance of each row to each component (float64).

        May add to ``workspace`` what ``statistics`` can reuse for these rows.
        """
        raise NotImplementedError

    def statistics(self, centered, centered64, responsibilities, reference, workspace=None):
        """Responsibility-weighted float64 sums of a chunk besides ``sum_x``.

        ``workspace`` is the E-step's for these rows, or None (initialisation).
        """
        raise NotImplementedError

    #: Whether all components share the covariance ('tied', 'tied_diag').
    shared = False

    def covariances(self, statistics, centered_means, nk, reference, reg_covar):
        """``(covariances, floors)``: the M-step update, floored, in float64."""
        unfloored = self.unfloored(statistics, centered_means, nk, reference)
        return self.floored(unfloored, reg_covar, nk.shape[0])

    def unfloored(self, statistics, centered_means, nk, reference):
        """The maximum-likelihood covariances of the summed statistics (float64)."""
        raise NotImplementedError

    def floored(self, covariances, reg_covar, n_components):
        """``(covariances, floors)``: the floor added to the covariances, in place."""
        raise NotImplementedError

    def without_floor(self, covariances, floors):
        """The covariances less their floors (a copy): what ``floored`` was given."""
        raise NotImplementedError

    def outer(self, offsets):
        """The outer products of the rows of ``offsets``, in this type's shape.

        What a shift of a component's mean adds to its covariance (summed over
        the components for a shared one).
        """
        raise NotImplementedError

    def combine(self, first, second, step):
        """Moments ``(1 - step) * first + step * second``, each about its own means.

        ``first`` and ``second`` are dicts of normalised moments: ``"n"`` the
        share of the weight of each component (summing to one), ``"means"``
        and ``"covariances"`` (unfloored). The covariances are moved to the
        combined means (Chan's parallel update), so moments about different
        means combine exactly: this is how online EM re-centres its running
        statistics when the parameters move.
        """
        n = (1 - step) * first["n"] + step * second["n"]
        ratio = np.divide(step * second["n"], n, out=np.zeros_like(n), where=n > 0)
        offsets = second["means"] - first["means"]
        spread = self.outer(offsets)
        between = ratio * (1 - ratio)
        if self.shared:
            covariances = (1 - step) * first["covariances"] + step * second["covariances"]
            covariances += np.tensordot(n * between, spread, axes=1)
        else:
            expand = (slice(None),) + (np.newaxis,) * (spread.ndim - 1)
            covariances = (1 - ratio)[expand] * first["covariances"]
            covariances += ratio[expand] * second["covariances"]
            covariances += between[expand] * spread
        means = first["means"] + ratio[:, np.newaxis] * offsets
        return {"n": n, "means": means, "covariances": covariances}

    def missing_terms(self, centered_means, factors, floors):
        """What rows with missing values need from the parameters (see ``skem._core._missing``).

        ``floors`` (K,) are the variances each component's floor added: the
        statistics take the conditional covariances less them (``skem._core._missing``).
        """
        raise NotImplementedError

    def missing_row_width(self, n_components, n_features, incomplete_share):
        """Extra floats per row of E-step memory, ``incomplete_share`` of the rows with NaN."""
        return 0

    def missing_mahalanobis(self, centered, missing, terms, missing_terms):
        """Marginal terms of rows with missing values: the observed block of each row.

        ``centered`` (float64) holds the rows about the centre with zeros where
        ``missing``. Returns ``(mahalanobis, log_det, conditionals)``: the
        squared Mahalanobis distance of the observed values to each component
        and the log-determinant of the precision factor of their marginal,
        both (n, K), and the conditional moments of the missing values (a
        ``skem._core._missing`` conditionals object).
        """
        raise NotImplementedError

    def missing_statistics(self, conditionals, responsibilities, reference, initial):
        """``statistics`` of rows with missing values: the same keys, in expectation.

        Each missing block is filled with its conditional mean and its
        conditional covariance is added to the second moments, so the dict adds
        to that of complete rows: those of the fit loop, or, if ``initial``,
        those of the initialisation (``statistics`` without a workspace).
        """
        raise NotImplementedError

    def factorize(self, covariances, reg_covar, n_components):
        """``(precision factors, repaired components)``; may repair in place."""
        raise NotImplementedError

    def degenerate(self, covariances, floors, rounding):
        """Indices of components whose covariance before the floor is singular."""
        raise NotImplementedError

    def sample_noise(self, noise, covariances, labels):
        """Turn standard normal ``noise`` rows into draws of ``labels``' covariances."""
        raise NotImplementedError

    def matrix(self, covariances, k, n_features):
        """Component ``k``'s covariance as a (n_features, n_features) matrix."""
        raise NotImplementedError


# ---------------------------------------------------------------------- matrices


class _MatrixCovariance(Covariance):
    """Full covariance matrices: one per component ('full') or shared ('tied')."""

    def check_precisions(self, precisions, name):
        for matrix in precisions.reshape(-1, *precisions.shape[-2:]):
            symmetric = np.allclose(matrix, matrix.T)
            if not (symmetric and np.all(np.linalg.eigvalsh(matrix) > 0.0)):
                raise ValueError(f"'{name}' should be symmetric, positive-definite")

    def from_precisions(self, precisions):
        stacked = precisions.reshape(-1, *precisions.shape[-2:])
        factors = np.array([precision_cholesky_from_precision(p) for p in stacked])
        covariances = np.array([np.linalg.inv(p) for p in stacked])
        return factors.reshape(precisions.shape), covariances.reshape(precisions.shape)

    def missing_terms(self, centered_means, factors, floors):
        n_features = centered_means.shape[1]
        stacked = np.reshape(factors, (-1, n_features, n_features))
        return {
            "centered_means": centered_means,
            "factors": stacked,
            "precisions": np.matmul(stacked, np.swapaxes(stacked, 1, 2)),
            "floors": floors[: stacked.shape[0]],
        }

    def missing_row_width(self, n_components, n_features, incomplete_share):
        return conditioning_row_width(incomplete_share, n_components, n_features)

    def missing_mahalanobis(self, centered, missing, terms, missing_terms):
        means = missing_terms["centered_means"]
        residuals = centered[np.newaxis] - means[:, np.newaxis, :]
        residuals *= ~missing
        mahalanobis, log_det_missing, conditionals = condition_on_observed(
            residuals,
            missing,
            missing_terms["factors"],
            means,
            missing_terms["floors"],
            missing_terms["precisions"],
        )
        # log|S_OO|^(-1/2) = log|U| - log|P_MM| / 2
        return mahalanobis, terms["log_det"] - 0.5 * log_det_missing, conditionals

    @staticmethod
    def _filled_scatters(conditionals, responsibilities, shift):
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

    def without_floor(self, covariances, floors):
        stacked = covariances.reshape(-1, *covariances.shape[-2:]).copy()
        np.einsum("kii->ki", stacked)[...] -= floors[: stacked.shape[0], np.newaxis]
        return stacked.reshape(covariances.shape)

    def add_floor(self, covariances, reg_covar):
        """Add reg_covar, raised to the rounding level of each matrix, in place.

        On data of an extreme scale the rounding error of a singular direction
        (about eps times the variances) exceeds reg_covar; flooring there keeps
        the factorisation, and the fit, the same from one iteration to the
        next. Elsewhere the floor is exactly reg_covar.
        """
        diagonal = np.einsum("kii->ki", covariances)
        floors = np.zeros(covariances.shape[0])
        if reg_covar > 0:
            rounding = 16 * EPS * np.abs(diagonal).mean(axis=1)
            floors = np.maximum(reg_covar, rounding)
            diagonal += floors[:, np.newaxis]
        return floors

    def factorize(self, covariances, reg_covar, n_components):
        """Upper factors of the precisions; jitter, or raise, on a singular covariance.

        The Cholesky factorisation and triangular inverse call scipy's LAPACK
        once per component, outside the loop over rows (see ``_linalg``).
        """
        stacked = covariances.reshape(-1, *covariances.shape[-2:])
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
        return factors.reshape(covariances.shape), repaired

    def singular(self, covariances, floors, rounding):
        """Whether each stacked matrix minus its floor is singular, scale-free.

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
        return np.array(singular)


class FullCovariance(_MatrixCovariance):
    """Each component has its own full covariance matrix."""

    name = "full"

    def precision_shape(self, n_components, n_features):
        return (n_components, n_features, n_features)

    def n_parameters(self, n_components, n_features):
        return n_components * n_features * (n_features + 1) / 2

    def row_width(self, n_components, n_features):
        return n_components * (n_features + 1) + 3 * n_features

    def precisions(self, factors):
        return np.einsum("kij,klj->kil", factors, factors)

    def estep_terms(self, centered_means, factors, dtype):
        n_features = centered_means.shape[1]
        # the factors and offsets as the E-step uses them (rounded to the
        # data's dtype), and what the M-step needs to undo the whitening
        rounded = factors.astype(dtype).astype(np.float64)
        offsets = np.einsum("kd,kde->ke", centered_means, factors).astype(dtype)
        inverse_factors = np.array([inverse_lower_transposed(u.T) for u in rounded])
        return {
            "log_det": np.log(np.diagonal(factors, axis1=1, axis2=2)).sum(axis=1),
            "factor": rounded.transpose(1, 0, 2).reshape(n_features, -1).astype(dtype),
            "offsets": offsets.ravel(),
            "inverse_factors": inverse_factors,
            "shift": np.einsum("ke,ked->kd", offsets.astype(np.float64), inverse_factors),
        }

    def mahalanobis(self, centered, centered64, terms, workspace):
        # one product against all components: the whitened residuals
        # y_k = x U_k - m_k U_k, kept for the statistics of the same rows
        whitened = centered @ terms["factor"]
        whitened -= terms["offsets"]
        stacked = whitened.reshape(centered.shape[0], -1, centered.shape[1])
        workspace["whitened"] = whitened
        return np.einsum("nkd,nkd->nk", stacked, stacked, dtype=np.float64)

    def statistics(self, centered, centered64, responsibilities, reference, workspace=None):
        """The whitened scatters sum r y y^T in one batched product, or, without
        the E-step's workspace, the scatters about the current means."""
        if workspace is None:
            return {
                "scatter": self._shifted_scatters(centered, responsibilities, reference["shift"])
            }
        whitened = workspace["whitened"]
        stacked = whitened.reshape(whitened.shape[0], responsibilities.shape[1], -1)
        stacked *= np.sqrt(responsibilities)[:, :, np.newaxis].astype(whitened.dtype)
        per_component = stacked.transpose(1, 0, 2)
        return {"whitened_scatter": np.matmul(per_component.transpose(0, 2, 1), per_component)}

    def missing_statistics(self, conditionals, responsibilities, reference, initial):
        """The expected scatters, about the shift the complete rows' statistics use.

        In the fit loop the complete rows give the whitened scatter
        ``sum r y y^T`` with ``y = (x - s_k) U_k``; a filled row gives
        ``E[y y^T] = U_k^T ((f - s_k)(f - s_k)^T + C) U_k``, f its
        conditional mean and C its conditional covariance, so the expected
        scatter S_k is whitened with the same factors. In the initialisation
        the plain scatter about the shift.
        """
        shift = reference["shift"] if initial else reference["terms"]["shift"]
        scatters = self._filled_scatters(conditionals, responsibilities, shift)
        scatters += conditionals.covariance_sum(responsibilities)
        if initial:
            return {"scatter": scatters}
        n_features = scatters.shape[1]
        factor = reference["terms"]["factor"].astype(np.float64)
        factors = factor.reshape(n_features, -1, n_features).transpose(1, 0, 2)
        return {"whitened_scatter": np.swapaxes(factors, 1, 2) @ scatters @ factors}

    @staticmethod
    def _shifted_scatters(centered, responsibilities, shift):
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

    @staticmethod
    def _scatters(statistics, reference):
        """Scatters sum_n r_nk (x_n - s_k)(x_n - s_k)^T and the shifts s_k.

        The fit loop accumulates the whitened scatter W_k = sum r y y^T of
        the E-step's residuals y = x U_k - o_k. Since y U_k^-1 = x - s_k with
        s_k = o_k U_k^-1 (the current mean, up to the rounding of the
        E-step's factors), the scatter about s_k is U_k^-T W_k U_k^-1. The
        residuals are small numbers, so float32 data lose no more accuracy
        here than in the E-step itself.
        """
        if "scatter" in statistics:
            return statistics["scatter"], reference["shift"]
        inverse_factors = reference["terms"]["inverse_factors"]
        scatter = np.swapaxes(inverse_factors, 1, 2) @ statistics["whitened_scatter"]
        scatter = scatter @ inverse_factors
        scatter += np.swapaxes(scatter, 1, 2)
        scatter *= 0.5
        return scatter, reference["terms"]["shift"]

    def unfloored(self, statistics, centered_means, nk, reference):
        # sum_n r (x - mean)(x - mean)^T from the sums about the old mean s:
        # scatter - t d^T - d t^T + R d d^T with t = sum r (x - s), d = mean - s,
        # R = sum r. It is positive semi-definite even for an empty component.
        scatter, shift = self._scatters(statistics, reference)
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

    def floored(self, covariances, reg_covar, n_components):
        return covariances, self.add_floor(covariances, reg_covar)

    def outer(self, offsets):
        return offsets[:, :, np.newaxis] * offsets[:, np.newaxis, :]

    def degenerate(self, covariances, floors, rounding):
        return np.flatnonzero(self.singular(covariances, floors, rounding))

    def sample_noise(self, noise, covariances, labels):
        factors = np.linalg.cholesky(covariances)
        return np.einsum("nd,ned->ne", noise, factors[labels])

    def matrix(self, covariances, k, n_features):
        return covariances[k]


class TiedCovariance(_MatrixCovariance):
    """All components share one full covariance matrix."""

    name = "tied"

    def precision_shape(self, n_components, n_features):
        return (n_features, n_features)

    def n_parameters(self, n_components, n_features):
        return n_features * (n_features + 1) / 2

    def precisions(self, factors):
        return factors @ factors.T

    def estep_terms(self, centered_means, factors, dtype):
        offsets = centered_means @ factors
        return {
            "log_det": np.full(centered_means.shape[0], np.log(np.diag(factors)).sum()),
            "factor": factors.astype(dtype),
            "offsets": offsets.T.copy(),
        }

    def mahalanobis(self, centered, centered64, terms, workspace):
        # |y - o_k|^2 with y = x U, from the differences (expanded squares
        # would cancel for clusters far from the centre)
        projected = (centered @ terms["factor"]).astype(np.float64, copy=False)
        difference = projected[:, np.newaxis, :] - terms["offsets"].T
        return np.einsum("nkd,nkd->nk", difference, difference)

    def statistics(self, centered, centered64, responsibilities, reference, workspace=None):
        row_weight = np.sqrt(responsibilities.sum(axis=1, dtype=np.float64))
        return {"scatter": gram(centered64 * row_weight[:, np.newaxis])}

    def missing_statistics(self, conditionals, responsibilities, reference, initial):
        """The expected scatter about the centre: filled rows, plus the conditional covariances."""
        means = conditionals.means
        scatters = self._filled_scatters(conditionals, responsibilities, np.zeros_like(means))
        return {
            "scatter": scatters.sum(axis=0)
            + conditionals.covariance_sum(responsibilities, pooled=True)
        }

    shared = True

    def unfloored(self, statistics, centered_means, nk, reference):
        between = (statistics["sum_x"].T / nk) @ statistics["sum_x"]
        return (statistics["scatter"] - between) / nk.sum()

    def floored(self, covariances, reg_covar, n_components):
        floor = self.add_floor(covariances[np.newaxis], reg_covar)
        return covariances, np.repeat(floor, n_components)

    def outer(self, offsets):
        return offsets[:, :, np.newaxis] * offsets[:, np.newaxis, :]

    def factorize(self, covariances, reg_covar, n_components):
        factors, repaired = super().factorize(covariances, reg_covar, n_components)
        return factors, list(range(n_components)) if repaired else []

    def degenerate(self, covariances, floors, rounding):
        if self.singular(covariances, floors[:1], rounding)[0]:
            return np.arange(floors.shape[0])
        return np.array([], dtype=int)

    def sample_noise(self, noise, covariances, labels):
        return noise @ np.linalg.cholesky(covariances).T

    def matrix(self, covariances, k, n_features):
        return covariances


# ---------------------------------------------------------------------- variances


class _VarianceCovariance(Covariance):
    """Diagonal covariances, described by variances broadcast to (K, D).

    The E-step expands (x - m)^2 / v into squares, cross terms and a constant,
    in float64: the expanded squares cancel when clusters lie far apart.
    """

    def per_feature(self, variances, n_components, n_features):
        """The variances (or any array of their shape) as a (K, D) array."""
        raise NotImplementedError

    def check_precisions(self, precisions, name):
        if np.any(precisions <= 0.0):
            raise ValueError(f"'{name}' should be positive")

    def from_precisions(self, precisions):
        return np.sqrt(precisions), 1.0 / precisions

    def precisions(self, factors):
        return factors**2

    def estep_terms(self, centered_means, factors, dtype):
        n_components, n_features = centered_means.shape
        precisions = self.per_feature(factors**2, n_components, n_features)
        log_factors = self.per_feature(np.log(factors), n_components, n_features)
        return {
            "log_det": log_factors.sum(axis=1),
            "precisions": precisions.T.copy(),
            "linear": (-2.0 * centered_means * precisions).T.copy(),
            "constant": (centered_means**2 * precisions).sum(axis=1),
            "centered_means": centered_means,
            "per_feature_factors": np.sqrt(precisions),
        }

    #: Rows whose expanded terms exceed this (in nats) are recomputed from the
    #: differences: beyond it the expansion's rounding (about 4 eps times the
    #: terms) would exceed 1e-9 nats.
    EXPANSION_LIMIT = 1e6

    def mahalanobis(self, centered, centered64, terms, workspace):
        """sum_d p_kd (x_d - m_kd)^2, expanded into three products for all k.

        The expansion cancels when a row or a mean lies far from the centre
        relative to a component's spread (a collapsed feature, say): such
        rows, rare, are recomputed from the differences.
        """
        squares = np.square(centered64)
        workspace["squares"] = squares
        return self._expanded_mahalanobis(centered64, squares, terms["constant"], terms)

    def _expanded_mahalanobis(self, centered64, squares, constant, terms, observed=None):
        """The three products; far rows from the differences (on ``observed`` coordinates)."""
        # a square beyond the float range makes inf, or NaN (inf - inf, inf * 0
        # in BLAS): such a row is far, and recomputed below
        with np.errstate(over="ignore", invalid="ignore"):
            magnitude = squares @ terms["precisions"]
            magnitude += constant
            mahalanobis = centered64 @ terms["linear"]  # (the -2 is in "linear")
            mahalanobis += magnitude
        far = ()
        # rare: a full test only then (NaN, from an overflow, counts as far)
        if not magnitude.max(initial=0.0) <= self.EXPANSION_LIMIT:
            far = np.flatnonzero(~(magnitude <= self.EXPANSION_LIMIT).all(axis=1))
        if len(far):
            mahalanobis[far] = self._direct_mahalanobis(centered64[far], terms, observed, far)
        return np.maximum(mahalanobis, 0, out=mahalanobis)

    @staticmethod
    def _direct_mahalanobis(centered64, terms, observed, rows):
        """sum_d ((x_d - m_kd) / s_kd)^2 for a few rows (n, K): scaled before squared,
        so a term overflows (to +inf) only when its true value is beyond the float range."""
        with np.errstate(over="ignore"):
            standardized = centered64[:, np.newaxis, :] - terms["centered_means"]
            standardized *= terms["per_feature_factors"]
            if observed is not None:
                standardized *= observed[rows, np.newaxis, :]
            return np.einsum("nkd,nkd->nk", standardized, standardized)

    def statistics(self, centered, centered64, responsibilities, reference, workspace=None):
        squares = np.square(centered64) if workspace is None else workspace["squares"]
        return {"sum_x2": responsibilities.astype(np.float64, copy=False).T @ squares}

    def missing_terms(self, centered_means, factors, floors):
        n_components, n_features = centered_means.shape
        precisions = self.per_feature(factors**2, n_components, n_features)
        return {
            "log_factors": self.per_feature(np.log(factors), n_components, n_features),
            "variances": 1.0 / precisions,
            "floors": floors,
            "constant": (centered_means**2 * precisions).T.copy(),
        }

    def missing_mahalanobis(self, centered, missing, terms, missing_terms):
        """Sums over the observed coordinates only: the same products with the mask.

        Given the component the coordinates are independent, so the marginal
        of the observed ones drops the missing terms and the conditional of
        the missing ones is their marginal; no pattern is looked at.
        """
        observed = (~missing).astype(np.float64)
        constant = observed @ missing_terms["constant"]
        mahalanobis = self._expanded_mahalanobis(
            centered, np.square(centered), constant, terms, observed
        )
        conditionals = DiagonalConditionals(
            centered,
            missing,
            terms["centered_means"],
            missing_terms["variances"],
            missing_terms["floors"],
        )
        return mahalanobis, observed @ missing_terms["log_factors"].T, conditionals

    def missing_statistics(self, conditionals, responsibilities, reference, initial):
        return {"sum_x2": conditionals.second_moment_sum(responsibilities)}

    def unfloored(self, statistics, centered_means, nk, reference):
        second_moment = statistics["sum_x2"] / nk[:, np.newaxis]
        variances = second_moment - centered_means**2
        # Below the rounding of the second moment a variance is zero (a
        # collapsed component), not noise that would hide the collapse.
        variances[variances <= 10 * EPS * second_moment] = 0.0
        return self.pool(variances, nk)

    def floored(self, covariances, reg_covar, n_components):
        return covariances + reg_covar, np.full(n_components, float(reg_covar))

    def without_floor(self, covariances, floors):
        return covariances - floors[0]  # (the same floor, reg_covar, everywhere)

    def outer(self, offsets):
        return offsets**2

    def pool(self, variances, nk):
        """The fitted variances from the per-component, per-feature ones."""
        raise NotImplementedError

    def factorize(self, covariances, reg_covar, n_components):
        if np.any(covariances <= 0.0):
            raise ValueError(ILL_DEFINED_COVARIANCE)
        return 1.0 / np.sqrt(covariances), []

    def degenerate(self, covariances, floors, rounding):
        variances = self.per_feature(covariances, floors.shape[0], None)
        collapsed = (variances - floors[:, None] <= rounding * variances).any(axis=1)
        return np.flatnonzero(collapsed)

    def sample_noise(self, noise, covariances, labels):
        n_components = labels.max(initial=0) + 1
        variances = self.per_feature(covariances, n_components, noise.shape[1])
        return noise * np.sqrt(variances[labels])

    def matrix(self, covariances, k, n_features):
        return np.diag(self.per_feature(covariances, k + 1, n_features)[k])


class DiagCovariance(_VarianceCovariance):
    """Each component has its own diagonal covariance."""

    name = "diag"

    def precision_shape(self, n_components, n_features):
        return (n_components, n_features)

    def n_parameters(self, n_components, n_features):
        return n_components * n_features

    def per_feature(self, variances, n_components, n_features):
        return variances

    def pool(self, variances, nk):
        return variances


class SphericalCovariance(_VarianceCovariance):
    """Each component has a single variance."""

    name = "spherical"

    def precision_shape(self, n_components, n_features):
        return (n_components,)

    def n_parameters(self, n_components, n_features):
        return n_components

    def per_feature(self, variances, n_components, n_features):
        return variances[:, np.newaxis] * np.ones(1 if n_features is None else n_features)

    def outer(self, offsets):
        return (offsets**2).mean(axis=1)

    def pool(self, variances, nk):
        return variances.mean(axis=1)


class TiedDiagCovariance(_VarianceCovariance):
    """All components share one diagonal covariance."""

    name = "tied_diag"

    def precision_shape(self, n_components, n_features):
        return (n_features,)

    def n_parameters(self, n_components, n_features):
        return n_features

    shared = True

    def per_feature(self, variances, n_components, n_features):
        return np.broadcast_to(variances, (n_components, variances.shape[-1]))

    def pool(self, variances, nk):
        return (nk @ variances) / nk.sum()


#: The covariance structures by ``covariance_type``.
COVARIANCES = {
    covariance.name: covariance
    for covariance in (
        FullCovariance(),
        TiedCovariance(),
        DiagCovariance(),
        SphericalCovariance(),
        TiedDiagCovariance(),
    )
}


def log_normalizer(terms, n_features):
    """log of the Gaussian normalising constant of each component."""
    return terms["log_det"] - 0.5 * n_features * log(2 * pi)
