"""GaussianMixtureIC: the number of components and the covariance type chosen by BIC."""

import time
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, DensityMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from .._core._checks import check_not_dispatched
from .._core._covariance import COVARIANCES
from ._gaussian_mixture import EMGaussianMixture

#: ``covariance_type="all"``: mclust's four families of scikit-learn's names.
ALL_TYPES = ("spherical", "diag", "tied", "full")


class GaussianMixtureIC(ClusterMixin, DensityMixin, BaseEstimator):
    """A Gaussian mixture whose size and covariance type are chosen by BIC (or AIC).

    mclust's workflow (Fraley & Raftery 2002; scikit-learn issue #19338): every
    number of components in ``n_components`` and every type in
    ``covariance_type`` is fitted by :class:`skem.EMGaussianMixture` from the
    same seed, and the candidate of the lowest criterion on the training data
    is kept as ``best_estimator_``. ``results_`` holds every candidate's
    criterion, parameter count, bound and fit time (a dict of arrays:
    ``pandas.DataFrame(model.results_)`` shows it as a table). Prediction,
    scores and sampling are the best model's, so the selector works where a
    mixture does: as the last step of a Pipeline, with ``fit_predict``.

    Parameters
    ----------
    n_components : int or iterable of int, default=10
        The numbers of components tried: ``1, ..., n_components`` for an int.
        Numbers above the number of rows (of positive weight) are skipped.
    covariance_type : {'all', 'full', 'tied', 'diag', 'spherical', \
'tied_diag'} or list of them, default='all'
        The covariance types tried; 'all' is the four of scikit-learn.
    criterion : {'bic', 'aic'}, default='bic'
        ``-2 log L + p log N`` or ``-2 log L + 2 p`` on the training rows (N the
        sum of ``sample_weight`` when given): lower is better.
    tol, reg_covar, max_iter, n_init, init_params
        As for :class:`skem.EMGaussianMixture`, for every candidate.
    random_state : int, RandomState instance or None, default=None
        One seed is drawn from it and every candidate starts from that seed,
        so candidates differ by their structure, not their luck.
    verbose : int, default=0
        1 prints a line per candidate.

    Attributes
    ----------
    best_estimator_ : EMGaussianMixture
        The candidate of the lowest criterion, fitted.
    n_components_ : int
        Its number of components.
    covariance_type_ : str
        Its covariance type.
    criterion_ : float
        Its criterion.
    results_ : dict of ndarray
        One entry per candidate tried: ``n_components``, ``covariance_type``,
        ``criterion``, ``n_parameters``, ``lower_bound`` (the mean
        log-likelihood), ``converged`` and ``fit_time`` (seconds).
    n_iter_ : int
        The best model's number of EM iterations.
    labels_ : ndarray of shape (n_samples,)
        The best model's component of each training row.
    n_features_in_ : int
        Number of features seen during fit.

    Examples
    --------
    >>> import numpy as np
    >>> from skem import GaussianMixtureIC
    >>> rng = np.random.RandomState(0)
    >>> X = np.vstack([rng.normal(center, spread, size=(200, 2)) for center, spread in
    ...                [([0, 0], [1.0, 0.2]), ([6, 0], [0.2, 1.0]), ([0, 5], [0.5, 0.5])]])
    >>> search = GaussianMixtureIC(n_components=5, random_state=0).fit(X)
    >>> search.n_components_, search.covariance_type_
    (3, 'diag')
    >>> len(search.results_["criterion"])
    20
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left"), "array-like"],
        "covariance_type": [StrOptions({"all", *COVARIANCES}), list, tuple],
        "criterion": [StrOptions({"bic", "aic"})],
        "tol": [Interval(Real, 0.0, None, closed="left")],
        "reg_covar": [Interval(Real, 0.0, None, closed="left")],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "init_params": [StrOptions({"kmeans", "k-means++", "random", "random_from_data"})],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_components=10,
        *,
        covariance_type="all",
        criterion="bic",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        random_state=None,
        verbose=0,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.criterion = criterion
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.random_state = random_state
        self.verbose = verbose

    def _candidates(self, n_samples):
        """The (covariance type, number of components) pairs to fit, validated."""
        if isinstance(self.n_components, Integral):
            sizes = list(range(1, min(self.n_components, n_samples) + 1))
        else:
            values = np.asarray(self.n_components, dtype=object).ravel()
            valid = all(isinstance(v, Integral) and v >= 1 for v in values)
            if values.size == 0 or not valid:
                raise ValueError(
                    "n_components must be a positive integer or a non-empty list of "
                    f"positive integers, got {self.n_components!r}."
                )
            sizes = [int(v) for v in values]
        types = ALL_TYPES if self.covariance_type == "all" else self.covariance_type
        types = [types] if isinstance(types, str) else list(types)
        unknown = [name for name in types if name not in COVARIANCES]
        if not types or unknown:
            raise ValueError(
                f"covariance_type must be 'all' or names among {sorted(COVARIANCES)}, "
                f"got {self.covariance_type!r}."
            )
        fitting = [k for k in dict.fromkeys(sizes) if k <= n_samples]
        if not fitting:
            raise ValueError(
                f"n_samples={n_samples} is below every number of components tried "
                f"({sorted(set(sizes))})."
            )
        return [(name, k) for name in dict.fromkeys(types) for k in fitting]

    def fit(self, X, y=None, sample_weight=None):
        """Fit every candidate and keep the one of the lowest criterion.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data (NaN marks a missing value, as for EMGaussianMixture).
        y : Ignored
            Not used, present for API consistency.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each row, counted as that many rows in the criterion
            (BIC's N is their sum, so weights normalised to sum to one would
            remove its penalty: a ``ValueError``). Numbers of components above
            the count of rows of positive weight are skipped.

        Returns
        -------
        self : object
            The fitted selector.
        """
        self._validate_params()
        check_not_dispatched(X, self)
        X = validate_data(
            self,
            X,
            dtype=[np.float64, np.float32],
            ensure_all_finite="allow-nan",
            ensure_min_samples=2,
        )
        weights = None
        if sample_weight is not None:
            weights = _check_sample_weight(sample_weight, X, ensure_non_negative=True)
        n_rows = float(X.shape[0] if weights is None else weights.sum())
        if self.criterion == "bic" and not n_rows > 1.0:
            raise ValueError(
                f"The weights sum to {n_rows:.3g}: BIC's penalty is log(sum(sample_weight)), "
                "which is not positive below 1, and would favour the largest model. "
                "Weights count rows here (integer weights equal repeated rows): scale "
                "them so that they sum to the number of rows they stand for."
            )
        # sizes up to the rows that count (of positive weight)
        candidates = self._candidates(
            X.shape[0] if weights is None else int(np.count_nonzero(weights))
        )
        seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        results = {
            name: []
            for name in (
                "n_components",
                "covariance_type",
                "criterion",
                "n_parameters",
                "lower_bound",
                "converged",
                "fit_time",
            )
        }
        best, best_value = None, np.inf
        for covariance_type, n_components in candidates:
            model = EMGaussianMixture(
                n_components,
                covariance_type=covariance_type,
                tol=self.tol,
                reg_covar=self.reg_covar,
                max_iter=self.max_iter,
                n_init=self.n_init,
                init_params=self.init_params,
                random_state=seed,
            )
            start = time.perf_counter()
            model.fit(X, sample_weight=weights)
            elapsed = time.perf_counter() - start
            log_likelihood = np.average(model.score_samples(X), weights=weights) * n_rows
            n_parameters = model._n_parameters()
            penalty = np.log(n_rows) if self.criterion == "bic" else 2.0
            value = float(-2.0 * log_likelihood + n_parameters * penalty)
            for name, entry in zip(
                results,
                (
                    n_components,
                    covariance_type,
                    value,
                    n_parameters,
                    model.lower_bound_,
                    model.converged_,
                    elapsed,
                ),
            ):
                results[name].append(entry)
            if self.verbose:
                print(
                    f"{covariance_type:>9} {n_components:3d} components: "
                    f"{self.criterion} {value:.6g} ({elapsed:.2f} s)"
                )
            if value < best_value:
                best, best_value = model, value
        self.results_ = {name: np.asarray(values) for name, values in results.items()}
        self.best_estimator_ = best
        self.n_components_ = best.n_components
        self.covariance_type_ = best.covariance_type
        self.criterion_ = best_value
        self.labels_ = best.predict(X)
        self.n_iter_ = best.n_iter_
        return self

    def _best(self, X):
        check_is_fitted(self)
        check_not_dispatched(X, self)
        X = validate_data(
            self, X, dtype=[np.float64, np.float32], ensure_all_finite="allow-nan", reset=False
        )
        return self.best_estimator_, X

    def predict(self, X):
        """The best model's most probable component of each row."""
        model, X = self._best(X)
        return model.predict(X)

    def predict_proba(self, X):
        """The best model's responsibilities."""
        model, X = self._best(X)
        return model.predict_proba(X)

    def score_samples(self, X):
        """The best model's log-density of each row."""
        model, X = self._best(X)
        return model.score_samples(X)

    def score(self, X, y=None):
        """The best model's mean log-likelihood of X."""
        model, X = self._best(X)
        return model.score(X)

    def sample(self, n_samples=1):
        """Draws from the best model: ``(X, labels)``."""
        check_is_fitted(self)
        return self.best_estimator_.sample(n_samples)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags
