"""ProbabilisticPCA against the closed form, scikit-learn's PCA and known models."""

import pickle

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.linalg import subspace_angles
from scipy.stats import multivariate_normal
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skem import ProbabilisticPCA
from skem.datasets import load_anomaly_split

LOADERS = {
    "iris": load_iris,
    "wine": load_wine,
    "breast_cancer": load_breast_cancer,
    "digits": load_digits,
}


def ppca_data(n_samples=2000, n_features=12, n_latent=3, noise=0.5, seed=0):
    """Data from a PPCA model with known loadings."""
    rng = np.random.RandomState(seed)
    loadings = rng.normal(scale=2.0, size=(n_features, n_latent))
    mean = rng.normal(size=n_features)
    X = (
        rng.normal(size=(n_samples, n_latent)) @ loadings.T
        + mean
        + noise * rng.normal(size=(n_samples, n_features))
    )
    return X, loadings


def with_missing(X, fraction, seed=0):
    rng = np.random.RandomState(seed)
    X = X.copy()
    X[rng.rand(*X.shape) < fraction] = np.nan
    X[np.isnan(X).all(axis=1), 0] = 0.0
    return X


def rescaled_to_unbiased(model, n_samples):
    """The same model with its covariance multiplied by N / (N - 1)."""
    scaled = pickle.loads(pickle.dumps(model))
    factor = n_samples / (n_samples - 1)
    scaled.components_ = model.components_ * np.sqrt(factor)
    scaled.noise_variance_ = model.noise_variance_ * factor
    return scaled


# ---------------------------------------------------------------- closed form and sklearn


@pytest.mark.parametrize("dataset", ["iris", "wine", "breast_cancer"])
@pytest.mark.parametrize("n_components", [1, 2, 3])
def test_closed_form_is_sklearn_pca_after_the_n_over_n_minus_1_rescale(dataset, n_components):
    X = LOADERS[dataset]().data
    model = ProbabilisticPCA(n_components, solver="eig").fit(X)
    pca = PCA(n_components).fit(X)
    scaled = rescaled_to_unbiased(model, len(X))
    assert_allclose(scaled.score_samples(X), pca.score_samples(X), rtol=1e-8)
    assert_allclose(scaled.get_covariance(), pca.get_covariance(), rtol=1e-8, atol=1e-8)
    assert_allclose(
        model.explained_variance_ * len(X) / (len(X) - 1), pca.explained_variance_, rtol=1e-8
    )


@pytest.mark.parametrize("dataset", ["iris", "wine", "breast_cancer", "digits"])
@pytest.mark.parametrize("n_components", [1, 2, 3])
def test_em_reaches_the_closed_form_optimum(dataset, n_components):
    X = LOADERS[dataset]().data
    closed = ProbabilisticPCA(n_components, solver="eig").fit(X)
    em = ProbabilisticPCA(n_components, solver="em", tol=1e-10, random_state=0).fit(X)
    assert_allclose(em.noise_variance_, closed.noise_variance_, rtol=1e-6)
    assert_allclose(em.score_samples(X), closed.score_samples(X), rtol=1e-6)
    scale = np.abs(closed.get_covariance()).max()
    assert_allclose(em.get_covariance(), closed.get_covariance(), atol=1e-6 * scale)
    # posterior means agree up to the rotation of W: compare W E[z|x]
    assert_allclose(
        em.transform(X) @ em.components_,
        closed.transform(X) @ closed.components_,
        atol=1e-6 * np.abs(X).max(),
    )


@pytest.mark.parametrize("dataset", ["wine", "breast_cancer"])
def test_em_from_a_poor_start_climbs_monotonically_to_the_optimum(dataset):
    X = StandardScaler().fit_transform(LOADERS[dataset]().data)
    closed = ProbabilisticPCA(3, solver="eig").fit(X)
    em = ProbabilisticPCA(3, solver="em", tol=1e-11, max_iter=5000, warm_start=True)
    em.fit(X[:40])  # a fit on a few rows is far from the optimum on all rows
    em.fit(X)
    assert em.n_iter_ > 20
    assert np.diff(em.lower_bounds_).min() >= -1e-12 * abs(em.lower_bound_)
    assert_allclose(em.score(X), closed.score(X), rtol=1e-7)


def test_maximum_likelihood_uses_the_one_over_n_covariance():
    X = load_wine().data
    model = ProbabilisticPCA(4, solver="eig").fit(X)
    eigenvalues = np.linalg.eigvalsh(np.cov(X.T, bias=True))[::-1]
    assert_allclose(model.explained_variance_, eigenvalues[:4], rtol=1e-10)
    assert_allclose(model.noise_variance_, eigenvalues[4:].mean(), rtol=1e-10)
    assert_allclose(model.lower_bounds_, [model.score(X)], rtol=1e-12)


def test_scores_use_the_matrix_inversion_lemma_exactly():
    X, _ = ppca_data()
    model = ProbabilisticPCA(3).fit(X)
    covariance = model.get_covariance()
    assert_allclose(
        model.score_samples(X), multivariate_normal(model.mean_, covariance).logpdf(X), rtol=1e-10
    )
    assert_allclose(model.get_precision(), np.linalg.inv(covariance), rtol=1e-8, atol=1e-10)


def test_generating_model_is_recovered():
    X, loadings = ppca_data(n_samples=20000)
    model = ProbabilisticPCA(3).fit(X)
    assert np.degrees(subspace_angles(model.components_.T, loadings)).max() < 1.0
    assert_allclose(model.noise_variance_, 0.25, rtol=0.05)


def test_grid_search_over_n_components_picks_the_true_latent_dimension():
    X, _ = ppca_data(n_samples=1000, n_features=10, n_latent=4)
    search = GridSearchCV(ProbabilisticPCA(), {"n_components": [1, 2, 3, 4, 5, 6, 7]}).fit(X)
    assert search.best_params_ == {"n_components": 4}


# ---------------------------------------------------------------- noise floor


def test_noise_floor_keeps_scores_finite_where_pca_does_not():
    rng = np.random.RandomState(0)
    X = np.column_stack([rng.normal(size=(100, 3)) @ rng.normal(size=(3, 5)), np.ones(100)])
    held_out = rng.normal(size=(20, 6)) * 3
    for n_components in (3, 5, 6):
        model = ProbabilisticPCA(n_components).fit(X)
        assert model.noise_variance_ > 0
        assert np.all(np.isfinite(model.score_samples(held_out)))
    pca = PCA(6).fit(X)  # noise_variance_ = 0: scikit-learn has no usable density
    with np.errstate(all="ignore"):
        try:
            pca_scores = pca.score_samples(held_out)
        except np.linalg.LinAlgError:
            pca_scores = None
    assert pca_scores is None or not np.all(np.abs(pca_scores) < 1e10)


def test_digits_held_out_likelihood_does_not_explode_for_large_q():
    X_train, X_test = train_test_split(load_digits().data, random_state=0)
    scores = [ProbabilisticPCA(q).fit(X_train).score(X_test) for q in (40, 60, 63, 64)]
    assert np.all(np.isfinite(scores))
    assert max(scores) - min(scores) < 100


def test_constant_data_fit_and_score_finitely():
    X = np.full((20, 3), 5.0)
    model = ProbabilisticPCA(1).fit(X)
    assert np.all(np.isfinite(model.score_samples(X + 1.0)))


# ---------------------------------------------------------------- pipelines and anomalies


def test_anomaly_scores_in_a_pipeline_match_pca():
    train, test, is_anomaly = load_anomaly_split()
    auc = {}
    for name, model in {"skem": ProbabilisticPCA(5), "pca": PCA(5)}.items():
        scores = make_pipeline(StandardScaler(), model).fit(train).score_samples(test)
        assert np.all(np.isfinite(scores))
        auc[name] = roc_auc_score(is_anomaly, -scores)
    assert auc["skem"] >= auc["pca"] - 1e-3
    assert auc["skem"] > 0.9


def test_set_output_and_feature_names():
    X = load_iris(as_frame=True).data
    model = ProbabilisticPCA(2).set_output(transform="pandas").fit(X)
    frame = model.transform(X)
    assert list(frame.columns) == ["probabilisticpca0", "probabilisticpca1"]
    assert_array_equal(model.get_feature_names_out(), ["probabilisticpca0", "probabilisticpca1"])


# ---------------------------------------------------------------- missing values


def test_missing_values_bound_is_monotone_and_subspace_close_to_the_complete_fit():
    X = StandardScaler().fit_transform(load_breast_cancer().data)
    missing = with_missing(X, 0.2)
    em = ProbabilisticPCA(3, tol=1e-9, random_state=0).fit(missing)
    complete = ProbabilisticPCA(3).fit(X)
    assert np.diff(em.lower_bounds_).min() >= -1e-12 * abs(em.lower_bound_)
    mean_imputed = np.where(np.isnan(missing), np.nanmean(missing, axis=0), missing)
    naive = ProbabilisticPCA(3).fit(mean_imputed)
    em_angles = subspace_angles(em.components_.T, complete.components_.T)
    naive_angles = subspace_angles(naive.components_.T, complete.components_.T)
    assert np.degrees(em_angles).max() < 10
    assert em_angles.max() < naive_angles.max()


def test_missing_values_recover_a_known_subspace():
    X, loadings = ppca_data(n_samples=4000)
    model = ProbabilisticPCA(3, tol=1e-9, random_state=0).fit(with_missing(X, 0.2))
    assert np.degrees(subspace_angles(model.components_.T, loadings)).max() < 1.5
    assert_allclose(model.noise_variance_, 0.25, rtol=0.1)


def test_rows_with_nan_score_and_transform_from_their_observed_values():
    X, _ = ppca_data()
    model = ProbabilisticPCA(3, solver="em", random_state=0).fit(with_missing(X, 0.1))
    row = X[0].copy()
    row[[1, 4, 7]] = np.nan
    observed = ~np.isnan(row)
    covariance = model.get_covariance()[np.ix_(observed, observed)]
    expected = multivariate_normal(model.mean_[observed], covariance).logpdf(row[observed])
    assert_allclose(model.score_samples(row[np.newaxis])[0], expected, rtol=1e-10)
    loadings = model.components_.T[observed]
    precision = loadings.T @ loadings + model.noise_variance_ * np.eye(3)
    posterior_mean = np.linalg.solve(precision, loadings.T @ (row - model.mean_)[observed])
    assert_allclose(model.transform(row[np.newaxis])[0], posterior_mean, rtol=1e-10)


def test_em_without_missing_values_is_the_ordinary_optimum():
    X, _ = ppca_data()
    em = ProbabilisticPCA(3, solver="em", tol=1e-12, random_state=0).fit(X)
    closed = ProbabilisticPCA(3, solver="eig").fit(X)
    assert_allclose(em.score_samples(X), closed.score_samples(X), rtol=1e-9)


@pytest.mark.parametrize(
    "X, message",
    [
        (np.array([[np.nan, np.nan], [1.0, 2.0], [2.0, 1.0]]), "entirely NaN"),
        (np.array([[np.nan, 1.0], [np.nan, 2.0], [np.nan, 1.0]]), "Columns"),
        (np.array([[np.inf, 1.0], [1.0, 2.0], [2.0, 1.0]]), "infinity"),
    ],
)
def test_unusable_missing_patterns_raise_value_error(X, message):
    model = ProbabilisticPCA(1)
    with pytest.raises(ValueError, match=message):
        model.fit(X)
    assert not hasattr(model, "n_features_in_")


def test_eig_solver_refuses_missing_values():
    with pytest.raises(ValueError, match="solver='eig' needs complete data"):
        ProbabilisticPCA(1, solver="eig").fit(with_missing(load_iris().data, 0.1))


# ---------------------------------------------------------------- the rest of the API


def test_integer_weights_equal_repeated_rows_for_both_solvers():
    X = load_wine().data
    weights = np.random.RandomState(0).randint(0, 4, size=len(X))
    for solver in ("eig", "em"):
        params = dict(n_components=3, solver=solver, tol=1e-12, random_state=0)
        weighted = ProbabilisticPCA(**params).fit(X, sample_weight=weights)
        repeated = ProbabilisticPCA(**params).fit(np.repeat(X, weights, axis=0))
        assert_allclose(weighted.score_samples(X), repeated.score_samples(X), rtol=1e-8)


def test_sample_follows_the_model_and_inverse_transform_decodes():
    X, _ = ppca_data()
    model = ProbabilisticPCA(3, random_state=0).fit(X)
    samples, latent = model.sample(50000, random_state=0)
    assert latent.shape == (50000, 3)
    assert_allclose(
        np.cov(samples.T), model.get_covariance(), atol=0.05 * np.abs(model.get_covariance()).max()
    )
    noise = samples - model.inverse_transform(latent)
    assert_allclose(noise.mean(axis=0), 0.0, atol=0.02)
    assert_allclose(noise.var(axis=0), model.noise_variance_, rtol=0.05)


def test_information_criteria_count_the_free_parameters():
    X = load_iris().data
    model = ProbabilisticPCA(2).fit(X)
    n_parameters = 4 * 2 - 1 + 1 + 4
    assert_allclose(model.bic(X), -2 * len(X) * model.score(X) + n_parameters * np.log(len(X)))
    assert_allclose(model.aic(X), -2 * len(X) * model.score(X) + 2 * n_parameters)


def test_float32_input_gives_float32_transform_and_the_same_fit():
    X = load_wine().data
    single = ProbabilisticPCA(3).fit(X.astype(np.float32))
    double = ProbabilisticPCA(3).fit(X)
    assert single.transform(X.astype(np.float32)).dtype == np.float32
    assert_allclose(single.score(X), double.score(X), rtol=1e-5)


def test_bad_n_components_raise_value_error():
    with pytest.raises(ValueError, match="n_components=5 must be at most n_features=4"):
        ProbabilisticPCA(5).fit(load_iris().data)
    with pytest.raises(ValueError, match="n_components"):
        ProbabilisticPCA(0).fit(load_iris().data)
    with pytest.raises(ValueError, match="solver"):
        ProbabilisticPCA(solver="svd").fit(load_iris().data)


def test_pickle_round_trip_keeps_scores():
    X = load_iris().data
    model = ProbabilisticPCA(2).fit(X)
    restored = pickle.loads(pickle.dumps(model))
    assert_array_equal(restored.score_samples(X), model.score_samples(X))


def test_max_iter_zero_keeps_the_initialisation_for_every_solver():
    model = ProbabilisticPCA(2, max_iter=0, random_state=0).fit(load_iris().data)
    assert model.n_iter_ == 0 and model.lower_bound_ == -np.inf


def test_feature_seen_only_in_zero_weight_rows_is_a_clear_error():
    X = load_iris().data.copy()
    X[:100, 2] = np.nan
    weights = np.r_[np.ones(100), np.zeros(50)]
    with pytest.raises(ValueError, match="observed only in rows of zero sample_weight"):
        ProbabilisticPCA(2).fit(X, sample_weight=weights)


def test_far_rows_never_score_nan_and_match_scipy_where_finite():
    X = load_iris().data
    for model in (ProbabilisticPCA(2).fit(X), ProbabilisticPCA(2).fit(X * 1e90)):
        covariance = model.components_.T @ model.components_ + model.noise_variance_ * np.eye(4)
        rows = np.array(
            [[1e154] * 4, [1e100] * 4, [1e200] * 4, [-1e300] * 4, [1e160, -3e159, 1e158, 2e160]]
        )
        scores = model.score_samples(rows)
        assert not np.isnan(scores).any()
        with np.errstate(over="ignore", invalid="ignore"):  # scipy overflows to -inf there
            exact = multivariate_normal(model.mean_, covariance).logpdf(rows)
        finite = np.isfinite(exact)
        assert_allclose(scores[finite], exact[finite], rtol=1e-9)
        assert np.all(scores[~finite] == -np.inf)


def rescaled_gaussian_log_density(mean, covariance, rows):
    """log N(x_o; mean_o, C_oo) of each row's observed values, exact far out.

    The quadratic form is taken on the residual r scaled by c = max |r_i|,
    c^2 (r/c)^T C^-1 (r/c) in float64, so it is -inf exactly when the
    log-density is below the float range (scipy's overflows earlier).
    """
    values = []
    for row in rows:
        observed = ~np.isnan(row)
        residual = row[observed] - mean[observed]
        block = covariance[np.ix_(observed, observed)]
        scale = np.abs(residual).max()
        scaled = residual / scale
        with np.errstate(over="ignore"):
            quadratic = scaled @ np.linalg.solve(block, scaled) * scale * scale
        log_det = np.linalg.slogdet(block)[1]
        values.append(-0.5 * (observed.sum() * np.log(2 * np.pi) + log_det + quadratic))
    return np.array(values)


#: Rows far from data of unit scale, of 1e98 and of 1e-100: scores from beyond
#: the float range (-inf) to finite values that overflow |x|^2 or x W M^-1.
FAR_ROWS = {
    1.0: [[1e308] * 4, [1e308, -3e307, 1e306, 0.0], [1e150] * 4, [-1e153, 0.0, 1e152, 0.0]],
    1e98: [[1e250] * 4, [1e250, -3e249, 1e248, 0.0], [1e308] * 4, [-1e200] * 4],
    1e-100: [[1e250] * 4, [1e250, -3e249, 1e248, 0.0], [1e50] * 4, [1e-60, -3e-61, 0.0, 1e-60]],
}


@pytest.mark.parametrize("data_scale", FAR_ROWS)
def test_far_rows_score_the_exact_log_density_at_every_data_scale(data_scale):
    """Far rows, complete or not, against the log-density on rescaled residuals.

    The far-row path rescaled |r|^2 but reused r W and M^-1 W^T r of the
    unscaled residual: once they overflowed, the quadratic form was clipped
    to 0 and a row at 1e308 scored -1.69 (the truth is -inf), rows at 1e250
    scored -905 beside data of scale 1e98 (truth -2e304) and +919 beside
    data of scale 1e-100 (truth -inf).
    """
    model = ProbabilisticPCA(2).fit(load_iris().data * data_scale)
    covariance = model.get_covariance()
    rows = np.array(FAR_ROWS[data_scale])
    incomplete = rows.copy()
    incomplete[:, 1] = np.nan
    rows = np.vstack([rows, incomplete])
    scores = model.score_samples(rows)
    exact = rescaled_gaussian_log_density(model.mean_, covariance, rows)
    finite = np.isfinite(exact)
    assert finite.any() and not finite.all()
    assert_allclose(scores[finite], exact[finite], rtol=1e-9)
    assert_array_equal(scores[~finite], -np.inf)


@pytest.mark.parametrize("data_scale", FAR_ROWS)
def test_far_rows_have_the_exact_posterior_mean_never_nan(data_scale):
    """``transform`` of far rows is ``c M^-1 W^T (r / c)`` (c = max |r_i|): finite
    where that is, infinite (not NaN, as inf - inf made it) only beyond the range."""
    model = ProbabilisticPCA(2).fit(load_iris().data * data_scale)
    rows = np.array(FAR_ROWS[data_scale])
    latent = model.transform(rows)
    loadings = model.components_.T
    inner = loadings.T @ loadings + model.noise_variance_ * np.eye(2)
    residual = rows - model.mean_
    scale = np.abs(residual).max(axis=1, keepdims=True)
    with np.errstate(over="ignore"):
        exact = np.linalg.solve(inner, loadings.T @ (residual / scale).T).T * scale
    assert not np.isnan(latent).any()
    finite = np.isfinite(exact)
    assert_allclose(latent[finite], exact[finite], rtol=1e-9)
    assert_array_equal(np.isinf(latent), ~finite)
