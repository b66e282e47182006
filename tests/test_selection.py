"""GaussianMixtureIC: BIC and AIC of every candidate against EMGaussianMixture and scikit-learn."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skem import EMGaussianMixture, GaussianMixtureIC


def three_blobs(seed=0, n=150):
    rng = np.random.RandomState(seed)
    return np.vstack(
        [
            rng.normal(center, spread, size=(n, 2))
            for center, spread in [([0, 0], [1.0, 0.2]), ([6, 0], [0.2, 1.0]), ([0, 5], [0.5, 0.5])]
        ]
    )


def test_every_candidates_criterion_is_scikit_learns_bic_from_the_same_seed():
    X = three_blobs()
    search = GaussianMixtureIC(n_components=4, random_state=0).fit(X)
    seed = np.random.RandomState(0).randint(np.iinfo(np.int32).max)
    assert len(search.results_["criterion"]) == 16
    for k, name, value, n_parameters in zip(
        search.results_["n_components"],
        search.results_["covariance_type"],
        search.results_["criterion"],
        search.results_["n_parameters"],
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            theirs = GaussianMixture(k, covariance_type=name, random_state=seed).fit(X)
        assert_allclose(value, theirs.bic(X), rtol=1e-9)
        assert n_parameters == theirs._n_parameters()
    best = np.argmin(search.results_["criterion"])
    assert search.criterion_ == search.results_["criterion"][best]
    assert (search.n_components_, search.covariance_type_) == (3, "diag")
    assert_array_equal(search.predict(X), search.best_estimator_.predict(X))
    assert_array_equal(search.labels_, search.predict(X))
    assert_allclose(search.score(X), search.best_estimator_.score(X))


def test_aic_and_the_lists_of_sizes_and_types():
    X = three_blobs()
    search = GaussianMixtureIC([2, 3], covariance_type=["full"], criterion="aic", random_state=1)
    search.fit(X)
    model = EMGaussianMixture(
        3, covariance_type="full", random_state=search.best_estimator_.random_state
    )
    model.fit(X)
    assert_allclose(search.results_["criterion"][1], model.aic(X), rtol=1e-12)
    assert list(search.results_["n_components"]) == [2, 3]


def test_integer_weights_count_as_repeated_rows():
    X = three_blobs(n=40)
    counts = np.random.RandomState(2).randint(1, 4, size=len(X))
    weighted = GaussianMixtureIC(3, covariance_type="diag", random_state=0)
    weighted.fit(X, sample_weight=counts)
    repeated = GaussianMixtureIC(3, covariance_type="diag", random_state=0)
    repeated.fit(np.repeat(X, counts, axis=0))
    # the criterion of every candidate counts each weighted row as its copies
    for k in range(3):
        model = weighted.best_estimator_.__class__(
            k + 1, covariance_type="diag", random_state=weighted.best_estimator_.random_state
        ).fit(X, sample_weight=counts)
        expected = -2 * counts @ model.score_samples(X) + model._n_parameters() * np.log(
            counts.sum()
        )
        assert_allclose(weighted.results_["criterion"][k], expected, rtol=1e-12)
    assert weighted.n_components_ == repeated.n_components_ == 3


def test_in_a_pipeline_and_bad_parameters():
    X = three_blobs() * [1000.0, 0.01]
    pipeline = make_pipeline(StandardScaler(), GaussianMixtureIC(4, random_state=0))
    labels = pipeline.fit_predict(X)
    assert adjusted_rand_score(np.repeat([0, 1, 2], 150), labels) == 1.0
    for bad in ([0, 2], [], [1.5]):
        with pytest.raises(ValueError, match="n_components"):
            GaussianMixtureIC(bad).fit(X)
    with pytest.raises(ValueError, match="covariance_type"):
        GaussianMixtureIC(2, covariance_type=["full", "round"]).fit(X)
    with pytest.raises(ValueError, match="n_samples=2"):
        GaussianMixtureIC([3, 4]).fit(X[:2])


def test_weights_count_rows_sizes_stop_at_the_rows_of_positive_weight():
    X = three_blobs(n=20)
    weights = np.zeros(len(X))
    weights[:: len(X) // 10][:10] = 1.0  # ten rows of positive weight
    search = GaussianMixtureIC(12, covariance_type="spherical", random_state=0)
    search.fit(X, sample_weight=weights)
    assert search.results_["n_components"].max() == 10
    with pytest.raises(ValueError, match="sum to 1"):
        GaussianMixtureIC(3).fit(X, sample_weight=np.full(len(X), 1.0 / len(X)))
    # a huge n_components costs nothing beyond the rows
    assert len(GaussianMixtureIC(10**9, covariance_type="diag")._candidates(7)) == 7
