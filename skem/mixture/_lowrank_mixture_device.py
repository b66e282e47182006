"""The E-step of the mixtures of low-rank Gaussians on an accelerator.

``MixtureOfPPCA._device_function`` (and ``MixtureOfFactorAnalyzers``', which
inherits it; ``skem._core._device``; the mixin ``DeviceTwins``): each component's log-density of a
block of complete rows by the matrix-inversion lemma (``component_log_density``
of ``_lowrank_mixture``, rows whose quadratic form cancels recomputed as a sum
of squares, as there), and the statistics of the closed-form M-step
(``scatter_statistics``: ``sum_residual`` and the d x d ``scatter`` about each
component's mean), in the array API standard. A block with a row far enough
to overflow is left to the host, as are the passes of the one-step M-step
(above ``CLOSED_FORM_MAX_FEATURES``) and of the start.
"""

from math import log, pi

import numpy as np

from .._core._device import MixtureDeviceTerms, device_array
from ..decomposition._lowrank import CANCELLATION

#: ``MixtureOfPPCA._device_methods``: the methods that run where the data are.
DEVICE_METHODS = frozenset(
    {"fit", "fit_predict", "predict", "predict_proba", "score_samples", "score", "bic", "aic"}
)


class LowRankMixtureDeviceTerms(MixtureDeviceTerms):
    """A low-rank mixture's E-step terms (``_derive_terms``) on a device.

    In each component's coordinates of the E-step (a factor analyser's scaled
    by 1 / sqrt(psi_k)): the projections giving ``r Psi^-1 W`` (or ``r W``),
    the inverse noise weighting the squared norms, ``M_k^-1``, the loadings
    that reconstruct a row from its posterior mean, and the constants.
    """

    def __init__(self, model, xp, device):
        def put(array):
            return device_array(array, xp, device)

        terms = model._terms()
        means = np.asarray(model.means_, dtype=np.float64)
        n_components, n_features = means.shape
        n_latent = terms["precision_inverses"].shape[-1]
        deviations = terms.get("deviations")
        self.xp = xp
        self.means = [put(mean) for mean in means]
        self.projections = [put(projection.T) for projection in terms["projections"]]
        self.inverse_noise = put(
            terms["inverse_noise"]
            if "inverse_noise" in terms
            else np.ones((n_components, n_features))
        )
        self.precision_inverses = [put(inverse) for inverse in terms["precision_inverses"]]
        self.reconstructions = [put(model._loadings(k).T) for k in range(n_components)]
        self.deviations = None if deviations is None else put(deviations)
        self.noise = [float(noise) for noise in terms["noise"]]
        log_det_covariances = (n_features - n_latent) * np.log(terms["noise"]) + terms[
            "log_det_precisions"
        ]
        log_weights = model._log_weights(np.float64)
        self.log_offset = (
            -0.5 * (n_features * log(2 * pi) + log_det_covariances)
            - terms["log_scales"]
            + log_weights
        ).tolist()

    def log_prob(self, block):
        xp = self.xp
        rows = xp.astype(block, xp.float64, copy=False)
        columns = []
        for k, mean in enumerate(self.means):
            residual = rows - mean
            squared = (residual * residual) @ self.inverse_noise[k, :]
            projected = residual @ self.projections[k]
            posterior_mean = projected @ self.precision_inverses[k]
            quadratic = (squared - xp.sum(projected * posterior_mean, axis=1)) / self.noise[k]
            if bool(xp.any(~(squared < 1e300) | ~xp.isfinite(quadratic))):
                return None  # (a far row: the host scales it)
            cancelled = squared > CANCELLATION * self.noise[k] * quadratic
            if bool(xp.any(cancelled)):  # as a sum of squares, as on the host
                scaled = residual if self.deviations is None else residual / self.deviations[k, :]
                left = scaled - posterior_mean @ self.reconstructions[k]
                exact = xp.sum(left * left, axis=1) / self.noise[k]
                exact = exact + xp.sum(posterior_mean * posterior_mean, axis=1)
                quadratic = xp.where(cancelled, exact, quadratic)
            columns.append(self.log_offset[k] - 0.5 * quadratic)
        return xp.stack(columns, axis=1), rows, None

    def statistics(self, rows, responsibilities, reused):
        xp = self.xp
        sums, scatters = [], []
        for k, mean in enumerate(self.means):
            residual = rows - mean
            weight = responsibilities[:, k]
            sums.append(weight @ residual)
            root = residual * xp.sqrt(weight)[:, None]
            scatters.append(xp.matrix_transpose(root) @ root)
        return {"sum_residual": xp.stack(sums), "scatter": xp.stack(scatters)}


class DeviceTwins:
    """The device twins of the low-rank mixtures (a mixin of ``MixtureOfPPCA``)."""

    _device_methods = DEVICE_METHODS

    def _device_function(self, function, xp, device):
        """The twin of the E-step (``_block_terms``, closed-form M-step only) or of
        the log-densities (``_log_density``), or None."""
        if function == self._log_density:
            return LowRankMixtureDeviceTerms(self, xp, device).log_density
        if function != self._block_terms or not getattr(self, "_closed_form", False):
            return None
        return LowRankMixtureDeviceTerms(self, xp, device).block_terms
