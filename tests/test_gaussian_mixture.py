"""EMGaussianMixture against scikit-learn, closed forms and its own promises."""

import pickle
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import softmax
from scipy.stats import multivariate_normal
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from sklearn.preprocessing import StandardScaler
from test_ppca import rescaled_gaussian_log_density

import skem._core._blocks
from skem import DegenerateComponentWarning, EMGaussianMixture, VarianceFloorWarning
from skem._core._covariance import covariance_matrix

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
FITTED = ["weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"]


def standardized(loader):
    return StandardScaler().fit_transform(loader().data)


@pytest.fixture(scope="module")
def iris():
    return load_iris().data


@pytest.fixture(scope="module")
def wine():
    return standardized(load_wine)


def blobs(n_samples=300, n_features=3, seed=0):
    rng = np.random.RandomState(seed)
    centers = np.array(
        [[0.0] * n_features, [4.0] * n_features, [-4.0, 4.0] + [0.0] * (n_features - 2)]
    )
    return np.vstack([rng.normal(c, 1.0, size=(n_samples // 3, n_features)) for c in centers])


def assert_same_fit(ours, reference, rtol=1e-10, atol=1e-10):
    assert ours.n_iter_ == reference.n_iter_
    assert ours.converged_ == reference.converged_
    assert_allclose(ours.lower_bounds_, reference.lower_bounds_, rtol=rtol, atol=atol)
    for name in FITTED:
        assert_allclose(getattr(ours, name), getattr(reference, name), rtol=rtol, atol=atol)


# ---------------------------------------------------------------- sklearn parity


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("dataset", ["iris", "wine"])
def test_parity_with_sklearn_from_kmeans(covariance_type, dataset, request):
    X = request.getfixturevalue(dataset)
    params = dict(
        n_components=3, covariance_type=covariance_type, tol=1e-8, max_iter=60, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference = GaussianMixture(**params).fit(X)
        ours = EMGaussianMixture(**params).fit(X)
    assert_same_fit(ours, reference)
    assert_allclose(ours.score_samples(X), reference.score_samples(X), rtol=1e-10)
    assert_allclose(ours.predict_proba(X), reference.predict_proba(X), atol=1e-10)
    assert_array_equal(ours.predict(X), reference.predict(X))
    assert_allclose(ours.bic(X), reference.bic(X), rtol=1e-10)
    assert_allclose(ours.aic(X), reference.aic(X), rtol=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_parity_with_sklearn_from_given_parameters(covariance_type, iris):
    rng = np.random.RandomState(1)
    n_features = iris.shape[1]
    precisions = {
        "full": np.array([np.eye(n_features) * 2.0] * 2),
        "tied": np.eye(n_features),
        "diag": np.full((2, n_features), 1.5),
        "spherical": np.array([1.0, 3.0]),
    }[covariance_type]
    params = dict(
        n_components=2,
        covariance_type=covariance_type,
        tol=1e-10,
        max_iter=40,
        weights_init=[0.3, 0.7],
        means_init=iris[rng.choice(150, 2)],
        precisions_init=precisions,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert_same_fit(EMGaussianMixture(**params).fit(iris), GaussianMixture(**params).fit(iris))


@pytest.mark.parametrize("init_params", ["random_from_data", "k-means++", "random"])
def test_parity_with_sklearn_for_other_inits(init_params, iris):
    """Same path as sklearn; only the first bound of the one-hot inits differs.

    scikit-learn divides those initial weights by n_samples, so they sum to
    n_components / n_samples and its first bound is off by log(n / K); skem's
    initial weights sum to one and its first bound is the true log-likelihood.
    """
    params = dict(n_components=3, init_params=init_params, random_state=3, tol=1e-8, max_iter=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference = GaussianMixture(**params).fit(iris)
        ours = EMGaussianMixture(**params).fit(iris)
    assert_allclose(ours.means_, reference.means_, rtol=1e-9, atol=1e-9)
    assert_allclose(ours.lower_bounds_[1:], reference.lower_bounds_[1:], rtol=1e-10)
    offset = 0.0 if init_params == "random" else np.log(len(iris) / 3)
    assert_allclose(ours.lower_bounds_[0], reference.lower_bounds_[0] + offset, rtol=1e-10)


def test_lower_bounds_are_log_likelihoods_before_each_m_step(iris):
    stepper = EMGaussianMixture(3, warm_start=True, max_iter=1, tol=0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        stepper.fit(iris)
        for _ in range(5):
            before = stepper.score(iris)
            stepper.fit(iris)
            assert_allclose(stepper.lower_bounds_, [before], rtol=1e-12)


def test_max_iter_zero_keeps_the_initialisation(iris):
    model = EMGaussianMixture(3, max_iter=0, random_state=0).fit(iris)
    assert model.n_iter_ == 0 and model.lower_bound_ == -np.inf
    assert model.lower_bounds_.shape == (0,)


def test_chunked_e_step_equals_one_block(iris, monkeypatch):
    whole = EMGaussianMixture(3, random_state=0, tol=1e-8).fit(iris)
    monkeypatch.setattr(skem._core._blocks, "CHUNK_FLOATS", 7 * whole._row_width())
    chunked = EMGaussianMixture(3, random_state=0, tol=1e-8).fit(iris)
    assert_same_fit(chunked, whole, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-11), (np.float32, 2e-5)])
def test_statistics_reusing_the_e_step_equal_the_directly_formed_ones(
    covariance_type, dtype, rtol, wine, monkeypatch
):
    """The fit loop's statistics from the E-step's workspace (the whitened
    residuals for 'full') give the M-step of scatters formed from the data."""
    start = EMGaussianMixture(3, covariance_type=covariance_type, max_iter=0, random_state=0).fit(
        wine
    )
    offset = 100.0  # far from the origin
    params = dict(
        n_components=3,
        covariance_type=covariance_type,
        max_iter=3,
        tol=0,
        weights_init=start.weights_,
        means_init=start.means_ + offset,
        precisions_init=start.precisions_,
    )
    X = (wine + offset).astype(dtype)
    weights = np.random.RandomState(0).uniform(size=len(X))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reusing = EMGaussianMixture(**params).fit(X, sample_weight=weights)
        with_workspace = EMGaussianMixture._log_prob_and_workspace
        monkeypatch.setattr(
            EMGaussianMixture,
            "_log_prob_and_workspace",
            lambda self, X: (with_workspace(self, X)[0], None),
        )
        direct = EMGaussianMixture(**params).fit(X, sample_weight=weights)
    scale = np.abs(direct.covariances_).max()
    assert_allclose(reusing.covariances_, direct.covariances_, rtol=rtol, atol=rtol * scale)
    assert_allclose(reusing.means_, direct.means_, rtol=rtol)
    assert_allclose(reusing.lower_bounds_, direct.lower_bounds_, rtol=rtol)


def test_well_separated_data_skip_zero_responsibilities_exactly():
    X = blobs(n_features=6) * 20.0
    params = dict(n_components=3, random_state=0, tol=1e-10)
    assert_same_fit(EMGaussianMixture(**params).fit(X), GaussianMixture(**params).fit(X))


# ---------------------------------------------------------------- beyond sklearn


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_integer_weights_equal_repeated_rows(covariance_type, wine):
    rng = np.random.RandomState(0)
    weights = rng.randint(0, 4, size=len(wine))
    start = EMGaussianMixture(3, covariance_type=covariance_type, max_iter=0, random_state=0).fit(
        wine
    )
    params = dict(
        n_components=3,
        covariance_type=covariance_type,
        tol=1e-9,
        max_iter=50,
        weights_init=start.weights_,
        means_init=start.means_,
        precisions_init=start.precisions_,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted = EMGaussianMixture(**params).fit(wine, sample_weight=weights)
        repeated = EMGaussianMixture(**params).fit(np.repeat(wine, weights, axis=0))
    assert_same_fit(weighted, repeated, rtol=1e-9, atol=1e-9)
    assert_allclose(
        weighted.score(wine, sample_weight=weights),
        repeated.score(np.repeat(wine, weights, axis=0)),
        rtol=1e-10,
    )


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_weighted_fit_from_every_init_reaches_the_repeated_rows_optimum(init_params):
    X = blobs()
    weights = np.tile([1, 2, 3], len(X) // 3)
    weighted = EMGaussianMixture(
        3, init_params=init_params, n_init=5, random_state=0, tol=1e-10, max_iter=500
    ).fit(X, sample_weight=weights)
    repeated = EMGaussianMixture(3, random_state=0, tol=1e-10).fit(np.repeat(X, weights, axis=0))
    order_w, order_r = np.argsort(weighted.means_[:, 0]), np.argsort(repeated.means_[:, 0])
    assert_allclose(weighted.means_[order_w], repeated.means_[order_r], rtol=1e-6, atol=1e-6)
    assert_allclose(
        weighted.score(X, sample_weight=weights),
        repeated.score(np.repeat(X, weights, axis=0)),
        rtol=1e-9,
    )


def test_zero_weight_rows_are_ignored():
    X = blobs()
    noise = np.random.RandomState(1).normal(scale=50, size=(40, 3))
    start = EMGaussianMixture(3, max_iter=0, random_state=0).fit(X)
    params = dict(
        n_components=3,
        tol=1e-10,
        weights_init=start.weights_,
        means_init=start.means_,
        precisions_init=start.precisions_,
    )
    weights = np.r_[np.ones(len(X)), np.zeros(len(noise))]
    padded = EMGaussianMixture(**params).fit(np.vstack([X, noise]), sample_weight=weights)
    assert_same_fit(padded, EMGaussianMixture(**params).fit(X))


@pytest.mark.parametrize("loader", [load_iris, load_wine, load_breast_cancer])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_exact_em_bound_never_decreases_on_real_data(loader, covariance_type):
    """With reg_covar=0 the M-step is exact, so the log-likelihood is monotone."""
    X = standardized(loader)
    model = EMGaussianMixture(
        3, covariance_type=covariance_type, reg_covar=0.0, tol=1e-10, max_iter=300, random_state=0
    ).fit(X)
    assert model.n_iter_ > 10
    assert np.diff(model.lower_bounds_).min() >= -1e-12 * np.abs(model.lower_bound_)


def test_floored_em_dips_by_at_most_the_order_of_reg_covar_as_sklearn_does():
    """reg_covar > 0 is scikit-learn's floored update, not an exact M-step."""
    X = standardized(load_breast_cancer)
    params = dict(n_components=4, tol=1e-10, max_iter=300, random_state=0)
    ours = EMGaussianMixture(**params).fit(X)
    assert_same_fit(ours, GaussianMixture(**params).fit(X), rtol=1e-8, atol=1e-8)
    assert np.diff(ours.lower_bounds_).min() >= -params.get("reg_covar", 1e-6)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_float32_stays_float32_and_matches_float64(covariance_type, wine):
    start = EMGaussianMixture(3, covariance_type=covariance_type, max_iter=0, random_state=0).fit(
        wine
    )
    params = dict(
        n_components=3,
        covariance_type=covariance_type,
        tol=1e-5,
        max_iter=200,
        weights_init=start.weights_,
        means_init=start.means_,
        precisions_init=start.precisions_,
    )
    single = EMGaussianMixture(**params).fit(wine.astype(np.float32))
    double = EMGaussianMixture(**params).fit(wine)
    for name in FITTED:
        assert getattr(single, name).dtype == np.float32
    # log-densities are summaries, computed and returned in float64
    assert single.score_samples(wine.astype(np.float32)).dtype == np.float64
    scale = np.abs(double.lower_bounds_).max()
    assert np.diff(single.lower_bounds_).min() >= -1e-6 * scale
    assert_allclose(single.lower_bound_, double.lower_bound_, rtol=1e-5)
    assert_allclose(single.means_, double.means_, rtol=1e-3, atol=1e-3)


def test_float32_diag_variances_are_accurate_far_from_the_origin():
    """Uncentred float32 sums lose small variances next to a large mean."""
    rng = np.random.RandomState(0)
    centers = np.array([[1e4, 1e4, 1e4], [1e4 + 1.0, 1e4, 1e4 - 1.0]])
    X = np.vstack([c + rng.normal(scale=0.05, size=(1000, 3)) for c in centers])
    X32 = X.astype(np.float32)
    model = EMGaussianMixture(2, covariance_type="diag", random_state=0).fit(X32)
    exact = EMGaussianMixture(2, covariance_type="diag", random_state=0).fit(X32.astype(np.float64))
    order, order_exact = np.argsort(model.means_[:, 0]), np.argsort(exact.means_[:, 0])
    assert_allclose(model.covariances_[order], exact.covariances_[order_exact], rtol=1e-3)
    assert np.all(np.isfinite(model.score_samples(X32)))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("case", ["duplicated_rows", "constant_column", "too_few_points"])
def test_degenerate_data_fit_with_a_warning_and_finite_scores(covariance_type, case):
    rng = np.random.RandomState(0)
    if case == "duplicated_rows":
        X, n_components = np.repeat(rng.normal(size=(5, 3)), 20, axis=0), 5
    elif case == "constant_column":
        X, n_components = np.column_stack([rng.normal(size=(100, 2)), np.full(100, 7.0)]), 2
    else:
        X, n_components = np.repeat(rng.normal(size=(3, 4)), 4, axis=0), 6
    model = EMGaussianMixture(n_components, covariance_type=covariance_type, random_state=0)
    if case == "constant_column" and covariance_type == "spherical":
        model.fit(X)  # one variance over all features: not singular, no warning
    else:
        with pytest.warns(DegenerateComponentWarning, match="degenerate"):
            model.fit(X)
    scores = model.score_samples(np.vstack([X, rng.normal(size=(5, X.shape[1])) * 100]))
    assert np.all(np.isfinite(scores))


def test_extreme_scale_collinear_features_are_repaired_not_raised():
    rng = np.random.RandomState(0)
    base = rng.normal(size=(200, 1)) * 1e9
    X = np.hstack([base, 3 * base, rng.normal(size=(200, 1)) * 1e9])
    with pytest.warns(DegenerateComponentWarning):
        model = EMGaussianMixture(2, random_state=0).fit(X)
    assert np.all(np.isfinite(model.score_samples(X)))


def test_zero_reg_covar_on_collapsed_data_raises_sklearns_error():
    X = np.repeat(np.eye(3), 4, axis=0)
    with pytest.raises(ValueError, match="ill-defined empirical covariance"):
        EMGaussianMixture(3, reg_covar=0.0, random_state=0).fit(X)


def test_public_init_parameters_are_not_overwritten(iris):
    weights = [0.2, 0.3, 0.5]
    model = EMGaussianMixture(3, weights_init=weights, random_state=0).fit(iris)
    assert model.weights_init is weights and model.weights_init == [0.2, 0.3, 0.5]


def test_sample_gives_fresh_draws_and_reproducible_ones(iris):
    model = EMGaussianMixture(3, random_state=0).fit(iris)
    first, second = model.sample(5)[0], model.sample(5)[0]
    assert not np.allclose(first, second)
    assert_array_equal(model.sample(5, random_state=7)[0], model.sample(5, random_state=7)[0])
    refit = EMGaussianMixture(3, random_state=0).fit(iris)
    assert_array_equal(refit.sample(5)[0], first)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_samples_follow_the_fitted_distribution(covariance_type, iris):
    model = EMGaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(iris)
    X, labels = model.sample(60000, random_state=0)
    assert_allclose(np.bincount(labels, minlength=3) / 60000, model.weights_, atol=0.01)
    k = int(np.argmax(model.weights_))
    covariance = {
        "full": lambda: model.covariances_[k],
        "tied": lambda: model.covariances_,
        "diag": lambda: np.diag(model.covariances_[k]),
        "spherical": lambda: np.eye(4) * model.covariances_[k],
    }[covariance_type]()
    assert_allclose(X[labels == k].mean(axis=0), model.means_[k], atol=0.02)
    assert_allclose(np.cov(X[labels == k].T), covariance, atol=0.03)


def test_score_samples_is_the_mixture_log_density(iris):
    model = EMGaussianMixture(3, random_state=0).fit(iris)
    density = sum(
        w * multivariate_normal(m, c).pdf(iris)
        for w, m, c in zip(model.weights_, model.means_, model.covariances_)
    )
    assert_allclose(model.score_samples(iris), np.log(density), rtol=1e-10)


def test_fit_predict_equals_fit_then_predict(iris):
    model = EMGaussianMixture(3, n_init=3, random_state=0)
    assert_array_equal(model.fit_predict(iris), clone(model).fit(iris).predict(iris))


def test_pickle_round_trip_keeps_scores_and_sampling(iris):
    model = EMGaussianMixture(3, random_state=0).fit(iris)
    restored = pickle.loads(pickle.dumps(model))
    assert_array_equal(restored.score_samples(iris), model.score_samples(iris))
    assert_array_equal(restored.sample(4)[0], model.sample(4)[0])


def test_digits_fit_in_diag_gives_finite_scores():
    X = load_digits().data
    model = EMGaussianMixture(10, covariance_type="diag", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateComponentWarning)
        model.fit(X)
    assert np.all(np.isfinite(model.score_samples(X)))


# ---------------------------------------------------------------- bad input

BAD_INPUTS = {
    "nan_column": (lambda X: np.where(np.arange(X.shape[1]) == 1, np.nan, X), "entirely NaN"),
    "inf": (lambda X: np.where(np.arange(X.size).reshape(X.shape) == 5, np.inf, X), "infinity"),
    "one_dimensional": (lambda X: X[:, 0], "Expected 2D array"),
    "three_dimensional": (lambda X: X[:, :, np.newaxis], "dim 3"),
    "strings": (lambda X: X.astype(str).astype(object) + "x", "could not convert"),
    "complex": (lambda X: X + 1j, "Complex data not supported"),
    "empty": (lambda X: X[:0], "0 sample"),
    "fewer_samples_than_components": (lambda X: X[:2], "Expected n_samples >= n_components"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_data_raise_value_error_and_leave_the_estimator_unchanged(case, iris):
    transform, message = BAD_INPUTS[case]
    model = EMGaussianMixture(3, random_state=0)
    params = model.get_params()
    with pytest.raises(ValueError, match=message):
        model.fit(transform(iris.copy()))
    assert model.get_params() == params
    assert vars(model) == vars(EMGaussianMixture(3, random_state=0))


@pytest.mark.parametrize(
    "sample_weight, message",
    [
        (-np.ones(150), "non-negative"),
        (np.ones(149), r"shape \(150,\)"),
        (np.zeros(150), "zero everywhere"),
        (np.full(150, np.nan), "finite"),
        (np.r_[np.ones(2), np.zeros(148)], "n_samples >= n_components"),
    ],
)
def test_bad_sample_weight_raise_value_error_and_keep_the_previous_fit(
    sample_weight, message, iris
):
    model = EMGaussianMixture(3, random_state=0).fit(iris)
    means = model.means_.copy()
    with pytest.raises(ValueError, match=message):
        model.fit(iris, sample_weight=sample_weight)
    assert_array_equal(model.means_, means)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"covariance_type": "bogus"}, "covariance_type"),
        ({"init_params": "bogus"}, "init_params"),
        ({"reg_covar": -1.0}, "reg_covar"),
        ({"n_components": 0}, "n_components"),
        ({"weights_init": [0.5, 0.6, -0.1]}, "range"),
        ({"means_init": np.zeros((2, 4))}, "shape"),
        ({"precisions_init": -np.ones(3), "covariance_type": "spherical"}, "positive"),
    ],
)
def test_bad_parameters_raise_value_error(params, message, iris):
    model = EMGaussianMixture(random_state=0, **{"n_components": 3, **params})
    with pytest.raises(ValueError, match=message):
        model.fit(iris)
    assert not hasattr(model, "n_features_in_")


@pytest.mark.parametrize("method", ["predict", "predict_proba", "score_samples", "score"])
def test_wrong_number_of_features_at_predict_time(method, iris):
    model = EMGaussianMixture(3, random_state=0).fit(iris)
    with pytest.raises(ValueError, match="X has 3 features, but EMGaussianMixture is expecting 4"):
        getattr(model, method)(iris[:, :3])


def test_sample_rejects_non_positive_counts(iris):
    model = EMGaussianMixture(3, random_state=0).fit(iris)
    with pytest.raises(ValueError, match="Invalid value for 'n_samples': 0"):
        model.sample(0)


# ---------------------------------------------------------------- regressions (review)


def test_empty_full_component_gets_sklearns_psd_covariance():
    X = np.random.RandomState(0).normal(size=(200, 2))
    params = dict(n_components=2, means_init=[[0.0, 0.0], [1000.0, 1000.0]], max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = EMGaussianMixture(**params).fit(X)
        reference = GaussianMixture(**params).fit(X)
    assert np.linalg.eigvalsh(ours.covariances_).min() > 0
    assert_allclose(ours.covariances_, reference.covariances_, rtol=1e-6, atol=1e-9)


def test_repaired_covariance_is_the_one_the_precision_inverts():
    rng = np.random.RandomState(0)
    base = rng.normal(size=(200, 1)) * 1e9
    X = np.hstack([base, 3 * base, rng.normal(size=(200, 1)) * 1e9])
    with pytest.warns(DegenerateComponentWarning):
        model = EMGaussianMixture(2, random_state=0).fit(X)
    for covariance, factor in zip(model.covariances_, model.precisions_cholesky_):
        assert np.linalg.eigvalsh(covariance).min() > 0
        inverse_factor = np.linalg.inv(factor)  # covariance = inverse_factor^T inverse_factor
        assert_allclose(
            inverse_factor.T @ inverse_factor, covariance, atol=1e-8 * np.abs(covariance).max()
        )
    assert np.all(np.isfinite(model.sample(10, random_state=0)[0]))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_float32_scores_of_far_apart_clusters_match_float64(covariance_type):
    rng = np.random.RandomState(0)
    X = np.vstack([rng.normal(center, 0.1, size=(300, 3)) for center in (-1000.0, 0.0, 1000.0)])
    single = EMGaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(
        X.astype(np.float32)
    )
    double = EMGaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    assert np.diff(single.lower_bounds_).min() >= -1e-5 * abs(double.lower_bound_)
    assert_allclose(single.lower_bound_, double.lower_bound_, rtol=1e-5, atol=1e-4)
    # float32 resolves x and the means near 1000 to its spacing there, which moves
    # (x - mean)^2 / var by up to 2 * 3 sigma * spacing / sigma^2 per feature
    resolution = 3 * 2 * 3 * 0.1 * np.spacing(np.float32(1000)) / 0.1**2
    assert_allclose(
        single.score_samples(X.astype(np.float32)), double.score_samples(X), atol=resolution
    )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_no_degeneracy_warning_for_features_on_different_scales(covariance_type):
    X = (np.random.RandomState(0).normal(size=(500, 2)) * [1000.0, 0.5]).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateComponentWarning)
        EMGaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X)


def test_only_relative_sample_weights_matter():
    X = blobs()
    start = EMGaussianMixture(3, max_iter=0, random_state=0).fit(X)
    params = dict(
        n_components=3,
        weights_init=start.weights_,
        means_init=start.means_,
        precisions_init=start.precisions_,
        tol=1e-10,
    )
    unit = EMGaussianMixture(**params).fit(X, sample_weight=np.ones(len(X)))
    tiny = EMGaussianMixture(**params).fit(X, sample_weight=np.full(len(X), 1e-16))
    assert_same_fit(tiny, unit, rtol=1e-10, atol=1e-10)


def test_warm_start_on_other_features_is_a_clear_error(iris):
    model = EMGaussianMixture(2, warm_start=True, random_state=0).fit(iris)
    with pytest.raises(ValueError, match="continues a fit on 4 features, but X has 3"):
        model.fit(iris[:, :3])
    assert model.n_features_in_ == 4


def test_responsibilities_stay_finite_when_every_density_underflows(iris):
    model = EMGaussianMixture(2, random_state=0).fit(iris)
    assert np.all(np.isfinite(model.predict_proba([[1e200, 0, 0, 0]])))


# ---------------------------------------------------------------- tied_diag


def test_tied_diag_m_step_is_the_diagonal_of_the_tied_one(wine):
    """From the same diagonal start the E-steps agree, and the shared diagonal
    covariance is the diagonal of the shared full one."""
    start = EMGaussianMixture(3, covariance_type="diag", max_iter=0, random_state=0).fit(wine)
    shared_precision = start.precisions_.mean(axis=0)
    common = dict(
        n_components=3, max_iter=1, tol=0, weights_init=start.weights_, means_init=start.means_
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        tied = EMGaussianMixture(
            covariance_type="tied", precisions_init=np.diag(shared_precision), **common
        ).fit(wine)
        tied_diag = EMGaussianMixture(
            covariance_type="tied_diag", precisions_init=shared_precision, **common
        ).fit(wine)
    assert_allclose(tied_diag.lower_bounds_, tied.lower_bounds_, rtol=1e-12)
    assert_allclose(tied_diag.means_, tied.means_, rtol=1e-12, atol=1e-12)
    assert_allclose(tied_diag.covariances_, np.diag(tied.covariances_), rtol=1e-12)


def test_tied_diag_with_one_component_is_diag(wine):
    diag = EMGaussianMixture(1, covariance_type="diag", random_state=0).fit(wine)
    tied_diag = EMGaussianMixture(1, covariance_type="tied_diag", random_state=0).fit(wine)
    assert_allclose(tied_diag.covariances_, diag.covariances_[0], rtol=1e-12)
    assert_allclose(tied_diag.score_samples(wine), diag.score_samples(wine), rtol=1e-12)


def test_tied_diag_scores_bound_and_parameter_count(wine):
    model = EMGaussianMixture(
        3, covariance_type="tied_diag", reg_covar=0, tol=1e-10, max_iter=500, random_state=0
    ).fit(wine)
    density = sum(
        w * multivariate_normal(m, np.diag(model.covariances_)).pdf(wine)
        for w, m in zip(model.weights_, model.means_)
    )
    assert_allclose(model.score_samples(wine), np.log(density), rtol=1e-10)
    assert np.diff(model.lower_bounds_).min() >= -1e-12 * abs(model.lower_bound_)
    n_features = wine.shape[1]
    assert model._n_parameters() == n_features + 3 * n_features + 2
    assert_allclose(model.precisions_, 1 / model.covariances_, rtol=1e-12)
    assert model.covariances_.shape == model.precisions_cholesky_.shape == (n_features,)


def test_tied_diag_samples_follow_the_shared_covariance():
    rng = np.random.RandomState(0)
    means = np.array([[0.0, 0.0, 0.0], [10.0, 10.0, 10.0]])
    variances = np.array([0.5, 2.0, 1.0])
    labels = rng.randint(2, size=4000)
    X = means[labels] + rng.normal(size=(4000, 3)) * np.sqrt(variances)
    model = EMGaussianMixture(2, covariance_type="tied_diag", random_state=0).fit(X)
    assert_allclose(model.covariances_, variances, rtol=0.1)
    samples, sampled_labels = model.sample(4000, random_state=0)
    centred = samples - model.means_[sampled_labels]
    assert_allclose(centred.var(axis=0), model.covariances_, rtol=0.1)


def test_tied_diag_initial_precisions_are_validated(wine):
    with pytest.raises(ValueError, match=r"'tied_diag precision' should have the shape"):
        EMGaussianMixture(
            2, covariance_type="tied_diag", precisions_init=np.ones((2, wine.shape[1]))
        ).fit(wine)
    with pytest.raises(ValueError, match="'tied_diag precision' should be positive"):
        EMGaussianMixture(
            2, covariance_type="tied_diag", precisions_init=-np.ones(wine.shape[1])
        ).fit(wine)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES + ["tied_diag"])
def test_float32_model_scores_a_far_row_in_float64(covariance_type, iris):
    """A float32 row at 1e30 has a log-density near -1e60: finite in float64."""
    model = EMGaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(
        iris.astype(np.float32)
    )
    far = np.full((1, 4), 1e30, dtype=np.float32)
    score = model.score_samples(far)
    assert score.dtype == np.float64 and np.isfinite(score).all()
    precisions = np.asarray(model.precisions_, dtype=np.float64)
    covariances = {
        "full": lambda k: model.covariances_[k],
        "tied": lambda k: model.covariances_,
        "diag": lambda k: np.diag(model.covariances_[k]),
        "spherical": lambda k: np.eye(4) * model.covariances_[k],
        "tied_diag": lambda k: np.diag(model.covariances_),
    }[covariance_type]
    exact = np.logaddexp(
        *[
            np.log(model.weights_[k])
            + multivariate_normal(
                model.means_[k].astype(np.float64), np.asarray(covariances(k), dtype=np.float64)
            ).logpdf(far[0].astype(np.float64))
            for k in range(2)
        ]
    )
    assert precisions.size and score[0] == pytest.approx(exact, rel=1e-5)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES + ["tied_diag"])
def test_fitted_model_ignores_hyper_parameters_changed_after_fit(covariance_type, iris):
    model = EMGaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(iris)
    scores, labels, bic = model.score_samples(iris), model.predict(iris), model.bic(iris)
    samples = model.sample(5, random_state=0)
    other = "full" if covariance_type != "full" else "diag"
    model.set_params(n_components=3, covariance_type=other, reg_covar=1.0)
    assert_allclose(model.score_samples(iris), scores, rtol=1e-12)
    assert_array_equal(model.predict(iris), labels)
    assert model.bic(iris) == pytest.approx(bic, rel=1e-12)
    assert_allclose(model.sample(5, random_state=0)[0], samples[0])


def test_tiny_scale_data_warn_that_the_floor_sets_the_variance(iris):
    for X in (iris * 1e-150, iris * [1e-8, 1.0, 1e8, 1.0]):
        with pytest.warns(VarianceFloorWarning, match=r"Standardise X .* or lower reg_covar"):
            EMGaussianMixture(2, random_state=0).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        EMGaussianMixture(2, reg_covar=1e-320, random_state=0).fit(iris * 1e-150)


def test_far_rows_score_finitely_or_below_the_float_range(iris):
    model = EMGaussianMixture(3, random_state=0).fit(iris)
    scores = model.score_samples(np.array([[1e100] * 4, [1e200] * 4, [-1e300] * 4]))
    assert np.isfinite(scores[0]) and scores[0] < -1e199
    assert_array_equal(scores[1:], [-np.inf, -np.inf])  # true values near -1e400


@pytest.mark.parametrize("covariance_type", ["tied", "diag", "spherical", "tied_diag"])
def test_scores_of_clusters_far_from_the_centre_match_scipy(covariance_type):
    """A cluster at 1e6 beside one with a collapsed feature (variance at the floor):
    expanded squares would cancel; the scores must stay exact."""
    rng = np.random.RandomState(0)
    near = rng.normal(0.0, 1e-2, size=(100, 3))
    near[:, 2] = 0.0
    X = np.vstack([near, rng.normal(1e6, 1e-2, size=(100, 3))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateComponentWarning)
        model = EMGaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X)
    covariances = np.asarray(model.covariances_)
    exact = np.logaddexp(
        *[
            np.log(model.weights_[k])
            + multivariate_normal(
                model.means_[k], covariance_matrix(model._covariance, covariances, k, 3)
            ).logpdf(X)
            for k in range(2)
        ]
    )
    # float64 resolves x near 1e6 to 1.2e-10, 1.2e-8 of the spread: the terms
    # (x - m)^2 / v of up to ~100 nats carry about 1e-6 nats of it, in scipy too
    assert_allclose(model.score_samples(X), exact, rtol=0, atol=1e-5)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fitted_attributes_copied_from_sklearn_score_as_sklearn(iris, covariance_type):
    """A model given scikit-learn's fitted attributes scores and predicts as scikit-learn.

    Fitted on other data first: the derived terms of that fit used to stay
    (-14.2 against scikit-learn's -4.5 per row).
    """
    reference = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(iris)
    rng = np.random.RandomState(0)
    model = EMGaussianMixture(3, covariance_type=covariance_type, random_state=0)
    model.fit(rng.normal(size=iris.shape) * 3 + 5)
    for name in FITTED:
        setattr(model, name, getattr(reference, name).copy())
    X = iris + 0.1 * rng.normal(size=iris.shape)
    assert_allclose(model.score_samples(X), reference.score_samples(X), rtol=1e-10)
    assert_allclose(model.predict_proba(X), reference.predict_proba(X), rtol=1e-8, atol=1e-12)
    assert_array_equal(model.predict(X), reference.predict(X))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_means_moved_in_place_move_scores_predictions_and_imputations(iris, covariance_type):
    """``means_ += 1`` moves every density: scores, labels and imputations follow (scipy)."""
    model = EMGaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(iris)
    model.means_ += 1.0
    covariances = {
        "full": lambda: model.covariances_,
        "tied": lambda: [model.covariances_] * 3,
        "diag": lambda: [np.diag(c) for c in model.covariances_],
        "spherical": lambda: [c * np.eye(iris.shape[1]) for c in model.covariances_],
    }[covariance_type]()
    joint = np.log(model.weights_) + np.column_stack(
        [multivariate_normal(m, c).logpdf(iris) for m, c in zip(model.means_, covariances)]
    )
    assert_allclose(model.score_samples(iris), np.logaddexp.reduce(joint, axis=1), rtol=1e-10)
    assert_array_equal(model.predict(iris), joint.argmax(axis=1))
    row = iris[:1].copy()
    row[0, 1:] = np.nan  # only the first column observed
    marginal = np.log(model.weights_) + [
        multivariate_normal(m[0], c[0, 0]).logpdf(row[0, 0])
        for m, c in zip(model.means_, covariances)
    ]
    posterior = np.exp(marginal - np.logaddexp.reduce(marginal))
    expected = sum(
        p * (m[1:] + c[1:, 0] / c[0, 0] * (row[0, 0] - m[0]))
        for p, m, c in zip(posterior, model.means_, covariances)
    )
    assert_allclose(model.impute(row)[0, 1:], expected, rtol=1e-9)


@pytest.mark.parametrize("covariance_type", ["diag", "spherical", "tied_diag"])
@pytest.mark.parametrize(
    "data_scale, far_rows",
    [
        (1.0, [[1e150] * 4, [-1e153, 3e152, 0.0, 1e152], [1e155] * 4, [1e300] * 4]),
        (1e50, [[1e160] * 4, [1e200, -3e199, 1e198, 0.0], [1e205] * 4, [-1e300] * 4]),
    ],
)
def test_diagonal_types_score_rows_whose_squares_overflow_exactly(
    covariance_type, data_scale, far_rows, iris
):
    """Rows whose squares overflow, complete or not, against the log-density on
    rescaled residuals: the expanded squares x^2 / v made them -inf (with an
    "invalid value" warning) from about 1.3e154, where beside data of scale
    1e50 a row at 1e160 has the log-density -5.6e220."""
    model = EMGaussianMixture(3, covariance_type=covariance_type, random_state=0)
    model.fit(iris * data_scale)
    rows = np.array(far_rows)
    incomplete = rows.copy()
    incomplete[:, 1] = np.nan
    rows = np.vstack([rows, incomplete])
    covariances = np.asarray(model.covariances_)
    with np.errstate(divide="ignore"):
        exact = np.logaddexp.reduce(
            [
                np.log(model.weights_[k])
                + rescaled_gaussian_log_density(
                    model.means_[k], covariance_matrix(model._covariance, covariances, k, 4), rows
                )
                for k in range(3)
            ],
            axis=0,
        )
    scores = model.score_samples(rows)
    finite = np.isfinite(exact)
    assert finite.any() and not finite.all()
    assert_allclose(scores[finite], exact[finite], rtol=1e-12)
    assert_array_equal(scores[~finite], -np.inf)


def rows_with_a_far_one(far, rng, n_samples=400, n_components=3, n_features=40):
    """Residuals y (n x K x d) and sharp responsibilities, row 0 far from
    component 0: in "every direction" with responsibility 1e-12, or in "one
    direction" (the last) with responsibility 1."""
    residuals = rng.normal(size=(n_samples, n_components, n_features))
    responsibilities = softmax(100 * rng.normal(size=(n_samples, n_components)), axis=1)
    if far == "every direction":
        residuals[0, 0] = 1e9
        responsibilities[0] = [1e-12, 0.5, 0.5 - 1e-12]
    else:
        residuals[0, 0, -1] = 1e11
        responsibilities[0] = [1.0, 0.0, 0.0]
    return residuals, responsibilities


@pytest.mark.parametrize("far", ["every direction", "one direction"])
def test_full_scatters_skip_only_rows_below_their_rounding(far):
    """The fit loop's scatters sum r y y^T leave out the rows that change them
    by less than their rounding, and only those: each entry equal to the
    dense sum to rounding of sqrt(S_ii S_jj). A far row (of tiny
    responsibility, or far in one direction only, which makes the trace large
    there alone, as an outlier new to a warm-started fit) is kept, and in the
    second case the rows the trace would drop too."""
    from skem._core._covariance import COVARIANCES
    from skem._core._linalg import contributing_rows

    stacked, responsibilities = rows_with_a_far_one(far, np.random.RandomState(0))
    n_samples, n_components, n_features = stacked.shape
    dense = np.einsum("nk,nkd,nke->kde", responsibilities, stacked, stacked)
    squared = np.einsum("nkd,nkd->nk", stacked, stacked)
    contributing, _ = contributing_rows(responsibilities, squared, n_features)
    assert contributing[0, 0] and contributing.mean() < 0.5  # (the component-wise path)
    workspace = {"whitened": stacked.reshape(n_samples, -1).copy(), "squared": squared}
    scatters = COVARIANCES["full"].second_moments(None, None, responsibilities, None, workspace)
    for k in range(n_components):
        scale = np.sqrt(np.outer(np.diagonal(dense[k]), np.diagonal(dense[k])))
        assert np.all(np.abs(scatters[k] - dense[k]) <= 1e-13 * scale)


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_sample_float32_ill_conditioned(covariance_type):
    """float32 data whose covariances have condition number ~1e12 (beyond float32's
    precision: the stored float32 covariance is indefinite) still sample, from the
    Gaussians the model scores with: draws whitened by the precision factors U
    (P = U U^T) have identity covariance, to sampling error. The warning names
    float32's precision."""
    rng = np.random.RandomState(0)
    rotation = np.linalg.qr(rng.normal(size=(6, 6)))[0]
    X = (rng.normal(size=(2000, 6)) * np.logspace(0, 6, 6)) @ rotation
    model = EMGaussianMixture(2, covariance_type=covariance_type, random_state=0)
    with pytest.warns(DegenerateComponentWarning, match="float32 data .* fit float64"):
        model.fit(X.astype(np.float32))  # (singular at float32's precision: named)
    n_draws = 100_000
    draws, labels = model.sample(n_draws)
    assert draws.dtype == np.float32
    factors = np.asarray(model.precisions_cholesky_, dtype=np.float64)
    for k in range(2):
        factor = factors if covariance_type == "tied" else factors[k]
        whitened = (draws[labels == k] - model.means_[k]).astype(np.float64) @ factor
        bound = 5 * np.sqrt(2 / whitened.shape[0])  # five standard errors
        assert_allclose(np.cov(whitened.T), np.eye(6), rtol=0, atol=bound)


def test_contributing_rows_keep_every_row_when_the_trace_is_out_of_range():
    """A trace beyond the float range (finite shares summing to inf) or zero
    (every square underflowed) cannot rank rows: every row of positive
    responsibility is kept, without a RuntimeWarning (errors here)."""
    from skem._core._linalg import contributing_rows

    responsibilities = np.array([1.0, 0.9, 0.0, 1e-300])
    for squared_norms in ([1e308, 1e308, 1e308, 1.0], [0.0, 0.0, 0.0, 0.0]):
        kept, dropped = contributing_rows(responsibilities, np.array(squared_norms), 1)
        assert_array_equal(kept, [True, True, False, True])
        assert dropped == 0.0
    kept, dropped = contributing_rows(responsibilities, np.array([1.0, 1.0, np.inf, 1.0]), 1)
    assert_array_equal(kept, [True, True, False, False])  # (r = 0 drops an infinite row)
    assert dropped == 1e-300
