"""Training ``AmortizedVAE``: the checks and set-up of a fit, and passes of minibatch Adam."""

import warnings
from copy import deepcopy
from numbers import Integral

import numpy as np
from scipy.special import logsumexp

from .._core import check_missing, check_rows_observed, row_weights, weighted_moments
from .._core._missing import missing_mask
from .._core._monitor import EarlyStoppingMonitor
from .._core._parallel import single_blas_thread
from ..exceptions import VarianceFloorWarning
from ._elbo import _MinibatchELBO
from ._mlp import Adam, glorot_initialize
from ._mlp import n_parameters as count_parameters
from ._model import decoder_floor_scale, value_range

#: Bias of the decoder's raw variance output for which softplus gives about 1.
UNIT_VARIANCE_BIAS = float(np.log(np.expm1(1.0)))


class TrainingMixin:
    """How ``AmortizedVAE`` is fitted: the hooks of the shared fit loop
    (``BaseEM``) and the passes of ``partial_fit``.

    Uses the estimator's networks (``NetworkModelMixin``) and its scoring
    noise (``ImportanceSamplingMixin._importance_noise``) for the validation
    bound.

    Adam steps the iterate ``_iterate``; the model, ``parameters_``, is the
    moving average of the iterates (``average_decay``), or the iterate itself
    (the same buffer) when ``average_decay=0``. Validation, early stopping's
    best epoch and every prediction use ``parameters_``.
    """

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
        self._architecture["n_components"] = self._latent_size(X.shape[1])
        self.n_components_ = self._architecture["n_components"]
        self._hidden_sizes = self._requested_hidden_sizes()
        self._mask_inputs = missing_mask(X) is not None
        self._set_feature_scaling(X, sample_weight)

    def _detach_training_state(self):
        """Train on copies, so that a failed continuation leaves the fitted state intact.

        Adam updates the iterate, the parameters and its moments in place,
        and the generator advances; the copies replace them in ``__dict__``,
        which ``_unchanged_on_error`` restores if the training fails.

        The optimiser takes the current ``learning_rate`` and
        ``average_decay`` (``set_params`` between calls). After ``fit``,
        whose kept epoch or restart has no optimiser state of its own, Adam
        starts afresh from the kept weights (as scikit-learn's MLP does on a
        warm start), the average keeping its horizon; a ``partial_fit``
        stream keeps its Adam. An average switched on starts from the kept
        weights; switched off, training goes on from them.
        """
        kept, iterate = self.parameters_, self._iterate
        self.parameters_ = kept.copy()
        if self._optimizer is None:  # (after fit: a fresh Adam, the average's steps kept)
            self._optimizer = Adam(kept.size, kept.dtype, self.learning_rate)
            self._optimizer.average_steps = self._average_steps
        else:
            self._optimizer = deepcopy(self._optimizer)
            self._optimizer.learning_rate = self.learning_rate
        self._optimizer.average_decay = self.average_decay
        if not self._averaging():
            self._iterate = self.parameters_
        elif iterate is kept:
            self._iterate = self.parameters_.copy()
        else:
            self._iterate = iterate.copy()
        self._random_state = deepcopy(self._random_state)

    def _set_feature_scaling(self, X, sample_weight):
        if self.likelihood == "gaussian":
            mean, variance = weighted_moments(X, sample_weight)
            # weights concentrated on a few rows leave almost no weighted spread:
            # at least a millionth of the rows' own spread keeps the others in range
            spread = np.nanmax(np.abs(X - mean), axis=0) if X.shape[0] else np.zeros(X.shape[1])
            scale = np.maximum(np.sqrt(variance), 1e-6 * spread)
            self.feature_mean_ = mean
            # an exactly constant feature is scaled as a typical one, so that
            # its floor and its start do not depend on the data's units
            positive = scale[scale > 0]
            typical = float(np.median(positive)) if positive.size else 1.0
            self.feature_scale_ = np.where(scale > 0, scale, typical)
            reference = decoder_floor_scale(self.feature_scale_)
            self.decoder_variance_floor_ = self.variance_floor * reference**2
            self._warn_of_the_floor(X, scale, reference)
        else:
            self.feature_mean_ = np.zeros(X.shape[1])
            self.feature_scale_ = np.ones(X.shape[1])
            self.decoder_variance_floor_ = 0.0

    def _warn_of_the_floor(self, X, scale, reference):
        """Name the features whose density the floor decides, and 0/1 data."""
        below = np.flatnonzero(scale**2 < self.variance_floor * reference**2)
        if below.size:
            warnings.warn(
                f"{below.size} of {X.shape[1]} features are nearly constant in the "
                f"training data (features {below[:10].tolist()}): their variance is "
                f"below the decoder's variance floor {self.decoder_variance_floor_:.3g} "
                f"(variance_floor={self.variance_floor:g} times the squared median of the "
                "features' standard deviations), so the floor sets their density, and a row that differs "
                "there scores far below the rest. Remove them, or set variance_floor.",
                VarianceFloorWarning,
            )
        low, high = value_range(X)
        if low == 0 and high == 1 and np.all((X == 0) | (X == 1) | np.isnan(X)):
            warnings.warn(
                "X holds only 0 and 1: a Gaussian decoder's density on binary data is "
                "bounded only by its variance floor (the training bound grows without "
                "limit as variance_floor shrinks). Use likelihood='bernoulli'.",
                VarianceFloorWarning,
            )

    def _make_monitor(self, X, sample_weight, n_init):
        return EarlyStoppingMonitor(
            self,
            X,
            sample_weight,
            n_init,
            self.n_iter_no_change,
            best_parameters=lambda: {"parameters_": self.parameters_.copy()},
        )

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
        self._iterate = parameters.copy() if self.average_decay > 0 else parameters
        self._score_seed = int(random_state.randint(np.iinfo(np.int32).max))
        self._random_state = random_state
        self._optimizer = Adam(size, dtype, self.learning_rate, average_decay=self.average_decay)
        self._epoch = 0
        self.validation_bounds_ = np.array([])

    def _after_fit(self, X, sample_weight):
        """A continued training (``warm_start``, ``partial_fit``) starts from the model kept.

        Early stopping and ``n_init`` may keep an earlier epoch or restart
        than the last: the iterate is set to the kept average, and Adam's
        moments, which belong to the last, are dropped (a continuation starts
        a fresh Adam, ``_detach_training_state``). The count of averaged
        steps is kept, so a continuation moves the average slowly instead of
        restarting its warm-up.
        """
        self._iterate = self.parameters_.copy() if self._averaging() else self.parameters_
        self._average_steps = self._optimizer.average_steps
        self._optimizer = None

    def _averaging(self):
        """Whether ``parameters_`` is a moving average of the iterates (a buffer of its own)."""
        return self._optimizer.average_decay > 0

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

    # ------------------------------------------------------------------ the training step

    def _objective_and_gradient(self, parameters, X, sample_weight, noise, kl_weight, n_samples=1):
        """Per-row bound, and the gradient of the weighted mean training objective.

        With ``n_samples=1`` the ELBO and the gradient of
        ``sum_i w_i (rec_i - kl_weight KL_i) / sum w``; with k > 1 the
        importance-weighted bound of k draws (see ``_MinibatchELBO``).
        ``X`` is standardised, NaN where missing; ``noise`` is the standard
        normal draw of the reparameterisation, ``n_samples`` rows per row of
        X. Checked by finite differences; training runs the same computation
        in buffers kept from batch to batch (``_minibatch_step``).
        """
        data, masked = self._training_rows(X)
        step = _MinibatchELBO(self, parameters, X.shape[0], masked, n_samples)
        step.load(data.astype(parameters.dtype, copy=False), np.arange(X.shape[0]))
        return step(X.shape[0], sample_weight, noise, kl_weight)

    def _minibatch_step(self):
        """The training step on the iterate, built once per fit (and restart)."""
        step = getattr(self, "_step", None)
        if step is None or step.parameters is not self._iterate:
            n_rows = self._training_data["train"][0].shape[0]
            step = self._step = _MinibatchELBO(
                self,
                self._iterate,
                min(self.batch_size, n_rows),
                self._training_data["masked"],
                self.n_training_samples,
            )
        return step

    # ------------------------------------------------------------------ training

    def _training_pass(self, step, data, weights, when):
        """One pass of minibatch Adam over the training rows; their mean ELBO.

        Each minibatch's ELBO is taken before its own step, at the iterate
        (not the average). ``when`` names the pass in the error raised if
        training diverges.
        """
        self._epoch += 1
        kl_weight = self.kl_weight
        if self.kl_warmup:
            kl_weight *= min(1.0, self._epoch / self.kl_warmup)
        order = self._random_state.permutation(data.shape[0])
        average = self.parameters_ if self._averaging() else None
        total, total_weight = 0.0, 0.0
        for start in range(0, data.shape[0], self.batch_size):
            rows = order[start : start + self.batch_size]
            batch_weights = weights[rows]
            step.load(data, rows)
            noise = self._random_state.standard_normal(
                size=(rows.size * step.n_samples, self._fitted("n_components"))
            )
            elbo, gradient = step(rows.size, batch_weights, noise, kl_weight)
            self._optimizer.ascend(self._iterate, gradient, average)
            total += float(batch_weights @ elbo)
            total_weight += float(batch_weights.sum())
        finite = np.isfinite(self._iterate).all() and np.isfinite(self.parameters_).all()
        if not (np.isfinite(total) and finite):
            raise ValueError(
                f"Training diverged at {when}: the ELBO or the network's "
                "weights are no longer finite. Lower learning_rate, standardise X, or "
                "bound the sample weights (the estimator is left as it was)."
            )
        return total / total_weight

    def _em_iteration(self, X, sample_weight):
        """One epoch of minibatch Adam; returns the epoch's mean training ELBO.

        With early stopping, the epoch's validation bound is reported to the
        fit's monitor, which keeps the parameters of the best epoch. BLAS
        runs on one thread: a minibatch's products are too small to split (on
        2 shared cores, two threads made an epoch 3 to 8 times slower;
        ``benchmarks/bench_vae_defaults.py``).
        """
        with single_blas_thread():
            return self._epoch_of_training()

    def _epoch_of_training(self):
        data, weights = self._training_data["train"]
        elbo = self._training_pass(
            self._minibatch_step(), data, weights, when=f"epoch {self._epoch + 1}"
        )
        validation = self._validation_bound()
        if validation is not None:
            self._monitor.record_validation(validation)
        return elbo - self._training_data["jacobian"]

    def _validation_bound(self):
        """The validation rows' mean bound at ``parameters_`` (None without them): the
        ELBO, or with ``n_training_samples > 1`` the importance-weighted estimate
        that training raises, with the same draws at every epoch."""
        if self._training_data["validation"] is None:
            return None
        held_out, held_out_weights, held_out_jacobian = self._training_data["validation"]
        cached = getattr(self, "_validation_noise", None)
        if cached is None or cached[0] != self._score_seed:  # once per fit and restart
            cached = self._validation_noise = (self._score_seed, self._importance_noise(8))
        if self.n_training_samples == 1:  # the ELBO, the objective trained
            reconstruction, kl = self._elbo_terms(held_out, cached[1])
            bounds = reconstruction.mean(axis=1) - kl
        else:  # the importance-weighted estimate, which that training raises
            log_weights = self._importance_terms(held_out, cached[1])[0]
            bounds = logsumexp(log_weights, axis=1) - np.log(log_weights.shape[1])
        return np.average(bounds, weights=held_out_weights) - held_out_jacobian

    def _train_on_batch(self, X, sample_weight, when):
        """``partial_fit``'s pass over a batch; returns the batch's ELBO before it.

        That ELBO is estimated with one fresh draw from q per row (an
        unbiased estimate of the bound at the fitted parameters ``parameters_``
        the call starts from). BLAS runs on one thread, as in ``fit``'s epochs.
        """
        with single_blas_thread():
            return self._pass_over_batch(X, sample_weight, when)

    def _pass_over_batch(self, X, sample_weight, when):
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
        step = _MinibatchELBO(
            self,
            self._iterate,
            min(self.batch_size, positive.size),
            masked,
            self.n_training_samples,
        )
        self._training_pass(step, data, weights, when)
        return bound
