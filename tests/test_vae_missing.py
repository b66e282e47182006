"""AmortizedVAE: missing values, impute, partial_fit, and the refusal of dask arrays.

The numbers are checked on a linear-Gaussian set-up, where log p(x_o) and
E[x_m | x_o] are closed forms.
"""

import pickle
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.stats import multivariate_normal, norm
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import estimator_checks
from test_vae import assert_gradient_matches_central_differences, perturbed_point

from skem import AmortizedVAE, ProbabilisticPCA
from skem.neural_network._elbo import _MinibatchELBO
from skem.neural_network._mlp import forward


class LinearGaussian:
    """x = W z + 3 + 0.5 eps in 6 dimensions, z in 2: its moments and conditionals."""

    def __init__(self, n_samples=4000, seed=0):
        rng = np.random.RandomState(seed)
        loadings = rng.normal(size=(6, 2)) * 2
        self.X = rng.normal(size=(n_samples, 2)) @ loadings.T + 0.5 * rng.normal(
            size=(n_samples, 6)
        )
        self.X += 3.0
        self.mean = np.full(6, 3.0)
        self.covariance = loadings @ loadings.T + 0.25 * np.eye(6)

    def conditional(self, x):
        """Mean and covariance of the missing coordinates of x given its observed ones."""
        return gaussian_conditional(self.mean, self.covariance, x)

    def conditional_means(self, X):
        return gaussian_conditional_means(self.mean, self.covariance, X)


def gaussian_conditional(mean, covariance, x):
    """Mean and covariance of the missing coordinates of x under N(mean, covariance)."""
    missing = np.isnan(x)
    observed = ~missing
    cross = covariance[np.ix_(missing, observed)]
    inner = covariance[np.ix_(observed, observed)]
    conditional_mean = mean[missing] + cross @ np.linalg.solve(inner, x[observed] - mean[observed])
    conditional_covariance = covariance[np.ix_(missing, missing)] - cross @ np.linalg.solve(
        inner, cross.T
    )
    return conditional_mean, conditional_covariance


def gaussian_conditional_means(mean, covariance, X):
    """X with its missing values replaced by their conditional means."""
    filled = X.copy()
    for row in filled:
        if np.isnan(row).any():
            row[np.isnan(row)] = gaussian_conditional(mean, covariance, row)[0]
    return filled


def with_holes(X, fraction, seed):
    """X with a share of entries NaN at random; rows left empty keep their first value."""
    holes = X.copy()
    holes[np.random.RandomState(seed).uniform(size=X.shape) < fraction] = np.nan
    empty = np.isnan(holes).all(axis=1)
    holes[empty, 0] = X[empty, 0]
    return holes


@pytest.fixture(scope="module")
def gaussian():
    source = LinearGaussian()
    train, test = source.X[:2000], source.X[2000:2500]
    return source, train, test, with_holes(train, 0.3, 2), with_holes(test, 0.3, 1)


@pytest.fixture(scope="module")
def affine_complete(gaussian):
    """Affine networks fitted on complete data: an encoder without mask inputs."""
    _, train, _, _, _ = gaussian
    return AmortizedVAE(2, hidden_layer_sizes=(), max_iter=2000, random_state=0).fit(train)


@pytest.fixture(scope="module")
def affine_missing(gaussian):
    """Affine networks fitted on data with 30% missing: an encoder with mask inputs."""
    _, _, _, train, _ = gaussian
    return AmortizedVAE(2, hidden_layer_sizes=(), max_iter=2000, random_state=0).fit(train)


@pytest.fixture(scope="module")
def hidden_missing(gaussian):
    _, _, _, train, _ = gaussian
    return AmortizedVAE(2, hidden_layer_sizes=(32,), max_iter=2000, random_state=0).fit(train)


def linear_gaussian_moments(vae):
    """Make the affine VAE's decoder variance constant (a linear-Gaussian model, on a
    copy); return the copy and the mean and covariance of its density, in the user's units."""
    vae = pickle.loads(pickle.dumps(vae))
    _, decoder = vae._networks(vae.parameters_)
    weight, bias = decoder[0]
    n_features = vae.n_features_in_
    weight[:, n_features:] = 0.0
    loadings, offset = weight[:, :n_features].astype(float), bias[:n_features].astype(float)
    variance = vae._decoder_floor() + np.logaddexp(0, bias[n_features:].astype(float))
    scale = vae.feature_scale_
    covariance = (loadings.T @ loadings + np.diag(variance)) * np.outer(scale, scale)
    return vae, offset * scale + vae.feature_mean_, covariance


def observed_log_density(X, mean, covariance):
    """log p(x_o) of each row under N(mean, covariance), from the observed block."""
    return np.array(
        [
            multivariate_normal(mean[seen], covariance[np.ix_(seen, seen)]).logpdf(row[seen])
            for row, seen in zip(X, ~np.isnan(X))
        ]
    )


# ---------------------------------------------------------------------- the masked ELBO


def small_vae(likelihood, activation, missing, seed=0):
    """A barely trained VAE on 30 x 5 data, and the standardised data with holes."""
    rng = np.random.RandomState(seed)
    X = rng.uniform(size=(30, 5)) if likelihood == "bernoulli" else rng.normal(size=(30, 5))
    holes = with_holes(X, 0.3, seed + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        vae = AmortizedVAE(
            3,
            hidden_layer_sizes=(7, 6),
            activation=activation,
            likelihood=likelihood,
            max_iter=2,
            training_dtype="float64",
            random_state=seed,
        ).fit(holes if missing else X)
    return vae, vae._standardize(holes, np.float64)


def observed_log_likelihood(vae, X, decoded):
    """log p(x_o|z) by scipy's densities, summed over the non-NaN entries of X."""
    n_features = X.shape[1]
    if vae.likelihood == "bernoulli":
        terms = X * decoded - np.logaddexp(0, decoded)
    else:
        variance = vae._decoder_floor() + np.logaddexp(0, decoded[:, n_features:])
        terms = norm.logpdf(X, decoded[:, :n_features], np.sqrt(variance))
    return np.nansum(terms, axis=1)


def masked_objective(vae, parameters, X, weights, noise, kl_weight):
    """The training objective with missing values, forward only."""
    encoder, decoder = vae._networks(parameters)
    values, observed = vae._split_missing(X)
    _, mean, log_variance = vae._encode(encoder, vae._encoder_input(values, observed))
    std = np.exp(0.5 * log_variance)
    decoded = forward(decoder, mean + std * noise, vae.activation)[-1]
    kl = 0.5 * np.sum(mean**2 + std**2 - 1 - log_variance, axis=1)
    reconstruction = observed_log_likelihood(vae, X, decoded)
    return np.sum(weights * (reconstruction - kl_weight * kl)) / weights.sum()


@pytest.mark.parametrize(
    "likelihood, activation, missing",
    [
        ("gaussian", "tanh", True),
        ("gaussian", "relu", True),
        ("bernoulli", "tanh", True),
        ("bernoulli", "relu", True),
        ("gaussian", "tanh", False),  # an encoder without mask inputs, trained on holes
    ],
)
def test_masked_gradients_match_finite_differences(likelihood, activation, missing):
    vae, X = small_vae(likelihood, activation, missing)
    assert vae._mask_inputs == missing
    parameters, noise, weights = perturbed_point(vae, len(X), seed=1)
    elbo, gradient = vae._objective_and_gradient(parameters, X, weights, noise, 0.7)
    assert_allclose(
        np.sum(weights * elbo) / weights.sum(),
        masked_objective(vae, parameters, X, weights, noise, 1.0),
        rtol=1e-12,
    )
    assert_gradient_matches_central_differences(
        vae,
        gradient,
        lambda point: masked_objective(vae, point, X, weights, noise, 0.7),
        parameters,
    )


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_in_place_step_counts_the_observed_coordinates_only(likelihood):
    """The training step's ELBO on rows with holes is scipy's density of their observed part."""
    vae, X = small_vae(likelihood, "tanh", missing=True)
    rng = np.random.RandomState(3)
    noise = rng.normal(size=(len(X), 3))
    data, masked = vae._training_rows(X)
    assert masked and data.shape == (30, 10) and not np.isnan(data).any()
    step = _MinibatchELBO(vae, vae.parameters_, 12, masked)
    rows = rng.permutation(30)[:12]
    step.load(data, rows)
    elbo, _ = step(12, None, noise[rows], 1.0)
    encoder, decoder = vae._networks(vae.parameters_)
    values, observed = vae._split_missing(X[rows])
    _, mean, log_variance = vae._encode(encoder, vae._encoder_input(values, observed))
    std = np.exp(0.5 * log_variance)
    decoded = forward(decoder, mean + std * noise[rows], vae.activation)[-1]
    kl = 0.5 * np.sum(mean**2 + std**2 - 1 - log_variance, axis=1)
    assert_allclose(elbo, observed_log_likelihood(vae, X[rows], decoded) - kl, rtol=1e-12)


# ---------------------------------------------------------------------- scores


@pytest.mark.parametrize("fitted", ["affine_complete", "affine_missing"])
def test_scores_of_partly_observed_rows_estimate_the_exact_marginal(fitted, gaussian, request):
    """log p(x_o) by importance sampling, against the closed form of a linear-Gaussian VAE.

    With 100 draws the mean absolute error is 0.07 nats for both encoders
    (0.01 with 1000 draws for the complete-data one). The complete-data
    encoder given the zero-filled rows (the feature means) as its proposal was
    3.7 nats too low on average (2.6 with 5000 draws): the adapted, defensive
    proposal of partly observed rows is what makes it right.
    """
    _, _, _, _, test = gaussian
    vae, mean, covariance = linear_gaussian_moments(request.getfixturevalue(fitted))
    exact = observed_log_density(test, mean, covariance)
    estimate = vae.score_samples(test)
    error = estimate - exact
    assert np.abs(error).mean() < 0.1 and abs(error.mean()) < 0.08
    complete = ~np.isnan(test).any(axis=1)
    assert 0.1 < complete.mean() < 0.3
    # one row's score depends on that row alone, however the others are observed
    partial = np.flatnonzero(~complete)
    assert_allclose(vae.score_samples(test[partial[:3]]), estimate[partial[:3]], rtol=1e-10)
    assert_allclose(vae.score_samples(test[complete]), estimate[complete], rtol=1e-10)


def test_training_with_missing_values_comes_close_to_exact_em(gaussian, hidden_missing):
    """Held-out log p(x_o): -7.43 for the VAE, -7.30 for PPCA by exact EM on the same holes."""
    _, _, _, train, test = gaussian
    ppca = ProbabilisticPCA(2).fit(train).score(test)
    assert hidden_missing._mask_inputs
    assert hidden_missing.score(test) > ppca - 0.25
    assert np.isfinite(hidden_missing.lower_bounds_).all()
    assert np.isfinite(hidden_missing.validation_bounds_).all()
    assert np.isfinite(hidden_missing.transform(test)).all()


def test_complete_data_keep_an_encoder_without_mask_inputs(affine_complete, affine_missing):
    assert not affine_complete._mask_inputs and affine_missing._mask_inputs
    # the encoder's first layer reads 6 values, or 6 values and 6 mask entries
    assert affine_missing.parameters_.size - affine_complete.parameters_.size == 6 * 4


def test_rows_without_an_observed_value_are_refused_as_ppca_does(affine_complete):
    X = np.random.RandomState(0).normal(size=(20, 6))
    X[[3, 7]] = np.nan
    with pytest.raises(ValueError) as expected:
        ProbabilisticPCA(1).fit(X)
    message = str(expected.value)
    assert message.startswith("Rows [3, 7] of X are entirely NaN")
    with pytest.raises(ValueError) as raised:
        AmortizedVAE(2, max_iter=2).fit(X)
    assert str(raised.value) == message
    for method in (
        affine_complete.score_samples,
        affine_complete.transform,
        affine_complete.elbo_samples,
        lambda X: affine_complete.importance_weighted_estimates(X, 5),
    ):
        with pytest.raises(ValueError) as raised:
            method(X)
        assert str(raised.value) == message


def test_unobserved_columns_and_infinite_values_are_refused():
    X = np.random.RandomState(0).normal(size=(20, 4))
    X[:, 2] = np.nan
    with pytest.raises(ValueError, match=r"Columns \[2\] of X are entirely NaN"):
        AmortizedVAE(2).fit(X)
    X[:, 2] = 1.0
    weights = np.ones(20)
    weights[:10] = 0.0
    X[10:, 1] = np.nan
    with pytest.raises(ValueError, match="observed only in rows of zero sample_weight"):
        AmortizedVAE(2).fit(X, sample_weight=weights)
    X[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        AmortizedVAE(2).fit(X)


def test_bernoulli_model_with_missing_pixels():
    rng = np.random.RandomState(0)
    prototypes = rng.uniform(size=(3, 16)) > 0.5
    X = (prototypes[rng.randint(3, size=300)] ^ (rng.uniform(size=(300, 16)) < 0.05)).astype(float)
    holes = with_holes(X, 0.2, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        vae = AmortizedVAE(2, likelihood="bernoulli", max_iter=30, random_state=0).fit(holes)
    assert np.isfinite(vae.score_samples(holes)).all()
    filled = vae.impute(holes)
    missing = np.isnan(holes)
    assert np.all((filled[missing] >= 0) & (filled[missing] <= 1))
    # the fill recovers most of the hidden pixels of these three patterns
    assert np.mean((filled[missing] > 0.5) == X[missing]) > 0.8
    draws = vae.impute(holes, sample_posterior=True, random_state=0)
    assert set(np.unique(draws[missing])) <= {0.0, 1.0}


# ---------------------------------------------------------------------- impute


@pytest.mark.parametrize("fitted", ["hidden_missing", "affine_complete"])
def test_impute_is_much_closer_to_the_conditional_mean_than_column_means(fitted, gaussian, request):
    """RMSE to E[x_m | x_o] of the true Gaussian, on 30% holes: 3.21 for column
    means, 0.25 for the VAE trained on holes, 0.25 for the affine one trained
    on complete data (0.06 for PPCA by exact EM)."""
    source, _, _, train, test = gaussian
    missing = np.isnan(test)
    exact = source.conditional_means(test)[missing]
    column_means = np.broadcast_to(np.nanmean(train, axis=0), test.shape)[missing]
    filled = request.getfixturevalue(fitted).impute(test)
    assert_array_equal(filled[~missing], test[~missing])

    def rmse(values):
        return np.sqrt(np.mean((values - exact) ** 2))

    assert rmse(column_means) > 3.0
    assert rmse(filled[missing]) < 0.12 * rmse(column_means)


def test_posterior_draws_follow_the_gaussian_conditional(gaussian, affine_complete):
    """4000 draws for one row with 4 of 6 values missing: their mean and spread
    against the closed form (within 0.1 and 0.05 of a conditional std here)."""
    source, _, test, _, _ = gaussian
    row = test[0].copy()
    row[[1, 3, 4, 5]] = np.nan
    mean, covariance = source.conditional(row)
    std = np.sqrt(np.diag(covariance))
    draws = affine_complete.impute(np.tile(row, (4000, 1)), sample_posterior=True, random_state=0)
    draws = draws[:, np.isnan(row)]
    assert np.all(np.abs(draws.mean(axis=0) - mean) < 0.15 * std)
    assert np.all(np.abs(draws.std(axis=0) / std - 1) < 0.1)
    filled = affine_complete.impute(row[np.newaxis])[0, np.isnan(row)]
    assert np.all(np.abs(filled - mean) < 0.15 * std)


def test_impute_keeps_what_is_observed_fills_empty_rows_from_the_prior_and_reproduces(
    gaussian, affine_complete
):
    _, train, complete, _, test = gaussian
    X = test[:50].astype(np.float32)
    X[[4, 9]] = np.nan  # nothing observed: the prior
    filled = affine_complete.impute(X)
    assert filled.dtype == np.float32 and not np.isnan(filled).any()
    observed = ~np.isnan(X)
    assert_array_equal(filled[observed], X[observed])
    assert_allclose(filled[4], filled[9])
    assert np.all(np.abs(filled[4] - train.mean(axis=0)) < 0.1 * train.std(axis=0))
    assert_array_equal(affine_complete.impute(X, random_state=5), filled)  # deterministic

    draws = affine_complete.impute(X, sample_posterior=True, random_state=0)
    assert_array_equal(draws, affine_complete.impute(X, sample_posterior=True, random_state=0))
    other = affine_complete.impute(X, sample_posterior=True, random_state=1)
    assert_array_equal(draws[observed], X[observed])
    assert not np.allclose(draws[~observed], other[~observed])
    assert not np.allclose(draws[4], draws[9])  # two draws from the prior

    copy = affine_complete.impute(complete[:5])
    assert_array_equal(copy, complete[:5])
    assert copy is not complete[:5] and not np.shares_memory(copy, complete)


def rows_with_extreme_values(test, value):
    """Six test rows whose first value is ``value``: three with holes, three complete."""
    rows = test[:6].copy()
    rows[:3, [1, 3, 4]] = np.nan
    rows[:, 0] = value
    return rows


@pytest.mark.parametrize("value", [1e6, -1e6, 1e300, -1e300])
@pytest.mark.parametrize("fitted", ["affine_complete", "affine_missing", "hidden_missing"])
def test_extreme_observed_values_give_no_nan_and_finite_imputations(
    fitted, value, gaussian, request
):
    """Far in the tails every importance weight can underflow (log-weights all -inf):
    a log-density is then -inf, never NaN, and imputations stay finite. (Rows at 1e6
    have representable log-densities, -5e8 to -1e12 here: finite.)"""
    vae = request.getfixturevalue(fitted)
    X = rows_with_extreme_values(gaussian[2], value)
    scores = vae.score_samples(X)
    assert not np.isnan(scores).any() and np.all(scores < -1e6)
    if abs(value) < 1e100:
        assert np.isfinite(scores).all()
    assert not np.isnan(vae.elbo_samples(X)["elbo"]).any()
    assert not np.isnan(vae.importance_weighted_estimates(X, 10, 2, random_state=0)).any()
    observed = ~np.isnan(X)
    for filled in (vae.impute(X), vae.impute(X, sample_posterior=True, random_state=0)):
        assert np.isfinite(filled).all()
        assert_array_equal(filled[observed], X[observed])


@pytest.mark.parametrize("value", [1e6, 1e300, -1e300])
def test_extreme_observed_values_against_the_closed_form(value, gaussian, affine_complete):
    """The linear-Gaussian VAE (complete-data encoder) against its exact marginal and
    conditional mean. At 1e6, log p(x_o) is about -8e11 and the estimate is within
    9e-4 of it (relative); at +-1e300 the exact log p(x_o) is below -1.8e308, so -inf
    is its float64 value. The imputations are within 5.5% of E[x_m | x_o] at both
    scales (the encoder's own error, scaled up: at 1e300 no draw has a weight left to
    correct it, and the proposal's draws are averaged), where column means are 100%
    off."""
    vae, mean, covariance = linear_gaussian_moments(affine_complete)
    X = rows_with_extreme_values(gaussian[2], value)[:3]
    scores = vae.score_samples(X)
    if abs(value) < 1e100:
        assert_allclose(scores, observed_log_density(X, mean, covariance), rtol=2e-3)
    else:
        # -1/2 r' S_oo^-1 r of the exact density, computed on r / |value|
        seen = ~np.isnan(X[0])
        residuals = (X[:, seen] - mean[seen]) / abs(value)
        quadratic = np.einsum(
            "ri,ri->r", residuals, np.linalg.solve(covariance[np.ix_(seen, seen)], residuals.T).T
        )
        assert np.all(np.log10(0.5 * quadratic) + 2 * np.log10(abs(value)) > 308.3)
        assert np.all(scores == -np.inf)
    missing = np.isnan(X)
    exact = gaussian_conditional_means(mean, covariance, X)
    assert_allclose(vae.impute(X)[missing], exact[missing], rtol=0.1)


# ---------------------------------------------------------------------- partial_fit


def stream(vae, X, batch_size, n_passes):
    for _ in range(n_passes):
        for start in range(0, len(X), batch_size):
            vae.partial_fit(X[start : start + batch_size])
    return vae


def test_partial_fit_over_batches_reaches_the_held_out_elbo_of_a_full_fit():
    """Held-out ELBO: -9.44 for fit (early stopped at 87 epochs), -9.49 after 40
    passes of partial_fit over batches of 500 (2000 rows)."""
    source = LinearGaussian()
    train, test = source.X[:2000], source.X[2000:]
    full = AmortizedVAE(2, hidden_layer_sizes=(32,), random_state=0).fit(train)
    online = stream(AmortizedVAE(2, hidden_layer_sizes=(32,), random_state=0), train, 500, 40)
    full_elbo = full.elbo_samples(test)["elbo"].mean()
    online_elbo = online.elbo_samples(test)["elbo"].mean()
    assert abs(online_elbo - full_elbo) < 0.1
    assert online.n_steps_ == online.n_iter_ == 160 and online.n_samples_seen_ == 80000
    assert online.lower_bounds_.shape == (160,) and online.lower_bound_ == online.lower_bounds_[-1]
    # the batch bounds are noisy, but the last pass is much better than the first
    assert online.lower_bounds_[-4:].mean() > online.lower_bounds_[:4].mean() + 1.0


def test_partial_fit_is_reproducible_and_fit_starts_over(gaussian):
    _, train, _, _, _ = gaussian

    def run(seed):
        return stream(AmortizedVAE(2, hidden_layer_sizes=(8,), random_state=seed), train, 300, 1)

    first, again, other = run(0), run(0), run(1)
    assert_array_equal(first.parameters_, again.parameters_)
    assert_array_equal(first.lower_bounds_, again.lower_bounds_)
    assert not np.allclose(first.parameters_, other.parameters_)
    assert first.converged_ is False and first.validation_bounds_.shape == (0,)
    with pytest.raises(ValueError, match="X has 5 features, but AmortizedVAE is expecting 6"):
        first.partial_fit(train[:10, :5])
    assert first.n_steps_ == 7

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        first.set_params(max_iter=3).fit(train)
    assert not hasattr(first, "n_steps_") and not hasattr(first, "n_samples_seen_")
    assert first.lower_bounds_.shape == (3,)
    fitted = first.parameters_.copy()
    first.partial_fit(train[:100])  # continues the fitted model
    assert first.n_steps_ == 1 and first.lower_bounds_.shape == (1,)
    assert not np.array_equal(first.parameters_, fitted)


def test_failed_partial_fit_leaves_the_estimator_unchanged(gaussian):
    _, train, _, _, _ = gaussian
    vae = AmortizedVAE(2, hidden_layer_sizes=(8,), random_state=0).partial_fit(train[:200])
    state = pickle.dumps(vae)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ValueError, match="Training diverged at partial_fit call 2"):
            vae.partial_fit(train[:200] * 1e30)
    with pytest.raises(ValueError, match="entirely NaN"):
        vae.partial_fit(np.full((3, 6), np.nan))
    assert pickle.dumps(vae) == state
    assert_array_equal(
        vae.partial_fit(train[200:400]).parameters_,
        pickle.loads(state).partial_fit(train[200:400]).parameters_,
    )


def test_partial_fit_with_missing_values(gaussian):
    _, train, test, train_holes, test_holes = gaussian
    masked = AmortizedVAE(2, hidden_layer_sizes=(8,), random_state=0)
    stream(masked, train_holes, 250, 2)
    masked.partial_fit(train[:250])  # complete rows: a mask of ones
    assert masked._mask_inputs
    # a first batch without holes gives an encoder of the values alone, which
    # then trains on the zero-filled values of later batches with holes
    plain = AmortizedVAE(2, hidden_layer_sizes=(8,), random_state=0).partial_fit(train[:250])
    stream(plain, train_holes, 250, 2)
    assert not plain._mask_inputs
    for vae in (masked, plain):
        assert np.isfinite(vae.lower_bounds_).all()
        assert np.isfinite(vae.score_samples(test_holes)).all()
    with pytest.raises(ValueError, match=r"Columns \[1\] of X are entirely NaN"):
        AmortizedVAE(2).partial_fit(np.where(np.arange(6) == 1, np.nan, train[:50]))


@pytest.mark.parametrize(
    "check",
    [
        "check_estimators_partial_fit_n_features",
        "check_param_validation",
        "check_dataframe_column_names_consistency",
        "check_n_features_in_after_fitting",
        "check_fit_score_takes_y",
    ],
)
def test_partial_fit_passes_scikit_learn_checks(check):
    """Checks that exercise partial_fit but are not yielded for a density transformer."""
    vae = AmortizedVAE(hidden_layer_sizes=(8,), max_iter=20, early_stopping=False, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        getattr(estimator_checks, check)("AmortizedVAE", vae)


# ---------------------------------------------------------------------- dask


def test_dask_arrays_are_refused_before_any_work_with_a_way_out(gaussian):
    da = pytest.importorskip("dask.array")
    _, train, _, _, _ = gaussian

    def never(block):
        raise AssertionError("the dask array was computed")

    untouchable = da.from_array(train, chunks=(500, 6)).map_blocks(never, dtype=float)
    vae = AmortizedVAE(2, hidden_layer_sizes=(8,), random_state=0)
    for method in (vae.fit, vae.partial_fit):
        with pytest.raises(ValueError, match="does not train on dask arrays") as raised:
            method(untouchable)
        assert "X.blocks" in str(raised.value) and ".compute()" in str(raised.value)
    assert not hasattr(vae, "n_features_in_")
    # the loop the message suggests
    X = da.from_array(train, chunks=(500, 6))
    for block in X.blocks:
        vae.partial_fit(block.compute())
    assert vae.n_steps_ == 4 and vae.n_samples_seen_ == 2000
