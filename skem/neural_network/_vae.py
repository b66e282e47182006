"""AmortizedVAE: a variational autoencoder in numpy, trained on the ELBO.

The encoder q(z|x) is amortised inference; scores are importance-weighted
estimates of log p(x) (Burda et al., 2015) with the same noise for every row.

The estimator's parts live beside it: the networks and the densities they
define (``_model.py``), training (``_training.py``, on the minibatch ELBO of
``_elbo.py``) and the importance sampling of scores and imputations
(``_importance.py``).
"""

from functools import partial
from numbers import Integral, Real

import numpy as np
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted

from .._core import BaseEM, route_of
from .._core._missing import missing_mask
from ._importance import ImportanceSamplingMixin, far_tails
from ._mlp import ACTIVATIONS
from ._model import NetworkModelMixin, check_prediction_rows, check_unit_interval
from ._training import TrainingMixin

#: The largest latent size of ``n_components='auto'``.
AUTO_LATENT_MAX = 20


class AmortizedVAE(
    TrainingMixin,
    ImportanceSamplingMixin,
    NetworkModelMixin,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    BaseEM,
):
    """Variational autoencoder: an encoder network q(z|x) trained on the ELBO.

    ``p(z) = N(0, I)``, ``p(x|z)`` is a decoder network (Gaussian with a
    learned, floored per-feature variance, or Bernoulli for data in [0, 1]),
    and ``q(z|x) = N(mu(x), diag sigma^2(x))`` is an encoder network. Both
    are trained together by minibatch Adam on the evidence lower bound

        ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)),

    with the reparameterisation ``z = mu + sigma * eps``. One iteration of
    the shared fit loop is one epoch; ``lower_bounds_`` holds the mean
    training ELBO of each epoch (nats per sample, in the user's units).
    The fitted networks are not Adam's last iterate but the exponential
    moving average of its iterates (``average_decay``, Polyak averaging):
    the average of a noisy, fast optimiser scores higher held out than any
    single iterate, so the default learning rate can be three times that of
    Adam's usual 1e-3. BLAS runs on one thread during training when ``fit``
    is called from the main thread: the products of a minibatch are too small
    to split between threads. (In another thread, as in a threaded
    ``GridSearchCV``, skem leaves the process-wide BLAS setting alone; limit
    it there with ``threadpoolctl.threadpool_limits(1)``.)

    The defaults (two tanh layers of 128, learning rate 3e-3, averaging over
    about 200 steps once past the average's warm-up, latent size from the number of features) were chosen by
    measurement (``benchmarks/bench_vae_defaults.py``): held out on an
    80/20 split, against the former defaults (one tanh layer of 128, 1e-3,
    no averaging), they gained 5.3 and 1.1 nats per row on the sets used to
    choose them (dequantised digits, breast cancer) and 0.6, 2.4 and 0.7 on
    sets not used (wine, statsmodels' star98, vega's cars); on dequantised
    digits with ``n_components=20`` they score 77.1 nats per image (75.5 to
    77.1 over five seeds; 71.4 before) in about 5 s on one core.

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
    n_components : int or 'auto', default='auto'
        Latent dimension. 'auto' is ``min(20, max(2, n_features // 4))``:
        chosen by measurement (``benchmarks/bench_vae_defaults.py``, with the
        former network: one tanh layer of 128, learning rate 1e-3). On the
        sets used to choose it (dequantised digits, breast cancer) it scored
        15.8 and 9.4 nats per row above the former default of 2 held out; on
        sets not used (wine, statsmodels' star98, vega's cars) 0.3, 8.2 and 0
        (the rule gives 2 for cars' 6 features).
    hidden_layer_sizes : tuple of int, default=(128, 128)
        Widths of the encoder's hidden layers; the decoder mirrors them.
        ``()`` gives affine networks: with a constant decoder variance the
        model is then linear-Gaussian (factor analysis), with a closed-form
        density. With the default learning rate and averaging, two layers of
        128 scored above one on digits (2.1 nats per image), wine and star98,
        and below it on breast cancer and cars (1.2 and 0.2). A relu network
        of (200, 200) scored as well on digits and 3.4 and 7.4 nats per row
        worse on wine and star98, so the network does not depend on the data.
    activation : {'tanh', 'relu'}, default='tanh'
        Hidden-layer activation.
    likelihood : {'gaussian', 'bernoulli'}, default='gaussian'
        Decoder distribution. 'bernoulli' needs data in [0, 1].
    variance_floor : float, default=1e-3
        Floor of the Gaussian decoder's variance, relative to the data's
        overall scale: no feature is given a variance below
        ``variance_floor`` times the squared median of the features'
        standard deviations (``decoder_variance_floor_``, in the user's
        units); for a feature whose deviation is over 1e15 times from that
        median, the floor is held between 1e-30 and 1e30 times
        ``variance_floor`` times its own variance, so that every floor stays a
        float32 number. The likelihood is unbounded without a floor; being one
        number for all features, it keeps a feature that is nearly constant
        in training from getting almost no variance (a row that differs there
        would then score without bound below the rest). Features whose whole
        variance is below the floor are named in a
        :class:`~skem.VarianceFloorWarning`, and so is data of 0 and 1 only,
        whose Gaussian density the floor alone bounds (use
        ``likelihood='bernoulli'``).
    batch_size : int, default=64
        Minibatch size.
    learning_rate : float, default=3e-3
        Adam step size.
    average_decay : float in [0, 1), default=0.995
        The fitted weights ``parameters_`` are the exponential moving average
        of Adam's iterates: after step t, ``average += (1 - d_t) (iterate -
        average)`` with ``d_t = min(average_decay, (1 + t) / (10 + t))`` (the
        first iterates are soon forgotten: until d_t reaches
        ``average_decay``, after about 1800 steps at the default, the average
        spans about t / 9 of the t steps so far; then about
        ``1 / (1 - average_decay)`` steps). Validation, early stopping and
        every prediction use the average; 0 keeps the last iterate (no
        average). ``partial_fit`` keeps its iterate and its Adam from call to
        call; a continued ``fit`` (``warm_start``), or ``partial_fit`` after
        ``fit``, starts a fresh Adam from the weights kept, the average
        keeping its count of steps (so it moves slowly from them). A change by
        ``set_params`` (of this or of ``learning_rate``) applies from the
        next call. On dequantised digits the average gained 5.1 nats per
        image held out (``n_components=20``).
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
    kl_weight : float, default=1.0
        Weight of the KL term in the training objective (beta of the
        beta-VAE, Higgins et al. 2017): 1 is the ELBO; above 1 favours a
        smoother, more disentangled latent space at the cost of
        reconstruction, below 1 the reverse. It changes what is trained,
        not what is reported: ``lower_bounds_`` and the validation bound stay
        the bounds of log p(x) (beta = 1). With ``n_training_samples`` above
        one it weights the log p(z) - log q(z|x) part of each draw's
        log-weight.
    n_training_samples : int, default=1
        Draws from q per row in training. 1 trains on the ELBO (the KL in
        closed form); k > 1 on the importance-weighted bound
        ``log (1/k) sum_j p(x, z_j) / q(z_j|x)`` (IWAE, Burda et al. 2015),
        tighter than the ELBO and approaching log p(x) as k grows, which
        trains the decoder for a higher likelihood. An epoch costs about k
        times as much. ``lower_bounds_`` then records that k-draw bound of
        the training rows, and early stopping watches the held-out
        importance-weighted estimate (8 draws) instead of the ELBO.
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
        All weights and biases, encoder then decoder, layer by layer: the
        moving average of the iterates (see ``average_decay``).
    feature_mean_, feature_scale_ : ndarray of shape (n_features,)
        The standardisation applied before the networks (0 and 1 for
        'bernoulli').
    decoder_variance_floor_ : float
        The floor of every feature's decoder variance in the user's units
        (see ``variance_floor``; 0 for 'bernoulli').
    lower_bounds_ : ndarray of shape ``(n_iter_,)``
        After ``fit``, the mean training ELBO of each epoch (during the
        epoch: each minibatch's before its step, at Adam's iterate, not the
        average; with
        ``n_training_samples=k > 1``, the k-draw importance-weighted bound). After ``partial_fit``, one
        entry per call since the last ``fit``: the ELBO of its batch before
        the call's steps, estimated with one draw from q per row. With
        missing values, the ELBO of the observed part of each row.
    n_components_ : int
        The latent dimension of the fitted networks (``n_components``, with
        'auto' resolved from the number of features).
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
        "n_components": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "hidden_layer_sizes": ["array-like"],
        "activation": [StrOptions(ACTIVATIONS)],
        "likelihood": [StrOptions({"gaussian", "bernoulli"})],
        "variance_floor": [Interval(Real, 0.0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0.0, None, closed="neither")],
        "average_decay": [Interval(Real, 0.0, 1.0, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0.0, 1.0, closed="neither")],
        "kl_warmup": [Interval(Integral, 0, None, closed="left")],
        "kl_weight": [Interval(Real, 0.0, None, closed="neither")],
        "n_training_samples": [Interval(Integral, 1, None, closed="left")],
        "n_importance_samples": [Interval(Integral, 1, None, closed="left")],
        "training_dtype": [StrOptions({"float32", "float64"})],
    }

    _fitted_parameters = (
        "parameters_",
        "feature_mean_",
        "feature_scale_",
        "decoder_variance_floor_",
        "_score_seed",
        "validation_bounds_",
    )
    _fit_scratch = (*BaseEM._fit_scratch, "_training_data", "_step", "_validation_noise")

    _allow_nan = True

    #: Trained by minibatch gradient steps on rows in memory, not by sums over blocks.
    _fits_on_blocks = False

    def __init__(
        self,
        n_components="auto",
        *,
        hidden_layer_sizes=(128, 128),
        activation="tanh",
        likelihood="gaussian",
        variance_floor=1e-3,
        batch_size=64,
        learning_rate=3e-3,
        average_decay=0.995,
        max_iter=500,
        tol=1e-3,
        n_iter_no_change=20,
        early_stopping=True,
        validation_fraction=0.1,
        kl_warmup=10,
        kl_weight=1.0,
        n_training_samples=1,
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
        self.average_decay = average_decay
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.kl_warmup = kl_warmup
        self.kl_weight = kl_weight
        self.n_training_samples = n_training_samples
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

    # ------------------------------------------------------------------ the fitted network

    #: The parameters that fix the fitted network; read from the fit after it,
    #: so ``set_params`` cannot change what a fitted model computes.
    _ARCHITECTURE = ("n_components", "activation", "likelihood", "variance_floor", "training_dtype")

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
        requested["n_components"] = self._latent_size(self.n_features_in_)
        return {**requested, "hidden_layer_sizes": self._requested_hidden_sizes()}

    def _latent_size(self, n_features):
        """``n_components``, with 'auto' resolved from the number of features."""
        if self.n_components == "auto":
            return min(AUTO_LATENT_MAX, max(2, n_features // 4))
        return self.n_components

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

    @property
    def _n_features_out(self):
        return self._fitted("n_components")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.non_deterministic = False
        tags.input_tags.allow_nan = True
        return tags
