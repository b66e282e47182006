"""The maths of the variational Gaussian mixture (Bishop 2006, chapter 10).

Pure functions over the statistics format of ``skem._core._structure``: the
updates of q(weights) and of each component's Normal-Wishart q(mean,
precision), the expectations the E-step uses, the evidence lower bound, and
the posterior predictive (Student-t) terms.

Every covariance type is a Wishart distribution over a D x D precision whose
scale matrix W is constrained: full, diagonal or a multiple of the identity,
per component or shared. The fitted attributes hold ``covariances_ =
(nu W)^-1 = E[precision]^-1`` (scikit-learn's convention), and the shared
types ('tied', 'tied_diag') give every component its own precision with one
common q (scikit-learn's update: ``nu = nu_0 + N / K``, the prior counted K
times), of which the bound below is the exact ELBO.
"""

from math import log, pi
from typing import NamedTuple

import numpy as np
from scipy.special import betaln, digamma, gammaincinv, gammaln
from sklearn.utils import check_array

from .._core._covariance import outer
from .._core._linalg import cholesky_lower
from .._core._variances import per_feature


class Priors(NamedTuple):
    """The prior's parameters: ``weight_concentration`` (gamma), ``mean_precision``
    (beta_0), ``mean`` (m_0), ``degrees_of_freedom`` (nu_0), ``covariance``
    (the inverse Wishart scale W_0^-1, in the structure's shape) and
    ``log_det_scale`` (ln|W_0|)."""

    weight_concentration: float
    mean_precision: float
    mean: np.ndarray
    degrees_of_freedom: float
    covariance: np.ndarray
    log_det_scale: float


class Moments(NamedTuple):
    """The data's side of an update: the responsibilities' sums ``nk`` (K,)
    (floored), the weighted means (K, d), and the weighted covariances about
    them (the structure's shape, without ``reg_covar``)."""

    nk: np.ndarray
    means: np.ndarray
    scatter: np.ndarray


# ---------------------------------------------------------------------- weights


def weight_concentration(nk, prior, prior_type):
    """q(weights): Dirichlet(gamma + N_k), or the sticks Beta(1 + N_k, gamma + sum_{j>k} N_j)."""
    if prior_type == "dirichlet_distribution":
        return prior + nk
    later = np.concatenate([np.cumsum(nk[::-1])[-2::-1], [0.0]])
    return (1.0 + nk, prior + later)


def expected_log_weights(concentration, prior_type):
    """E[ln pi_k] (Bishop 10.66; for the sticks, Blei & Jordan 2006)."""
    if prior_type == "dirichlet_distribution":
        return digamma(concentration) - digamma(np.sum(concentration))
    a, b = concentration
    log_total = digamma(a + b)
    log_rest = np.cumsum(digamma(b) - log_total)
    return digamma(a) - log_total + np.concatenate([[0.0], log_rest[:-1]])


def expected_weights(concentration, prior_type):
    """E[pi_k], normalised over the K components (``weights_``)."""
    if prior_type == "dirichlet_distribution":
        return concentration / np.sum(concentration)
    a, b = concentration
    stick = a / (a + b)
    weights = stick * np.concatenate([[1.0], np.cumprod(1.0 - stick)[:-1]])
    return weights / weights.sum()


def weights_divergence(concentration, prior, prior_type):
    """KL(q(weights) || p(weights)), Dirichlet(gamma, ..., gamma) or Beta(1, gamma) sticks."""
    if prior_type == "dirichlet_distribution":
        alpha = np.asarray(concentration)
        log_total = digamma(alpha.sum())
        return float(
            gammaln(alpha.sum())
            - gammaln(alpha).sum()
            - gammaln(alpha.size * prior)
            + alpha.size * gammaln(prior)
            + np.sum((alpha - prior) * (digamma(alpha) - log_total))
        )
    a, b = concentration
    log_total = digamma(a + b)
    return float(
        np.sum(
            -log(prior)
            - betaln(a, b)
            + (a - 1.0) * (digamma(a) - log_total)
            + (b - prior) * (digamma(b) - log_total)
        )
    )


# ---------------------------------------------------------------------- precisions


def prior_log_det(covariance, matrix, n_features):
    """ln|W_0^-1| of the prior's covariance (one matrix in the structure's shape).

    A singular one (fewer rows than features, a constant feature) makes the
    Wishart prior improper and its normaliser infinite: the ELBO is then
    -inf plus a finite part. 0 is returned, so the bound reports that finite
    part, which differs from a proper prior's ELBO by a constant of the fit.
    """
    if covariance.matrices:
        factor = cholesky_lower(matrix)
        return 0.0 if factor is None else 2.0 * float(np.log(np.diag(factor)).sum())
    values = np.asarray(matrix, dtype=np.float64)
    if not np.all(values > 0):
        return 0.0
    return float(np.log(values).sum()) * (n_features if values.ndim == 0 else 1)


def log_det_scale(log_det_factors, degrees_of_freedom, n_features):
    """ln|W_k| from ln|U_k| (``U U^T = nu W``, the precision factors)."""
    return 2.0 * log_det_factors - n_features * np.log(degrees_of_freedom)


def expected_log_det_precision(log_det_w, degrees_of_freedom, n_features):
    """E[ln|Lambda|] = sum_i psi((nu - i) / 2) + d ln 2 + ln|W| (Bishop B.81)."""
    dof = np.asarray(degrees_of_freedom, dtype=np.float64)
    halves = 0.5 * (dof[..., np.newaxis] - np.arange(n_features))
    return digamma(halves).sum(axis=-1) + n_features * log(2.0) + log_det_w


def log_wishart_normalizer(log_det_w, degrees_of_freedom, n_features):
    """ln B(W, nu) (Bishop B.79)."""
    dof = np.asarray(degrees_of_freedom, dtype=np.float64)
    halves = 0.5 * (dof[..., np.newaxis] - np.arange(n_features))
    return (
        -0.5 * dof * log_det_w
        - 0.5 * dof * n_features * log(2.0)
        - 0.25 * n_features * (n_features - 1) * log(pi)
        - gammaln(halves).sum(axis=-1)
    )


def with_floor(covariance, scatter, reg_covar):
    """``scatter`` plus ``reg_covar`` on its diagonal (a copy)."""
    floored = np.array(scatter, dtype=np.float64)
    if covariance.matrices:
        np.einsum("...ii->...i", floored)[...] += reg_covar
    else:
        floored += reg_covar
    return floored


def per_component(values, like):
    """(K,) ``values`` shaped to broadcast against ``like``, an array of (K, ...)."""
    return values.reshape(values.shape + (1,) * (np.ndim(like) - 1))


def wishart_update(covariance, priors, moments, mean_precision, reg_covar):
    """``(degrees_of_freedom_, covariances_)`` of q(precision) (Bishop 10.62-10.63).

    ``covariances_[k] = (W_0^-1 + N_k (S_k + reg I) + beta_0 N_k / beta_k
    d_k d_k^T) / nu_k``, d_k the weighted mean less m_0, constrained to the
    structure (diagonal, spherical: the mean of the diagonal); a shared
    structure pools the components with weight 1/K each.
    """
    n_components = moments.nk.shape[0]
    spread = outer(covariance, moments.means - priors.mean)
    shrinkage = priors.mean_precision * moments.nk / mean_precision
    scatter = with_floor(covariance, moments.scatter, reg_covar)
    if covariance.shared:
        count = moments.nk.sum() / n_components
        dof = priors.degrees_of_freedom + count
        inverse_scale = priors.covariance + count * scatter
        inverse_scale += np.tensordot(shrinkage / n_components, spread, axes=1)
        return dof, inverse_scale / dof
    dof = priors.degrees_of_freedom + moments.nk
    inverse_scale = priors.covariance + per_component(moments.nk, scatter) * scatter
    inverse_scale += per_component(shrinkage, spread) * spread
    return dof, inverse_scale / per_component(dof, inverse_scale)


def traces(covariance, precisions, matrices, n_features):
    """``Tr(P_k M_k)`` of each component (one value for a shared structure).

    ``precisions`` and ``matrices`` are in the structure's shape (``matrices``
    may be one matrix, as a prior's, broadcast against every component).
    """
    product = precisions * matrices
    if covariance.matrices:
        return product.sum(axis=(-2, -1))
    if covariance.template == ("K",):
        return n_features * product
    return product.sum(axis=-1)


def quadratic_forms(covariance, precisions, offsets):
    """``o_k^T P_k o_k`` of each component's offset (K, d) -> (K,)."""
    n_components, n_features = offsets.shape
    if covariance.matrices:
        stacked = np.broadcast_to(precisions, (n_components, n_features, n_features))
        return np.einsum("kd,kde,ke->k", offsets, stacked, offsets)
    per_dimension = per_feature(covariance, precisions, n_components, n_features)
    return (per_dimension * offsets**2).sum(axis=1)


# ---------------------------------------------------------------------- the bound


class Posterior(NamedTuple):
    """q's parameters as the bound reads them: ``concentration``, ``mean_precision``
    (K,), ``means`` (K, d), ``degrees_of_freedom`` (K,), ``precisions`` (E[Lambda],
    the structure's shape) and ``log_det_factors`` (ln|U_k|, (K,))."""

    concentration: object
    mean_precision: np.ndarray
    means: np.ndarray
    degrees_of_freedom: np.ndarray
    precisions: np.ndarray
    log_det_factors: np.ndarray


def evidence_lower_bound(covariance, priors, posterior, moments, entropy, prior_type):
    """The ELBO in nats: E_q[ln p(X, Z, theta)] - E_q[ln q(Z, theta)] (Bishop 10.70-10.77).

    ``moments`` are those of the responsibilities q(Z), ``entropy`` their
    entropy summed over the (weighted) rows, ``posterior`` q(theta). Exact
    for any q(theta) of the family, not only the optimal one: with a
    ``reg_covar`` floor it is the true bound of the floored parameters.
    """
    nk, means, scatter = moments
    beta, m, dof = posterior.mean_precision, posterior.means, posterior.degrees_of_freedom
    precisions = posterior.precisions
    n_features = m.shape[1]
    log_det_w = log_det_scale(posterior.log_det_factors, dof, n_features)
    expected_log_det = expected_log_det_precision(log_det_w, dof, n_features)
    log_weights = expected_log_weights(posterior.concentration, prior_type)
    # E[ln p(X | Z, mu, Lambda)] + E[ln p(Z | pi)] (Bishop 10.71-10.72)
    weighted_scatter = (nk.sum() if covariance.shared else per_component(nk, scatter)) * scatter
    data = np.sum(
        nk * (0.5 * expected_log_det - 0.5 * n_features * (log(2 * pi) + 1.0 / beta) + log_weights)
    )
    data -= 0.5 * np.sum(traces(covariance, precisions, weighted_scatter, n_features))
    data -= 0.5 * np.sum(nk * quadratic_forms(covariance, precisions, means - m))
    # KL(q(mu_k | Lambda_k) || p(mu_k | Lambda_k)), in expectation over q(Lambda_k)
    ratio = priors.mean_precision / beta
    mean_divergence = 0.5 * n_features * (ratio - np.log(ratio) - 1.0)
    mean_divergence += (
        0.5 * priors.mean_precision * quadratic_forms(covariance, precisions, m - priors.mean)
    )
    # KL(q(Lambda_k) || p(Lambda_k)), Wishart (a shared q counted once per component)
    prior_traces = np.broadcast_to(
        traces(covariance, precisions, priors.covariance, n_features), nk.shape
    )
    wishart_divergence = (
        log_wishart_normalizer(log_det_w, dof, n_features)
        - log_wishart_normalizer(priors.log_det_scale, priors.degrees_of_freedom, n_features)
        + 0.5 * (dof - priors.degrees_of_freedom) * expected_log_det
        - 0.5 * dof * n_features
        + 0.5 * prior_traces
    )
    divergence = weights_divergence(
        posterior.concentration, priors.weight_concentration, prior_type
    )
    return float(entropy + data - divergence - mean_divergence.sum() - wishart_divergence.sum())


# ---------------------------------------------------------------------- E-step and predictive


def expected_log_gaussian_norm(log_det_factors, degrees_of_freedom, mean_precision, n_features):
    """The per-component constant of E_q[ln N(x | mu_k, Lambda_k^-1)] (Bishop 10.64-10.65):
    ``(E ln|Lambda_k| - d ln 2 pi - d / beta_k) / 2``; the rest is
    ``-||(x - m_k) U_k||^2 / 2``."""
    log_det_w = log_det_scale(log_det_factors, degrees_of_freedom, n_features)
    expected = expected_log_det_precision(log_det_w, degrees_of_freedom, n_features)
    return 0.5 * (expected - n_features * (log(2 * pi) + 1.0 / mean_precision))


class StudentTerms(NamedTuple):
    """Each component of the posterior predictive, a Student-t (Bishop 10.81-10.82):
    ``log_norm`` (its log-normaliser plus ln weights_), ``scale`` (L_k = scale_k
    E[Lambda_k]), ``dof`` (nu_k + 1 - d), ``power`` ((dof + d) / 2) and
    ``log_weights`` (ln weights_)."""

    log_norm: np.ndarray
    scale: np.ndarray
    dof: np.ndarray
    power: np.ndarray
    log_weights: np.ndarray


def student_terms(log_weights, log_det_factors, degrees_of_freedom, mean_precision, n_features):
    """The Student-t of each component, ``St(x | m_k, L_k, nu_k + 1 - d)`` with
    ``L_k = (nu_k + 1 - d) beta_k / (1 + beta_k) W_k``."""
    dof = degrees_of_freedom + 1.0 - n_features
    scale = dof * mean_precision / ((1.0 + mean_precision) * degrees_of_freedom)
    log_norm = (
        gammaln(0.5 * (dof + n_features))
        - gammaln(0.5 * dof)
        + 0.5 * n_features * (np.log(scale) - np.log(dof * pi))
        + log_det_factors
        + log_weights
    )
    return StudentTerms(log_norm, scale, dof, 0.5 * (dof + n_features), log_weights)


def student_log_density(terms, mahalanobis):
    """``ln weights_k + ln St(x | k)`` from the squared distances under E[Lambda_k], (n, K)."""
    log_density = np.log1p(mahalanobis * (terms.scale / terms.dof))
    log_density *= -terms.power
    log_density += terms.log_norm
    return log_density


def student_observed_log_density(terms, mahalanobis, log_det, n_observed):
    """``ln weights_k + ln St(x_O | k)`` of rows observed on ``n_observed`` (n,) coordinates.

    A Student-t's marginal on a block of coordinates is a Student-t with the
    same degrees of freedom, the block of the location and of the scale
    matrix's inverse; ``mahalanobis`` and ``log_det`` (n, K) are the squared
    distance of the observed values and ``-ln|E[Lambda_k]^-1_OO| / 2``.
    """
    observed = n_observed[:, np.newaxis].astype(np.float64)
    dof = terms.dof
    log_density = np.log1p(mahalanobis * (terms.scale / dof))
    log_density *= -0.5 * (dof + observed)
    log_density += gammaln(0.5 * (dof + observed)) - gammaln(0.5 * dof)
    log_density += 0.5 * observed * (np.log(terms.scale) - np.log(dof * pi))
    log_density += log_det + terms.log_weights
    return log_density


class StudentImputation:
    """The predictive's conditional of the missing values of rows given the observed ones.

    Given x_O, component k's Student-t ``St(m_k, L_k, dof_k)`` is a Student-t
    on x_M with ``dof_k + d_O`` degrees of freedom, the Gaussian conditional
    mean of precision L_k (that of E[Lambda_k]: ``gaussian``'s, Gaussian
    conditionals of E[Lambda_k]) and the scale matrix
    ``(dof_k + delta) / (dof_k + d_O) (L_k)_MM^-1``, delta the squared
    distance of x_O under L_k. A draw is the Gaussian conditional's noise
    (covariance ``E[Lambda_k]_MM^-1``) times ``sqrt((dof_k + delta) /
    (scale_k chi2))``, chi2 of ``dof_k + d_O`` degrees of freedom, drawn by
    inverting its distribution function at a uniform.
    """

    def __init__(self, gaussian, terms, mahalanobis, n_observed):
        self.gaussian = gaussian
        self.residuals = gaussian.residuals
        self._spread = (terms.dof + terms.scale * mahalanobis) / terms.scale
        self._dof = terms.dof + n_observed[:, np.newaxis]

    def expected(self, posterior, means):
        return self.gaussian.expected(posterior, means)

    def draw(self, labels, means, standard_normal, uniform):
        rows = np.arange(labels.size)
        dof = self._dof[rows, labels]
        chi2 = 2.0 * gammaincinv(0.5 * dof, np.clip(uniform, np.finfo(float).tiny, 1.0))
        noise = self.gaussian.noise(labels, standard_normal)
        noise *= np.sqrt(self._spread[rows, labels] / chi2)[:, np.newaxis]
        return self.residuals[labels, rows] + means[labels] + noise


def as_float(value):
    return check_array(value, dtype=[np.float64, np.float32], ensure_2d=False)


def prior_rank(covariance):
    """Dimensions of one covariance of the structure (a prior's): 2, 1 or 0."""
    return 2 if covariance.matrices else (0 if covariance.template == ("K",) else 1)


def prior_type_of(concentration):
    """The weight prior a fitted ``weight_concentration_`` belongs to."""
    return "dirichlet_process" if isinstance(concentration, tuple) else "dirichlet_distribution"


def normalized_moments(moments, count):
    """Moments of q(Z) as online EM averages them: shares of the rows, means, covariances."""
    return {"n": moments.nk / count, "means": moments.means, "covariances": moments.scatter}
