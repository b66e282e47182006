"""Missing values (NaN) in the Gaussian mixtures, against closed forms and scipy."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from skem import EMGaussianMixture, MixtureOfPPCA, ProbabilisticPCA
from skem._core import _blocks, _missing
from skem._core._missing import pattern_groups

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical", "tied_diag"]


def blobs_with_missing(n_per_blob=80, n_features=4, rate=0.2, seed=0):
    """Three correlated Gaussian blobs with values missing at random."""
    rng = np.random.RandomState(seed)
    third = np.r_[-4.0, 4.0, np.zeros(n_features - 2)]
    centers = np.array([np.zeros(n_features), np.full(n_features, 4.0), third])
    mixing = np.eye(n_features) + 0.4 * rng.normal(size=(n_features, n_features))
    X = np.vstack([c + rng.normal(size=(n_per_blob, n_features)) @ mixing for c in centers])
    complete = X.copy()
    missing = rng.uniform(size=X.shape) < rate
    missing[missing.all(axis=1), 0] = False  # every row keeps an observed value
    X[missing] = np.nan
    return X, complete


def component_covariance(model, k):
    """Component k's covariance matrix, from the public attributes."""
    covariances, n_features = model.covariances_, model.means_.shape[1]
    return {
        "full": lambda: covariances[k],
        "tied": lambda: covariances,
        "diag": lambda: np.diag(covariances[k]),
        "spherical": lambda: covariances[k] * np.eye(n_features),
        "tied_diag": lambda: np.diag(covariances),
    }[model.covariance_type]()


def marginal_log_densities(x, means, covariances):
    """log N(x_o; mean_o, cov_oo) of one row under each component (scipy)."""
    observed = ~np.isnan(x)
    return np.array(
        [
            multivariate_normal(mean[observed], cov[np.ix_(observed, observed)]).logpdf(x[observed])
            for mean, cov in zip(means, covariances)
        ]
    )


def conditional_mean(x, mean, covariance):
    """mean_m + S_mo S_oo^-1 (x_o - mean_o), the row with its missing values filled."""
    observed = ~np.isnan(x)
    filled = x.copy()
    regression = np.linalg.solve(
        covariance[np.ix_(observed, observed)], covariance[np.ix_(observed, ~observed)]
    )
    filled[~observed] = mean[~observed] + regression.T @ (x[observed] - mean[observed])
    return filled, covariance[np.ix_(~observed, ~observed)] - covariance[
        np.ix_(~observed, observed)
    ] @ regression


def fit_quietly(model, X, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, **kwargs)


def initial_parameters(covariance_type, X, n_components=3, seed=0):
    """A fixed start, so fits that must agree begin at the same point."""
    rng = np.random.RandomState(seed)
    n_features = X.shape[1]
    means = np.nanmean(X, axis=0) + rng.normal(scale=2.0, size=(n_components, n_features))
    precisions = {
        "full": np.array([np.eye(n_features)] * n_components),
        "tied": np.eye(n_features),
        "diag": np.ones((n_components, n_features)),
        "spherical": np.ones(n_components),
        "tied_diag": np.ones(n_features),
    }[covariance_type]
    return dict(
        weights_init=np.full(n_components, 1.0 / n_components),
        means_init=means,
        precisions_init=precisions,
    )


# ---------------------------------------------------------------- complete data


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_fit_without_nan_still_matches_sklearn(covariance_type, monkeypatch):
    """Data without NaN never reach the missing-value code, and the numbers stay
    scikit-learn's from the same k-means start."""

    def refuse(*args):
        raise AssertionError("complete data took the missing-value path")

    monkeypatch.setattr(EMGaussianMixture, "_missing_log_prob", refuse)
    monkeypatch.setattr(EMGaussianMixture, "_initial_conditionals", refuse)
    X = load_iris().data
    params = dict(
        n_components=3, covariance_type=covariance_type, tol=1e-8, max_iter=60, random_state=0
    )
    ours = fit_quietly(EMGaussianMixture(**params), X)
    reference = fit_quietly(GaussianMixture(**params), X)
    assert ours.n_iter_ == reference.n_iter_
    assert_allclose(ours.lower_bounds_, reference.lower_bounds_, rtol=1e-10)
    assert_allclose(ours.means_, reference.means_, rtol=1e-10, atol=1e-10)
    assert_allclose(ours.covariances_, reference.covariances_, rtol=1e-10, atol=1e-10)
    assert_allclose(ours.score_samples(X), reference.score_samples(X), rtol=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_complete_rows_score_the_same_beside_rows_with_nan(covariance_type):
    X, complete = blobs_with_missing()
    model = fit_quietly(EMGaussianMixture(3, covariance_type=covariance_type, random_state=0), X)
    rows = ~np.isnan(X).any(axis=1)
    assert_allclose(model.score_samples(X)[rows], model.score_samples(X[rows]), rtol=1e-13)
    assert_allclose(model.predict_proba(X)[rows], model.predict_proba(X[rows]), atol=1e-13)


# ---------------------------------------------------------------- exact EM


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_bound_never_decreases_with_missing_values(covariance_type):
    X, _ = blobs_with_missing(rate=0.3)
    model = EMGaussianMixture(
        3, covariance_type=covariance_type, reg_covar=0.0, tol=1e-10, max_iter=60, random_state=0
    )
    fit_quietly(model, X)
    assert model.n_iter_ >= 5
    assert np.diff(model.lower_bounds_).min() >= -1e-12 * abs(model.lower_bound_)
    assert_allclose(model.lower_bound_, model.score(X), rtol=1e-3)


def reference_one_gaussian_em(X, mean, covariance, n_iter, reg_covar, covariance_type):
    """EM for one Gaussian with missing values, one row at a time (Little & Rubin).

    The covariance ``S + reg_covar I`` is that of ``x* + e``, e noise of
    variance reg_covar: the missing cells enter the scatter with the
    conditional covariance of x*, ``Cov[x_M | x_O] - reg_covar I``, as an
    observed cell enters it as it is, and the M-step adds the floor once.
    Returns the log-likelihood before each M-step, and the final parameters.
    """
    n_samples, n_features = X.shape
    bounds = []
    for _ in range(n_iter):
        filled_rows, conditional_sum, log_likelihood = [], np.zeros((n_features,) * 2), 0.0
        for x in X:
            missing = np.isnan(x)
            log_likelihood += marginal_log_densities(x, [mean], [covariance])[0]
            filled, conditional = conditional_mean(x, mean, covariance)
            filled_rows.append(filled)
            conditional_sum[np.ix_(missing, missing)] += conditional - reg_covar * np.eye(
                missing.sum()
            )
        bounds.append(log_likelihood / n_samples)
        filled_rows = np.array(filled_rows)
        mean = filled_rows.mean(axis=0)
        residuals = filled_rows - mean
        scatter = (residuals.T @ residuals + conditional_sum) / n_samples
        if covariance_type in ("diag", "tied_diag"):
            scatter = np.diag(np.diag(scatter))
        elif covariance_type == "spherical":
            scatter = np.diag(scatter).mean() * np.eye(n_features)
        covariance = scatter + reg_covar * np.eye(n_features)
    return np.array(bounds), mean, covariance


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_one_component_equals_the_textbook_missing_data_em(covariance_type):
    X, _ = blobs_with_missing(n_per_blob=30, rate=0.25, seed=1)
    start = initial_parameters(covariance_type, X, n_components=1)
    start["weights_init"] = [1.0]
    model = EMGaussianMixture(
        1, covariance_type=covariance_type, tol=0, max_iter=8, reg_covar=1e-6, **start
    )
    fit_quietly(model, X)
    n_features = X.shape[1]
    initial_covariance = np.eye(n_features)  # every start above is the identity
    bounds, mean, covariance = reference_one_gaussian_em(
        X, start["means_init"][0], initial_covariance, 8, 1e-6, covariance_type
    )
    assert_allclose(model.lower_bounds_, bounds, rtol=1e-10)
    assert_allclose(model.means_[0], mean, rtol=1e-10, atol=1e-12)
    assert_allclose(component_covariance(model, 0), covariance, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- densities


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_scores_are_the_log_density_of_the_observed_values(covariance_type):
    X, _ = blobs_with_missing()
    model = fit_quietly(
        EMGaussianMixture(3, covariance_type=covariance_type, max_iter=20, random_state=0), X
    )
    rows = np.flatnonzero(np.isnan(X).any(axis=1))[:25]
    covariances = [component_covariance(model, k) for k in range(3)]
    joint = np.log(model.weights_) + np.array(
        [marginal_log_densities(x, model.means_, covariances) for x in X[rows]]
    )
    scores = model.score_samples(X)
    assert scores.dtype == np.float64 and np.all(np.isfinite(scores))
    assert_allclose(scores[rows], logsumexp(joint, axis=1), rtol=1e-11)
    posterior = np.exp(joint - logsumexp(joint, axis=1, keepdims=True))
    assert_allclose(model.predict_proba(X)[rows], posterior, atol=1e-11)
    assert_array_equal(model.predict(X)[rows], posterior.argmax(axis=1))


# ---------------------------------------------------------------- imputation


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag"])
def test_imputed_values_are_the_conditional_means(covariance_type):
    X, _ = blobs_with_missing()
    model = fit_quietly(
        EMGaussianMixture(3, covariance_type=covariance_type, max_iter=20, random_state=0), X
    )
    imputed = model.impute(X)
    observed = ~np.isnan(X)
    assert_array_equal(imputed[observed], X[observed])
    covariances = [component_covariance(model, k) for k in range(3)]
    for i in np.flatnonzero(~observed.all(axis=1))[:20]:
        joint = np.log(model.weights_) + marginal_log_densities(X[i], model.means_, covariances)
        posterior = np.exp(joint - logsumexp(joint))
        means = [conditional_mean(X[i], m, c)[0] for m, c in zip(model.means_, covariances)]
        assert_allclose(imputed[i], posterior @ np.array(means), rtol=1e-10, atol=1e-12)


def test_imputation_draws_follow_the_conditional_distribution():
    X, _ = blobs_with_missing()
    model = fit_quietly(EMGaussianMixture(3, max_iter=30, random_state=0), X)
    # a row between two clusters, so the draws mix two conditionals
    row = np.array([2.0, np.nan, 2.0, np.nan])
    covariances = [component_covariance(model, k) for k in range(3)]
    joint = np.log(model.weights_) + marginal_log_densities(row, model.means_, covariances)
    posterior = np.exp(joint - logsumexp(joint))
    moments = [conditional_mean(row, m, c) for m, c in zip(model.means_, covariances)]
    means = np.array([filled[[1, 3]] for filled, _ in moments])
    mean = posterior @ means
    covariance = sum(
        p * (c + np.outer(m - mean, m - mean)) for p, m, (_, c) in zip(posterior, means, moments)
    )
    draws = model.impute(np.tile(row, (20000, 1)), sample_posterior=True, random_state=0)
    assert_array_equal(draws[:, [0, 2]], 2.0)
    standard_error = np.sqrt(np.diag(covariance) / draws.shape[0])
    assert np.all(np.abs(draws[:, [1, 3]].mean(axis=0) - mean) < 5 * standard_error)
    assert_allclose(np.cov(draws[:, [1, 3]].T), covariance, rtol=0.06, atol=0.02)
    again = model.impute(np.tile(row, (20000, 1)), sample_posterior=True, random_state=0)
    assert_array_equal(draws, again)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rows_without_observed_values_get_the_mixture_mean(dtype):
    X, _ = blobs_with_missing()
    model = fit_quietly(EMGaussianMixture(3, covariance_type="diag", random_state=0), X)
    empty = np.full((2, X.shape[1]), np.nan, dtype=dtype)
    imputed = model.impute(empty)
    assert imputed.dtype == dtype
    assert_allclose(imputed, np.tile(model.weights_ @ model.means_, (2, 1)), rtol=1e-6)
    draws = model.impute(np.full((5000, X.shape[1]), np.nan), sample_posterior=True, random_state=1)
    assert_allclose(draws.mean(axis=0), model.weights_ @ model.means_, atol=0.15)
    complete = np.ones((3, X.shape[1]), dtype=dtype)
    assert_array_equal(model.impute(complete), complete)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("model", [EMGaussianMixture(2), MixtureOfPPCA(2, 1)])
def test_rows_or_columns_without_observed_values_are_refused(model):
    X, complete = blobs_with_missing()
    empty_row = X.copy()
    empty_row[7] = np.nan
    with pytest.raises(ValueError, match=r"Rows \[7\] of X are entirely NaN"):
        model.fit(empty_row)
    assert not hasattr(model, "n_features_in_")
    empty_column = complete.copy()
    empty_column[:, 2] = np.nan
    with pytest.raises(ValueError, match=r"Columns \[2\] of X are entirely NaN"):
        model.fit(empty_column)
    weights = np.ones(X.shape[0])
    weights[np.flatnonzero(~np.isnan(X[:, 1]))] = 0.0
    weights[0] = 1.0
    only_unweighted = X.copy()
    only_unweighted[0, 1] = np.nan
    with pytest.raises(ValueError, match=r"Columns \[1\] of X .* observed only in rows of zero"):
        model.fit(only_unweighted, sample_weight=weights)
    fit_quietly(model.set_params(random_state=0), X)
    for method in (model.score_samples, model.predict, model.predict_proba):
        with pytest.raises(ValueError, match=r"Rows \[7\] of X are entirely NaN"):
            method(empty_row)


def test_mixture_of_ppca_refuses_nan_beyond_the_closed_form():
    X = np.random.RandomState(0).normal(size=(50, 201))
    X[3, 4] = np.nan
    with pytest.raises(ValueError, match="closed-form M-step, used up to 200 features"):
        MixtureOfPPCA(2, 1).fit(X)


# ---------------------------------------------------------------- float32, weights, chunks


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_float32_with_missing_values_matches_float64(covariance_type):
    X, _ = blobs_with_missing()
    start = initial_parameters(covariance_type, X)
    params = dict(covariance_type=covariance_type, tol=0, max_iter=10, **start)
    single = fit_quietly(EMGaussianMixture(3, **params), X.astype(np.float32))
    double = fit_quietly(EMGaussianMixture(3, **params), X)
    assert single.means_.dtype == np.float32 and single.covariances_.dtype == np.float32
    scores = single.score_samples(X.astype(np.float32))
    assert scores.dtype == np.float64
    assert_allclose(scores, double.score_samples(X), rtol=1e-5)
    assert_allclose(single.means_, double.means_, rtol=1e-4, atol=1e-4)
    assert_allclose(single.lower_bounds_, double.lower_bounds_, rtol=1e-5)
    assert single.impute(X.astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_integer_weights_with_missing_values_equal_repeated_rows(covariance_type):
    X, _ = blobs_with_missing(n_per_blob=40)
    counts = np.random.RandomState(3).randint(0, 4, size=X.shape[0])
    params = dict(
        covariance_type=covariance_type,
        tol=0,
        max_iter=10,
        **initial_parameters(covariance_type, X),
    )
    weighted = fit_quietly(EMGaussianMixture(3, **params), X, sample_weight=counts)
    repeated = fit_quietly(EMGaussianMixture(3, **params), np.repeat(X, counts, axis=0))
    assert_allclose(weighted.lower_bounds_, repeated.lower_bounds_, rtol=1e-10)
    assert_allclose(weighted.means_, repeated.means_, rtol=1e-9, atol=1e-10)
    assert_allclose(weighted.covariances_, repeated.covariances_, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("init_params", ["kmeans", "random"])
def test_chunks_with_and_without_nan_add_up_to_the_one_block_fit(
    covariance_type, init_params, monkeypatch
):
    X, _ = blobs_with_missing()
    X[:60] = np.where(np.isnan(X[:60]), 1.0, X[:60])  # whole chunks without NaN
    params = dict(
        covariance_type=covariance_type, init_params=init_params, max_iter=10, tol=0, random_state=0
    )
    whole = fit_quietly(EMGaussianMixture(3, **params), X)
    monkeypatch.setattr(_blocks, "CHUNK_FLOATS", 25 * whole._row_width())
    monkeypatch.setattr(_missing, "STACK_FLOATS", 40)  # many stacks of patterns
    chunked = fit_quietly(EMGaussianMixture(3, **params), X)
    assert_allclose(chunked.lower_bounds_, whole.lower_bounds_, rtol=1e-11)
    assert_allclose(chunked.means_, whole.means_, rtol=1e-10, atol=1e-11)
    assert_allclose(chunked.covariances_, whole.covariances_, rtol=1e-10, atol=1e-11)
    assert_allclose(chunked.impute(X), whole.impute(X), rtol=1e-10, atol=1e-11)


def test_far_rows_with_missing_values_never_score_nan():
    X, _ = blobs_with_missing()
    far = np.array([[1e200, np.nan, 1.0, 2.0], [-1e300, np.nan, np.nan, 1e300]])
    for model in [EMGaussianMixture(3, covariance_type=c) for c in COVARIANCE_TYPES] + [
        MixtureOfPPCA(2, 1)
    ]:
        fit_quietly(model.set_params(random_state=0), X)
        assert np.all(model.score_samples(far) == -np.inf)
        assert_allclose(model.predict_proba(far).sum(axis=1), 1.0)


def test_dask_fit_with_missing_values_equals_the_fit_in_memory():
    da = pytest.importorskip("dask.array")
    X, _ = blobs_with_missing()
    params = dict(init_params="random_from_data", max_iter=10, tol=0, random_state=0)
    in_memory = fit_quietly(EMGaussianMixture(3, **params), X)
    on_dask = fit_quietly(EMGaussianMixture(3, **params), da.from_array(X, chunks=50))
    assert_allclose(on_dask.lower_bounds_, in_memory.lower_bounds_, rtol=1e-12)
    assert_allclose(on_dask.means_, in_memory.means_, rtol=1e-10, atol=1e-12)
    scores = on_dask.score_samples(da.from_array(X, chunks=50)).compute()
    assert_allclose(scores, in_memory.score_samples(X), rtol=1e-12)


def test_warm_start_with_missing_values_continues_exact_em():
    X, _ = blobs_with_missing()
    stepper = EMGaussianMixture(3, warm_start=True, max_iter=1, tol=0, random_state=0)
    fit_quietly(stepper, X)
    for _ in range(4):
        before = stepper.score(X)
        fit_quietly(stepper, X)
        assert_allclose(stepper.lower_bounds_, [before], rtol=1e-12)


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_every_initialisation_takes_missing_values(init_params):
    X, _ = blobs_with_missing(rate=0.3)
    model = EMGaussianMixture(3, init_params=init_params, max_iter=0, random_state=0).fit(X)
    assert np.all(np.isfinite(model.means_)) and np.all(np.isfinite(model.covariances_))
    assert np.all(np.isfinite(model.score_samples(X)))


def test_every_row_its_own_pattern():
    n_samples, n_features = 300, 14
    X, _ = blobs_with_missing(n_per_blob=n_samples // 3, n_features=n_features, rate=0.0)
    # row i misses the features of the binary digits of i + 1: all patterns differ
    missing = ((np.arange(1, n_samples + 1)[:, None] >> np.arange(n_features)) & 1).astype(bool)
    missing = np.random.RandomState(0).permutation(missing)  # spread over the blobs
    X[missing] = np.nan
    assert sum(len(group.local) for group in pattern_groups(missing)) == n_samples
    assert sum(group.indices.shape[0] for group in pattern_groups(missing)) == n_samples
    model = EMGaussianMixture(3, reg_covar=0.0, tol=1e-8, max_iter=15, random_state=0)
    fit_quietly(model, X)
    assert np.diff(model.lower_bounds_).min() >= -1e-12 * abs(model.lower_bound_)
    covariances = [component_covariance(model, k) for k in range(3)]
    joint = np.log(model.weights_) + np.array(
        [marginal_log_densities(x, model.means_, covariances) for x in X[:20]]
    )
    assert_allclose(model.score_samples(X[:20]), logsumexp(joint, axis=1), rtol=1e-11)


# ---------------------------------------------------------------- mixture of PPCA


def low_rank_with_missing(rate=0.2, seed=0, n_features=8):
    rng = np.random.RandomState(seed)
    centers = rng.normal(scale=4, size=(2, n_features))
    X = np.vstack(
        [
            c
            + rng.normal(size=(150, 2)) @ rng.normal(size=(2, n_features))
            + 0.3 * rng.normal(size=(150, n_features))
            for c in centers
        ]
    )
    missing = rng.uniform(size=X.shape) < rate
    missing[missing.all(axis=1), 0] = False
    X[missing] = np.nan
    return X


def ppca_covariance(model, k):
    loadings = model.components_[k].T
    return loadings @ loadings.T + model.noise_variance_[k] * np.eye(loadings.shape[0])


def test_mixture_of_ppca_bound_never_decreases_with_missing_values():
    X = low_rank_with_missing(rate=0.3)
    model = fit_quietly(MixtureOfPPCA(2, 2, tol=1e-10, max_iter=80, random_state=0), X)
    assert model.n_iter_ >= 5
    assert np.diff(model.lower_bounds_).min() >= -1e-12 * abs(model.lower_bound_)


def test_mixture_of_ppca_with_one_component_reaches_ppcas_missing_data_optimum():
    X = low_rank_with_missing(rate=0.2)
    mixture = fit_quietly(MixtureOfPPCA(1, 2, tol=1e-12, max_iter=3000, random_state=0), X)
    ppca = fit_quietly(
        ProbabilisticPCA(2, solver="em", tol=1e-12, max_iter=5000, random_state=0), X
    )
    assert_allclose(mixture.score(X), ppca.score(X), rtol=1e-7)
    assert_allclose(mixture.noise_variance_[0], ppca.noise_variance_, rtol=1e-4)
    assert_allclose(mixture.means_[0], ppca.mean_, rtol=1e-4, atol=1e-4)


def test_mixture_of_ppca_scores_transform_and_imputes_the_observed_marginal():
    X = low_rank_with_missing()
    model = fit_quietly(MixtureOfPPCA(2, 2, max_iter=30, random_state=0), X)
    rows = np.flatnonzero(np.isnan(X).any(axis=1))[:20]
    covariances = [ppca_covariance(model, k) for k in range(2)]
    joint = np.log(model.weights_) + np.array(
        [marginal_log_densities(x, model.means_, covariances) for x in X[rows]]
    )
    assert_allclose(model.score_samples(X)[rows], logsumexp(joint, axis=1), rtol=1e-10)
    labels = joint.argmax(axis=1)
    latent = model.transform(X)[rows]
    imputed = model.impute(X)[rows]
    posterior = np.exp(joint - logsumexp(joint, axis=1, keepdims=True))
    for i, x in enumerate(X[rows]):
        observed, k = ~np.isnan(x), labels[i]
        loadings = model.components_[k][:, observed]  # W_o^T
        inner = loadings @ loadings.T + model.noise_variance_[k] * np.eye(2)
        expected = np.linalg.solve(inner, loadings @ (x[observed] - model.means_[k][observed]))
        assert_allclose(latent[i], expected, rtol=1e-9, atol=1e-12)
        means = [conditional_mean(x, m, c)[0] for m, c in zip(model.means_, covariances)]
        assert_allclose(imputed[i], posterior[i] @ np.array(means), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("path", ["small stacks", "formed in the sums", "rows sharing patterns"])
@pytest.mark.parametrize("n_stacked", [1, 3])
def test_conditioning_by_pattern_stacks_equals_row_by_row_formulas(n_stacked, path, monkeypatch):
    """Patterns of 1 to 29 missing values of 30, in stacks, against numpy row by row.

    Each path of ``condition_on_observed``: conditional covariances of small
    stacks kept from the E-step, or formed in the sums (with rows that share
    patterns too); some responsibilities are negligible (skipped in the sums).
    """
    if path != "small stacks":
        monkeypatch.setattr(_missing, "SMALL_STACK_FLOATS", 0)
    _missing.clear_pattern_cache()
    rng = np.random.RandomState(0)
    n_samples, n_features, n_components = 120, 30, 3
    factors = rng.normal(size=(n_stacked, n_features, n_features))
    precisions = factors @ factors.transpose(0, 2, 1) + n_features * np.eye(n_features)
    means = rng.normal(size=(n_components, n_features))
    X = rng.normal(size=(n_samples, n_features))
    missing = rng.uniform(size=X.shape) < np.linspace(0.02, 0.97, n_samples)[:, None]
    missing[missing.all(axis=1), 0] = False
    if path == "rows sharing patterns":
        missing = missing[np.arange(n_samples) // 4 * 4]
    residuals = np.where(missing, 0.0, X[np.newaxis] - means[:, np.newaxis])
    mahalanobis, log_det, conditionals = _missing.condition_on_observed(
        residuals,
        missing,
        np.linalg.cholesky(precisions),
        means,  # P = L L^T
    )
    responsibilities = rng.dirichlet(np.ones(n_components), size=n_samples)
    responsibilities[::3, 0] = 1e-30  # negligible pairs
    expected_sum = np.zeros((n_components, n_features, n_features))
    standard_normal = rng.normal(size=X.shape)
    labels = rng.randint(n_components, size=n_samples)
    noise = conditionals.noise(labels, standard_normal)
    for i in range(n_samples):
        o, m = ~missing[i], missing[i]
        for k in range(n_components):
            covariance = np.linalg.inv(precisions[k % n_stacked])
            residual = X[i] - means[k]
            solved = np.linalg.solve(covariance[np.ix_(o, o)], residual[o])
            assert_allclose(mahalanobis[i, k], residual[o] @ solved, rtol=1e-10)
            filled = residual.copy()
            filled[m] = covariance[np.ix_(m, o)] @ solved
            assert_allclose(conditionals.residuals[k, i], filled, rtol=1e-10, atol=1e-12)
            conditional = covariance[np.ix_(m, m)] - covariance[np.ix_(m, o)] @ np.linalg.solve(
                covariance[np.ix_(o, o)], covariance[np.ix_(o, m)]
            )
            expected_sum[k][np.ix_(m, m)] += responsibilities[i, k] * conditional
            if k % n_stacked == k:
                log_det_mm = np.linalg.slogdet(precisions[k][np.ix_(m, m)])[1]
                assert_allclose(log_det[i, k], log_det_mm, rtol=1e-10)
            if k == labels[i]:
                draw = np.linalg.cholesky(conditional) @ standard_normal[i, m]
                assert_allclose(noise[i, m], draw, rtol=1e-9, atol=1e-12)
                assert_array_equal(noise[i, o], 0.0)
    total = conditionals.covariance_sum(responsibilities)
    assert_allclose(total, expected_sum, rtol=1e-9, atol=1e-12)
    assert_allclose(
        conditionals.covariance_sum(responsibilities, pooled=True),
        expected_sum.sum(axis=0),
        rtol=1e-9,
        atol=1e-12,
    )


def sum_column_data(scale, n_samples=2000, n_clusters=1, seed=0):
    """Four columns of SD ``scale`` and a fifth that is their sum plus noise of SD 0.01.

    The covariance is singular but for the noise: its condition number grows
    as scale**2 / 1e-4 (4e10 at scale 1000).
    """
    rng = np.random.RandomState(seed)
    parts = rng.normal(size=(n_samples, 4)) * scale
    parts += 5 * scale * (np.arange(n_samples) % n_clusters)[:, np.newaxis]
    noisy_sum = parts.sum(axis=1, keepdims=True) + 0.01 * rng.normal(size=(n_samples, 1))
    return np.hstack([parts, noisy_sum])


def model_covariances(model):
    """Every component's covariance matrix, from the public attributes."""
    if isinstance(model, MixtureOfPPCA):
        loadings = model.components_
        identity = np.eye(loadings.shape[2])
        return [w.T @ w + s * identity for w, s in zip(loadings, model.noise_variance_)]
    return [component_covariance(model, k) for k in range(model.n_components)]


@pytest.mark.parametrize("scale", [1.0, 10.0, 100.0, 1000.0])
@pytest.mark.parametrize(
    "make_model",
    [
        lambda: EMGaussianMixture(1, covariance_type="full", random_state=0),
        lambda: EMGaussianMixture(1, covariance_type="tied", random_state=0),
        lambda: MixtureOfPPCA(1, n_latent=4, random_state=0),
    ],
    ids=["full", "tied", "mppca"],
)
def test_ill_conditioned_marginals_and_conditionals_equal_scipy(make_model, scale):
    """Scores and imputations of partly observed rows on a nearly singular covariance.

    The observed-marginal log-density (scipy on the observed block of the
    fitted covariance) and the conditional mean ``S_MO S_OO^-1 (x_O - mu_O)``
    (numpy's solve). The precision's missing block used to be inverted
    outright: -7.695 against scipy's -6.514 for the first row at scale 100.
    """
    X = sum_column_data(scale)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the floor may hold the noise direction
        model = make_model().fit(X)
    nan = np.nan
    rows = scale * np.array(
        [
            [nan, nan, nan, nan, 1.5],
            [nan, 0.3, nan, nan, 1.5],
            [0.7, -0.2, nan, 1.1, nan],
            [0.2, nan, 0.4, 0.1, 2.5],
            [nan, 0.3, -0.4, 0.9, 3.0],
        ]
    )
    means = model.means_
    covariances = model_covariances(model)
    expected = [marginal_log_densities(x, means, covariances)[0] for x in rows]
    assert_allclose(model.score_samples(rows), expected, rtol=1e-9)
    imputed = model.impute(rows)
    for x, filled in zip(rows, imputed):
        expected_filled = conditional_mean(x, means[0], covariances[0])[0]
        assert_allclose(filled, expected_filled, rtol=0, atol=1e-7 * scale)


def test_ill_conditioned_missing_values_keep_the_bound_and_the_labels():
    """Two clusters on the nearly singular covariance, 20% of the cells missing.

    EM's bound never falls, and the labels of incomplete rows are the
    largest scipy joint density under the fitted parameters (a third of
    them used to flip).
    """
    X = sum_column_data(100.0, n_samples=1500, n_clusters=2)
    rng = np.random.RandomState(1)
    missing = rng.uniform(size=X.shape) < 0.2
    missing[missing.all(axis=1), 0] = False
    X[missing] = np.nan
    model = EMGaussianMixture(2, tol=1e-12, max_iter=30, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X)
    assert np.diff(model.lower_bounds_).min() >= -1e-10 * abs(model.lower_bound_)
    incomplete = np.nonzero(missing.any(axis=1))[0][:200]
    joint = np.log(model.weights_) + np.array(
        [marginal_log_densities(x, model.means_, model.covariances_) for x in X[incomplete]]
    )
    assert_array_equal(model.predict(X[incomplete]), joint.argmax(axis=1))
    assert_allclose(model.score_samples(X[incomplete]), logsumexp(joint, axis=1), rtol=1e-9)


@pytest.mark.parametrize("reg_covar", [1e-6, 1e-3])
@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_floor_is_added_once_for_a_column_observed_in_one_row_of_a_component(
    covariance_type, reg_covar
):
    """The component's variance there is its maximum-likelihood value, zero, plus the floor.

    The conditional variance of the missing cells used to carry the floor
    into the next M-step, which added it again: after 50 steps the variance
    was 45 floors and the bound fell by 8.6e-4 nats per row at every step.
    """
    rng = np.random.RandomState(0)
    first = rng.normal(size=(200, 4)) @ (np.eye(4) + 0.5 * rng.normal(size=(4, 4)))
    second = 0.5 * rng.normal(size=(200, 4)) + 6.0
    X = np.vstack([first, second])
    X[201:, 3] = np.nan  # observed in the first row of the second cluster only
    model = EMGaussianMixture(
        2, covariance_type=covariance_type, reg_covar=reg_covar, tol=0, max_iter=50, random_state=0
    )
    fit_quietly(model, X)
    second_component = model.predict(X[200:201])[0]
    variance = component_covariance(model, second_component)[3, 3]
    assert_allclose(variance, reg_covar, rtol=1e-6)
    assert np.diff(model.lower_bounds_).min() >= -1e-12 * abs(model.lower_bound_)
