"""ImputationAverage: the weighted average of the imputations of several fitted models."""

import numpy as np
from sklearn.utils import check_random_state


class ImputationAverage:
    """A weighted average of the imputations of several fitted models: the default of EMImputer.

    ``impute`` returns the weighted mean of the models' conditional means;
    with ``sample_posterior=True`` each row is a draw from one model picked
    at random with probability its weight, so the draws follow the mixture
    of the models' conditional distributions, whose mean is that average.

    Parameters
    ----------
    estimators : iterable of fitted estimators
        The models to average, each with an ``impute`` method, fitted to the
        same features.
    weights : array-like of shape (n_estimators,), default=None
        Non-negative weights of the models (divided by their sum); None
        weighs them equally.

    Attributes
    ----------
    estimators_ : list of fitted estimators
        The models averaged.
    weights_ : ndarray of shape (n_estimators,)
        Their weights, summing to one.

    Examples
    --------
    >>> import numpy as np
    >>> from skem import EMGaussianMixture
    >>> from skem.impute import ImputationAverage
    >>> X = np.array([[0.0, 0.1], [1.0, 0.9], [2.0, 2.1], [3.0, np.nan]])
    >>> models = [EMGaussianMixture(1).fit(X), EMGaussianMixture(1).fit(X[:3])]
    >>> [float(model.impute(X)[3, 1].round(3)) for model in models]
    [3.027, 3.033]
    >>> float(ImputationAverage(models).impute(X)[3, 1].round(3))
    3.03
    >>> float(ImputationAverage(models, weights=[3, 1]).impute(X)[3, 1].round(3))
    3.028
    """

    def __init__(self, estimators, weights=None):
        self.estimators_ = list(estimators)
        n_estimators = len(self.estimators_)
        if not n_estimators:
            raise ValueError("ImputationAverage needs at least one estimator.")
        if weights is None:
            weights = np.ones(n_estimators)
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != (n_estimators,):
            raise ValueError(
                f"weights must have one value per estimator ({n_estimators}), "
                f"got shape {weights.shape}."
            )
        if not np.all(np.isfinite(weights)) or np.any(weights < 0) or not weights.max() > 0:
            raise ValueError("weights must be finite, non-negative and not all zero.")
        weights = weights / weights.max()  # (a sum of huge weights would overflow)
        self.weights_ = weights / weights.sum()

    def impute(self, X, *, sample_posterior=False, random_state=None):
        """X with its missing values replaced by the weighted average of the models' imputations.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
            Data with NaN where values are missing.
        sample_posterior : bool, default=False
            If True, each row is one draw from the conditional distribution
            of one model picked at random with probability its weight (for
            multiple imputation).
        random_state : int, RandomState instance or None, default=None
            Seeds the draws when ``sample_posterior=True``.

        Returns
        -------
        X_imputed : ndarray of shape (n_samples, n_features)
            X with its missing values filled.
        """
        n_estimators = len(self.estimators_)
        if n_estimators == 1:
            return self.estimators_[0].impute(
                X, sample_posterior=sample_posterior, random_state=random_state
            )
        weights = getattr(self, "weights_", None)  # (None: an average pickled before weights)
        if weights is None:
            weights = np.full(n_estimators, 1 / n_estimators)
        imputed = np.array(X, copy=True)
        if not sample_posterior:
            average = sum(
                w * model.impute(X) for w, model in zip(weights, self.estimators_) if w > 0
            )
            missing = np.isnan(imputed)
            imputed[missing] = average[missing]  # (observed values exactly as given)
            return imputed
        random_state = check_random_state(random_state)
        if np.all(weights == weights[0]):  # (the draws of equal weights before weights existed)
            picked = random_state.randint(n_estimators, size=X.shape[0])
        else:
            picked = random_state.choice(n_estimators, size=X.shape[0], p=weights)
        for member, model in enumerate(self.estimators_):
            rows = picked == member
            if rows.any():
                imputed[rows] = model.impute(
                    X[rows], sample_posterior=True, random_state=random_state
                )
        return imputed
