"""The E-step of probabilistic PCA and factor analysis on a device (array API).

The device twins (``skem._core._device``) of ``ProbabilisticPCA``'s and
``FactorAnalysis``' E-step and log-densities: ``ppca_posterior`` and
``ppca_sufficient_statistics`` (``_lowrank``) for a block of complete rows,
written in the array API standard, in the same statistics format, so the
M-step is the host's. Rows whose quadratic form cancels (a noise variance
near its floor) are recomputed as a sum of squares, as on the host; a block
with a row far enough to overflow returns None: the host takes that block
with its exact scaling of such rows.
"""

from math import log, pi

import numpy as np

from .._core._device import device_array, statistics_to_host
from .._core._namespaces import to_host
from ._lowrank import CANCELLATION


class LowRankDeviceTerms:
    """``ppca_posterior``'s terms on a device, for one set of parameters.

    ``components`` (q, d) and ``mean`` are in the lemma's coordinates (a
    factor analyser's divided by ``deviations``, its noise 1); ``log_shift``
    is added to every log-density (a factor analyser's ``-sum log s``).
    """

    def __init__(self, xp, device, components, mean, noise_variance, precision_terms, *,
                 deviations=None, log_shift=0.0, has_missing=False, per_feature=False):  # fmt: skip
        def put(array):
            return device_array(array, xp, device)

        precision_inverse, log_det_precision = precision_terms
        self.xp = xp
        self.loadings = put(components.T)
        self.mean = put(mean)
        self.precision_inverse = put(precision_inverse)
        self.deviations = None if deviations is None else put(deviations)
        self.noise_variance = float(noise_variance)
        self.n_features, self.n_latent = components.shape[1], components.shape[0]
        # the posterior covariance in the corner of [E z, 1]'s second moments
        corner = np.zeros((self.n_latent + 1, self.n_latent + 1))
        corner[:-1, :-1] = noise_variance * precision_inverse
        self.covariance = put(corner)
        self.log_constant = (
            -0.5
            * (
                self.n_features * log(2 * pi)
                + (self.n_features - self.n_latent) * log(noise_variance)
                + float(log_det_precision)
            )
            + log_shift
        )
        self.has_missing, self.per_feature = has_missing, per_feature

    def posterior(self, block):
        """``(log-densities, residuals, squared norms, posterior means)``, or None
        for a block with a far row (rows whose quadratic form cancels are
        recomputed as sums of squares)."""
        xp = self.xp
        rows = xp.astype(block, xp.float64, copy=False)
        if self.deviations is not None:
            rows = rows / self.deviations
        residual = rows - self.mean
        squared = xp.sum(residual * residual, axis=1)
        projected = residual @ self.loadings
        posterior_mean = projected @ self.precision_inverse
        quadratic = (squared - xp.sum(projected * posterior_mean, axis=1)) / self.noise_variance
        far = ~(squared < 1e300) | ~xp.isfinite(quadratic)
        if bool(xp.any(far)):
            return None
        cancelled = squared > CANCELLATION * self.noise_variance * quadratic
        if bool(xp.any(cancelled)):  # as a sum of squares, as on the host
            left = residual - posterior_mean @ xp.matrix_transpose(self.loadings)
            exact = xp.sum(left * left, axis=1) / self.noise_variance
            exact = exact + xp.sum(posterior_mean * posterior_mean, axis=1)
            quadratic = xp.where(cancelled, exact, quadratic)
        return self.log_constant - 0.5 * quadratic, residual, squared, posterior_mean

    def log_density(self, block):
        """``log p(x)`` of each row of a block, on the host (None: the host's)."""
        posterior = self.posterior(block)
        return None if posterior is None else np.array(to_host(posterior[0]))

    def block_terms(self, block, weights=None):
        """The E-step of a block: ``(bound sum, weight sum, statistics)`` on the host
        (None: the host's)."""
        xp = self.xp
        posterior = self.posterior(block)
        if posterior is None:
            return None
        log_density, residual, squared, posterior_mean = posterior
        if weights is None:
            weights = xp.ones(block.shape[0], dtype=xp.float64, device=squared.device)
        weights = xp.astype(weights, xp.float64, copy=False)
        total = xp.sum(weights)
        augmented = xp.concat([posterior_mean, xp.ones_like(posterior_mean[:, :1])], axis=1)
        weighted = augmented * weights[:, None]
        shared = xp.matrix_transpose(augmented) @ weighted
        statistics = {
            "shared_moments": shared + total * self.covariance,
            "cross": xp.matrix_transpose(residual) @ weighted,
            "squares": xp.sum(weights * squared),
            "n_observed": total * self.n_features,
        }
        if self.per_feature:
            statistics["feature_squares"] = weights @ (residual * residual)
            statistics["feature_observed"] = xp.ones_like(residual[0, :]) * total
        host = statistics_to_host(statistics)
        if self.has_missing:
            host["feature_moments"] = np.zeros((self.n_features, (self.n_latent + 1) ** 2))
        return float(xp.sum(weights * log_density)), float(total), host


def ppca_device_function(model, function, xp, device):
    """``ProbabilisticPCA._device_function``: the twin of its E-step (``_block_terms``)."""
    if function != model._block_terms:
        return None
    terms = LowRankDeviceTerms(
        xp, device, model.components_, model.mean_, model.noise_variance_, model._terms(),
        has_missing=getattr(model, "_has_missing", False),
    )  # fmt: skip
    return terms.block_terms


def factor_analysis_device_function(model, function, xp, device):
    """``FactorAnalysis._device_function``: PPCA's twin in the coordinates scaled by
    1 / sqrt(psi), with unit noise (``FactorAnalysis._posterior``)."""
    if function != model._block_terms:
        return None
    deviations, scaled_components, precision_terms = model._terms()
    terms = LowRankDeviceTerms(
        xp, device, scaled_components, model.mean_ / deviations, 1.0, precision_terms,
        deviations=deviations, log_shift=-float(np.log(deviations).sum()),
        has_missing=getattr(model, "_has_missing", False), per_feature=True,
    )  # fmt: skip
    return terms.block_terms
