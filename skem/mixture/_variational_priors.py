"""The priors of VariationalGaussianMixture: checked, and their defaults from the data.

scikit-learn sets them in ``_check_parameters``; here they are set once per fit
(``_prepare_fit``), from one pass over X wherever it lives, with sample
weights counting rows and missing values (NaN) skipped.
"""

from math import exp, log

import numpy as np

from .._core import Lazy, reduce_rows, route_of, row_weights, weighted_moments
from .._core._covariance import COVARIANCES
from .._core._routes import log_total_weight, observed_column_sums
from .._core._structure import gram
from ._initial_values import _check_shape
from ._variational_maths import Priors, as_float, prior_log_det, prior_rank


class VariationalPriors:
    """The priors' part of :class:`skem.VariationalGaussianMixture` (a mixin before
    :class:`skem.mixture._base.BaseMixture`)."""

    def _given_priors(self, n_features):
        """The priors the user gave, validated (scikit-learn's messages); None where not."""
        given = {"mean": None, "covariance": None}
        dof = self.degrees_of_freedom_prior
        if dof is not None and not dof > n_features - 1.0:
            raise ValueError(
                "The parameter 'degrees_of_freedom_prior' should be greater than "
                f"{n_features - 1}, but got {dof:.3f}."
            )
        if self.mean_prior is not None:
            given["mean"] = as_float(self.mean_prior)
            _check_shape(given["mean"], (n_features,), "means")
        if self.covariance_prior is not None:
            covariance = COVARIANCES[self.covariance_type]
            name = self.covariance_type
            shape = {0: (), 1: (n_features,), 2: (n_features, n_features)}
            rank = prior_rank(covariance)
            prior = (
                as_float(self.covariance_prior)
                if rank
                else np.asarray(self.covariance_prior, dtype=np.float64)
            )
            _check_shape(prior, shape[rank], f"{name} covariance_prior")
            covariance.from_precisions(prior.astype(np.float64), f"{name} precision")
            given["covariance"] = prior
        return given

    def _check_parameters(self, X, sample_weight=None):
        """Check the parameters against X (scikit-learn's private signature too)."""
        super()._check_parameters(X, sample_weight)
        self._given_priors(X.shape[1])
        total = X.shape[0] * getattr(self, "_weight_scale", 1.0)
        if self.covariance_prior is None and not total > 1.0:
            raise ValueError(
                "The default covariance_prior is the covariance of X with "
                f"sum(sample_weight) - 1 degrees of freedom, but sum(sample_weight) = "
                f"{total:.3g} is not above 1: weights count rows here. Give "
                "covariance_prior, or larger weights."
            )

    def _prepare_fit(self, X, sample_weight, random_state):
        """The priors of this fit (scikit-learn sets them in ``_check_parameters``)."""
        super()._prepare_fit(X, sample_weight, random_state)
        self._covariance = covariance = COVARIANCES[self.covariance_type]
        n_features = X.shape[1]
        given = self._given_priors(n_features)
        gamma = self.weight_concentration_prior
        self.weight_concentration_prior_ = 1.0 / self.n_components if gamma is None else gamma
        beta = self.mean_precision_prior
        self.mean_precision_prior_ = 1.0 if beta is None else beta
        dof = self.degrees_of_freedom_prior
        self.degrees_of_freedom_prior_ = n_features if dof is None else dof
        self._incomplete_share = route_of(X).incomplete_row_share(X)
        # (with NaN, the start's fills where its rows observe nothing: computed then)
        self._column_moments = Lazy(lambda: weighted_moments(X, sample_weight))
        moments = None
        if given["mean"] is None or given["covariance"] is None:
            moments = self._data_moments(X, sample_weight, given["covariance"] is None)
        self.mean_prior_ = moments[0] if given["mean"] is None else given["mean"]
        if given["covariance"] is not None:
            self.covariance_prior_ = given["covariance"]
        elif covariance.template == ("K",):  # spherical: the mean variance
            self.covariance_prior_ = moments[1].mean()
        else:
            self.covariance_prior_ = moments[1]

    def _data_moments(self, X, sample_weight, with_covariance=True):
        """The weighted mean of X, and (``with_covariance``) its covariance with ``sum(weights) - 1``
        degrees of freedom (np.cov's with frequency weights; the variances alone
        for the diagonal structures).

        With NaN: each column's mean and variance of its observed values, and
        the covariance of X with every missing value at its column's mean
        scaled to those variances (positive semi-definite, as a prior's must be).
        """
        matrices = self._covariance.matrices

        def scatter(block, weights):
            centered = np.subtract(block, mean, dtype=np.float64)
            np.copyto(centered, 0.0, where=np.isnan(centered))  # (a missing value at the mean)
            if matrices:
                return gram(centered * np.sqrt(row_weights(weights, block.shape[0]))[:, None])
            return row_weights(weights, block.shape[0]) @ centered**2

        rows = self._chunk_rows()
        weighted_sum, totals = reduce_rows(observed_column_sums, X, sample_weight, rows)
        mean = weighted_sum / totals
        if not with_covariance:
            return mean, None
        degrees = totals * self._weight_scale - 1.0
        if np.any(degrees <= 0):
            raise ValueError(
                f"Columns {np.flatnonzero(degrees <= 0)[:10].tolist()} of X are observed in "
                "rows of total weight at most 1: the default covariance_prior (the "
                "covariance of the observed values, weights counting rows) is undefined "
                "there. Give covariance_prior."
            )
        spread = reduce_rows(scatter, X, sample_weight, rows)
        if np.all(degrees == degrees[0]):
            return mean, spread * (self._weight_scale / degrees[0])
        if matrices:
            degrees = np.sqrt(np.outer(degrees, degrees))
        return mean, spread * self._weight_scale / degrees

    def _priors(self):
        """The priors as the updates and the bound read them."""
        covariance = self._covariance
        n_features = self.mean_prior_.shape[0]
        prior = np.asarray(self.covariance_prior_, dtype=np.float64)
        return Priors(
            float(self.weight_concentration_prior_),
            float(self.mean_precision_prior_),
            np.asarray(self.mean_prior_, dtype=np.float64),
            float(self.degrees_of_freedom_prior_),
            prior,
            -prior_log_det(covariance, prior, n_features),
        )

    def _validate_fit_data(self, X, sample_weight, reset=True):
        """As the core's, keeping the weights' scale: they count rows here."""
        X, weights = super()._validate_fit_data(X, sample_weight, reset)
        self._weight_scale = 1.0
        if sample_weight is not None:  # (validation scaled the weights to mean one)
            self._weight_scale = exp(log_total_weight(X, sample_weight) - log(X.shape[0]))
        return X, weights
