"""The ELBO of a minibatch, as training computes it, and its numeric helpers.

``_MinibatchELBO`` evaluates the evidence lower bound of a minibatch and its
gradient in place, feature-major, in buffers kept from batch to batch; the
scoring form of the same formulas is ``NetworkModelMixin`` (``_model.py``).
"""

from math import log, pi
from types import SimpleNamespace

import numpy as np
from scipy import linalg

from ._mlp import MinibatchNetwork, feature_major
from ._mlp import n_parameters as count_parameters

LOG_2PI = log(2 * pi)
#: The encoder's log-variance is clipped to this range (its gradient is zero outside).
LOG_VARIANCE_RANGE = (-30.0, 20.0)


def moment_matched_normal(n_draws, n_dimensions, random_state):
    """Standard normal draws shifted and whitened to mean 0 and covariance I exactly.

    Every row is scored with these same draws, so their sampling error would
    be shared by all rows rather than average out; matching the first two
    moments removes it wherever the integrand is quadratic in z and shrinks
    it elsewhere. With a single draw this is the posterior mean.
    """
    noise = random_state.standard_normal(size=(n_draws, n_dimensions))
    if n_draws == 1:
        return np.zeros_like(noise)
    noise -= noise.mean(axis=0)
    if n_draws > n_dimensions:
        covariance = noise.T @ noise / n_draws
        # scipy once per scoring call, on a small matrix, before the row loop
        noise = linalg.solve_triangular(
            linalg.cholesky(covariance, lower=True), noise.T, lower=True
        ).T
    return noise


def softplus(x):
    """log(1 + e^x) without overflow, as ``np.logaddexp(0, x)`` but faster."""
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def softplus_and_sigmoid(x, softplus_out, sigmoid_out):
    """Write log(1 + e^x) and 1 / (1 + e^-x) into the buffers, without overflow.

    Both come from one exponential: softplus(x) = max(x, 0) + log1p(e^-|x|)
    and sigmoid(x) = exp(x - softplus(x)), whose exponent is never positive.
    """
    np.abs(x, out=sigmoid_out)
    np.negative(sigmoid_out, out=sigmoid_out)
    np.exp(sigmoid_out, out=sigmoid_out)
    np.log1p(sigmoid_out, out=softplus_out)
    np.maximum(x, 0.0, out=sigmoid_out)
    softplus_out += sigmoid_out
    np.subtract(x, softplus_out, out=sigmoid_out)
    np.exp(sigmoid_out, out=sigmoid_out)


class _MinibatchELBO:
    """The ELBO of a minibatch and its gradient, in buffers reused from batch to batch.

    Holds both networks (:class:`skem.neural_network._mlp.MinibatchNetwork`) on views of
    ``parameters`` and of one flat gradient buffer, and the buffers of the
    latent and reconstruction terms, for up to ``max_rows`` rows. Inside,
    a batch is feature-major (one column per row) so that every array is
    contiguous. The formulas are those of ``AmortizedVAE._reconstruction``
    and ``_encode`` (which score), written as in-place passes.

    ``load`` writes a batch into the buffers, then a call computes; it
    returns views into the buffers, valid until the next call.

    With ``masked=True`` a row of the data holds the zero-filled values
    followed by the observed mask (1 observed, 0 missing), as made by
    ``AmortizedVAE._training_rows``: the likelihood and its gradient then
    count the observed coordinates only. The encoder reads the mask too when
    the model has mask inputs; otherwise it reads the zero-filled values.
    """

    def __init__(self, vae, parameters, max_rows, masked=False, n_samples=1):
        self.n_samples = n_samples
        max_rows *= n_samples  # a column per row and draw
        self.parameters = parameters
        self.gradient = np.empty_like(parameters)
        self.n_latent = vae._fitted("n_components")
        self.n_features = vae.n_features_in_
        self.masked = masked
        self.likelihood = vae.likelihood
        if self.likelihood == "gaussian":  # one per feature, a column against the rows
            self.variance_floor = vae._decoder_floor().astype(parameters.dtype)[:, np.newaxis]
        encoder_shapes, decoder_shapes = vae._network_shapes()
        used = count_parameters(encoder_shapes)
        self.encoder = MinibatchNetwork(
            parameters[:used], self.gradient[:used], encoder_shapes, vae.activation, max_rows
        )
        self.decoder = MinibatchNetwork(
            parameters[used:], self.gradient[used:], decoder_shapes, vae.activation, max_rows
        )
        self.n_outputs = decoder_shapes[-1][1]
        # the mask is read by the likelihood but is no input of the encoder
        self.separate_mask = masked and encoder_shapes[0][0] == self.n_features
        dtype = parameters.dtype
        # name: (entries per row of the batch, dtype), None for a vector of one per row
        latent, features = self.n_latent, self.n_features
        self.data_width = 2 * features if masked else features
        self.layout = {
            "noise": (latent, dtype),
            "log_variance": (latent, dtype),
            "std": (latent, dtype),
            "variance": (latent, dtype),
            "scaled_noise": (latent, dtype),
            "latent_scratch": (latent, dtype),
            "inside": (latent, bool),
            "below": (latent, bool),
            "encoder_gradient": (2 * latent, dtype),
            "output_gradient": (self.n_outputs, dtype),
            "softplus": (features, dtype),
            "sigmoid": (features, dtype),
            "scratch": (features, dtype),
            "gathered": (self.data_width, dtype),
            "row_scale": (None, dtype),
            "kl_scale": (None, dtype),
            "kl": (None, dtype),
            "elbo": (None, dtype),
        }
        if self.separate_mask:
            self.layout["observed"] = (features, dtype)
        self.buffers = {
            name: np.empty((width or 1) * max_rows, dtype=kind)
            for name, (width, kind) in self.layout.items()
        }
        self._views = {}

    def views(self, n_rows):
        """The buffers as arrays for a batch of ``n_rows`` (built once per batch size)."""
        views = self._views.get(n_rows)
        if views is None:
            views = {
                name: self.buffers[name][:n_rows]
                if width is None
                else feature_major(self.buffers[name], width, n_rows)
                for name, (width, _) in self.layout.items()
            }
            # the batch as drawn (row-major), before it is transposed into the input
            views["gathered"] = feature_major(self.buffers["gathered"], n_rows, self.data_width)
            views["input"] = self.encoder.input(n_rows)
            views["latent"] = self.decoder.input(n_rows)
            # what the likelihood reads: the values and, with missing values, the mask
            features = self.n_features
            if not self.masked:
                views["values"], views["observed"] = views["input"], None
            elif not self.separate_mask:
                views["values"], views["observed"] = (
                    views["input"][:features],
                    views["input"][features:],
                )
            else:
                views["values"] = views["input"]
            views = self._views[n_rows] = SimpleNamespace(**views)
        return views

    def load(self, data, rows):
        """Write ``data[rows]``, transposed, into the input (and the mask, if apart).

        With ``n_samples`` draws per row each row is written that many times
        in a row (columns ``i * n_samples`` to ``(i + 1) * n_samples - 1``).
        """
        if self.n_samples > 1:
            rows = np.repeat(rows, self.n_samples)
        views = self.views(rows.size)
        np.take(data, rows, axis=0, out=views.gathered)
        if self.separate_mask:
            np.copyto(views.input, views.gathered[:, : self.n_features].T)
            np.copyto(views.observed, views.gathered[:, self.n_features :].T)
        else:
            np.copyto(views.input, views.gathered.T)

    def __call__(self, n_rows, sample_weight, noise, kl_weight):
        """Per-row bound, and the gradient of the weighted mean objective.

        With one draw per row: the ELBO ``rec_i - KL_i`` (KL in closed form)
        and the gradient of ``sum_i w_i (rec_i - kl_weight KL_i) / sum w``.
        With k = ``n_samples`` draws: the importance-weighted bound
        ``log (1/k) sum_j exp(log w_ij)``, ``log w_ij = log p(x_i|z_ij) +
        log p(z_ij) - log q(z_ij|x_i)`` (Burda et al. 2015), and the gradient
        of its weighted mean with the KL part of ``log w_ij`` times
        ``kl_weight``. ``noise`` is (n_rows * n_samples, n_components), the
        draws of row i in rows ``i * n_samples`` onwards (as ``load``).
        """
        if self.n_samples > 1:
            return self._importance_weighted(n_rows, sample_weight, noise, kl_weight)
        n_latent, v = self.n_latent, self.views(n_rows)
        if sample_weight is None:
            v.row_scale.fill(1.0 / n_rows)
        else:
            np.divide(sample_weight, sample_weight.sum(), out=v.row_scale)
        np.multiply(v.row_scale, kl_weight, out=v.kl_scale)

        mean, raw_log_variance = self._draw_latent(v, n_rows, noise)
        log_variance, variance = v.log_variance, v.variance
        np.multiply(v.std, v.std, out=variance)
        scratch = v.latent_scratch
        np.multiply(mean, mean, out=scratch)
        scratch += variance
        scratch -= log_variance
        np.sum(scratch, axis=0, out=v.kl)
        v.kl -= n_latent
        v.kl *= 0.5

        # log p(x|z), and its gradient with respect to the decoder output
        decoded = self.decoder.forward(n_rows)
        elbo = self._reconstruction(v, decoded)
        elbo -= v.kl

        latent_gradient = self.decoder.backward(n_rows, v.output_gradient)
        gradient = v.encoder_gradient
        mean_gradient, log_variance_gradient = gradient[:n_latent], gradient[n_latent:]
        # d/d mu: dz/dmu = 1, and the KL term's mu
        np.multiply(mean, v.kl_scale, out=mean_gradient)
        np.subtract(latent_gradient, mean_gradient, out=mean_gradient)
        # d/d log sigma^2: dz/dlog sigma^2 = sigma eps / 2, and the KL term's (sigma^2 - 1) / 2
        np.multiply(latent_gradient, v.scaled_noise, out=log_variance_gradient)
        np.subtract(variance, 1.0, out=scratch)
        scratch *= v.kl_scale
        log_variance_gradient -= scratch
        log_variance_gradient *= 0.5
        self._encoder_backward(v, n_rows, raw_log_variance)
        return elbo, self.gradient

    def _draw_latent(self, v, n_columns, noise):
        """q(z|x) of the loaded columns and the reparameterised draw z = mu + sigma * eps.

        Writes the clipped log-variance, sigma, the noise, sigma * eps and z
        into the buffers; returns the encoder's mean and raw log-variance.
        """
        n_latent = self.n_latent
        encoded = self.encoder.forward(n_columns)
        mean, raw_log_variance = encoded[:n_latent], encoded[n_latent:]
        np.clip(raw_log_variance, *LOG_VARIANCE_RANGE, out=v.log_variance)
        np.multiply(v.log_variance, 0.5, out=v.std)
        np.exp(v.std, out=v.std)
        np.copyto(v.noise, noise.T, casting="same_kind")
        np.multiply(v.std, v.noise, out=v.scaled_noise)
        np.add(mean, v.scaled_noise, out=v.latent)
        return mean, raw_log_variance

    def _encoder_backward(self, v, n_columns, raw_log_variance):
        """The encoder's backward pass from ``v.encoder_gradient``, the log-variance's
        gradient zeroed outside the clipping range."""
        np.greater(raw_log_variance, LOG_VARIANCE_RANGE[0], out=v.inside)
        v.inside &= np.less(raw_log_variance, LOG_VARIANCE_RANGE[1], out=v.below)
        v.encoder_gradient[self.n_latent :] *= v.inside
        self.encoder.backward(n_columns, v.encoder_gradient, input_gradient=False)

    def _importance_weighted(self, n_rows, sample_weight, noise, kl_weight):
        """``__call__`` with k > 1 draws per row: the IWAE bound and its gradient.

        The gradient of log (1/k) sum_j w_ij is sum_j wbar_ij grad log w_ij
        (wbar the normalised weights of row i), so each column's gradient is
        that of its own log w_ij scaled by the row's share of the batch times
        wbar_ij. With z = mu + sigma eps, log p(z) - log q(z|x) is
        ``-|z|^2 / 2 + |eps|^2 / 2 + sum log sigma`` (the constants cancel):
        its derivative is -z along z, and 1/2 per log sigma^2 directly.
        """
        k = self.n_samples
        n_columns, n_latent = n_rows * k, self.n_latent
        v = self.views(n_columns)
        weights = (
            np.full(n_rows, 1.0 / n_rows)
            if sample_weight is None
            else (sample_weight / sample_weight.sum())
        )
        v.row_scale.fill(1.0)  # the likelihood's gradient, scaled below

        _, raw_log_variance = self._draw_latent(v, n_columns, noise)
        log_variance = v.log_variance
        # KL_ij = log q(z|x) - log p(z), sampled: (|z|^2 - |eps|^2 - sum log sigma^2) / 2
        scratch = v.latent_scratch
        np.multiply(v.latent, v.latent, out=scratch)
        scratch -= v.noise * v.noise
        scratch -= log_variance
        np.sum(scratch, axis=0, out=v.kl)
        v.kl *= 0.5

        decoded = self.decoder.forward(n_columns)
        reconstruction = self._reconstruction(v, decoded)  # into v.elbo
        log_weights = (reconstruction - v.kl).reshape(n_rows, k)
        top = log_weights.max(axis=1, keepdims=True)
        shares = np.exp(log_weights - top)
        totals = shares.sum(axis=1, keepdims=True)
        bound = top[:, 0] + np.log(totals[:, 0] / k)
        if kl_weight != 1.0:  # the gradient's weights are those of the weighted objective
            weighted = (reconstruction - kl_weight * v.kl).reshape(n_rows, k)
            shares = np.exp(weighted - weighted.max(axis=1, keepdims=True))
            totals = shares.sum(axis=1, keepdims=True)
        column_scale = v.row_scale
        np.multiply(shares / totals, weights[:, np.newaxis], out=column_scale.reshape(n_rows, k))
        v.output_gradient *= column_scale

        latent_gradient = self.decoder.backward(n_columns, v.output_gradient)
        gradient = v.encoder_gradient
        mean_gradient, log_variance_gradient = gradient[:n_latent], gradient[n_latent:]
        # d log w / d mu = g_z - kl_weight z; d / d log sigma^2 = that times sigma eps / 2,
        # plus kl_weight / 2
        np.multiply(v.latent, column_scale * kl_weight, out=mean_gradient)
        np.subtract(latent_gradient, mean_gradient, out=mean_gradient)
        np.multiply(mean_gradient, v.scaled_noise, out=log_variance_gradient)
        log_variance_gradient += column_scale * kl_weight
        log_variance_gradient *= 0.5
        self._encoder_backward(v, n_columns, raw_log_variance)
        return bound, self.gradient

    def _reconstruction(self, v, decoded):
        """log p(x|z) of each row into ``v.elbo``, its gradient into ``v.output_gradient``.

        The gradient is with respect to ``decoded`` (feature-major), times
        ``v.row_scale``. Missing coordinates (``v.observed`` zero) add nothing
        to either: the likelihood factorises over the features given z.
        """
        X, gradient, row_scale, elbo = v.values, v.output_gradient, v.row_scale, v.elbo
        sigmoid, scratch, observed = v.sigmoid, v.scratch, v.observed
        if self.likelihood == "bernoulli":
            softplus_and_sigmoid(decoded, v.softplus, sigmoid)
            np.multiply(X, decoded, out=scratch)
            scratch -= v.softplus
            if observed is not None:
                scratch *= observed
            np.sum(scratch, axis=0, out=elbo)
            np.subtract(X, sigmoid, out=gradient)
            if observed is not None:
                gradient *= observed
            gradient *= row_scale
            return elbo
        n_features = self.n_features
        mean, raw = decoded[:n_features], decoded[n_features:]
        mean_gradient, raw_gradient = gradient[:n_features], gradient[n_features:]
        softplus_and_sigmoid(raw, v.softplus, sigmoid)
        variance = v.softplus
        variance += self.variance_floor
        residual = np.subtract(X, mean, out=scratch)
        standardized = np.divide(residual, variance, out=mean_gradient)
        # -0.5 (log 2 pi + log variance + residual^2 / variance), the log in raw_gradient's room
        residual *= standardized
        residual += np.log(variance, out=raw_gradient)
        if observed is None:
            np.sum(residual, axis=0, out=elbo)
            elbo += n_features * LOG_2PI
        else:
            residual += LOG_2PI
            residual *= observed
            np.sum(residual, axis=0, out=elbo)
        elbo *= -0.5
        # d/d raw = 0.5 (standardized^2 - 1 / variance) sigmoid(raw)
        np.reciprocal(variance, out=variance)
        np.multiply(standardized, standardized, out=raw_gradient)
        raw_gradient -= variance
        raw_gradient *= sigmoid
        if observed is not None:
            mean_gradient *= observed
            raw_gradient *= observed
        mean_gradient *= row_scale
        raw_gradient *= row_scale
        raw_gradient *= 0.5
        return elbo
