"""Base class of the models with a discrete latent variable (finite mixtures).

It turns per-component log-densities into responsibilities, mixing weights,
predictions, information criteria and samples; a model adds its components.
"""

from abc import abstractmethod
from numbers import Integral
from typing import Any, NamedTuple

import numpy as np
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.utils._param_validation import Interval, StrOptions

from ._base import BaseEM, add_statistics
from ._linalg import logsumexp_rows, normalize_log_rows

#: Added to every component's total responsibility so an empty one divides safely.
RESPONSIBILITY_FLOOR = 10 * np.finfo(np.float64).eps


class MixturePosterior(NamedTuple):
    """The E-step's posterior of a chunk: responsibilities, and a workspace.

    ``workspace`` holds what the E-step computed that the statistics of the
    same rows can reuse (None when the model keeps nothing).
    """

    responsibilities: np.ndarray
    workspace: Any = None


class BaseMixture(BaseEM):
    """Base class of EM mixtures ``p(x) = sum_k weights_[k] p(x | z=k)``.

    On top of :class:`BaseEM` it provides the E-step (responsibilities), the
    mixing weights, ``init_params`` (k-means, k-means++, random, random rows),
    ``predict``, ``predict_proba``, ``fit_predict``, ``bic``, ``aic`` and
    ``sample``. A mixture model only describes its components:

    - ``_estimate_log_prob(X)`` -> (n_samples, n_components) array of
      ``log p(x | z=k)``;
    - ``_component_statistics(X, responsibilities)`` -> dict of sums over the
      rows, where ``responsibilities`` are already multiplied by the sample
      weights (the base class adds ``"nk"``, their column sums);
    - optionally ``_log_prob_and_workspace(X)`` -> ``(log_prob, workspace)``
      when the statistics can reuse work of the E-step on the same rows: a
      workspace that is not None is passed to ``_component_statistics`` as a
      third argument (it may be overwritten there);
    - ``_m_step_components(statistics)``: set the component parameters
      (``weights_`` is set by the base class, from ``statistics["nk"]``);
    - ``_sample_components(labels, random_state)`` -> one row per label;
    - ``_n_component_parameters()``: free parameters of all components;
    - ``_fitted_parameters``: names of the fitted attributes, ``"weights_"``
      included.

    The gallery example ``plot_custom_em_model.py`` writes a Poisson mixture in
    about twenty lines.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, \
            default='kmeans'
        How the initial responsibilities are drawn: one-hot k-means labels,
        one-hot k-means++ seeds, uniform random rows, or one-hot random rows of
        the data. Weighted data are honoured by every method.
    tol, max_iter, n_init, random_state, warm_start, verbose, verbose_interval
        See :class:`BaseEM`.
    """

    _parameter_constraints: dict = {
        **BaseEM._parameter_constraints,
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "init_params": [StrOptions({"kmeans", "k-means++", "random", "random_from_data"})],
    }

    def __init__(
        self,
        n_components=1,
        *,
        tol=1e-3,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
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
        self.init_params = init_params

    # ------------------------------------------------------------------ hooks

    @abstractmethod
    def _estimate_log_prob(self, X):
        """Return log p(x | z=k), shape (n_samples, n_components)."""

    @abstractmethod
    def _component_statistics(self, X, responsibilities):
        """Return a dict of responsibility-weighted sums over the rows of X."""

    @abstractmethod
    def _m_step_components(self, statistics):
        """Set the component parameters from the summed statistics."""

    @abstractmethod
    def _sample_components(self, labels, random_state):
        """Return one sample from component ``labels[i]`` for each i."""

    @abstractmethod
    def _n_component_parameters(self):
        """Number of free parameters of all components together."""

    # ------------------------------------------------------------------ EM

    def _check_parameters(self, X, sample_weight):
        n_samples = X.shape[0] if sample_weight is None else np.count_nonzero(sample_weight)
        if n_samples < self.n_components:
            raise ValueError(
                "Expected n_samples >= n_components "
                f"but got n_components = {self.n_components}, "
                f"n_samples = {n_samples}"
                + ("" if sample_weight is None else " (rows of positive weight)")
            )

    def _initialize(self, X, sample_weight, random_state):
        responsibilities = self._initial_responsibilities(X, sample_weight, random_state)
        self._initialize_from_responsibilities(X, sample_weight, responsibilities, random_state)

    def _initialize_from_responsibilities(self, X, sample_weight, responsibilities, random_state):
        """One M-step from given responsibilities, accumulated chunk by chunk."""
        statistics = None
        for rows in self._chunks(X.shape[0]):
            weights = None if sample_weight is None else sample_weight[rows]
            posterior = MixturePosterior(responsibilities[rows])
            chunk = self._sufficient_statistics(X[rows], weights, posterior)
            statistics = add_statistics(statistics, chunk)
        self._m_step(statistics)

    def _initial_responsibilities(self, X, sample_weight, random_state):
        n_samples, n_components = X.shape[0], self.n_components
        if self.init_params == "random":
            responsibilities = random_state.uniform(size=(n_samples, n_components))
            responsibilities /= responsibilities.sum(axis=1)[:, np.newaxis]
            return responsibilities.astype(X.dtype)
        responsibilities = np.zeros((n_samples, n_components), dtype=X.dtype)
        if self.init_params == "kmeans":
            labels = (
                KMeans(n_clusters=n_components, n_init=1, random_state=random_state)
                .fit(X, sample_weight=sample_weight)
                .labels_
            )
            responsibilities[np.arange(n_samples), labels] = 1
            return responsibilities
        if self.init_params == "random_from_data":
            probabilities = None
            if sample_weight is not None:
                probabilities = sample_weight / sample_weight.sum()
            indices = random_state.choice(
                n_samples, size=n_components, replace=False, p=probabilities
            )
        else:
            _, indices = kmeans_plusplus(
                X, n_components, random_state=random_state, sample_weight=sample_weight
            )
        responsibilities[indices, np.arange(n_components)] = 1
        return responsibilities

    def _log_prob_and_workspace(self, X):
        """``log p(x | z=k)`` and what the statistics may reuse (here nothing)."""
        return self._estimate_log_prob(X), None

    def _log_weights(self, dtype):
        with np.errstate(divide="ignore"):
            return np.log(self.weights_).astype(dtype, copy=False)

    def _estimate_weighted_log_prob(self, X):
        log_prob = self._estimate_log_prob(X)
        return log_prob + self._log_weights(log_prob.dtype)

    def _e_step(self, X):
        log_prob, workspace = self._log_prob_and_workspace(X)
        log_prob += self._log_weights(log_prob.dtype)
        log_norm, responsibilities = normalize_log_rows(log_prob)
        return log_norm, MixturePosterior(responsibilities, workspace)

    def _sufficient_statistics(self, X, sample_weight, posterior):
        responsibilities, workspace = posterior
        if sample_weight is not None:
            responsibilities = responsibilities * sample_weight[:, np.newaxis].astype(
                responsibilities.dtype
            )
        if workspace is None:
            statistics = self._component_statistics(X, responsibilities)
        else:
            statistics = self._component_statistics(X, responsibilities, workspace)
        statistics["nk"] = responsibilities.sum(axis=0, dtype=np.float64)
        return statistics

    def _m_step(self, statistics):
        nk = statistics["nk"] + RESPONSIBILITY_FLOOR
        self.weights_ = (nk / nk.sum()).astype(self._parameter_dtype())
        self._m_step_components(statistics)

    def _parameter_dtype(self):
        """dtype of the fitted parameters: that of the training data."""
        return self._fit_dtype

    def _validate_fit_data(self, X, sample_weight):
        X, sample_weight = super()._validate_fit_data(X, sample_weight)
        self._fit_dtype = X.dtype
        return X, sample_weight

    def _log_density(self, X):
        return logsumexp_rows(self._estimate_weighted_log_prob(X))

    def _fitted_components(self):
        """Number of components of the fitted (or initialised) parameters.

        Everything after fit reads it, never ``n_components``, which
        ``set_params`` may have changed since.
        """
        return self.weights_.shape[0] if hasattr(self, "weights_") else self.n_components

    def _row_width(self):
        return self._fitted_components() + self.n_features_in_

    def _sample(self, n_samples, random_state):
        weights = np.asarray(self.weights_, dtype=np.float64)
        labels = random_state.choice(weights.shape[0], size=n_samples, p=weights / weights.sum())
        return self._sample_components(labels, random_state), labels

    # ------------------------------------------------------------------ use

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit the model and return the most probable component of each row.

        Equal to ``fit(X).predict(X)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : Ignored
            Not used, present for API consistency.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each row (see ``fit``).

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Component labels.
        """
        return self.fit(X, sample_weight=sample_weight).predict(X)

    def predict(self, X):
        """Most probable component of each row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Component labels.
        """
        X = self._validate_predict_data(X)
        return self._map_chunks(
            lambda chunk: np.argmax(self._estimate_weighted_log_prob(chunk), axis=1), X
        )

    def predict_proba(self, X):
        """Posterior probability of each component for each row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data.

        Returns
        -------
        responsibilities : ndarray of shape (n_samples, n_components)
            ``p(z=k | x)``; each row sums to one.
        """
        X = self._validate_predict_data(X)
        return self._map_chunks(
            lambda chunk: normalize_log_rows(self._estimate_weighted_log_prob(chunk))[1], X
        )

    def _n_parameters(self):
        """Number of free parameters of the mixture."""
        return int(self._n_component_parameters() + self._fitted_components() - 1)
