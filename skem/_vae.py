"""AmortizedVAE: a variational autoencoder in numpy, trained on the ELBO.

The encoder q(z|x) is amortised inference; scores are importance-weighted
estimates of log p(x) (Burda et al., 2015) with the same noise for every row.
"""

from math import log, pi
from numbers import Integral, Real
from types import SimpleNamespace

import numpy as np
from scipy import linalg
from scipy.special import expit, logsumexp
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted

from ._base import BaseEM, row_weights, weighted_moments
from ._mlp import (
    ACTIVATIONS,
    Adam,
    MinibatchNetwork,
    feature_major,
    forward,
    glorot_initialize,
    layer_shapes,
    unpack,
)
from ._mlp import n_parameters as count_parameters
from ._monitor import EarlyStoppingMonitor

LOG_2PI = log(2 * pi)
#: The encoder's log-variance is clipped to this range (its gradient is zero outside).
LOG_VARIANCE_RANGE = (-30.0, 20.0)
#: Bias of the decoder's raw variance output for which softplus gives about 1.
UNIT_VARIANCE_BIAS = float(np.log(np.expm1(1.0)))


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

    Holds both networks (:class:`skem._mlp.MinibatchNetwork`) on views of
    ``parameters`` and of one flat gradient buffer, and the buffers of the
    latent and reconstruction terms, for up to ``max_rows`` rows. Inside,
    a batch is feature-major (one column per row) so that every array is
    contiguous. The formulas are those of ``AmortizedVAE._reconstruction``
    and ``_encode`` (which score), written as in-place passes.

    ``load`` writes a batch into the buffers, then a call computes; it
    returns views into the buffers, valid until the next call.
    """

    def __init__(self, vae, parameters, max_rows):
        self.parameters = parameters
        self.gradient = np.empty_like(parameters)
        self.n_latent = vae.n_components
        self.n_features = vae.n_features_in_
        self.likelihood = vae.likelihood
        self.variance_floor = float(vae.variance_floor)
        encoder_shapes, decoder_shapes = vae._network_shapes()
        used = count_parameters(encoder_shapes)
        self.encoder = MinibatchNetwork(
            parameters[:used], self.gradient[:used], encoder_shapes, vae.activation, max_rows
        )
        self.decoder = MinibatchNetwork(
            parameters[used:], self.gradient[used:], decoder_shapes, vae.activation, max_rows
        )
        self.n_outputs = decoder_shapes[-1][1]
        dtype = parameters.dtype
        # name: (entries per row of the batch, dtype), None for a vector of one per row
        latent, features = self.n_latent, self.n_features
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
            "gathered": (features, dtype),
            "row_scale": (None, dtype),
            "kl_scale": (None, dtype),
            "kl": (None, dtype),
            "elbo": (None, dtype),
        }
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
            views["gathered"] = feature_major(self.buffers["gathered"], n_rows, self.n_features)
            views["input"] = self.encoder.input(n_rows)
            views["latent"] = self.decoder.input(n_rows)
            views = self._views[n_rows] = SimpleNamespace(**views)
        return views

    def load(self, data, rows):
        """Write ``data[rows]``, transposed, into the input."""
        views = self.views(rows.size)
        np.take(data, rows, axis=0, out=views.gathered)
        np.copyto(views.input, views.gathered.T)

    def __call__(self, n_rows, sample_weight, noise, kl_weight):
        """Per-row ELBO, and the gradient of sum_i w_i (rec_i - kl_weight KL_i) / sum w.

        ``noise`` is (n_rows, n_components), as ``AmortizedVAE._objective_and_gradient``.
        """
        n_latent, v = self.n_latent, self.views(n_rows)
        if sample_weight is None:
            v.row_scale.fill(1.0 / n_rows)
        else:
            np.divide(sample_weight, sample_weight.sum(), out=v.row_scale)
        np.multiply(v.row_scale, kl_weight, out=v.kl_scale)

        # q(z|x) and the reparameterised draw z = mu + sigma * eps
        encoded = self.encoder.forward(n_rows)
        mean, raw_log_variance = encoded[:n_latent], encoded[n_latent:]
        log_variance, std, variance = v.log_variance, v.std, v.variance
        np.maximum(raw_log_variance, LOG_VARIANCE_RANGE[0], out=log_variance)
        np.minimum(log_variance, LOG_VARIANCE_RANGE[1], out=log_variance)
        np.multiply(log_variance, 0.5, out=std)
        np.exp(std, out=std)
        np.multiply(std, std, out=variance)
        np.copyto(v.noise, noise.T, casting="same_kind")
        np.multiply(std, v.noise, out=v.scaled_noise)
        np.add(mean, v.scaled_noise, out=v.latent)
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
        # zero outside the clipping range
        np.greater(raw_log_variance, LOG_VARIANCE_RANGE[0], out=v.inside)
        v.inside &= np.less(raw_log_variance, LOG_VARIANCE_RANGE[1], out=v.below)
        log_variance_gradient *= v.inside
        self.encoder.backward(n_rows, gradient, input_gradient=False)
        return elbo, self.gradient

    def _reconstruction(self, v, decoded):
        """log p(x|z) of each row into ``v.elbo``, its gradient into ``v.output_gradient``.

        The gradient is with respect to ``decoded`` (feature-major), times ``v.row_scale``.
        """
        X, gradient, row_scale, elbo = v.input, v.output_gradient, v.row_scale, v.elbo
        sigmoid, scratch = v.sigmoid, v.scratch
        if self.likelihood == "bernoulli":
            softplus_and_sigmoid(decoded, v.softplus, sigmoid)
            np.multiply(X, decoded, out=scratch)
            scratch -= v.softplus
            np.sum(scratch, axis=0, out=elbo)
            np.subtract(X, sigmoid, out=gradient)
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
        np.sum(residual, axis=0, out=elbo)
        elbo += n_features * LOG_2PI
        elbo *= -0.5
        # d/d raw = 0.5 (standardized^2 - 1 / variance) sigmoid(raw)
        np.reciprocal(variance, out=variance)
        np.multiply(standardized, standardized, out=raw_gradient)
        raw_gradient -= variance
        raw_gradient *= sigmoid
        mean_gradient *= row_scale
        raw_gradient *= row_scale
        raw_gradient *= 0.5
        return elbo


class AmortizedVAE(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEM):
    """Variational autoencoder: an encoder network q(z|x) trained on the ELBO.

    ``p(z) = N(0, I)``, ``p(x|z)`` is a decoder network (Gaussian with a
    learned, floored per-feature variance, or Bernoulli for data in [0, 1]),
    and ``q(z|x) = N(mu(x), diag sigma^2(x))`` is an encoder network. Both
    are trained together by minibatch Adam on the evidence lower bound

        ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)),

    with the reparameterisation ``z = mu + sigma * eps``. One iteration of
    the shared fit loop is one epoch; ``lower_bounds_`` holds the mean
    training ELBO of each epoch (nats per sample, in the user's units).

    Because q is approximate, the ELBO is not tight: ``score_samples``
    estimates log p(x) by importance sampling with ``n_importance_samples``
    draws from q (Burda et al.'s importance-weighted bound, which with
    independent draws lies below log p(x) on average and approaches it as
    the draws grow). It uses the same draws for every row, so a row's score
    depends neither on the other rows nor on their order. Those shared draws
    are moment-matched (mean 0 and covariance I exactly) so that their
    sampling error does not shift every row the same way; the estimate is
    then no longer a guaranteed lower bound for few draws (with one draw it
    scores the posterior mean), but it converges to log p(x) as they grow. Gaussian data are standardised inside; the Jacobian
    is accounted for, so scores are log-densities of the data as given.

    The networks are numpy: forward and backward passes are written by hand
    (as in scikit-learn's MLP), all parameters live in one flat buffer, and
    Adam updates it in place. Training runs in float32 by default and scores
    in float64.

    Parameters
    ----------
    n_components : int, default=2
        Latent dimension.
    hidden_layer_sizes : tuple of int, default=(128,)
        Widths of the encoder's hidden layers; the decoder mirrors them.
        ``()`` gives affine networks: with a constant decoder variance the
        model is then linear-Gaussian (factor analysis), with a closed-form
        density.
    activation : {'tanh', 'relu'}, default='tanh'
        Hidden-layer activation.
    likelihood : {'gaussian', 'bernoulli'}, default='gaussian'
        Decoder distribution. 'bernoulli' needs data in [0, 1].
    variance_floor : float, default=1e-3
        Floor of the Gaussian decoder variance, in units of each feature's
        variance (the likelihood is unbounded without it).
    batch_size : int, default=64
        Minibatch size.
    learning_rate : float, default=1e-3
        Adam step size.
    max_iter : int, default=500
        Maximum number of epochs.
    tol : float, default=1e-3
        An epoch improves when the monitored bound rises by more than ``tol``.
    n_iter_no_change : int, default=20
        Stop after this many epochs without improvement.
    early_stopping : bool, default=True
        Monitor the bound on a held-out ``validation_fraction`` of the rows
        (recorded in ``validation_bounds_``) and keep the parameters of its
        best epoch; otherwise monitor the training bound.
    validation_fraction : float, default=0.1
        Share of rows held out for early stopping.
    kl_warmup : int, default=10
        Epochs over which the weight of the KL term rises linearly to one
        (``lower_bounds_`` always reports the true ELBO).
    n_importance_samples : int, default=100
        Draws from q per row in ``score_samples`` and ``elbo_samples``; it
        can be changed after fit with ``set_params`` (no refit needed).
    training_dtype : {'float32', 'float64'}, default='float32'
        Precision of training.
    n_init : int, default=1
        Number of restarts; the best final training bound is kept.
    random_state : int, RandomState instance or None, default=None
        All randomness of fit (initial weights, minibatches, noise, the
        validation split, the scoring noise) and the seed of ``sample``. With
        ``warm_start``, a continued fit draws from the generator of the first.
    warm_start : bool, default=False
        Continue training from the fitted networks on the next ``fit``.
    verbose : int, default=0
        Verbosity of the fit loop.
    verbose_interval : int, default=10
        Epochs between progress lines.

    Attributes
    ----------
    parameters_ : ndarray
        All weights and biases, encoder then decoder, layer by layer.
    feature_mean_, feature_scale_ : ndarray of shape (n_features,)
        The standardisation applied before the networks (0 and 1 for
        'bernoulli').
    lower_bounds_ : ndarray of shape ``(n_iter_,)``
        Mean training ELBO of each epoch.
    validation_bounds_ : ndarray of shape ``(n_iter_,)``
        Mean validation ELBO of each epoch (with ``early_stopping``).
    lower_bound_, n_iter_, converged_, n_features_in_
        As in :class:`skem.BaseEM`.

    Examples
    --------
    >>> import numpy as np
    >>> from skem import AmortizedVAE
    >>> rng = np.random.RandomState(0)
    >>> X = np.tanh(rng.normal(size=(400, 2))) @ rng.normal(size=(2, 5))
    >>> vae = AmortizedVAE(n_components=2, max_iter=30, random_state=0).fit(X)
    >>> vae.transform(X[:3]).shape
    (3, 2)
    >>> terms = vae.elbo_samples(X[:3])
    >>> bool(np.allclose(terms["elbo"], terms["reconstruction"] - terms["kl"]))
    True
    """

    _parameter_constraints: dict = {
        **BaseEM._parameter_constraints,
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "hidden_layer_sizes": ["array-like"],
        "activation": [StrOptions(ACTIVATIONS)],
        "likelihood": [StrOptions({"gaussian", "bernoulli"})],
        "variance_floor": [Interval(Real, 0.0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0.0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0.0, 1.0, closed="neither")],
        "kl_warmup": [Interval(Integral, 0, None, closed="left")],
        "n_importance_samples": [Interval(Integral, 1, None, closed="left")],
        "training_dtype": [StrOptions({"float32", "float64"})],
    }

    _fitted_parameters = (
        "parameters_",
        "feature_mean_",
        "feature_scale_",
        "_score_seed",
        "validation_bounds_",
    )
    _fit_scratch = (*BaseEM._fit_scratch, "_training_data", "_step", "_validation_noise")

    def __init__(
        self,
        n_components=2,
        *,
        hidden_layer_sizes=(128,),
        activation="tanh",
        likelihood="gaussian",
        variance_floor=1e-3,
        batch_size=64,
        learning_rate=1e-3,
        max_iter=500,
        tol=1e-3,
        n_iter_no_change=20,
        early_stopping=True,
        validation_fraction=0.1,
        kl_warmup=10,
        n_importance_samples=100,
        training_dtype="float32",
        n_init=1,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
    ):
        super().__init__(
            tol=tol,
            max_iter=max_iter,
            n_init=n_init,
            random_state=random_state,
            warm_start=warm_start,
            verbose=verbose,
            verbose_interval=verbose_interval,
        )
        self.n_components = n_components
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.likelihood = likelihood
        self.variance_floor = variance_floor
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.kl_warmup = kl_warmup
        self.n_importance_samples = n_importance_samples
        self.training_dtype = training_dtype

    # ------------------------------------------------------------------ set-up

    def _check_parameters(self, X, sample_weight):
        sizes = np.asarray(self.hidden_layer_sizes, dtype=object).ravel()
        valid = all(isinstance(size, Integral) and size >= 1 for size in sizes)
        if np.ndim(self.hidden_layer_sizes) > 1 or not valid:
            raise ValueError(
                "hidden_layer_sizes must be a sequence of positive integers, "
                f"got {self.hidden_layer_sizes!r}."
            )
        if self.likelihood == "bernoulli" and (X.min() < 0 or X.max() > 1):
            raise ValueError(
                "likelihood='bernoulli' needs data in [0, 1]; X has values in "
                f"[{X.min():.4g}, {X.max():.4g}]."
            )
        if self.early_stopping:
            n_positive = X.shape[0] if sample_weight is None else np.count_nonzero(sample_weight)
            if n_positive < 2:
                raise ValueError(
                    "early_stopping needs at least two rows of positive sample_weight "
                    "(one to train on, one to validate on)."
                )

    #: The parameters that fix the fitted network; read from the fit after it,
    #: so ``set_params`` cannot change what a fitted model computes.
    _ARCHITECTURE = ("n_components", "activation", "likelihood", "variance_floor", "training_dtype")

    def _prepare_fit(self, X, sample_weight, random_state):
        """Standardise the data and hold out the validation rows, once per fit."""
        super()._prepare_fit(X, sample_weight, random_state)
        if not (self.warm_start and hasattr(self, "converged_")):
            self._architecture = {name: getattr(self, name) for name in self._ARCHITECTURE}
            self._hidden_sizes = self._requested_hidden_sizes()
            self._set_feature_scaling(X, sample_weight)
        self._training_data = self._split_training_data(X, sample_weight, random_state)

    def _requested_hidden_sizes(self):
        sizes = np.asarray(self.hidden_layer_sizes, dtype=object).ravel()
        return tuple(int(size) for size in sizes)

    def _fitted(self, name):
        """A network parameter as fitted (as set, before the first fit)."""
        architecture = getattr(self, "_architecture", None)
        return getattr(self, name) if architecture is None else architecture[name]

    def _fitted_structure(self):
        return dict(self._architecture)

    def _check_same_structure(self):
        super()._check_same_structure()
        if self._requested_hidden_sizes() != self._hidden_sizes:
            raise ValueError(
                "warm_start=True continues the fitted model, which has "
                f"hidden_layer_sizes={self._hidden_sizes!r}; hidden_layer_sizes="
                f"{self.hidden_layer_sizes!r} needs a new fit (warm_start=False)."
            )

    def _set_feature_scaling(self, X, sample_weight):
        if self.likelihood == "gaussian":
            mean, variance = weighted_moments(X, sample_weight)
            # weights concentrated on a few rows leave almost no weighted spread:
            # at least a millionth of the rows' own spread keeps the others in range
            spread = np.abs(X - mean).max(axis=0) if X.shape[0] else np.zeros(X.shape[1])
            scale = np.maximum(np.sqrt(variance), 1e-6 * spread)
            self.feature_mean_ = mean
            self.feature_scale_ = np.where(scale > 0, scale, 1.0)
        else:
            self.feature_mean_ = np.zeros(X.shape[1])
            self.feature_scale_ = np.ones(X.shape[1])

    def _make_monitor(self, X, sample_weight, n_init):
        return EarlyStoppingMonitor(
            self,
            X,
            sample_weight,
            n_init,
            self.n_iter_no_change,
            best_parameters=lambda: {"parameters_": self.parameters_.copy()},
        )

    def _network_shapes(self):
        n_features, n_latent = self.n_features_in_, self._fitted("n_components")
        output_width = 2 * n_features if self._fitted("likelihood") == "gaussian" else n_features
        encoder = layer_shapes([n_features, *self._hidden_sizes, 2 * n_latent])
        decoder = layer_shapes([n_latent, *self._hidden_sizes[::-1], output_width])
        return encoder, decoder

    def _networks(self, parameters):
        """(encoder layers, decoder layers) as views into a flat buffer."""
        encoder_shapes, decoder_shapes = self._network_shapes()
        encoder, used = unpack(parameters, encoder_shapes)
        decoder, _ = unpack(parameters[used:], decoder_shapes)
        return encoder, decoder

    def _initialize(self, X, sample_weight, random_state):
        encoder_shapes, decoder_shapes = self._network_shapes()
        dtype = np.dtype(self._fitted("training_dtype"))
        size = count_parameters(encoder_shapes) + count_parameters(decoder_shapes)
        parameters = np.empty(size, dtype=dtype)
        encoder_size = count_parameters(encoder_shapes)
        glorot_initialize(parameters[:encoder_size], encoder_shapes, random_state)
        glorot_initialize(parameters[encoder_size:], decoder_shapes, random_state)
        self.parameters_ = parameters
        if self._fitted("likelihood") == "gaussian":
            _, decoder = self._networks(self.parameters_)
            decoder[-1][1][self.n_features_in_ :] = UNIT_VARIANCE_BIAS
        self._score_seed = int(random_state.randint(np.iinfo(np.int32).max))
        self._random_state = random_state
        self._optimizer = Adam(size, dtype, self.learning_rate)
        self._epoch = 0
        self.validation_bounds_ = np.array([])

    def _importance_noise(self, n_draws=None):
        """The shared, moment-matched draws from N(0, I) used to score every row.

        They depend only on the seed drawn at fit and on their number, so
        ``set_params(n_importance_samples=...)`` changes the estimate without
        refitting.
        """
        n_draws = self.n_importance_samples if n_draws is None else n_draws
        return moment_matched_normal(
            n_draws, self._fitted("n_components"), np.random.RandomState(self._score_seed)
        )

    def _standardize(self, X, dtype):
        return ((X - self.feature_mean_) / self.feature_scale_).astype(dtype, copy=False)

    def _split_training_data(self, X, sample_weight, random_state):
        """Standardise, drop rows of zero weight, and hold out a validation share."""
        dtype = np.dtype(self._fitted("training_dtype"))
        weights = row_weights(sample_weight, X.shape[0])
        positive = np.flatnonzero(weights > 0)
        data, weights = self._standardize(X[positive], dtype), weights[positive]
        validation = None
        if self.early_stopping:
            order = random_state.permutation(positive.size)
            n_validation = min(
                max(1, int(round(self.validation_fraction * positive.size))), positive.size - 1
            )
            held_out, kept = order[:n_validation], order[n_validation:]
            validation = (data[held_out].astype(np.float64), weights[held_out])  # scored in float64
            data, weights = data[kept], weights[kept]
        return {"train": (data, weights), "validation": validation}

    # ------------------------------------------------------------------ the ELBO

    def _reconstruction(self, X, decoded, gradient=True):
        """log p(x|z) of each row and its gradient with respect to the decoder output.

        The gradient is None with ``gradient=False`` (scoring). Training
        computes the same in place, feature-major (``_MinibatchELBO``).
        """
        n_features = X.shape[1]
        if self._fitted("likelihood") == "bernoulli":
            log_likelihood = np.sum(X * decoded - softplus(decoded), axis=1)
            return log_likelihood, (X - expit(decoded) if gradient else None)
        mean, raw = decoded[:, :n_features], decoded[:, n_features:]
        variance = self._fitted("variance_floor") + softplus(raw)
        residual = X - mean
        standardized = residual / variance
        log_likelihood = -0.5 * np.sum(LOG_2PI + np.log(variance) + residual * standardized, axis=1)
        if not gradient:
            return log_likelihood, None
        variance_gradient = 0.5 * (standardized * standardized - 1.0 / variance)
        gradient = np.concatenate([standardized, variance_gradient * expit(raw)], axis=1)
        return log_likelihood, gradient

    def _encode(self, encoder, X):
        activations = forward(encoder, X, self._fitted("activation"))
        output = activations[-1]
        mean, log_variance = (
            output[:, : self._fitted("n_components")],
            output[:, self._fitted("n_components") :],
        )
        return activations, mean, np.clip(log_variance, *LOG_VARIANCE_RANGE)

    def _objective_and_gradient(self, parameters, X, sample_weight, noise, kl_weight):
        """Per-row ELBO, and the gradient of sum_i w_i (rec_i - kl_weight KL_i) / sum w.

        ``noise`` is the standard normal draw of the reparameterisation, one
        row per row of X. Checked by finite differences; training runs the
        same computation in buffers kept from batch to batch (``_minibatch_step``).
        """
        step = _MinibatchELBO(self, parameters, X.shape[0])
        step.views(X.shape[0]).input[...] = X.T
        return step(X.shape[0], sample_weight, noise, kl_weight)

    def _minibatch_step(self):
        """The training step on ``parameters_``, built once per fit (and restart)."""
        step = getattr(self, "_step", None)
        if step is None or step.parameters is not self.parameters_:
            n_rows = self._training_data["train"][0].shape[0]
            step = self._step = _MinibatchELBO(self, self.parameters_, min(self.batch_size, n_rows))
        return step

    def _elbo_terms(self, X_standardized, noise):
        """Per-row reconstruction (mean over the noise draws) and KL, in float64."""
        encoder, decoder = self._networks(self.parameters_.astype(np.float64))
        _, mean, log_variance = self._encode(encoder, X_standardized)
        std = np.exp(0.5 * log_variance)
        n_rows, n_draws = X_standardized.shape[0], noise.shape[0]
        latent = (mean[:, np.newaxis, :] + std[:, np.newaxis, :] * noise).reshape(
            -1, self._fitted("n_components")
        )
        decoded = forward(decoder, latent, self._fitted("activation"))[-1]
        repeated = np.repeat(X_standardized, n_draws, axis=0)
        reconstruction = self._reconstruction(repeated, decoded, gradient=False)[0]
        reconstruction = reconstruction.reshape(n_rows, n_draws)
        kl = 0.5 * np.sum(mean * mean + std * std - 1.0 - log_variance, axis=1)
        return reconstruction, kl, latent.reshape(n_rows, n_draws, -1), log_variance

    # ------------------------------------------------------------------ training

    def _em_iteration(self, X, sample_weight):
        """One epoch of minibatch Adam; returns the epoch's mean training ELBO.

        With early stopping, the epoch's validation bound is reported to the
        fit's monitor, which keeps the parameters of the best epoch.
        """
        data, weights = self._training_data["train"]
        self._epoch += 1
        kl_weight = min(1.0, self._epoch / self.kl_warmup) if self.kl_warmup else 1.0
        step = self._minibatch_step()
        order = self._random_state.permutation(data.shape[0])
        total, total_weight = 0.0, 0.0
        for start in range(0, data.shape[0], self.batch_size):
            rows = order[start : start + self.batch_size]
            batch_weights = weights[rows]
            step.load(data, rows)
            noise = self._random_state.standard_normal(
                size=(rows.size, self._fitted("n_components"))
            )
            elbo, gradient = step(rows.size, batch_weights, noise, kl_weight)
            self._optimizer.ascend(self.parameters_, gradient)
            total += float(batch_weights @ elbo)
            total_weight += float(batch_weights.sum())
        if not (np.isfinite(total) and np.isfinite(self.parameters_).all()):
            raise ValueError(
                f"Training diverged at epoch {self._epoch}: the ELBO or the network's "
                "weights are no longer finite. Lower learning_rate, standardise X, or "
                "bound the sample weights (the estimator is left as it was)."
            )
        jacobian = float(np.log(self.feature_scale_).sum())
        if self._training_data["validation"] is not None:
            held_out, held_out_weights = self._training_data["validation"]
            cached = getattr(self, "_validation_noise", None)
            if cached is None or cached[0] != self._score_seed:  # once per fit and restart
                cached = self._validation_noise = (self._score_seed, self._importance_noise(8))
            reconstruction, kl, _, _ = self._elbo_terms(held_out, cached[1])
            validation = np.average(reconstruction.mean(axis=1) - kl, weights=held_out_weights)
            self._monitor.record_validation(validation - jacobian)
        return total / total_weight - jacobian

    # ------------------------------------------------------------------ use

    def _validate_predict_data(self, X):
        X = super()._validate_predict_data(X)
        if self._fitted("likelihood") == "bernoulli" and X.size and (X.min() < 0 or X.max() > 1):
            raise ValueError(
                "This model has a Bernoulli likelihood: X must have values in [0, 1]; "
                f"it has values in [{X.min():.4g}, {X.max():.4g}]."
            )
        return X

    def _row_width(self):
        hidden = sum(getattr(self, "_hidden_sizes", (0,)))
        return self.n_importance_samples * (
            5 * self.n_features_in_ + 2 * hidden + 2 * self._fitted("n_components")
        )

    def _log_density(self, X):
        """Importance-weighted bound with the fixed noise draws, in the user's units."""
        return self._importance_weighted(X, self._importance_noise())

    def importance_weighted_estimates(self, X, n_draws, n_repeats=10, random_state=None):
        """Independent importance-weighted estimates of log p(x), to study the estimator.

        ``score_samples`` uses one fixed, moment-matched set of draws shared by
        all rows, so that it is deterministic. Here each repeat draws fresh
        standard normal noise: the spread over repeats is the estimator's
        sampling error, and the mean over repeats rises towards log p(x) as
        ``n_draws`` grows (Burda et al., 2015).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data.
        n_draws : int
            Draws from q(z|x) per estimate.
        n_repeats : int, default=10
            Independent estimates per row.
        random_state : int, RandomState instance or None, default=None
            Seed of the draws.

        Returns
        -------
        estimates : ndarray of shape (n_repeats, n_samples)
            In nats, in the user's units.
        """
        X = self._validate_predict_data(X)
        random_state = check_random_state(random_state)
        n_latent = self._fitted("n_components")
        return np.array(
            [
                self._importance_weighted(X, random_state.standard_normal(size=(n_draws, n_latent)))
                for _ in range(n_repeats)
            ]
        )

    def _importance_weighted(self, X, noise):
        X_standardized = self._standardize(X, np.float64)
        reconstruction, _, latent, log_variance = self._elbo_terms(X_standardized, noise)
        log_prior = -0.5 * np.sum(LOG_2PI + latent * latent, axis=2)
        log_posterior = -0.5 * np.sum(
            LOG_2PI + log_variance[:, np.newaxis, :] + noise * noise, axis=2
        )
        log_weights = reconstruction + log_prior - log_posterior
        jacobian = np.log(self.feature_scale_).sum()
        return logsumexp(log_weights, axis=1) - log(noise.shape[0]) - jacobian

    def elbo_samples(self, X):
        """The ELBO of each row with its two terms, for teaching and diagnosis.

        The reconstruction term is averaged over ``n_importance_samples``
        draws from q (the same draws for every row); the KL term is exact.
        All in nats, in the user's units.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data.

        Returns
        -------
        terms : dict of ndarray of shape (n_samples,)
            ``"elbo"``, ``"reconstruction"`` (E_q[log p(x|z)]) and ``"kl"``
            (KL(q(z|x) || p(z))), with ``elbo = reconstruction - kl``.
        """
        X = self._validate_predict_data(X)
        jacobian = np.log(self.feature_scale_).sum()

        def terms(chunk):
            reconstruction, kl, _, _ = self._elbo_terms(
                self._standardize(chunk, np.float64), self._importance_noise()
            )
            return np.column_stack([reconstruction.mean(axis=1) - jacobian, kl])

        reconstruction, kl = self._map_chunks(terms, X).T
        return {"elbo": reconstruction - kl, "reconstruction": reconstruction, "kl": kl}

    def transform(self, X):
        """Posterior mean of the latent coordinates, ``mu(x)`` of the encoder.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data.

        Returns
        -------
        Z : ndarray of shape (n_samples, n_components)
            Posterior means.
        """
        X = self._validate_predict_data(X)
        encoder, _ = self._networks(self.parameters_.astype(np.float64))
        latent = self._map_chunks(
            lambda chunk: self._encode(encoder, self._standardize(chunk, np.float64))[1], X
        )
        return latent.astype(X.dtype, copy=False)

    def _decode(self, latent):
        """Decoder mean and, for the Gaussian, variance, in the user's units."""
        _, decoder = self._networks(self.parameters_.astype(np.float64))
        decoded = forward(decoder, latent, self._fitted("activation"))[-1]
        if self._fitted("likelihood") == "bernoulli":
            return expit(decoded), None
        n_features = self.n_features_in_
        mean = decoded[:, :n_features] * self.feature_scale_ + self.feature_mean_
        variance = self._fitted("variance_floor") + np.logaddexp(0, decoded[:, n_features:])
        return mean, variance * self.feature_scale_**2

    def inverse_transform(self, Z):
        """Decoder mean of latent coordinates.

        Parameters
        ----------
        Z : array-like of shape (n_samples, n_components)
            Latent coordinates.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
            The mean of p(x|z) (probabilities for 'bernoulli').
        """
        check_is_fitted(self)
        Z = check_array(Z, input_name="Z")
        n_latent = self._fitted("n_components")
        if Z.shape[1] != n_latent:
            raise ValueError(
                f"Z has {Z.shape[1]} columns, but the model has {n_latent} latent dimensions."
            )
        return self._decode(Z)[0]

    def _sample(self, n_samples, random_state):
        latent = random_state.standard_normal(size=(n_samples, self._fitted("n_components")))
        mean, variance = self._decode(latent)
        if self._fitted("likelihood") == "bernoulli":
            return (random_state.uniform(size=mean.shape) < mean).astype(np.float64), latent
        return mean + np.sqrt(variance) * random_state.standard_normal(size=mean.shape), latent

    @property
    def _n_features_out(self):
        return self._fitted("n_components")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.non_deterministic = False
        return tags
