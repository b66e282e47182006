"""BernoulliMixture: binary data as a mixture of independent Bernoulli distributions.

Written as its maths alone on skem's core: the log-density of each component,
the sums the M-step needs, the M-step, sampling, and the conditionals of
missing values. Chunks, threads, weights, dask arrays, restarts, NaN
bookkeeping, ``partial_fit``, ``impute``, callbacks and progress come from
``BaseMixture`` and ``BaseEM``.
"""

from numbers import Real

import numpy as np
from sklearn.utils._param_validation import Interval

from .._core import ONLINE_PARAMETER_CONSTRAINTS, route_of, weighted_moments
from .._core._namespaces import host_dtype, is_foreign
from ._base import RESPONSIBILITY_FLOOR, BaseMixture
from ._bernoulli_device import DEVICE_METHODS, binary_on_device, device_twin


class BernoulliConditionals:
    """Missing values given the component: Bernoulli with the component's means,
    independent of the observed ones. ``filled`` has zeros where ``missing``."""

    def __init__(self, filled, missing, means):
        self.filled, self.missing, self.means = filled, missing, means

    def mean_sum(self, responsibilities):
        """``sum_n r_nk E[x_n | x_O, k]``, (K, d)."""
        weights = responsibilities.T
        return weights @ self.filled + (weights @ self.missing) * self.means

    def expected(self, posterior, means):
        return np.where(self.missing, posterior @ means, self.filled)

    def draw(self, labels, means, uniform):
        return np.where(self.missing, uniform < means[labels], self.filled)


class BernoulliMixture(BaseMixture):
    """Mixture of multivariate Bernoulli distributions, fitted by EM.

    ``p(x) = sum_k weights_[k] prod_d means_[k, d]^x_d (1 - means_[k, d])^(1 - x_d)``
    for rows of zeros and ones (Bishop 2006, section 9.3.3). The M-step is
    ``means_[k] = sum_n r_nk x_n / sum_n r_nk``, held in
    ``[min_probability, 1 - min_probability]``: that is the exact maximiser
    over the interval (the objective is concave in each probability), so the
    bound never falls. NaN marks a missing value (missing at random): it is
    integrated out exactly, and ``impute`` fills it with its conditional
    probability, or a 0/1 draw.

    Parameters
    ----------
    n_components : int, default=1
        Number of components.
    min_probability : float, default=1e-6
        Bounds of every probability, so that a value never seen in a
        component costs ``log(min_probability)`` nats rather than an infinite
        log-density.
    binarize : float or None, default=None
        None: X must hold only 0, 1 (and NaN); a float: values above it
        count as 1, the others as 0 (as scikit-learn's ``BernoulliNB``;
        ``impute`` then returns the rows so binarised).
    tol, max_iter, n_init, init_params, init_size, random_state, warm_start, \
verbose, verbose_interval, learning_decay, learning_offset
        As for :class:`skem.EMGaussianMixture`.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
        The probability of a one, per component and feature.
    lower_bounds_, lower_bound_, n_iter_, converged_, n_features_in_
        As for every skem model (the bound is the mean log-likelihood).

    Examples
    --------
    >>> import numpy as np
    >>> from skem import BernoulliMixture
    >>> rng = np.random.RandomState(0)
    >>> X = (rng.uniform(size=(600, 8)) < np.repeat([[0.9] * 4 + [0.1] * 4,
    ...                                              [0.1] * 4 + [0.9] * 4], 300, 0)) * 1.0
    >>> model = BernoulliMixture(2, random_state=0).fit(X)
    >>> np.sort(model.means_[:, 0]).round(1)
    array([0.1, 0.9])
    >>> X[0, :2] = np.nan
    >>> model.impute(X[:1]).round(1)[0, :2]
    array([0.9, 0.9])
    """

    _parameter_constraints: dict = {
        **BaseMixture._parameter_constraints,
        **ONLINE_PARAMETER_CONSTRAINTS,
        "min_probability": [Interval(Real, 0.0, 0.5, closed="neither")],
        "binarize": [Real, None],
    }
    _fitted_parameters = ("weights_", "means_")
    _terms_from = ("means_",)
    _allow_nan = True
    _imputation_noise = "uniform"  # (draws of 0/1 values)

    # fmt: off
    def __init__(self, n_components=1, *, min_probability=1e-6, binarize=None, tol=1e-3,
                 max_iter=100, n_init=1, init_params="kmeans", init_size=None,
                 random_state=None, warm_start=False, verbose=0, verbose_interval=10,
                 learning_decay=0.7, learning_offset=10.0):
        super().__init__(n_components, tol=tol, max_iter=max_iter, n_init=n_init,
                         init_params=init_params, init_size=init_size,
                         random_state=random_state, warm_start=warm_start, verbose=verbose,
                         verbose_interval=verbose_interval)
        self.min_probability, self.binarize = min_probability, binarize
        self.learning_decay, self.learning_offset = learning_decay, learning_offset
    # fmt: on

    # ------------------------------------------------------------------ data

    #: The E-step on an accelerator; the k-means start on the host (``_bernoulli_device``)
    _device_methods, _device_function, _kmeans_on_device = DEVICE_METHODS, device_twin, False

    def _binary(self, X, block=False):
        """X with values above ``binarize`` as 1 (NaN kept), or checked to be 0/1."""
        if is_foreign(X):  # (on its device)
            return binary_on_device(self, X)
        if self.binarize is not None:
            return np.where(np.isnan(X), X, X > self.binarize).astype(X.dtype)
        if not np.all((X == 0) | (X == 1) | np.isnan(X)):
            raise ValueError(
                "BernoulliMixture takes binary data: X has values other than 0, 1 and NaN; "
                "set binarize=threshold to count the values above it as ones."
            )
        return X

    def _validate_fit_data(self, X, sample_weight, reset=True):
        X, sample_weight = super()._validate_fit_data(X, sample_weight, reset)
        return route_of(X).check_rows(self._binary, X), sample_weight

    def _validate_predict_data(self, X, *, allow_unobserved_rows=False):
        X = super()._validate_predict_data(X, allow_unobserved_rows=allow_unobserved_rows)
        return route_of(X).check_rows(self._binary, X)

    def _check_parameters(self, X, sample_weight):
        super()._check_parameters(X, sample_weight)
        dtype = host_dtype(X.dtype)  # (X may be on a device)
        if dtype.type(1) - dtype.type(self.min_probability) == 1:
            raise ValueError(
                f"min_probability={self.min_probability!r} is below the resolution of "
                f"{dtype} near 1: a probability held at 1 - min_probability would be 1."
            )

    def _prepare_fit(self, X, sample_weight, random_state):
        super()._prepare_fit(X, sample_weight, random_state)
        self._column_means = weighted_moments(X, sample_weight)[0]  # (the start's fills)

    _fit_scratch = (*BaseMixture._fit_scratch, "_column_means")

    # ------------------------------------------------------------------ the maths

    def _derive_terms(self):
        means = np.asarray(self.means_, dtype=np.float64)
        log_one, log_zero = np.log(means), np.log1p(-means)
        return log_one - log_zero, log_zero  # log-odds, and the log-probability of a 0

    def _log_prob_observed(self, filled, observed):
        log_odds, log_zero = self._terms()
        return filled @ log_odds.T + observed @ log_zero.T

    def _estimate_log_prob(self, X):
        X = X.astype(np.float64, copy=False)
        return self._log_prob_observed(X, np.ones_like(X))

    def _missing_log_prob(self, X, missing):
        filled = np.where(missing, 0.0, X)
        means = np.asarray(self.means_, dtype=np.float64)
        conditionals = BernoulliConditionals(filled, missing, means)
        return self._log_prob_observed(filled, ~missing * 1.0), conditionals

    def _component_statistics(self, X, responsibilities):
        return {"sum_x": responsibilities.T.astype(np.float64) @ X.astype(np.float64)}

    def _missing_statistics(self, conditionals, responsibilities, initial):
        return {"sum_x": conditionals.mean_sum(responsibilities)}

    def _initial_conditionals(self, X, missing):
        return BernoulliConditionals(np.where(missing, 0.0, X), missing, self._column_means)

    def _m_step_components(self, statistics):
        means = statistics["sum_x"] / (statistics["nk"] + RESPONSIBILITY_FLOOR)[:, np.newaxis]
        bound = self.min_probability
        self.means_ = np.clip(means, bound, 1 - bound).astype(self._parameter_dtype())

    def _statistics_of_parameters(self):
        weights = np.asarray(self.weights_, dtype=np.float64)
        return {"nk": weights, "sum_x": weights[:, np.newaxis] * self.means_.astype(np.float64)}

    def _sample_components(self, labels, random_state):
        uniform = random_state.uniform(size=(labels.shape[0], self.means_.shape[1]))
        return (uniform < self.means_[labels]).astype(self.means_.dtype)

    def _n_component_parameters(self):
        return self.means_.size
