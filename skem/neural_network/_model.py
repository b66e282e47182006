"""The VAE's model on its networks, as scoring computes it, row by row in float64.

The encoder q(z|x), the decoder p(x|z) and the terms of the ELBO of each row,
with the standardisation and the missingness mask the networks read, and the
checks of the rows the model can read. Training computes the same in place
(``_MinibatchELBO``, ``_elbo.py``).
"""

import numpy as np
from scipy.special import expit

from .._core import check_rows_observed
from .._core._missing import missing_mask
from ._elbo import LOG_2PI, LOG_VARIANCE_RANGE, softplus
from ._mlp import forward, layer_shapes, unpack


class NetworkModelMixin:
    """The networks of ``AmortizedVAE`` and the densities they define.

    Reads the estimator's fitted state: ``parameters_``, ``feature_mean_``,
    ``feature_scale_``, ``n_features_in_``, ``_hidden_sizes``,
    ``_mask_inputs`` and the network parameters as fitted (``_fitted``).
    """

    def _network_shapes(self):
        n_features, n_latent = self.n_features_in_, self._fitted("n_components")
        output_width = 2 * n_features if self._fitted("likelihood") == "gaussian" else n_features
        n_inputs = 2 * n_features if self._mask_inputs else n_features
        encoder = layer_shapes([n_inputs, *self._hidden_sizes, 2 * n_latent])
        decoder = layer_shapes([n_latent, *self._hidden_sizes[::-1], output_width])
        return encoder, decoder

    def _networks(self, parameters):
        """(encoder layers, decoder layers) as views into a flat buffer."""
        encoder_shapes, decoder_shapes = self._network_shapes()
        encoder, used = unpack(parameters, encoder_shapes)
        decoder, _ = unpack(parameters[used:], decoder_shapes)
        return encoder, decoder

    def _decoder_floor(self):
        """Floor of each feature's decoder variance in the standardised units the
        networks work in: ``variance_floor`` times the squared ratio of the median
        feature scale to the feature's own (``decoder_variance_floor_`` in the
        user's units), its square clipped to [1e-30, 1e30] (in logarithms, so
        that no scale overflows) and so every floor a float32 number."""
        log_ratio = np.log(decoder_floor_scale(self.feature_scale_)) - np.log(self.feature_scale_)
        return self._fitted("variance_floor") * np.exp(
            np.clip(2.0 * log_ratio, *FLOOR_RATIO_LOG_RANGE)
        )

    def _standardize(self, X, dtype):
        return ((X - self.feature_mean_) / self.feature_scale_).astype(dtype, copy=False)

    def _log_jacobian(self, X):
        """log of the standardisation's Jacobian for each row: log ``feature_scale_``
        summed over its observed coordinates (one number when X is complete)."""
        log_scale = np.log(self.feature_scale_)
        missing = missing_mask(X)
        return log_scale.sum() if missing is None else ~missing @ log_scale

    def _mean_log_jacobian(self, X, weights):
        jacobian = self._log_jacobian(X)
        return float(jacobian if np.ndim(jacobian) == 0 else np.average(jacobian, weights=weights))

    def _split_missing(self, X_standardized):
        """(zero-filled values, mask of observed entries as floats), or (X, None) if complete."""
        missing = missing_mask(X_standardized)
        if missing is None:
            return X_standardized, None
        return np.where(missing, 0.0, X_standardized), (~missing).astype(X_standardized.dtype)

    def _encoder_input(self, values, observed):
        """What the encoder reads: the values, and the mask if it has mask inputs."""
        if not self._mask_inputs:
            return values
        return np.hstack([values, np.ones_like(values) if observed is None else observed])

    # ------------------------------------------------------------------ the ELBO

    def _reconstruction(self, X, decoded, gradient=True, observed=None):
        """log p(x|z) of each row and its gradient with respect to the decoder output.

        The gradient is None with ``gradient=False`` (scoring). With
        ``observed`` (1 observed, 0 missing; X zero-filled), only the observed
        coordinates count. Training computes the same in place, feature-major
        (``_MinibatchELBO``).
        """
        n_features = X.shape[1]
        if self._fitted("likelihood") == "bernoulli":
            terms = X * decoded - softplus(decoded)
            if observed is not None:
                terms = np.where(observed > 0, terms, 0.0)
            log_likelihood = np.sum(terms, axis=1)
            if not gradient:
                return log_likelihood, None
            output_gradient = X - expit(decoded)
            if observed is not None:
                output_gradient *= observed
            return log_likelihood, output_gradient
        mean, raw = decoded[:, :n_features], decoded[:, n_features:]
        variance = self._decoder_floor() + softplus(raw)
        residual = X - mean
        standardized = residual / variance
        terms = LOG_2PI + np.log(variance) + residual * standardized
        if observed is not None:
            # selected, not multiplied: a missing coordinate's term can be inf
            # (a decoder mean far from its zero fill), and inf * 0 is NaN
            terms = np.where(observed > 0, terms, 0.0)
        log_likelihood = -0.5 * np.sum(terms, axis=1)
        if not gradient:
            return log_likelihood, None
        variance_gradient = 0.5 * (standardized * standardized - 1.0 / variance)
        gradient = np.concatenate([standardized, variance_gradient * expit(raw)], axis=1)
        if observed is not None:
            gradient *= np.tile(observed, 2)
        return log_likelihood, gradient

    def _encode(self, encoder, X):
        activations = forward(encoder, X, self._fitted("activation"))
        output = activations[-1]
        mean, log_variance = (
            output[:, : self._fitted("n_components")],
            output[:, self._fitted("n_components") :],
        )
        return activations, mean, np.clip(log_variance, *LOG_VARIANCE_RANGE)

    def _elbo_terms(self, X_standardized, noise):
        """Per-row reconstruction of each draw from q, and the KL, in float64.

        ``noise`` is (n_draws, n_components), the same draws for every row, or
        (n_rows, n_draws, n_components). Missing coordinates (NaN) are left
        out of the reconstruction.
        """
        encoder, decoder = self._networks(self.parameters_.astype(np.float64))
        values, observed = self._split_missing(X_standardized)
        _, mean, log_variance = self._encode(encoder, self._encoder_input(values, observed))
        std = np.exp(0.5 * log_variance)
        latent = mean[:, np.newaxis, :] + std[:, np.newaxis, :] * noise
        reconstruction, _ = self._decode_draws(decoder, values, observed, latent)
        kl = 0.5 * np.sum(mean * mean + std * std - 1.0 - log_variance, axis=1)
        return reconstruction, kl

    def _decode_draws(self, decoder, values, observed, latent):
        """log p(x_o|z) of each row and draw (latent is (n_rows, n_draws, n_components)),
        and the decoder output of every draw, the draws of a row together."""
        n_rows, n_draws, n_latent = latent.shape
        decoded = forward(decoder, latent.reshape(-1, n_latent), self._fitted("activation"))[-1]
        repeated = np.repeat(values, n_draws, axis=0)
        if observed is not None:
            observed = np.repeat(observed, n_draws, axis=0)
        reconstruction, _ = self._reconstruction(
            repeated, decoded, gradient=False, observed=observed
        )
        return reconstruction.reshape(n_rows, n_draws), decoded

    # ------------------------------------------------------------------ the decoder

    def _decode(self, latent):
        """Decoder mean and, for the Gaussian, standard deviation, in the user's units."""
        _, decoder = self._networks(self.parameters_.astype(np.float64))
        return self._decoder_moments(forward(decoder, latent, self._fitted("activation"))[-1])

    def _decoder_moments(self, decoded):
        """Mean and, for the Gaussian, standard deviation of p(x|z) from the decoder output.

        (The deviation is scaled after its square root: it stays finite where
        the variance in the user's units would overflow.)
        """
        if self._fitted("likelihood") == "bernoulli":
            return expit(decoded), None
        n_features = self.n_features_in_
        mean = decoded[:, :n_features] * self.feature_scale_ + self.feature_mean_
        variance = self._decoder_floor() + np.logaddexp(0, decoded[:, n_features:])
        return mean, np.sqrt(variance) * self.feature_scale_

    def _draw_from_decoder(self, mean, deviation, random_state):
        """One draw from p(x|z) given its moments (``_decoder_moments``)."""
        if self._fitted("likelihood") == "bernoulli":
            return (random_state.uniform(size=mean.shape) < mean).astype(np.float64)
        return mean + deviation * random_state.standard_normal(size=mean.shape)

    def _standardized_decoder_mean(self, decoded):
        """Mean of p(x|z) in the standardised units the networks work in."""
        if self._fitted("likelihood") == "bernoulli":
            return expit(decoded)
        return decoded[:, : self.n_features_in_]


def check_prediction_rows(X, likelihood, allow_unobserved_rows, block=False):
    """X, once its rows are found fit to score: each has an observed value (unless
    ``allow_unobserved_rows``), and a Bernoulli model's are in [0, 1].

    ``block`` for a block of a dask array (whose rows are then counted, not named).
    """
    if not allow_unobserved_rows and missing_mask(X) is not None:
        check_rows_observed(X, block=block)
    check_unit_interval(X, likelihood)
    return X


def check_unit_interval(X, likelihood):
    """Refuse values outside [0, 1] for a Bernoulli likelihood."""
    if likelihood != "bernoulli":
        return
    low, high = value_range(X)
    if low < 0 or high > 1:
        raise ValueError(
            "This model has a Bernoulli likelihood: X must have values in [0, 1]; "
            f"it has values in [{low:.4g}, {high:.4g}]."
        )


def value_range(X):
    """Smallest and largest value of X, ignoring NaN (NaN for an X of NaN only)."""
    if not X.size:
        return 0.0, 0.0
    # fmin and fmax skip NaN without the warning of nanmin and nanmax on all-NaN data
    return float(np.fmin.reduce(X, axis=None)), float(np.fmax.reduce(X, axis=None))


#: The squared ratio of the median feature scale to a feature's own, in the
#: decoder's floor, is clipped to this range (natural logarithms of 1e-30,
#: 1e30): wide enough for any nearly constant feature, narrow enough that the
#: floor of a feature 1e15 times off the median stays a float32 number.
FLOOR_RATIO_LOG_RANGE = (float(np.log(1e-30)), float(np.log(1e30)))


def decoder_floor_scale(feature_scale):
    """The scale of the Gaussian decoder's variance floor: the median of the
    features' standard deviations, robust to a few features on larger scales
    and to near-constant ones."""
    return float(np.median(feature_scale))
