"""EMImputer: fill missing values from a density fitted by EM, as a transformer.

The model is fitted on the incomplete rows themselves (EM integrates the
missing values out) and fills each hole with its conditional mean, or a draw.
"""

import math
from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.impute import MissingIndicator
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.validation import (
    _check_feature_names,
    _check_feature_names_in,
    _check_n_features,
    check_is_fitted,
    validate_data,
)

from .._core import weighted_moments
from .._core._checks import check_not_dispatched
from .._core._monitor import CallbackSupportMixin, with_callbacks
from ._selection import FitTasks, select_mixtures

#: A feature whose observed values are all equal but for fewer than this
#: share of them is imputed with its most common value and not modelled: on
#: the digits with values missing at random, a pixel with one stroke among
#: 1500 observed values was otherwise imputed at 98 standard deviations.
RARE_VALUES_SHARE = 0.01


def _is_nan(value):
    return isinstance(value, Real) and math.isnan(value)


def column_moments(X):
    """Mean and standard deviation of the observed (not NaN) values of each column of X.

    At any finite scale: each column is first divided by the power of two
    just above its largest magnitude, which moves exponents only and is
    exact, so neither its sum (values near 1e308) nor its squares (1e200
    squared overflows, 1e-200 squared underflows to 0) leave the range of
    floats; the moments are multiplied back. Every column must have an
    observed value.
    """
    exponents = np.frexp(np.nanmax(np.abs(X), axis=0))[1]
    mean, variance = weighted_moments(np.ldexp(X, -exponents), None)
    return np.ldexp(mean, exponents), np.ldexp(np.sqrt(variance), exponents)


def standardized(X, mean, scale):
    """``(X - mean) / scale`` column by column, in float64, without overflow.

    The three are divided by the power of two nearest the scale first, so
    a difference of values near 1e308 cannot overflow; the result is the
    same to the last bit wherever the plain formula does not overflow.
    """
    exponents = np.frexp(scale)[1]
    shifted = np.ldexp(np.asarray(X, dtype=np.float64), -exponents) - np.ldexp(mean, -exponents)
    return shifted / np.ldexp(scale, -exponents)


def unstandardized(Z, mean, scale):
    """``Z * scale + mean`` column by column, the inverse of ``standardized``.

    Computed in units of the power of two nearest the scale, so only a
    result beyond the range of floats overflows.
    """
    exponents = np.frexp(scale)[1]
    return np.ldexp(Z * np.ldexp(scale, -exponents) + np.ldexp(mean, -exponents), exponents)


class EMImputer(CallbackSupportMixin, TransformerMixin, BaseEstimator):
    """Impute missing values with the conditional distribution of a fitted model.

    ``fit`` fits a clone of ``estimator`` to the data with their holes: EM
    marginalises the missing values, so nothing is filled in first and no
    value is imputed from another imputed value. ``transform`` replaces every
    missing value by ``E[x_missing | x_observed]`` under the fitted density
    (or, with ``sample_posterior=True``, by one draw from
    ``p(x_missing | x_observed)``, for multiple imputation); observed values
    are returned unchanged.

    ``fit`` reports to scikit-learn's callbacks (scikit-learn >= 1.9), alone
    or in a ``Pipeline``: each fit of a model (for the default, every
    validation fit and refit of the Notes) is a task of the imputer's fit,
    with the model's restarts and iterations beneath it, so
    ``EMImputer().set_callbacks(ProgressBar()).fit(X)`` shows its progress.

    Parameters
    ----------
    estimator : estimator object, default=None
        A skem model with an ``impute`` method (:class:`~skem.EMGaussianMixture`,
        :class:`~skem.ProbabilisticPCA`, :class:`~skem.MixtureOfPPCA`,
        :class:`~skem.AmortizedVAE`); it is cloned and fitted to the features
        it models (see ``keep_empty_features``). None fits the Gaussian
        mixtures described in the Notes.
    missing_values : int or float, default=np.nan
        The placeholder of a missing value. With a value other than NaN, X
        must not contain NaN.
    sample_posterior : bool, default=False
        If False, fill in conditional means; if True, one draw from the
        conditional distribution of the missing values given the observed
        ones (the imputed values then vary as much as the model says they
        could; a feature that is not modelled, see ``keep_empty_features``,
        always gets its most common value).
    standardize : bool, default=True
        Fit the estimator on the features centred and divided by the mean and
        standard deviation of their observed values, and map its imputations
        back. A model with a variance floor or a regularisation in absolute
        units (``reg_covar``) then behaves the same whatever the units of the
        features: a feature multiplied by a constant (1e-300 or 1e300 too)
        gets its imputations multiplied by it, to the rounding of the
        product (exactly for a power of two). (On the unscaled breast-cancer data with 10% of the cells
        missing, the default model's error was 0.35 standard deviations with
        it and 0.59 without.)
    clip : bool, default=False
        Keep the imputed conditional means within the range of the observed
        values of each feature in ``fit``. This stops a model from
        extrapolating far outside the data (a mixture component fitted to a
        few rows can regress a feature well beyond its range: once, on the
        digits with values missing at random, to 98 standard deviations,
        where the observed values reach 42), but it also stops a right
        extrapolation for a row beyond the observed ones (on the
        breast-cancer data, whose features are close functions of each
        other, clipping added 0.01 to the error). Draws
        (``sample_posterior=True``) are never clipped: that would pile
        probability on the bounds.
    add_indicator : bool, default=False
        If True, append the output of :class:`sklearn.impute.MissingIndicator`
        (one column for each feature with a missing value in ``fit``), so a
        downstream model can use the fact that a value was missing.
    keep_empty_features : bool, default=False
        Features with no observed value in ``fit`` carry no information to
        model. If False they are dropped from the output; if True they are
        kept, their missing values imputed by 0. (A feature whose observed
        values are all equal is kept and imputed with that value, and so is
        one whose observed values are all equal but for fewer than 1% of
        them: the estimator does not model it, as a Gaussian fitted to a
        handful of rare values extrapolates wildly from them.)
    random_state : int, RandomState instance or None, default=None
        Seeds the default estimator and the draws of ``transform`` when
        ``sample_posterior=True``. An int gives the same draws on every call
        of ``transform``; for several imputations of the same data, use
        several imputers with different seeds. A given ``estimator`` keeps
        its own ``random_state``.

    Attributes
    ----------
    estimator_ : estimator object, ImputationAverage or None
        The fitted clone of ``estimator`` (for the default, the
        :class:`~skem.impute.ImputationAverage` of the mixtures kept; see the
        Notes), fitted to the features it models (those whose observed values
        are not all equal, or all equal but for fewer than 1% of them), in
        standardised units if ``standardize=True``; None if there is no such
        feature.
    mean_ : ndarray of shape ``(n_features_in_,)``
        Mean of the observed values of each feature (0 for a feature without
        any): the value of a constant feature, and what the modelled features
        are centred by if ``standardize=True``.
    scale_ : ndarray of shape ``(n_features_in_,)``
        Standard deviation of the observed values of each modelled feature (1
        for the others): what the modelled features are divided by if
        ``standardize=True``.
    indicator_ : sklearn.impute.MissingIndicator or None
        The indicator of missing values if ``add_indicator=True``.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape ``(n_features_in_,)``
        Feature names seen during fit, if they were all strings.

    See Also
    --------
    sklearn.impute.IterativeImputer : regresses each feature on the others in
        turn (chained equations) instead of fitting one joint density.
    sklearn.impute.KNNImputer : averages the values of the nearest rows.

    Notes
    -----
    The default model is an average of Gaussian mixtures with full
    covariances (:class:`~skem.EMGaussianMixture`), an
    :class:`~skem.impute.ImputationAverage`, fitted to the standardised
    features:

    - A single Gaussian already imputes every missing value by a linear
      regression on the observed ones of its row (as ``IterativeImputer``
      with ``BayesianRidge``, but fitted jointly); more components help when
      the rows form clusters, and hurt when they do not, since each
      covariance is then estimated from fewer rows.
    - So the numbers of components are chosen on the data: each candidate of
      the grid 1, 2, 3, 5, 10, 20, 30, 50, 100 that leaves at least two rows
      per feature and component is fitted with some observed values hidden
      (one in a row at most, a tenth of them at most, so the missing share
      barely grows), and scored by its error on the hidden values (about
      500 of them, from up to 5 rounds of hiding), squared up to 3 standard
      deviations and linear beyond, so that a few extreme values (the rare
      strokes of the digits' corner pixels) cannot decide. A candidate whose
      mean error exceeds the best's on the same cells by two standard
      errors of their difference is dropped, in the round where that shows
      (a race); the search stops after two candidates in a row that do not
      improve on the best. The candidates left (not clearly worse than the
      best) are averaged: ``transform`` returns the mean of their
      imputations. On a few hundred rows the hidden values cannot tell,
      say, two components from three, and a mean of both imputes better
      than either. With fewer than 200 values to hide, the comparison
      would be noise, and one component is fitted. The likelihood (BIC)
      picks worse: on the diabetes data it prefers three components, which
      split the binary feature, and impute worse than one or two.
    - EM runs until the bound rises by less than 0.01 nats per row (100
      iterations at most), on the data with hidden values, then again on
      all the data for each mixture kept.
    - ``reg_covar`` is ``0.3 * n_features * n_components / n_samples`` times
      the mean variance of the features (1 once standardised): the sampling
      error of a covariance estimated from ``n_samples / n_components``
      rows grows with that ratio, so small components are held closer to
      spherical.

    The constants were chosen on masks of seeds 0 to 14 of the wine,
    breast-cancer, diabetes and digits data sets, and checked on masks of
    seeds 100 to 102 of these and of four data sets never used in tuning
    (``benchmarks/bench_impute.py``, which takes them from statsmodels):
    two choices made in tuning did not win there and were undone (weights
    fitted to the hidden values in the mean, which did no better than equal
    weights, and EM stopped after 6 and 2 iterations, worse than EM run to
    convergence in 18 of the 24 cells). On masks of seeds 200 to 202, used
    for nothing else, the mean of the sizes left beat the one best size in
    22 of 24 cells, and EM to convergence beat the early stop in 19. The
    factor 0.3 of ``reg_covar`` did not win there: 0.1 imputed better in 14
    of the 24 cells (by 0.006 standard deviations on average, 0.04 on the
    macroeconomic data) and in 18 of the 24 of seeds 100 to 102; it is
    kept, as a factor chosen on those masks would no longer be measured on
    held-out ones.

    Examples
    --------
    Two clusters, on each of which the second coordinate is a line in the
    first (rising on one, falling on the other); a tenth of the second
    coordinates are missing:

    >>> import numpy as np
    >>> from skem.impute import EMImputer
    >>> rng = np.random.RandomState(0)
    >>> t = rng.uniform(-1, 1, size=(300, 1))
    >>> X = np.vstack([np.hstack([t, t]), np.hstack([t + 4, -t])])
    >>> X += 0.05 * rng.normal(size=X.shape)
    >>> X[::10, 1] = np.nan
    >>> imputer = EMImputer(random_state=0).fit(X)
    >>> [model.n_components for model in imputer.estimator_.estimators_]
    [2, 5]
    >>> imputer.transform([[0.5, np.nan], [4.5, np.nan]]).round(1)
    array([[ 0.5,  0.5],
           [ 4.5, -0.5]])

    (A single Gaussian, or ``IterativeImputer``, fills both with 0.) In a
    pipeline, before any scikit-learn model:

    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> y = np.repeat([0, 1], 300)
    >>> model = make_pipeline(EMImputer(random_state=0), LogisticRegression()).fit(X, y)
    >>> model.predict([[0.2, np.nan], [4.2, np.nan]])
    array([0, 1])
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "impute"]), None],
        "missing_values": [Real],
        "sample_posterior": ["boolean"],
        "standardize": ["boolean"],
        "clip": ["boolean"],
        "add_indicator": ["boolean"],
        "keep_empty_features": ["boolean"],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        estimator=None,
        *,
        missing_values=np.nan,
        sample_posterior=False,
        standardize=True,
        clip=False,
        add_indicator=False,
        keep_empty_features=False,
        random_state=None,
    ):
        self.estimator = estimator
        self.missing_values = missing_values
        self.sample_posterior = sample_posterior
        self.standardize = standardize
        self.clip = clip
        self.add_indicator = add_indicator
        self.keep_empty_features = keep_empty_features
        self.random_state = random_state

    @with_callbacks
    def fit(self, X, y=None):
        """Fit the estimator to X, whose missing values it integrates out.

        Rows without any observed value carry no information and are left
        out of the fit.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data with missing values.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : EMImputer
            The fitted imputer.
        """
        self._validate_params()
        # Checked without touching the estimator: a failed fit leaves it as it was.
        check_not_dispatched(X, self)
        data = check_array(X, **self._array_checks(), ensure_min_samples=2)
        holes = np.where(self._missing_mask(data), np.nan, data)
        missing = np.isnan(holes)
        observed_features = ~missing.all(axis=0)
        if not observed_features.any():
            raise ValueError(
                "X has no observed value: every entry is missing, nothing can be imputed."
            )
        observed = holes[:, observed_features]
        mean, scale = np.zeros(data.shape[1]), np.ones(data.shape[1])
        mean[observed_features], spread = column_moments(observed)
        # a feature whose observed values are all equal is imputed with that value:
        # it tells a model nothing and makes every covariance singular; so is one
        # with a few rare values (see RARE_VALUES_SHARE)
        low, high = np.zeros(data.shape[1]), np.zeros(data.shape[1])
        low[observed_features] = np.nanmin(observed, axis=0)
        high[observed_features] = np.nanmax(observed, axis=0)
        fill = mean.copy()
        varying = low < high
        for feature in np.flatnonzero(varying):
            values, counts = np.unique(holes[~missing[:, feature], feature], return_counts=True)
            if counts.sum() - counts.max() < RARE_VALUES_SHARE * counts.sum():
                varying[feature] = False
                fill[feature] = values[counts.argmax()]
        varying_spread = spread[varying[observed_features]]
        # (0 only where the spread is below the smallest float: values near 1e-323)
        scale[varying] = np.where(varying_spread > 0, varying_spread, 1.0)
        estimator = None
        n_fits = 0 if not varying.any() else 1 if self.estimator is not None else None
        tasks = FitTasks(self, data, max_subtasks=n_fits)
        if varying.any():  # (then at least two rows have an observed value to model)
            rows = ~missing[:, varying].all(axis=1)
            values = self._model_units(holes[np.ix_(rows, varying)], mean[varying], scale[varying])
            estimator = self._fit_estimator(values.astype(data.dtype, copy=False), tasks)
        indicator = None
        if self.add_indicator:
            indicator = MissingIndicator(missing_values=self.missing_values, error_on_new=False)
            indicator.fit(data)

        _check_n_features(self, data, reset=True)
        _check_feature_names(self, X, reset=True)
        self.estimator_ = estimator
        self.mean_, self.scale_ = mean, scale
        self._fill_values = fill
        self.indicator_ = indicator
        self._observed_features, self._modelled_features = observed_features, varying
        self._observed_range = (low[varying], high[varying])
        tasks.end()
        return self

    def transform(self, X):
        """Replace the missing values of X by conditional means (or draws).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data with missing values.

        Returns
        -------
        X_imputed : ndarray of shape (n_samples, n_features_out)
            X with its missing values imputed and its observed values
            unchanged; without the features that had no observed value in
            ``fit`` (unless ``keep_empty_features=True``), followed by the
            missing indicators if ``add_indicator=True``.
        """
        check_is_fitted(self)
        check_not_dispatched(X, self)
        data = validate_data(self, X, reset=False, **self._array_checks())
        missing = self._missing_mask(data)
        # features not modelled take their most common value, empty ones 0
        fill = getattr(self, "_fill_values", self.mean_)  # (an imputer pickled before it)
        imputed = np.where(missing, fill, data).astype(data.dtype, copy=False)
        modelled = self._modelled_features
        rows = np.flatnonzero(missing[:, modelled].any(axis=1))
        if rows.size:
            block = np.ix_(rows, modelled)
            mean, scale = self.mean_[modelled], self.scale_[modelled]
            values = self._model_units(np.where(missing[block], np.nan, data[block]), mean, scale)
            random_state = check_random_state(self.random_state) if self.sample_posterior else None
            filled = self.estimator_.impute(
                values.astype(data.dtype, copy=False),
                sample_posterior=self.sample_posterior,
                random_state=random_state,
            )
            filled = self._data_units(filled, mean, scale)
            if self.clip and not self.sample_posterior:
                filled = np.clip(filled, *self._observed_range)
            imputed[block] = np.where(missing[block], filled, data[block])
        if not self.keep_empty_features:
            imputed = imputed[:, self._observed_features]
        if self.indicator_ is not None:
            imputed = np.hstack([imputed, self.indicator_.transform(data)])
        return imputed

    def get_feature_names_out(self, input_features=None):
        """Names of the output features: the imputed ones, then the indicators.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Input feature names; ``feature_names_in_`` if None and defined,
            else ``x0, x1, ...``.

        Returns
        -------
        feature_names_out : ndarray of str objects
            The names of the columns ``transform`` returns.
        """
        check_is_fitted(self)
        input_features = _check_feature_names_in(self, input_features)
        names = (
            input_features
            if self.keep_empty_features
            else (input_features[self._observed_features])
        )
        if self.indicator_ is None:
            return names
        return np.concatenate([names, self.indicator_.get_feature_names_out(input_features)])

    def _array_checks(self):
        """The arguments of ``check_array`` for X: floats, NaN only as the marker."""
        return {
            "dtype": [np.float64, np.float32],
            "ensure_all_finite": "allow-nan" if _is_nan(self.missing_values) else True,
        }

    def _missing_mask(self, X):
        if _is_nan(self.missing_values):
            return np.isnan(X)
        return X == self.missing_values

    def _model_units(self, values, mean, scale):
        """Values of the modelled features as the estimator sees them, given their statistics."""
        return standardized(values, mean, scale) if self.standardize else values

    def _data_units(self, values, mean, scale):
        """The estimator's values of the modelled features in the units of the data."""
        return unstandardized(values, mean, scale) if self.standardize else values

    def _fit_estimator(self, X, tasks):
        if self.estimator is not None:
            return tasks.fit(clone(self.estimator), X, "fit estimator")
        return select_mixtures(X, check_random_state(self.random_state), tasks)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = _is_nan(self.missing_values)
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
