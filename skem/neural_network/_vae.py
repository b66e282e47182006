"""AmortizedVAE: a variational autoencoder in numpy, trained on the ELBO.

The encoder q(z|x) is amortised inference; scores are importance-weighted
estimates of log p(x) (Burda et al., 2015) with the same noise for every row.
"""

from copy import deepcopy
from functools import partial
from math import log, pi
from numbers import Integral, Real
from types import SimpleNamespace

import numpy as np
from scipy import linalg
from scipy.special import expit, logsumexp, softmax
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted

from .._core import (
    BaseEM,
    check_missing,
    check_rows_observed,
    route_of,
    row_weights,
    weighted_moments,
)
from .._core._missing import missing_mask
from .._core._monitor import EarlyStoppingMonitor
from .._core._parallel import map_chunks
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

LOG_2PI = log(2 * pi)
#: The encoder's log-variance is clipped to this range (its gradient is zero outside).
LOG_VARIANCE_RANGE = (-30.0, 20.0)
#: Bias of the decoder's raw variance output for which softplus gives about 1.
UNIT_VARIANCE_BIAS = float(np.log(np.expm1(1.0)))
#: Importance sampling of partly observed rows (``AmortizedVAE._importance_terms``):
#: rounds of filling the missing values for an encoder without mask inputs, the
#: factor by which a proposal's standard deviation is widened, and the share of
#: draws taken from the prior. Chosen on a linear-Gaussian model, whose
#: log p(x_o) is exact: for rows with 30% missing, a complete-data model's
#: estimate with 100 draws was 3.7 nats too low from the zero-filled rows,
#: and is within 0.06 on average with these (0.01 with 1000 draws).
FILL_ITERATIONS = 20
PROPOSAL_WIDENING = 1.5
DEFENSIVE_SHARE = 0.2
#: Effective number of draws (1 / sum of squared normalised weights) below
#: which a proposal keeps its variance when it is adapted to its weighted draws.
MIN_EFFECTIVE_DRAWS = 2.0


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

    With ``masked=True`` a row of the data holds the zero-filled values
    followed by the observed mask (1 observed, 0 missing), as made by
    ``AmortizedVAE._training_rows``: the likelihood and its gradient then
    count the observed coordinates only. The encoder reads the mask too when
    the model has mask inputs; otherwise it reads the zero-filled values.
    """

    def __init__(self, vae, parameters, max_rows, masked=False):
        self.parameters = parameters
        self.gradient = np.empty_like(parameters)
        self.n_latent = vae.n_components
        self.n_features = vae.n_features_in_
        self.masked = masked
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
        """Write ``data[rows]``, transposed, into the input (and the mask, if apart)."""
        views = self.views(rows.size)
        np.take(data, rows, axis=0, out=views.gathered)
        if self.separate_mask:
            np.copyto(views.input, views.gathered[:, : self.n_features].T)
            np.copyto(views.observed, views.gathered[:, self.n_features :].T)
        else:
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
    scores the posterior mean), but it converges to log p(x) as they grow.
    Gaussian data are standardised inside; the Jacobian is accounted for, so
    scores are log-densities of the data as given.

    Missing values (NaN, missing at random) are left out of the likelihood:
    p(x|z) factorises over the features, so the ELBO of a row's observed part
    x_o is ``E_q[sum over observed d of log p(x_d|z)] - KL(q(z|x_o) || p(z))``,
    and training maximises it. When the training data have missing values,
    the encoder reads the zero-filled standardised values and the mask of
    observed entries (2 * n_features inputs); on complete data it reads the
    values alone. ``score_samples`` of a partly observed row estimates
    log p(x_o) (decoder terms of the observed coordinates only) by importance
    sampling, valid for any proposal but only as good as the proposal: the
    encoder's q for the row (an encoder fitted on complete data reads the
    row with its missing values filled by the decoder, as it has never seen
    a hole; the zero-filled row, the feature means, gave estimates 3 nats
    too low), adapted once to its own importance-weighted draws and mixed
    with the prior (defensive importance sampling). ``elbo_samples`` and the
    training bounds use the encoder's q as it is. ``impute`` fills the
    missing values. A row with no observed value is a ``ValueError`` in
    ``fit`` and in scoring; ``impute`` fills it from the prior.

    Scores are never NaN for finite input. A row so far in the model's tails
    that its log-density is below float64's range (about -1.8e308; reached
    near 1e154 feature standard deviations from the data) scores -inf, its
    float64 value. Its importance weights then all underflow, and ``impute``
    averages the proposal's draws instead of weighting them: the
    imputations stay finite (unless the conditional mean itself is beyond
    float64's range), as good as the encoder's proposal.

    ``partial_fit`` trains on a stream of batches: each call makes one pass
    of minibatch Adam steps over its batch, and the optimiser's state carries
    over between calls. The first call (on an unfitted model) fixes the
    network and the standardisation from its batch, which should therefore
    be representative (and, for the encoder to read the missingness mask,
    contain missing values if later batches will); a later batch with
    missing values trains a mask-less encoder on its zero-filled values.
    ``partial_fit`` after ``fit`` continues the fitted model; ``fit`` after
    ``partial_fit`` starts over.

    Dask arrays are refused by ``fit`` and ``partial_fit`` (``ValueError``,
    before any work): the VAE trains in memory. Fit a sample,
    ``fit(X[:n].compute())``, or stream the blocks,
    ``for block in X.blocks: vae.partial_fit(block.compute())``. Predictions
    on a dask array (``transform``, ``score_samples``, ``elbo_samples``,
    ``impute``, ``inverse_transform``...) are lazy dask arrays, computed block
    by block as in memory, and equal to the in-memory results (a row's
    result does not depend on the other rows).

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
        Epochs (passes: epochs of ``fit``, calls of ``partial_fit``) over
        which the weight of the KL term rises linearly to one
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
        After ``fit``, the mean training ELBO of each epoch (during the
        epoch: each minibatch's before its step). After ``partial_fit``, one
        entry per call since the last ``fit``: the ELBO of its batch before
        the call's steps, estimated with one draw from q per row. With
        missing values, the ELBO of the observed part of each row.
    validation_bounds_ : ndarray of shape ``(n_iter_,)``
        Mean validation ELBO of each epoch of ``fit`` (with
        ``early_stopping``); empty after ``partial_fit``.
    n_steps_ : int
        Number of ``partial_fit`` calls since the last ``fit`` (equal to
        ``n_iter_``); set by ``partial_fit`` only.
    n_samples_seen_ : int
        Number of rows passed to ``partial_fit`` since the last ``fit``.
    lower_bound_, n_iter_, converged_, n_features_in_
        As in :class:`skem.BaseEM` (after ``partial_fit``: the last batch's
        bound, the number of calls, and False).

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

    _allow_nan = True

    #: Trained by minibatch gradient steps on rows in memory, not by sums over blocks.
    _fits_on_blocks = False

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

    # ------------------------------------------------------------------ fit

    def fit(self, X, y=None, sample_weight=None):
        """Train the encoder and decoder by minibatch Adam on the ELBO.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; NaN marks a missing value. Not a dask array.
        y : Ignored
            Not used, present for API consistency.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each row (its share of each minibatch's
            gradient); rows of weight zero are left out.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        route_of(X).require_memory(self, "fit")
        return super().fit(X, y, sample_weight=sample_weight)

    def partial_fit(self, X, y=None, sample_weight=None):
        """One pass of minibatch Adam steps over a batch, continuing the training.

        The first call on an unfitted model validates the parameters and
        initialises the networks and the standardisation from this batch;
        later calls check the features (count and names) and continue with
        the optimiser's state. ``max_iter``, ``tol``, ``n_init``,
        ``early_stopping`` and its settings concern ``fit`` only.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A batch of training data; NaN marks a missing value. Not a dask
            array (pass ``block.compute()`` for each of ``X.blocks``).
        y : Ignored
            Not used, present for API consistency.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each row, as in ``fit``.

        Returns
        -------
        self : object
            The estimator, trained on the batch.
        """
        route_of(X).require_memory(self, "partial_fit")
        with self._unchanged_on_error():
            first = not hasattr(self, "converged_")
            self._validate_params()  # at every call, as scikit-learn's partial_fit
            self._check_network_parameters()
            if not first:
                self._check_same_structure(continued_by="partial_fit")
            X, sample_weight = self._validate_fit_data(X, sample_weight, reset=first)
            self._check_training_data(X, sample_weight, initializing=first)
            if first:
                random_state = check_random_state(self.random_state)
                self._set_architecture(X, sample_weight)
                self._initialize(X, sample_weight, random_state)
                self._sampling_seed = int(random_state.randint(np.iinfo(np.int32).max))
                self._sampling_state = None
            else:
                check_unit_interval(X, self._fitted("likelihood"))
                self._detach_training_state()
            n_steps = getattr(self, "n_steps_", 0)  # fit removes it: its history starts over
            bound = self._train_on_batch(X, sample_weight, when=f"partial_fit call {n_steps + 1}")
            self.lower_bounds_ = np.append(getattr(self, "lower_bounds_", [])[:n_steps], bound)
            self.lower_bound_ = bound
            self.validation_bounds_ = np.array([])
            self.n_steps_ = self.n_iter_ = n_steps + 1
            self.n_samples_seen_ = getattr(self, "n_samples_seen_", 0) + X.shape[0]
            self.converged_ = False
        return self

    # ------------------------------------------------------------------ set-up

    def _check_parameters(self, X, sample_weight):
        self._check_network_parameters()
        self._check_training_data(
            X, sample_weight, initializing=not (self.warm_start and hasattr(self, "converged_"))
        )
        if self.early_stopping:
            n_positive = X.shape[0] if sample_weight is None else np.count_nonzero(sample_weight)
            if n_positive < 2:
                raise ValueError(
                    "early_stopping needs at least two rows of positive sample_weight "
                    "(one to train on, one to validate on)."
                )

    def _check_network_parameters(self):
        sizes = np.asarray(self.hidden_layer_sizes, dtype=object).ravel()
        valid = all(isinstance(size, Integral) and size >= 1 for size in sizes)
        if np.ndim(self.hidden_layer_sizes) > 1 or not valid:
            raise ValueError(
                "hidden_layer_sizes must be a sequence of positive integers, "
                f"got {self.hidden_layer_sizes!r}."
            )

    def _check_training_data(self, X, sample_weight, initializing):
        """Every row needs an observed value; a new model, every column and data it can model.

        The standardisation is set from the data that initialise the model
        (X of fit, the first batch of partial_fit), so each column needs an
        observed value of positive weight there.
        """
        if initializing:
            check_missing(X, sample_weight)
        elif missing_mask(X) is not None:
            check_rows_observed(X)
        if initializing and self.likelihood == "bernoulli":
            low, high = value_range(X)
            if low < 0 or high > 1:
                raise ValueError(
                    f"likelihood='bernoulli' needs data in [0, 1]; X has values in "
                    f"[{low:.4g}, {high:.4g}]."
                )

    #: The parameters that fix the fitted network; read from the fit after it,
    #: so ``set_params`` cannot change what a fitted model computes.
    _ARCHITECTURE = ("n_components", "activation", "likelihood", "variance_floor", "training_dtype")

    def _prepare_fit(self, X, sample_weight, random_state):
        """Standardise the data and hold out the validation rows, once per fit."""
        super()._prepare_fit(X, sample_weight, random_state)
        if self.warm_start and hasattr(self, "converged_"):
            self._detach_training_state()
        else:
            self._set_architecture(X, sample_weight)
        self._training_data = self._split_training_data(X, sample_weight, random_state)

    def _set_architecture(self, X, sample_weight):
        """Fix the network and the standardisation from the data that initialise the model."""
        self._architecture = {name: getattr(self, name) for name in self._ARCHITECTURE}
        self._hidden_sizes = self._requested_hidden_sizes()
        self._mask_inputs = missing_mask(X) is not None
        self._set_feature_scaling(X, sample_weight)

    def _detach_training_state(self):
        """Train on copies, so that a failed continuation leaves the fitted state intact.

        Adam updates the parameters and its moments in place, and the
        generator advances; the copies replace them in ``__dict__``, which
        ``_unchanged_on_error`` restores if the training fails.
        """
        self.parameters_ = self.parameters_.copy()
        self._optimizer = deepcopy(self._optimizer)
        self._random_state = deepcopy(self._random_state)

    def _requested_hidden_sizes(self):
        sizes = np.asarray(self.hidden_layer_sizes, dtype=object).ravel()
        return tuple(int(size) for size in sizes)

    def _fitted(self, name):
        """A network parameter as fitted (as set, before the first fit)."""
        architecture = getattr(self, "_architecture", None)
        return getattr(self, name) if architecture is None else architecture[name]

    def _fitted_structure(self):
        return {**self._architecture, "hidden_layer_sizes": self._hidden_sizes}

    def _requested_structure(self):
        requested = {name: getattr(self, name) for name in self._architecture}
        return {**requested, "hidden_layer_sizes": self._requested_hidden_sizes()}

    def _set_feature_scaling(self, X, sample_weight):
        if self.likelihood == "gaussian":
            mean, variance = weighted_moments(X, sample_weight)
            # weights concentrated on a few rows leave almost no weighted spread:
            # at least a millionth of the rows' own spread keeps the others in range
            spread = np.nanmax(np.abs(X - mean), axis=0) if X.shape[0] else np.zeros(X.shape[1])
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

    def _log_jacobian(self, X):
        """log of the standardisation's Jacobian for each row: log ``feature_scale_``
        summed over its observed coordinates (one number when X is complete)."""
        log_scale = np.log(self.feature_scale_)
        missing = missing_mask(X)
        return log_scale.sum() if missing is None else ~missing @ log_scale

    def _mean_log_jacobian(self, X, weights):
        jacobian = self._log_jacobian(X)
        return float(jacobian if np.ndim(jacobian) == 0 else np.average(jacobian, weights=weights))

    def _training_rows(self, X_standardized):
        """The rows as the training step reads them, and whether they carry their mask.

        Complete data for an encoder without mask inputs are the standardised
        values themselves; otherwise each row is its zero-filled values
        followed by its mask of observed entries (see ``_MinibatchELBO``).
        """
        values, observed = self._split_missing(X_standardized)
        if observed is None and not self._mask_inputs:
            return X_standardized, False
        if observed is None:
            observed = np.ones_like(values)
        return np.hstack([values, observed]), True

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
            held_out_data = data[held_out].astype(np.float64)  # scored in float64
            validation = (
                held_out_data,
                weights[held_out],
                self._mean_log_jacobian(held_out_data, weights[held_out]),
            )
            data, weights = data[kept], weights[kept]
        jacobian = self._mean_log_jacobian(data, weights)
        data, masked = self._training_rows(data)
        return {
            "train": (data, weights),
            "masked": masked,
            "jacobian": jacobian,
            "validation": validation,
        }

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
        variance = self._fitted("variance_floor") + softplus(raw)
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

    def _objective_and_gradient(self, parameters, X, sample_weight, noise, kl_weight):
        """Per-row ELBO, and the gradient of sum_i w_i (rec_i - kl_weight KL_i) / sum w.

        ``X`` is standardised, NaN where missing; ``noise`` is the standard
        normal draw of the reparameterisation, one row per row of X. Checked
        by finite differences; training runs the same computation in buffers
        kept from batch to batch (``_minibatch_step``).
        """
        data, masked = self._training_rows(X)
        step = _MinibatchELBO(self, parameters, X.shape[0], masked)
        step.load(data.astype(parameters.dtype, copy=False), np.arange(X.shape[0]))
        return step(X.shape[0], sample_weight, noise, kl_weight)

    def _minibatch_step(self):
        """The training step on ``parameters_``, built once per fit (and restart)."""
        step = getattr(self, "_step", None)
        if step is None or step.parameters is not self.parameters_:
            n_rows = self._training_data["train"][0].shape[0]
            step = self._step = _MinibatchELBO(
                self, self.parameters_, min(self.batch_size, n_rows), self._training_data["masked"]
            )
        return step

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

    # ------------------------------------------------------------------ training

    def _training_pass(self, step, data, weights, when):
        """One pass of minibatch Adam over the training rows; their mean ELBO.

        Each minibatch's ELBO is taken before its own step. ``when`` names
        the pass in the error raised if training diverges.
        """
        self._epoch += 1
        kl_weight = min(1.0, self._epoch / self.kl_warmup) if self.kl_warmup else 1.0
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
                f"Training diverged at {when}: the ELBO or the network's "
                "weights are no longer finite. Lower learning_rate, standardise X, or "
                "bound the sample weights (the estimator is left as it was)."
            )
        return total / total_weight

    def _em_iteration(self, X, sample_weight):
        """One epoch of minibatch Adam; returns the epoch's mean training ELBO.

        With early stopping, the epoch's validation bound is reported to the
        fit's monitor, which keeps the parameters of the best epoch.
        """
        data, weights = self._training_data["train"]
        elbo = self._training_pass(
            self._minibatch_step(), data, weights, when=f"epoch {self._epoch + 1}"
        )
        if self._training_data["validation"] is not None:
            held_out, held_out_weights, held_out_jacobian = self._training_data["validation"]
            cached = getattr(self, "_validation_noise", None)
            if cached is None or cached[0] != self._score_seed:  # once per fit and restart
                cached = self._validation_noise = (self._score_seed, self._importance_noise(8))
            reconstruction, kl = self._elbo_terms(held_out, cached[1])
            validation = np.average(reconstruction.mean(axis=1) - kl, weights=held_out_weights)
            self._monitor.record_validation(validation - held_out_jacobian)
        return elbo - self._training_data["jacobian"]

    def _train_on_batch(self, X, sample_weight, when):
        """``partial_fit``'s pass over a batch; returns the batch's ELBO before it.

        That ELBO is estimated with one fresh draw from q per row (an
        unbiased estimate of the bound at the parameters the call starts from).
        """
        weights = row_weights(sample_weight, X.shape[0])
        positive = np.flatnonzero(weights > 0)
        X_standardized, weights = self._standardize(X[positive], np.float64), weights[positive]
        noise = self._random_state.standard_normal(
            size=(positive.size, 1, self._fitted("n_components"))
        )
        reconstruction, kl = self._elbo_terms(X_standardized, noise)
        bound = float(np.average(reconstruction[:, 0] - kl, weights=weights))
        bound -= self._mean_log_jacobian(X_standardized, weights)
        dtype = np.dtype(self._fitted("training_dtype"))
        data, masked = self._training_rows(X_standardized.astype(dtype))
        step = _MinibatchELBO(self, self.parameters_, min(self.batch_size, positive.size), masked)
        self._training_pass(step, data, weights, when)
        return bound

    # ------------------------------------------------------------------ use

    def _validate_predict_data(self, X, *, allow_unobserved_rows=False):
        """Validate as the base class; rows without an observed value are refused
        unless ``allow_unobserved_rows`` (``impute`` fills them from the prior).

        A dask array is checked block by block when its result is computed,
        so that nothing is read at the call.
        """
        X = super()._validate_predict_data(X)
        check = partial(
            check_prediction_rows,
            likelihood=self._fitted("likelihood"),
            allow_unobserved_rows=allow_unobserved_rows,
        )
        return route_of(X).check_rows(check, X)

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
        ``n_draws`` grows (Burda et al., 2015). (The proposal of a partly
        observed row is adapted with fixed draws; the estimate's are fresh.)

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
        noises = [random_state.standard_normal(size=(n_draws, n_latent)) for _ in range(n_repeats)]

        def estimates(chunk):
            return np.column_stack([self._importance_weighted(chunk, noise) for noise in noises])

        return self._map_chunks(estimates, X).T

    def _importance_terms(self, X_standardized, noise):
        """log p(x_o, z_s) - log r(z_s) for each row and draw z_s of its proposal r,
        and the decoder output of every draw (see ``_decode_draws``).

        A complete row's proposal is the encoder's q(z|x), its draws
        ``mu + sigma * noise``. A partly observed row's is adapted first
        (``_adapted_proposals``) and made defensive: the last
        ``DEFENSIVE_SHARE`` of its draws are the noise itself, draws from the
        prior, and r is the mixture of the two in those proportions, so that
        no weight exceeds p(x_o|z) / DEFENSIVE_SHARE (Hesterberg, 1995;
        stratified draws with the mixture density are unbiased).
        """
        encoder, decoder = self._networks(self.parameters_.astype(np.float64))
        values, observed = self._split_missing(X_standardized)
        _, mean, log_variance = self._encode(encoder, self._encoder_input(values, observed))
        incomplete = None if observed is None else observed.min(axis=1) == 0
        if incomplete is not None and incomplete.any():
            adapted = self._adapted_proposals(
                encoder, decoder, values[incomplete], observed[incomplete]
            )
            mean[incomplete], log_variance[incomplete] = adapted
        return self._weigh_draws(decoder, values, observed, mean, log_variance, noise, incomplete)

    def _weigh_draws(self, decoder, values, observed, mean, log_variance, noise, defensive):
        """Log-weights of the draws from Gaussian proposals, made defensive in the rows
        ``defensive`` (a boolean mask, or None); see ``_importance_terms``."""
        std = np.exp(0.5 * log_variance)
        latent = mean[:, np.newaxis, :] + std[:, np.newaxis, :] * noise
        standardized = noise
        n_draws = noise.shape[-2]
        n_prior = n_draws - n_proposal_draws(n_draws)
        if defensive is not None and defensive.any() and n_prior:
            from_prior = np.zeros(latent.shape[:2], dtype=bool)
            from_prior[defensive, n_draws - n_prior :] = True
            latent = np.where(from_prior[:, :, np.newaxis], noise, latent)
            # the proposal's own draws are standardised by their noise: (latent -
            # mean) / std loses them to rounding where |mean| is far above sigma
            placed = (latent - mean[:, np.newaxis, :]) / std[:, np.newaxis, :]
            standardized = np.where(from_prior[:, :, np.newaxis], placed, noise)
        reconstruction, decoded = self._decode_draws(decoder, values, observed, latent)
        log_prior = -0.5 * np.sum(LOG_2PI + latent * latent, axis=2)
        log_proposal = -0.5 * np.sum(
            LOG_2PI + log_variance[:, np.newaxis, :] + standardized * standardized, axis=2
        )
        if standardized is not noise:
            share = n_prior / n_draws
            mixture = np.logaddexp(log(1.0 - share) + log_proposal, log(share) + log_prior)
            log_proposal = np.where(defensive[:, np.newaxis], mixture, log_proposal)
        return reconstruction + log_prior - log_proposal, decoded, latent

    def _adapted_proposals(self, encoder, decoder, values, observed):
        """Gaussian proposals (mean, log-variance) for partly observed rows.

        An encoder without mask inputs has only seen complete rows: the
        missing values are first filled by ``FILL_ITERATIONS`` rounds of
        "decoder mean at the encoder mean" (for a linear-Gaussian model with
        an exact encoder, this converges to the posterior mean given x_o).
        The encoder's q, widened by ``PROPOSAL_WIDENING`` and made
        defensive, then proposes a set of draws of its own, and the
        proposal becomes their importance-weighted mean and variance, widened
        again (one step of adaptive importance sampling; the variance only
        where at least ``MIN_EFFECTIVE_DRAWS`` draws carry the weight).
        """
        encoder_input = partial(self._encoder_input, observed=observed)
        _, mean, log_variance = self._encode(encoder, encoder_input(values))
        if not self._mask_inputs:
            missing = observed == 0
            for _ in range(FILL_ITERATIONS):
                decoded = forward(decoder, mean, self._fitted("activation"))[-1]
                filled = np.where(missing, self._standardized_decoder_mean(decoded), values)
                _, mean, log_variance = self._encode(encoder, encoder_input(filled))
        log_variance = log_variance + 2 * log(PROPOSAL_WIDENING)
        adaptation_noise = moment_matched_normal(
            self.n_importance_samples,
            self._fitted("n_components"),
            np.random.RandomState(self._score_seed + 1),
        )
        log_weights, _, latent = self._weigh_draws(
            decoder,
            values,
            observed,
            mean,
            log_variance,
            adaptation_noise,
            np.ones(values.shape[0], dtype=bool),
        )
        weights, weighed = importance_weights(log_weights)
        # a variance needs draws of weight: rows with fewer keep the widened q's
        # (and rows with none, far in the tails, its mean too)
        spread = weighed & (MIN_EFFECTIVE_DRAWS * np.sum(weights * weights, axis=1) <= 1.0)
        mean[weighed] = sum_over_draws(weights[weighed], latent[weighed])
        deviation = latent[spread] - mean[spread, np.newaxis, :]
        variance = sum_over_draws(weights[spread], deviation * deviation)
        with np.errstate(divide="ignore"):  # a zero variance is clipped below
            log_variance[spread] = np.log(variance) + 2 * log(PROPOSAL_WIDENING)
        return mean, np.clip(log_variance, *LOG_VARIANCE_RANGE)

    def _standardized_decoder_mean(self, decoded):
        """Mean of p(x|z) in the standardised units the networks work in."""
        if self._fitted("likelihood") == "bernoulli":
            return expit(decoded)
        return decoded[:, : self.n_features_in_]

    def _importance_weighted(self, X, noise):
        with far_tails():
            X_standardized = self._standardize(X, np.float64)
        # a value more than 1.8e308 feature scales from its mean standardises to
        # inf, which the networks would turn into NaN (inf - inf): its row's
        # log-density is below the float range, -inf
        beyond = np.isinf(X_standardized).any(axis=1)
        if beyond.any():
            log_density = np.full(X.shape[0], -np.inf)
            log_density[~beyond] = self._importance_weighted(X[~beyond], noise)
            return log_density
        with far_tails():
            log_weights, _, _ = self._importance_terms(X_standardized, noise)
        return logsumexp(log_weights, axis=1) - log(noise.shape[-2]) - self._log_jacobian(X)

    def elbo_samples(self, X):
        """The ELBO of each row with its two terms, for teaching and diagnosis.

        The reconstruction term is averaged over ``n_importance_samples``
        draws from q (the same draws for every row); the KL term is exact.
        All in nats, in the user's units. For a partly observed row, the ELBO
        of its observed part with the encoder's q, as in training.

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

        def terms(chunk):
            with far_tails():
                reconstruction, kl = self._elbo_terms(
                    self._standardize(chunk, np.float64), self._importance_noise()
                )
                reconstruction = reconstruction.mean(axis=1)
            return np.column_stack([reconstruction - self._log_jacobian(chunk), kl])

        reconstruction, kl = self._map_chunks(terms, X).T
        return {"elbo": reconstruction - kl, "reconstruction": reconstruction, "kl": kl}

    def transform(self, X):
        """Posterior mean of the latent coordinates, ``mu(x)`` of the encoder.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data; NaN marks a missing value (the encoder reads the row as in
            scoring). Every row needs an observed value.

        Returns
        -------
        Z : ndarray of shape (n_samples, n_components)
            Posterior means.
        """
        X = self._validate_predict_data(X)
        encoder, _ = self._networks(self.parameters_.astype(np.float64))

        def posterior_mean(chunk):
            values, observed = self._split_missing(self._standardize(chunk, np.float64))
            return self._encode(encoder, self._encoder_input(values, observed))[1]

        return self._map_chunks(posterior_mean, X).astype(X.dtype, copy=False)

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
        variance = self._fitted("variance_floor") + np.logaddexp(0, decoded[:, n_features:])
        return mean, np.sqrt(variance) * self.feature_scale_

    def inverse_transform(self, Z):
        """Decoder mean of latent coordinates.

        Parameters
        ----------
        Z : array-like of shape (n_samples, n_components)
            Latent coordinates (a dask array gives a lazy dask array).

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
            The mean of p(x|z) (probabilities for 'bernoulli').
        """
        check_is_fitted(self)
        route = route_of(Z)
        if not route.in_memory:
            if Z.ndim != 2:
                raise ValueError(f"Z must be 2-dimensional; it has {Z.ndim} dimensions.")
            # each block checked and decoded as an array in memory, when it is computed
            return route.map(self.inverse_transform, Z, self._chunk_rows())
        Z = check_array(Z, input_name="Z")
        n_latent = self._fitted("n_components")
        if Z.shape[1] != n_latent:
            raise ValueError(
                f"Z has {Z.shape[1]} columns, but the model has {n_latent} latent dimensions."
            )
        return self._decode(Z)[0]

    def _sample(self, n_samples, random_state):
        latent = random_state.standard_normal(size=(n_samples, self._fitted("n_components")))
        return self._draw_from_decoder(*self._decode(latent), random_state), latent

    def _draw_from_decoder(self, mean, deviation, random_state):
        """One draw from p(x|z) given its moments (``_decoder_moments``)."""
        if self._fitted("likelihood") == "bernoulli":
            return (random_state.uniform(size=mean.shape) < mean).astype(np.float64)
        return mean + deviation * random_state.standard_normal(size=mean.shape)

    def impute(self, X, *, sample_posterior=False, random_state=None):
        """Fill the missing values (NaN) from the fitted model, given each row's observed ones.

        A row's missing coordinates x_m are replaced by an estimate of
        ``E[x_m | x_o]`` by self-normalised importance sampling: with draws
        z_s from the encoder's q(z|x_o) (the ``n_importance_samples`` shared
        draws of ``score_samples``) and weights proportional to
        ``p(x_o|z_s) p(z_s) / q(z_s|x_o)``, the weighted mean of the decoder
        means. With ``sample_posterior=True`` each row gets one draw instead:
        z_s picked by the weights among fresh draws from q, then x_m drawn
        from p(x|z_s), as multiple imputation needs. A row with no observed
        value is filled from the prior: the decoder mean averaged over draws
        of z from N(0, I), or one draw from the model. A row whose weights
        all underflow (observed values far in the model's tails) takes its
        draws from q with equal weights.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data with missing values marked as NaN.
        sample_posterior : bool, default=False
            Draw the missing values instead of taking their conditional mean.
        random_state : int, RandomState instance or None, default=None
            Seed of the draws made with ``sample_posterior=True`` (the
            conditional mean is deterministic); an int makes them reproducible.

        Returns
        -------
        X_imputed : ndarray of shape (n_samples, n_features)
            A copy of X (of its float dtype) with the observed entries
            unchanged and the missing ones filled.

        Examples
        --------
        >>> import numpy as np
        >>> from skem import AmortizedVAE
        >>> rng = np.random.RandomState(0)
        >>> X = rng.normal(size=(500, 2)) @ rng.normal(size=(2, 4))
        >>> X[rng.uniform(size=X.shape) < 0.1] = np.nan
        >>> vae = AmortizedVAE(n_components=2, max_iter=20, random_state=0).fit(X)
        >>> X_filled = vae.impute(X)
        >>> observed = ~np.isnan(X)
        >>> bool(np.isnan(X_filled).any()), bool((X_filled[observed] == X[observed]).all())
        (False, True)
        >>> draws = vae.impute(X, sample_posterior=True, random_state=0)
        >>> bool((draws == vae.impute(X, sample_posterior=True, random_state=0)).all())
        True
        """
        return self._impute_where(X, sample_posterior, random_state, self._impute)

    def _impute(self, X, sample_posterior, random_state):
        X = self._validate_predict_data(X, allow_unobserved_rows=True)
        imputed = X.copy()
        missing = missing_mask(X)
        if missing is None:
            return imputed
        random_state = check_random_state(random_state)
        unobserved = missing.all(axis=1)
        partial = np.flatnonzero(missing.any(axis=1) & ~unobserved)
        if partial.size:
            filled = self._conditional_fill(X[partial], sample_posterior, random_state)
            imputed[partial] = np.where(missing[partial], filled, X[partial])
        unobserved = np.flatnonzero(unobserved)
        if unobserved.size:
            imputed[unobserved] = self._prior_fill(unobserved.size, sample_posterior, random_state)
        return imputed

    def _conditional_fill(self, X, sample_posterior, random_state):
        """Rows of X filled by importance sampling, chunk by chunk (``impute``)."""
        if not sample_posterior:
            noise = self._importance_noise()
            return self._map_chunks(lambda chunk: self._fill_rows(chunk, noise, None), X)
        # one generator per chunk, seeded in order, so the draws do not depend
        # on which thread runs a chunk first
        chunks = list(self._chunks(X.shape[0]))
        seeds = random_state.randint(np.iinfo(np.int32).max, size=len(chunks))
        n_draws, n_latent = self.n_importance_samples, self._fitted("n_components")

        def draw_rows(task):
            rows, seed = task
            chunk_state = np.random.RandomState(seed)
            noise = chunk_state.standard_normal(size=(rows.stop - rows.start, n_draws, n_latent))
            return self._fill_rows(X[rows], noise, chunk_state)

        return np.concatenate(list(map_chunks(draw_rows, zip(chunks, seeds))))

    def _fill_rows(self, X, noise, random_state):
        """The weighted mean of the decoder means (no ``random_state``), or one draw."""
        with far_tails():
            log_weights, decoded, _ = self._importance_terms(
                self._standardize(X, np.float64), noise
            )
            weights, weighed = importance_weights(log_weights)
            n_rows, n_draws = log_weights.shape
            # a row so far in the tails that no draw has a weight in float64: its
            # proposal (the encoder's, adapted) is the estimate of its posterior
            weights[~weighed, : n_proposal_draws(n_draws)] = 1.0 / n_proposal_draws(n_draws)
            mean, deviation = self._decoder_moments(decoded)
            mean = mean.reshape(n_rows, n_draws, -1)
            if random_state is None:
                return sum_over_draws(weights, mean)
            # the draw picked by the weights: the first whose cumulative weight passes a uniform
            uniform = random_state.uniform(size=(n_rows, 1))
            picked = (weights.cumsum(axis=1) < uniform).sum(axis=1)
            picked = np.minimum(picked, n_draws - 1)  # the cumulative sum may end below one
            rows = np.arange(n_rows)
            if deviation is not None:
                deviation = deviation.reshape(n_rows, n_draws, -1)[rows, picked]
            return self._draw_from_decoder(mean[rows, picked], deviation, random_state)

    def _prior_fill(self, n_rows, sample_posterior, random_state):
        """Values for rows with nothing observed: the prior mean of x, or draws from the model."""
        if sample_posterior:
            return self._sample(n_rows, random_state)[0]
        mean, _ = self._decode(self._importance_noise())
        return np.broadcast_to(mean.mean(axis=0), (n_rows, self.n_features_in_))

    @property
    def _n_features_out(self):
        return self._fitted("n_components")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.non_deterministic = False
        tags.input_tags.allow_nan = True
        return tags


def far_tails():
    """Scoring context for rows far in the model's tails: squares there overflow
    float64, and a density below its range is zero (log-density -inf), a draw's
    weight zero, as documented; that overflow is expected, not warned about."""
    return np.errstate(over="ignore")


def n_proposal_draws(n_draws):
    """How many of a partly observed row's draws come from its proposal; the
    others (``DEFENSIVE_SHARE``, the last ones) come from the prior."""
    return n_draws - int(round(DEFENSIVE_SHARE * n_draws))


def importance_weights(log_weights):
    """Self-normalised weights of each row's draws, and whether the row has any.

    The softmax of each row of log-weights; a row whose log-weights are all
    -inf (every p(x_o, z_s) below float64's range: observed values far in the
    model's tails) has no weights (zeros, and False in the mask).
    """
    weighed = np.max(log_weights, axis=1) > -np.inf
    weights = np.zeros_like(log_weights)
    weights[weighed] = softmax(log_weights[weighed], axis=1)
    return weights, weighed


def sum_over_draws(weights, values):
    """``sum_s weights[r, s] * values[r, s]`` for each row r; draws of weight zero
    add nothing, even where their values overflowed to infinity."""
    weights = weights[:, :, np.newaxis]
    terms = np.multiply(weights, values, out=np.zeros_like(values), where=weights > 0)
    return terms.sum(axis=1)


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
