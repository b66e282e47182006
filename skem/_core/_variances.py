"""Diagonal covariances: per component and feature ('diag'), per component
('spherical') or shared ('tied_diag').

Given the component the coordinates are independent, so rows with missing
values need the mask alone.
"""

from typing import NamedTuple

import numpy as np

from ._missing import DiagonalConditionals
from ._structure import EPS, ILL_DEFINED_COVARIANCE, Covariance


class VarianceTerms(NamedTuple):
    """The E-step terms of variances: the expansion of sum_d p_kd (x_d - m_kd)^2
    into ``precisions`` and ``linear`` (both (d, K)) and ``constant`` (K,),
    and for rows with missing values the per-feature ``log_factors``,
    ``variances`` and ``constant_by_feature`` (d, K), and the ``floors``."""

    log_det: np.ndarray
    precisions: np.ndarray
    linear: np.ndarray
    constant: np.ndarray
    centered_means: np.ndarray
    per_feature_factors: np.ndarray
    log_factors: np.ndarray
    variances: np.ndarray
    constant_by_feature: np.ndarray
    floors: np.ndarray


class _Variances(Covariance):
    """Diagonal covariances, described by variances broadcast to (K, d).

    The E-step expands (x - m)^2 / v into squares, cross terms and a constant,
    in float64: the expanded squares cancel when clusters lie far apart.
    Given the component the coordinates are independent, so conditioning on
    the observed ones needs the mask alone.
    """

    def from_precisions(self, precisions, name):
        if np.any(precisions <= 0.0):
            raise ValueError(f"'{name}' should be positive")
        return np.sqrt(precisions), 1.0 / precisions

    def factorize(self, covariances, reg_covar, n_components):
        covariances = covariances + reg_covar
        if np.any(covariances <= 0.0):
            raise ValueError(ILL_DEFINED_COVARIANCE)
        floors = np.full(n_components, float(reg_covar))
        return covariances, floors, 1.0 / np.sqrt(covariances), []

    def degenerate(self, covariances, floors, rounding):
        variances = per_feature(self, covariances, floors.shape[0], None)
        collapsed = (variances - floors[:, None] <= rounding * variances).any(axis=1)
        return np.flatnonzero(collapsed)

    def terms(self, centered_means, factors, floors, dtype):
        n_components, n_features = centered_means.shape
        precisions = per_feature(self, factors**2, n_components, n_features)
        log_factors = per_feature(self, np.log(factors), n_components, n_features)
        return VarianceTerms(
            log_det=log_factors.sum(axis=1),
            precisions=precisions.T.copy(),
            linear=(-2.0 * centered_means * precisions).T.copy(),
            constant=(centered_means**2 * precisions).sum(axis=1),
            centered_means=centered_means,
            per_feature_factors=np.sqrt(precisions),
            log_factors=log_factors,
            variances=1.0 / precisions,
            constant_by_feature=(centered_means**2 * precisions).T.copy(),
            floors=floors,
        )

    #: Rows whose expanded terms exceed this (in nats) are recomputed from the
    #: differences: beyond it the expansion's rounding (about 4 eps times the
    #: terms) would exceed 1e-9 nats.
    EXPANSION_LIMIT = 1e6

    def mahalanobis(self, centered, centered64, terms, workspace, observed=None):
        """sum_d p_kd (x_d - m_kd)^2, expanded into three products for all k.

        The expansion cancels when a row or a mean lies far from the centre
        relative to a component's spread (a collapsed feature, say): such
        rows, rare, are recomputed from the differences, scaled before
        squared (so a term overflows to +inf only when its true value is
        beyond the float range). With ``observed`` (a float mask), the sums
        run over the observed coordinates only.
        """
        squares = np.square(centered64)
        if workspace is not None:
            workspace["squares"] = squares
        constant = terms.constant if observed is None else observed @ terms.constant_by_feature
        # a square beyond the float range makes inf, or NaN (inf - inf, inf * 0
        # in BLAS): such a row is far, and recomputed below
        with np.errstate(over="ignore", invalid="ignore"):
            magnitude = squares @ terms.precisions
            magnitude += constant
            mahalanobis = centered64 @ terms.linear  # (the -2 is in "linear")
            mahalanobis += magnitude
        # rare: a full test only then (NaN, from an overflow, counts as far)
        if not magnitude.max(initial=0.0) <= self.EXPANSION_LIMIT:
            far = np.flatnonzero(~(magnitude <= self.EXPANSION_LIMIT).all(axis=1))
            with np.errstate(over="ignore"):
                standardized = centered64[far, np.newaxis, :] - terms.centered_means
                standardized *= terms.per_feature_factors
                if observed is not None:
                    standardized *= observed[far, np.newaxis, :]
                mahalanobis[far] = np.einsum("nkd,nkd->nk", standardized, standardized)
        return np.maximum(mahalanobis, 0, out=mahalanobis)

    def conditioned(self, centered, missing, terms):
        """Sums over the observed coordinates only: the same products with the mask.

        Given the component the coordinates are independent, so the marginal
        of the observed ones drops the missing terms and the conditional of
        the missing ones is their marginal; no pattern is looked at.
        """
        observed = (~missing).astype(np.float64)
        mahalanobis = self.mahalanobis(centered, centered, terms, None, observed)
        conditionals = DiagonalConditionals(
            centered, missing, terms.centered_means, terms.variances, terms.floors
        )
        return mahalanobis, observed @ terms.log_factors.T, conditionals

    def second_moments(self, centered, centered64, responsibilities, terms, workspace=None):
        squares = np.square(centered64) if workspace is None else workspace["squares"]
        return responsibilities.astype(np.float64, copy=False).T @ squares

    def expected_second_moments(self, conditionals, responsibilities, terms):
        return conditionals.second_moment_sum(responsibilities)

    def covariances(self, statistics, centered_means, nk, terms):
        second_moment = statistics["second"] / nk[:, np.newaxis]
        variances = second_moment - centered_means**2
        # Below the rounding of the second moment a variance is zero (a
        # collapsed component), not noise that would hide the collapse.
        variances[variances <= 10 * EPS * second_moment] = 0.0
        if self.shared:
            return (nk @ variances) / nk.sum()
        if self.template == ("K",):
            return variances.mean(axis=1)
        return variances


class DiagCovariance(_Variances):
    """Each component has its own diagonal covariance."""

    name = "diag"
    template = ("K", "d")


class SphericalCovariance(_Variances):
    """Each component has a single variance."""

    name = "spherical"
    template = ("K",)


class TiedDiagCovariance(_Variances):
    """All components share one diagonal covariance."""

    name = "tied_diag"
    template = ("d",)
    shared = True


def per_feature(covariance, values, n_components, n_features):
    """Variances (or any array of their shape) as a (K, d) array (d=None: as few as can be)."""
    if covariance.template == ("K",):
        return values[:, np.newaxis] * np.ones(1 if n_features is None else n_features)
    if covariance.shared:
        return np.broadcast_to(values, (n_components, values.shape[-1]))
    return values
