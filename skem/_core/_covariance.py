"""The covariance structures of a Gaussian mixture, by ``covariance_type``, and
what follows from a structure's data (shapes, counts, precisions, sampling,
online moments).

The structures and their nine operations: ``skem._core._structure`` (the
interface and the statistics format), ``_matrices`` ('full', 'tied') and
``_variances`` ('diag', 'spherical', 'tied_diag').
"""

from math import log, pi

import numpy as np
from scipy import linalg

from ._matrices import FullCovariance, TiedCovariance
from ._missing import conditioning_row_width
from ._structure import Covariance, StartTerms
from ._variances import DiagCovariance, SphericalCovariance, TiedDiagCovariance, per_feature

__all__ = ["COVARIANCES", "Covariance", "StartTerms"]

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


# ---------------------------------------------------------------------- from the data


def precision_shape(covariance, n_components, n_features):
    """Shape of ``precisions_init``, ``covariances_`` and the factors."""
    return tuple(n_components if axis == "K" else n_features for axis in covariance.template)


def n_parameters(covariance, n_components, n_features):
    """Free parameters of all the covariances together."""
    shape = precision_shape(covariance, n_components, n_features)
    if covariance.matrices:  # symmetric matrices
        return int(np.prod(shape[:-2])) * n_features * (n_features + 1) / 2
    return int(np.prod(shape))


def row_width(covariance, n_components, n_features, incomplete_share=0.0):
    """Floats of E-step working memory per row (sets the chunk size).

    'full' keeps the whitened residuals of every component; conditioning
    matrices on the observed coordinates of the rows with NaN (a share
    ``incomplete_share`` of them) needs more.
    """
    width = 2 * n_components + 4 * n_features
    if covariance.matrices and not covariance.shared:
        width = n_components * (n_features + 1) + 3 * n_features
    if covariance.matrices:
        width += conditioning_row_width(incomplete_share, n_components, n_features)
    return width


def precisions(covariance, factors):
    """Precisions from their factors."""
    if covariance.matrices:
        return np.matmul(factors, np.swapaxes(factors, -1, -2))
    return factors**2


def log_normalizer(terms, n_features):
    """log of the Gaussian normalising constant of each component."""
    return terms.log_det - 0.5 * n_features * log(2 * pi)


def without_floor(covariance, covariances, floors):
    """The covariances less their floors (a copy): what ``factorize`` was given."""
    if not covariance.matrices:
        return covariances - floors[0]  # (the same floor, reg_covar, everywhere)
    stacked = covariances.reshape(-1, *covariances.shape[-2:]).copy()
    np.einsum("kii->ki", stacked)[...] -= floors[: stacked.shape[0], np.newaxis]
    return stacked.reshape(covariances.shape)


def covariance_matrix(covariance, covariances, k, n_features):
    """Component ``k``'s covariance as a (n_features, n_features) matrix."""
    if covariance.matrices:
        return covariances if covariance.shared else covariances[k]
    return np.diag(per_feature(covariance, covariances, k + 1, n_features)[k])


def sample_noise(covariance, noise, precision_factors, labels):
    """Standard normal ``noise`` rows turned into draws of ``labels``' Gaussians.

    From the factors U of the precisions (P = U U^T, the model's
    ``precisions_cholesky_``, which its densities use): a draw is
    U^-T z, as L z with L the Cholesky factor of the covariance, without
    factorising a covariance that rounding made indefinite (float32
    covariances of condition number beyond about 1e7).
    """
    factors = np.asarray(precision_factors, dtype=np.float64)
    if covariance.matrices:
        if covariance.shared:
            return linalg.solve_triangular(factors, noise.T, trans="T").T
        draws = np.empty_like(noise)
        for k in np.unique(labels):
            rows = labels == k
            draws[rows] = linalg.solve_triangular(factors[k], noise[rows].T, trans="T").T
        return draws
    n_components = labels.max(initial=0) + 1
    return noise / per_feature(covariance, factors, n_components, noise.shape[1])[labels]


def outer(covariance, offsets):
    """The outer products of the rows of ``offsets``, in the structure's shape.

    What a shift of a component's mean adds to its covariance (summed over
    the components for a shared one).
    """
    if covariance.matrices:
        return offsets[:, :, np.newaxis] * offsets[:, np.newaxis, :]
    if covariance.template == ("K",):
        return (offsets**2).mean(axis=1)
    return offsets**2


def combine_moments(first, second, step, covariance=None):
    """Moments ``(1 - step) * first + step * second``, each about its own means.

    ``first`` and ``second`` are dicts of normalised moments: ``"n"`` the
    share of the weight of each component (summing to one), ``"means"`` and
    ``"covariances"`` (unfloored, of the structure ``covariance``; full
    matrices if None). The covariances are moved to the combined means
    (Chan's parallel update), so moments about different means combine
    exactly: this is how online EM re-centres its running statistics when
    the parameters move, for every model.
    """
    covariance = COVARIANCES["full"] if covariance is None else covariance
    n = (1 - step) * first["n"] + step * second["n"]
    ratio = np.divide(step * second["n"], n, out=np.zeros_like(n), where=n > 0)
    offsets = second["means"] - first["means"]
    spread = outer(covariance, offsets)
    between = ratio * (1 - ratio)
    if covariance.shared:
        covariances = (1 - step) * first["covariances"] + step * second["covariances"]
        covariances += np.tensordot(n * between, spread, axes=1)
    else:
        expand = (slice(None),) + (np.newaxis,) * (spread.ndim - 1)
        covariances = (1 - ratio)[expand] * first["covariances"]
        covariances += ratio[expand] * second["covariances"]
        covariances += between[expand] * spread
    means = first["means"] + ratio[:, np.newaxis] * offsets
    return {"n": n, "means": means, "covariances": covariances}
