"""MixtureOfPPCA against PPCA, closed-form densities and known mixtures."""

import pickle
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.preprocessing import StandardScaler

from skem import DegenerateComponentWarning, EMGaussianMixture, MixtureOfPPCA, ProbabilisticPCA
from skem.datasets import make_low_rank_mixture


def low_rank_mixture(n_per_component=60, n_features=100, n_components=4, n_latent=3,
                     noise=0.5, separation=3.0, seed=0):
    return make_low_rank_mixture(n_per_component, n_features, n_components, n_latent,
                                 noise=noise, separation=separation, random_state=seed)


def standardized(loader):
    return StandardScaler().fit_transform(loader().data)


@pytest.mark.parametrize("loader", [load_iris, load_wine, load_breast_cancer])
@pytest.mark.parametrize("n_latent", [1, 2, 3])
def test_one_component_reproduces_the_ppca_optimum(loader, n_latent):
    X = standardized(loader)
    mixture = MixtureOfPPCA(1, n_latent, tol=1e-12, max_iter=5000, random_state=0).fit(X)
    ppca = ProbabilisticPCA(n_latent, solver="eig").fit(X)
    assert_allclose(mixture.score(X), ppca.score(X), rtol=1e-8)
    assert_allclose(mixture.noise_variance_[0], ppca.noise_variance_, rtol=1e-6)


@pytest.mark.parametrize("loader", [load_iris, load_wine, load_breast_cancer, load_digits])
@pytest.mark.parametrize("n_components", [2, 4])
def test_bound_never_decreases_on_real_data(loader, n_components):
    X = standardized(loader)
    model = MixtureOfPPCA(n_components, 2, tol=1e-8, max_iter=300, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X)
    assert model.n_iter_ > 3
    assert np.diff(model.lower_bounds_).min() >= -1e-12 * abs(model.lower_bound_)


def test_score_samples_is_the_mixture_of_low_rank_gaussians():
    X, _ = low_rank_mixture(n_features=20)
    model = MixtureOfPPCA(4, 3, random_state=0).fit(X)
    log_joint = np.stack([
        np.log(w) + multivariate_normal(m, W.T @ W + s * np.eye(20)).logpdf(X)
        for w, m, W, s in zip(model.weights_, model.means_, model.components_,
                              model.noise_variance_)
    ], axis=1)
    assert_allclose(model.score_samples(X), logsumexp(log_joint, axis=1), rtol=1e-10)
    assert_allclose(model.predict_proba(X), np.exp(log_joint - logsumexp(log_joint, axis=1)[:, None]),
                    atol=1e-10)


def test_recovers_a_known_mixture_in_high_dimension():
    X, labels = low_rank_mixture()
    model = MixtureOfPPCA(4, 3, random_state=0).fit(X)
    assert adjusted_rand_score(labels, model.predict(X)) > 0.99


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grid_search_over_n_components_picks_the_true_number(seed):
    """Restarts matter: one k-means start can merge clusters on a training fold."""
    X, _ = low_rank_mixture(n_per_component=80, separation=6.0, seed=seed)
    search = GridSearchCV(MixtureOfPPCA(n_latent=3, n_init=3, random_state=0),
                          {"n_components": [2, 3, 4, 5, 6]}).fit(X)
    assert search.best_params_ == {"n_components": 4}


def test_beats_a_full_covariance_mixture_where_its_assumption_holds():
    X, labels = low_rank_mixture(n_per_component=240)
    X_train, X_test = train_test_split(X, test_size=0.5, random_state=0, stratify=labels)
    mixture = MixtureOfPPCA(4, 3, random_state=0).fit(X_train)
    full = EMGaussianMixture(4, random_state=0).fit(X_train)
    assert mixture.score(X_test) > full.score(X_test) + 10
    assert mixture._n_parameters() < full._n_parameters() / 10


def test_documented_digits_numbers():
    """The table in the class docstring: isotropic noise loses on pixels."""
    pixels = load_digits().data
    X = pixels + np.random.RandomState(0).uniform(size=pixels.shape)
    X_train, X_test = train_test_split(X, random_state=0)
    mixture = MixtureOfPPCA(10, 10, random_state=0).fit(X_train)
    full = EMGaussianMixture(10, random_state=0).fit(X_train)
    assert_allclose(mixture.score(X_test), -141.6, atol=0.05)
    assert_allclose(full.score(X_test), -134.1, atol=0.05)
    assert (mixture._n_parameters(), full._n_parameters()) == (6609, 21449)


def test_transform_is_the_posterior_mean_under_the_most_probable_component():
    X, _ = low_rank_mixture(n_features=20)
    model = MixtureOfPPCA(4, 3, random_state=0).fit(X)
    labels = model.predict(X)
    for i in (0, 100, 200):
        W, s = model.components_[labels[i]].T, model.noise_variance_[labels[i]]
        expected = np.linalg.solve(W.T @ W + s * np.eye(3), W.T @ (X[i] - model.means_[labels[i]]))
        assert_allclose(model.transform(X[i : i + 1])[0], expected, rtol=1e-10)


def test_integer_weights_equal_repeated_rows_from_the_same_start():
    X, _ = low_rank_mixture(n_features=20)
    weights = np.random.RandomState(1).randint(0, 3, size=len(X))
    start = MixtureOfPPCA(4, 3, max_iter=0, random_state=0).fit(X)
    fits = []
    for data, sample_weight in ((X, weights), (np.repeat(X, weights, axis=0), None)):
        model = MixtureOfPPCA(4, 3, max_iter=30, tol=0, warm_start=True)
        model._set_parameters(start._get_parameters())
        model._noise_floor, model.converged_, model.lower_bound_ = start._noise_floor, False, -np.inf
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fits.append(model.fit(data, sample_weight=sample_weight))
    assert_allclose(fits[0].lower_bounds_, fits[1].lower_bounds_, rtol=1e-10)
    assert_allclose(fits[0].components_, fits[1].components_, rtol=1e-8, atol=1e-10)


def test_collapsed_components_warn_and_keep_scores_finite():
    rng = np.random.RandomState(0)
    X = np.repeat(rng.normal(size=(4, 10)), 10, axis=0)
    model = MixtureOfPPCA(4, 2, random_state=0)
    with pytest.warns(DegenerateComponentWarning, match="degenerate"):
        model.fit(X)
    assert np.all(np.isfinite(model.score_samples(rng.normal(size=(20, 10)) * 50)))


def test_samples_follow_each_component():
    X, _ = low_rank_mixture(n_features=10)
    model = MixtureOfPPCA(4, 3, random_state=0).fit(X)
    samples, labels = model.sample(40000, random_state=0)
    assert_allclose(np.bincount(labels, minlength=4) / 40000, model.weights_, atol=0.01)
    k = int(np.argmax(model.weights_))
    W, s = model.components_[k].T, model.noise_variance_[k]
    covariance = W @ W.T + s * np.eye(10)
    assert_allclose(np.cov(samples[labels == k].T), covariance, atol=0.1 * np.abs(covariance).max())


def test_fit_predict_and_pickle():
    X, _ = low_rank_mixture(n_features=20)
    model = MixtureOfPPCA(4, 3, random_state=0)
    labels = model.fit_predict(X)
    assert_array_equal(labels, model.predict(X))
    restored = pickle.loads(pickle.dumps(model))
    assert_array_equal(restored.score_samples(X), model.score_samples(X))


def test_bad_parameters_raise_value_error():
    X = load_iris().data
    with pytest.raises(ValueError, match="n_latent=5 must be at most n_features=4"):
        MixtureOfPPCA(2, 5).fit(X)
    with pytest.raises(ValueError, match="Expected n_samples >= n_components"):
        MixtureOfPPCA(5, 1).fit(X[:3])
    with pytest.raises(ValueError, match="n_latent"):
        MixtureOfPPCA(2, 0).fit(X)


def test_fewer_distinct_points_than_components_fits_with_a_warning():
    with pytest.warns(DegenerateComponentWarning):
        model = MixtureOfPPCA(2, 2, random_state=0).fit(np.ones((10, 4)))
    assert np.all(np.isfinite(model.score_samples(np.zeros((3, 4)))))
