"""Imputation: the models' impute against Gaussian conditioning, and EMImputer."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer
from sklearn.exceptions import ConvergenceWarning
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, MissingIndicator
from sklearn.linear_model import BayesianRidge, LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks
from test_monitor import Recorder, needs_callbacks
from threadpoolctl import threadpool_limits

from skem import EMGaussianMixture, EMImputer, ProbabilisticPCA
from skem.impute import ImputationAverage
from skem.impute._selection import (
    REFIT_ITERATIONS,
    VALIDATION_ITERATIONS,
    huber_loss,
)


def correlated_data(n_samples=600, n_features=5, seed=0):
    """Correlated Gaussian rows, with columns on very different scales."""
    rng = np.random.RandomState(seed)
    factors = rng.normal(size=(n_features, n_features))
    scales = np.logspace(-2, 3, n_features)
    X = rng.normal(size=(n_samples, n_features)) @ factors.T
    return X * scales + rng.normal(scale=scales, size=n_features)


def with_holes(X, fraction, seed=0):
    """X with a fraction of its cells NaN, at random."""
    rng = np.random.RandomState(seed)
    return np.where(rng.uniform(size=X.shape) < fraction, np.nan, X)


def conditional_gaussian(mean, covariance, row):
    """Mean and covariance of the missing values of ``row`` given its observed ones."""
    missing = np.isnan(row)
    observed = ~missing
    if not observed.any():
        return mean, covariance
    gain = np.linalg.solve(
        covariance[np.ix_(observed, observed)], covariance[np.ix_(observed, missing)]
    ).T
    conditional_mean = mean[missing] + gain @ (row[observed] - mean[observed])
    conditional_covariance = (
        covariance[np.ix_(missing, missing)] - gain @ (covariance[np.ix_(observed, missing)])
    )
    return conditional_mean, conditional_covariance


def assert_conditional_means(imputed, X_holes, mean, covariance, rtol=1e-9):
    for row, filled in zip(X_holes, imputed):
        missing = np.isnan(row)
        if missing.any():
            expected, _ = conditional_gaussian(mean, covariance, row)
            assert_allclose(filled[missing], expected, rtol=rtol, atol=rtol * np.abs(mean).max())


def assert_draws_follow(draws, mean, covariance, row):
    """Sample mean and covariance of draws of a row's missing values, within 5 standard errors."""
    missing = np.isnan(row)
    expected_mean, expected_covariance = conditional_gaussian(mean, covariance, row)
    sample = draws[:, missing]
    n_draws = sample.shape[0]
    standard_deviations = np.sqrt(np.diag(expected_covariance))
    assert_allclose(sample.mean(axis=0), expected_mean, atol=5 * standard_deviations.max() / 30)
    assert np.all(
        np.abs(sample.mean(axis=0) - expected_mean) < 5 * standard_deviations / np.sqrt(n_draws)
    )
    # Var of a sample covariance entry: (s_ii s_jj + s_ij^2) / n for Gaussian draws
    tolerance = 5 * np.sqrt(
        (np.outer(standard_deviations**2, standard_deviations**2) + expected_covariance**2)
        / n_draws
    )
    assert np.all(np.abs(np.cov(sample.T) - expected_covariance) < tolerance)


def rescaled_gaussian(imputer):
    """Mean and covariance of a one-component imputer's model in the data's units."""
    model = imputer.estimator_
    scale = imputer.scale_
    mean = imputer.mean_ + scale * model.means_[0]
    return mean, model.covariances_[0] * np.outer(scale, scale)


# ---------------------------------------------------------------- ProbabilisticPCA.impute


@pytest.fixture(scope="module")
def fitted_ppca():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(500, 2)) @ rng.normal(size=(2, 6)) + 0.3 * rng.normal(size=(500, 6)) + 3
    X_holes = with_holes(X, 0.2)
    X_holes[np.isnan(X_holes).all(axis=1), 0] = 1.0
    return ProbabilisticPCA(n_components=2, random_state=0).fit(X_holes), X_holes


def test_ppca_impute_is_the_conditional_mean_of_its_gaussian(fitted_ppca):
    model, X_holes = fitted_ppca
    imputed = model.impute(X_holes)
    assert_conditional_means(imputed, X_holes, model.mean_, model.get_covariance())
    observed = ~np.isnan(X_holes)
    assert_array_equal(imputed[observed], X_holes[observed])


def test_ppca_impute_fills_a_row_without_observed_values_with_the_mean(fitted_ppca):
    model, _ = fitted_ppca
    assert_allclose(model.impute(np.full((2, 6), np.nan)), [model.mean_] * 2, rtol=1e-12)


def test_ppca_impute_draws_follow_the_conditional_gaussian(fitted_ppca):
    model, X_holes = fitted_ppca
    row = X_holes[0].copy()
    row[[1, 3, 4]] = np.nan
    draws = model.impute(np.tile(row, (20000, 1)), sample_posterior=True, random_state=0)
    assert_draws_follow(draws, model.mean_, model.get_covariance(), row)
    assert_array_equal(draws[:, ~np.isnan(row)], np.tile(row[~np.isnan(row)], (20000, 1)))


def test_ppca_impute_draws_are_reproducible(fitted_ppca):
    model, X_holes = fitted_ppca
    first = model.impute(X_holes, sample_posterior=True, random_state=3)
    assert_array_equal(first, model.impute(X_holes, sample_posterior=True, random_state=3))
    assert not np.array_equal(first, model.impute(X_holes, sample_posterior=True, random_state=4))


# ---------------------------------------------------------------- EMImputer and its model


def test_imputer_equals_the_models_impute():
    X_holes = with_holes(correlated_data(), 0.2)
    model = ProbabilisticPCA(n_components=2, tol=1e-4, random_state=0)
    imputer = EMImputer(model, standardize=False).fit(X_holes)
    expected = clone(model).fit(X_holes).impute(X_holes)
    assert_allclose(imputer.transform(X_holes), expected, rtol=1e-10)


def test_imputer_standardizes_then_maps_back():
    X_holes = with_holes(correlated_data(), 0.2)
    imputer = EMImputer(ProbabilisticPCA(n_components=2, random_state=0)).fit(X_holes)
    mean, scale = np.nanmean(X_holes, axis=0), np.nanstd(X_holes, axis=0)
    assert_allclose(imputer.mean_, mean, rtol=1e-12)
    assert_allclose(imputer.scale_, scale, rtol=1e-12)
    model = ProbabilisticPCA(n_components=2, random_state=0).fit((X_holes - mean) / scale)
    expected = model.impute((X_holes - mean) / scale) * scale + mean
    observed = ~np.isnan(X_holes)
    assert_allclose(imputer.transform(X_holes)[~observed], expected[~observed], rtol=1e-10)


def test_imputer_with_one_gaussian_imputes_its_conditional_means():
    X_holes = with_holes(correlated_data(), 0.3)
    imputer = one_gaussian().fit(X_holes)
    mean, covariance = rescaled_gaussian(imputer)
    assert_conditional_means(imputer.transform(X_holes), X_holes, mean, covariance, rtol=1e-8)


def one_gaussian(**params):
    """An imputer with a one-component mixture (no choice of the number of components)."""
    return EMImputer(EMGaussianMixture(random_state=0), **params)


def test_observed_values_come_back_bitwise_and_float32_stays_float32(global_dtype):
    X_holes = with_holes(correlated_data(), 0.2).astype(global_dtype)
    imputed = one_gaussian().fit_transform(X_holes)
    assert imputed.dtype == global_dtype
    observed = ~np.isnan(X_holes)
    assert_array_equal(imputed[observed], X_holes[observed])
    assert np.isfinite(imputed).all()


def test_a_placeholder_other_than_nan_marks_the_missing_values():
    X_holes = with_holes(correlated_data(), 0.2)
    X_marked = np.where(np.isnan(X_holes), -1.0, X_holes)
    by_nan = one_gaussian().fit_transform(X_holes)
    by_marker = one_gaussian(missing_values=-1).fit_transform(X_marked)
    assert_allclose(by_marker, by_nan, rtol=1e-12)


def test_rows_without_observed_values_get_the_mean_of_the_model():
    X_holes = with_holes(correlated_data(), 0.3)
    X_holes[:5] = np.nan
    imputer = one_gaussian().fit(X_holes)
    mean, _ = rescaled_gaussian(imputer)
    assert_allclose(imputer.transform(X_holes[:5]), [mean] * 5, rtol=1e-10)


def test_draws_are_reproducible_and_have_the_conditional_spread():
    X_holes = with_holes(correlated_data(), 0.3)
    imputer = one_gaussian(sample_posterior=True, random_state=0).fit(X_holes)
    row = X_holes[0].copy()
    row[[1, 3]] = np.nan
    draws = imputer.transform(np.tile(row, (20000, 1)))
    mean, covariance = rescaled_gaussian(imputer)
    assert_draws_follow(draws, mean, covariance, row)
    assert_array_equal(draws, imputer.transform(np.tile(row, (20000, 1))))
    other_seed = imputer.set_params(random_state=1).transform(np.tile(row, (20000, 1)))
    assert not np.array_equal(draws, other_seed)


def test_clip_keeps_conditional_means_within_the_observed_range_but_not_draws():
    rng = np.random.RandomState(0)
    x = rng.uniform(0, 1, size=300)
    X = np.column_stack([x, 2 * x + 0.01 * rng.normal(size=300)])
    far_row = np.array([[5.0, np.nan]])  # the line puts its second value near 10
    free = one_gaussian().fit(X)
    assert free.transform(far_row)[0, 1] == pytest.approx(10, rel=0.01)
    clipped = one_gaussian(clip=True).fit(X)
    assert clipped.transform(far_row)[0, 1] == X[:, 1].max()
    draws = one_gaussian(clip=True, sample_posterior=True, random_state=0).fit(X)
    assert draws.transform(far_row)[0, 1] > X[:, 1].max()


def unit_free_data(n_samples=400, seed=0):
    """Correlated Gaussian rows in units of order one, a fifth of the cells missing."""
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n_samples, 5)) @ rng.normal(size=(5, 5)) + 3.0
    return with_holes(X, 0.2, seed=seed)


@pytest.mark.parametrize("estimator", [None, EMGaussianMixture(random_state=0)])
def test_imputations_are_the_same_in_any_units_exactly_for_powers_of_two(estimator, global_dtype):
    """Scaling a column by 2**k moves only exponents: the imputations move the same way, bitwise.

    2**±1000 (about 1e±301) squared is beyond float64; 2**±100 keeps float32
    within its normal range.
    """
    X_holes = unit_free_data().astype(global_dtype)
    k = 1000 if global_dtype == np.float64 else 100
    factors = np.ldexp(1.0, [k, -k, k // 2, -k // 2, 0]).astype(global_dtype)
    expected = EMImputer(estimator, random_state=0).fit_transform(X_holes)
    imputed = EMImputer(estimator, random_state=0).fit_transform(X_holes * factors)
    assert_array_equal(imputed, expected * factors)


@pytest.mark.parametrize("estimator", [None, EMGaussianMixture(random_state=0)])
def test_imputations_are_the_same_in_any_units(estimator):
    """Columns multiplied by 1e±300, 1e±150 and near the largest float impute as the original.

    The factors are not powers of two, so each scaled cell is rounded once
    (relative error up to 1.1e-16), and so is each imputation mapped back;
    through the standardisation and EM (a few well-conditioned regressions)
    that made imputations differ by at most 1.5e-15 standard deviations:
    1e-12 of one leaves a margin of about 1e3 for other BLAS and CPUs.
    """
    X_holes = unit_free_data()
    # the last column's values reach 1e307: their sum over the rows overflows
    factors = np.array([1e300, 1e-300, 1e150, 1e-150, 1e306])
    expected = EMImputer(estimator, random_state=0).fit_transform(X_holes)
    imputed = EMImputer(estimator, random_state=0).fit_transform(X_holes * factors)
    assert np.isfinite(imputed).all()
    in_standard_deviations = (imputed / factors - expected) / np.nanstd(X_holes, axis=0)
    assert_allclose(in_standard_deviations, 0.0, atol=1e-12)


# ---------------------------------------------------------------- callbacks


class TaskNames(Recorder):
    """A Recorder that also notes the imputer's name of each model fit it sees begin."""

    def on_fit_task_begin(self, estimator, context):
        super().on_fit_task_begin(estimator, context)
        if context.source_task_name is not None:
            self.events.append(("fit of", context.source_task_name))


@needs_callbacks
def test_callbacks_see_the_fit_of_the_given_estimator_with_a_usable_model():
    X_holes = unit_free_data()
    model = EMGaussianMixture(2, max_iter=3, tol=0, random_state=0)
    recorder = Recorder()
    imputer = EMImputer(model).set_callbacks(recorder)
    with pytest.warns(ConvergenceWarning):
        imputed = imputer.fit_transform(X_holes)
    assert recorder.events == (
        [("setup", "EMImputer"), ("begin", "EMImputer", "fit")]
        + [("begin", "EMGaussianMixture", name) for name in ("fit", "restart")]
        + [
            (event, "EMGaussianMixture", "iteration")
            for _ in range(3)
            for event in ("begin", "end")
        ]
        + [("end", "EMGaussianMixture", name) for name in ("restart", "fit")]
        + [("end", "EMImputer", "fit"), ("teardown", "EMImputer")]
    )
    # the model after each iteration is the one the iteration ends with, in
    # the units it is fitted in: its score is the next iteration's bound
    standardized = (X_holes - imputer.mean_) / imputer.scale_
    with pytest.warns(ConvergenceWarning):
        plain = clone(model).fit(standardized)
    assert_allclose(recorder.scores[:2], plain.lower_bounds_[1:], rtol=1e-12)
    with pytest.warns(ConvergenceWarning):
        assert_array_equal(imputed, EMImputer(model).fit_transform(X_holes))
    assert not hasattr(imputer, "_callback_fit_ctx")


@needs_callbacks
def test_callbacks_see_every_fit_of_the_default_model():
    X_holes = unit_free_data()
    recorder = TaskNames()
    imputer = EMImputer(random_state=0).set_callbacks(recorder)
    imputed = imputer.fit_transform(X_holes)
    assert_array_equal(imputed, EMImputer(random_state=0).fit_transform(X_holes))
    starts = [index for index, event in enumerate(recorder.events) if event[0] == "fit of"]
    fits = []  # (kind, number of components, iterations seen)
    for start, stop in zip(starts, starts[1:] + [len(recorder.events)]):
        kind, size = recorder.events[start][1].split(", ")
        iterations = recorder.events[start:stop].count(("end", "EMGaussianMixture", "iteration"))
        fits.append((kind, int(size.split()[0]), iterations))
    refits = [(size, iterations) for kind, size, iterations in fits if kind == "refit"]
    kept = imputer.estimator_.estimators_
    assert refits == [(model.n_components, model.n_iter_) for model in kept]
    validation = [fit for fit in fits if fit[0] == "validation fit"]
    assert len(validation) + len(refits) == len(fits) and validation[0][1] == 1
    assert all(1 <= iterations <= VALIDATION_ITERATIONS for *_, iterations in validation)
    assert all(1 <= iterations <= REFIT_ITERATIONS for _, iterations in refits)


@needs_callbacks
def test_callbacks_propagate_through_a_pipeline_to_the_imputers_model():
    recorder = Recorder()
    model = EMGaussianMixture(2, max_iter=3, tol=0, random_state=0)
    pipeline = make_pipeline(EMImputer(model), StandardScaler()).set_callbacks(recorder)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # (not "does not support callbacks")
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipeline.fit(unit_free_data())
    iterations = [e for e in recorder.events if e == ("end", "EMGaussianMixture", "iteration")]
    assert len(iterations) == 3


@needs_callbacks
def test_progress_bar_over_the_default_models_fits():
    pytest.importorskip("rich")
    from sklearn.callback import ProgressBar

    X_holes = unit_free_data()
    imputer = EMImputer(random_state=0).set_callbacks(ProgressBar())
    assert_array_equal(
        imputer.fit_transform(X_holes), EMImputer(random_state=0).fit_transform(X_holes)
    )


@needs_callbacks
def test_callbacks_are_torn_down_after_a_failed_fit_and_the_imputer_is_unchanged():
    recorder = Recorder()
    imputer = EMImputer(EMGaussianMixture(2, reg_covar=0)).set_callbacks(recorder)
    state = dict(imputer.__dict__)
    with pytest.raises(ValueError, match="ill-defined empirical covariance"):
        imputer.fit([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    assert recorder.events[0] == ("setup", "EMImputer")
    assert recorder.events[-1] == ("teardown", "EMImputer")
    assert imputer.__dict__ == state


# ---------------------------------------------------------------- the default model


def test_huber_loss_is_squared_up_to_the_threshold_then_linear_with_the_same_slope():
    errors = np.array([0.0, 1.0, 3.0, 4.0, 10.0])
    assert_allclose(huber_loss(errors, 3.0), [0.0, 1.0, 9.0, 15.0, 51.0])
    step = 1e-6  # continuous, with a continuous derivative, at the threshold
    below, above = huber_loss(np.array([3.0 - step, 3.0 + step]), 3.0)
    assert (above - below) / (2 * step) == pytest.approx(6.0, rel=1e-6)


def two_lines(seed=0):
    """Two clusters, on each of which the second coordinate is a line in the first."""
    rng = np.random.RandomState(seed)
    t = rng.uniform(-1, 1, size=(300, 1))
    first = np.hstack([t, t])
    second = np.hstack([t + 4, -t])
    return np.vstack([first, second]) + 0.05 * rng.normal(size=(600, 2))


def test_default_model_finds_clusters_where_they_help():
    X = two_lines()
    X_holes = X.copy()
    X_holes[::10, 1] = np.nan
    imputer = EMImputer(random_state=0).fit(X_holes)
    assert isinstance(imputer.estimator_, ImputationAverage)
    assert min(model.n_components for model in imputer.estimator_.estimators_) > 1
    imputed = imputer.transform(X_holes)[::10, 1]
    # within the noise of the lines (one Gaussian would give about 0 to every row)
    assert np.sqrt(np.mean((imputed - X[::10, 1]) ** 2)) < 0.15


def test_default_model_imputes_gaussian_data_as_the_true_gaussian_does():
    """On Gaussian rows, the default's imputations are the true conditional means, nearly."""
    rng = np.random.RandomState(0)
    factors = rng.normal(size=(5, 5))
    covariance = factors @ factors.T + 0.1 * np.eye(5)
    X = rng.multivariate_normal(np.arange(5.0), covariance, size=1000)
    X_holes = with_holes(X, 0.2)
    X_holes[np.isnan(X_holes).all(axis=1), 0] = X[np.isnan(X_holes).all(axis=1), 0]
    imputed = EMImputer(random_state=0).fit_transform(X_holes)
    truth = X_holes.copy()
    for row in truth:
        row[np.isnan(row)] = conditional_gaussian(np.arange(5.0), covariance, row)[0]
    holes = np.isnan(X_holes)
    oracle_error = np.sqrt(np.mean((truth[holes] - X[holes]) ** 2))
    error = np.sqrt(np.mean((imputed[holes] - X[holes]) ** 2))
    # 1000 rows estimate the 20 parameters well: within 2% of the true model's error
    # (measured: 0.6% above; one Gaussian fitted to convergence, 0.5%), and the
    # imputations differ from the true ones by a small share of that error
    # (measured: 10.6% with the default, the mean of one and two components;
    # 7.4% for one Gaussian)
    assert error < 1.02 * oracle_error
    assert np.sqrt(np.mean((imputed[holes] - truth[holes]) ** 2)) < 0.15 * oracle_error


@pytest.mark.parametrize("weights", [None, [1.0, 2.0]])
def test_imputation_average_averages_means_and_mixes_draws(weights):
    X = two_lines()
    X_holes = X.copy()
    X_holes[::10, 1] = np.nan
    models = [EMGaussianMixture(k, random_state=0).fit(X_holes) for k in (1, 2)]
    average = ImputationAverage(models, weights)
    p = 0.5 if weights is None else 1 / 3  # the first model's share
    assert_allclose(average.weights_, [p, 1 - p])
    imputed = average.impute(X_holes)
    assert_allclose(imputed, p * models[0].impute(X_holes) + (1 - p) * models[1].impute(X_holes))
    observed = ~np.isnan(X_holes)
    assert_array_equal(imputed[observed], X_holes[observed])  # exactly, not p x + (1 - p) x
    # a draw of a row comes from one model, picked with probability p
    row = np.tile([[0.5, np.nan]], (4000, 1))
    draws = average.impute(row, sample_posterior=True, random_state=0)[:, 1]
    one = models[0].impute(row, sample_posterior=True, random_state=1)[:, 1]
    two = models[1].impute(row, sample_posterior=True, random_state=2)[:, 1]
    assert_allclose(draws.mean(), p * one.mean() + (1 - p) * two.mean(), atol=0.05)
    mixture_variance = (
        p * one.var() + (1 - p) * two.var() + p * (1 - p) * (one.mean() - two.mean()) ** 2
    )
    assert_allclose(draws.var(), mixture_variance, rtol=0.1)


def test_an_imputation_average_pickled_before_weights_weighs_its_models_equally():
    X = two_lines()
    X_holes = X.copy()
    X_holes[::10, 1] = np.nan
    models = [EMGaussianMixture(k, random_state=0).fit(X_holes) for k in (1, 2)]
    old = ImputationAverage(models, [1.0, 3.0])
    del old.weights_  # as unpickled from before weights
    assert_allclose(old.impute(X_holes), ImputationAverage(models).impute(X_holes), rtol=1e-15)


@pytest.mark.parametrize(
    "weights, message",
    [
        ([1.0], "one value per estimator"),
        ([1.0, -1.0], "non-negative"),
        ([0.0, 0.0], "not all zero"),
        ([1.0, np.nan], "finite"),
        ([np.inf, 1.0], "finite"),
    ],
)
def test_imputation_average_refuses_bad_weights(weights, message):
    models = [EMGaussianMixture(1).fit(two_lines()) for _ in range(2)]
    with pytest.raises(ValueError, match=message):
        ImputationAverage(models, weights)
    with pytest.raises(ValueError, match="at least one estimator"):
        ImputationAverage([])


def test_imputation_average_of_huge_weights_is_their_ratio():
    X_holes = two_lines()
    X_holes[::10, 1] = np.nan
    models = [EMGaussianMixture(k, random_state=0).fit(X_holes) for k in (1, 2)]
    huge = ImputationAverage(models, [1e308, 1e308])  # (their sum overflows)
    assert_allclose(huge.weights_, [0.5, 0.5])
    assert_allclose(huge.impute(X_holes), ImputationAverage(models).impute(X_holes))


def test_imputation_average_of_one_model_is_that_model_and_its_draws():
    X_holes = two_lines()
    X_holes[::10, 1] = np.nan
    model = EMGaussianMixture(2, random_state=0).fit(X_holes)
    single = ImputationAverage([model])
    assert_array_equal(single.impute(X_holes), model.impute(X_holes))
    assert_array_equal(
        single.impute(X_holes, sample_posterior=True, random_state=3),
        model.impute(X_holes, sample_posterior=True, random_state=3),
    )


def test_the_default_averages_every_size_left_equally_each_fitted_to_convergence(monkeypatch):
    """The sizes the race leaves are all continued on all the data until EM converges.

    (Weights fitted to the hidden values did no better than equal ones on
    held-out masks, and stopping EM after a few iterations did worse.)
    """
    from skem.impute import _selection as impute

    refitted = []
    refit = impute.refit

    def recorded_refit(model, X, tasks):
        refitted.append(model.n_components)
        return refit(model, X, tasks)

    monkeypatch.setattr(impute, "refit", recorded_refit)
    X_holes = two_lines()
    X_holes[::10, 1] = np.nan
    average = EMImputer(random_state=0).fit(X_holes).estimator_
    models = average.estimators_
    assert [model.n_components for model in models] == refitted and len(models) >= 2
    assert all(model.converged_ for model in models)
    assert_array_equal(average.weights_, np.full(len(models), 1 / len(models)))
    expected = np.mean([model.impute(X_holes) for model in models], axis=0)
    assert_allclose(average.impute(X_holes), expected, rtol=1e-12)


def test_constant_and_empty_features():
    X_holes = with_holes(correlated_data(), 0.2)
    X_holes[:, 1] = np.nan
    X_holes[::2, 3] = 7.0
    X_holes[1::2, 3] = np.nan
    dropped = one_gaussian().fit(X_holes)
    imputed = dropped.transform(X_holes)
    assert imputed.shape == (X_holes.shape[0], X_holes.shape[1] - 1)
    assert_array_equal(imputed[:, 2], np.full(X_holes.shape[0], 7.0))
    assert dropped.estimator_.n_features_in_ == 3
    assert_array_equal(dropped.get_feature_names_out(), ["x0", "x2", "x3", "x4"])
    kept = one_gaussian(keep_empty_features=True).fit(X_holes)
    imputed_kept = kept.transform(X_holes)
    assert_array_equal(imputed_kept[:, 1], np.zeros(X_holes.shape[0]))
    assert_array_equal(np.delete(imputed_kept, 1, axis=1), imputed)
    assert_array_equal(kept.get_feature_names_out(), ["x0", "x1", "x2", "x3", "x4"])


def test_features_that_do_not_vary_need_no_model():
    X_holes = np.array([[1.0, np.nan], [1.0, 2.0], [np.nan, 2.0]])
    imputer = EMImputer().fit(X_holes)
    assert imputer.estimator_ is None
    assert_array_equal(imputer.transform(X_holes), [[1.0, 2.0]] * 3)


def test_add_indicator_appends_sklearns_missing_indicator():
    X_holes = with_holes(correlated_data(), 0.2)
    X_holes[:, 2] = np.abs(X_holes[:, 2])  # (no missing value in column 2 at fit)
    X_holes[np.isnan(X_holes[:, 2]), 2] = 1.0
    imputer = one_gaussian(add_indicator=True).fit(X_holes)
    plain = one_gaussian().fit(X_holes)
    X_new = with_holes(correlated_data(seed=1), 0.2)
    indicator = MissingIndicator(error_on_new=False).fit(X_holes)
    assert_array_equal(
        imputer.transform(X_new), np.hstack([plain.transform(X_new), indicator.transform(X_new)])
    )
    assert_array_equal(
        imputer.get_feature_names_out(),
        ["x0", "x1", "x2", "x3", "x4"] + [f"missingindicator_x{j}" for j in (0, 1, 3, 4)],
    )


def test_set_output_gives_a_dataframe_with_the_feature_names():
    pandas = pytest.importorskip("pandas")
    X_holes = pandas.DataFrame(with_holes(correlated_data(), 0.2), columns=list("abcde"))
    imputed = one_gaussian().set_output(transform="pandas").fit_transform(X_holes)
    assert list(imputed.columns) == list("abcde")
    assert_array_equal(imputed.to_numpy(), one_gaussian().fit_transform(X_holes))


# ---------------------------------------------------------------- in a pipeline


def test_pipeline_with_a_classifier_scores_at_least_as_well_as_iterative_imputer():
    X, y = load_breast_cancer(return_X_y=True)
    X_holes = with_holes(X, 0.3, seed=0)
    folds = StratifiedKFold(5, shuffle=True, random_state=0)

    def log_loss_of(imputer):
        pipeline = make_pipeline(imputer, StandardScaler(), LogisticRegression())
        return cross_val_score(pipeline, X_holes, y, cv=folds, scoring="neg_log_loss").mean()

    # BayesianRidge alternates numpy's and scipy's BLAS pools, which on a busy
    # machine made it ten times slower; the comparison is of scores, not times
    with threadpool_limits(limits=1, user_api="blas"):
        ours = log_loss_of(EMImputer(random_state=0))
        theirs = log_loss_of(IterativeImputer(estimator=BayesianRidge(), random_state=0))
    assert ours >= theirs


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "X, params, message",
    [
        (np.array([[1.0, np.inf], [2.0, 1.0], [3.0, 2.0]]), {}, "infinity"),
        (np.full((3, 2), np.nan), {}, "no observed value"),
        (np.array([[1.0, np.nan], [2.0, 1.0], [-1.0, 2.0]]), {"missing_values": -1}, "NaN"),
        (np.ones((3, 2)), {"estimator": StandardScaler()}, "impute"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(X, params, message):
    with pytest.raises(ValueError, match=message):
        EMImputer(**params).fit(X)


def test_a_failed_fit_leaves_the_fitted_imputer_unchanged():
    X_holes = with_holes(correlated_data(), 0.2)
    imputer = one_gaussian().fit(X_holes)
    before = imputer.transform(X_holes)
    state = dict(imputer.__dict__)
    with pytest.raises(ValueError, match="infinity"):
        imputer.fit(np.where(np.isnan(X_holes), np.inf, X_holes)[:, :3])
    assert imputer.__dict__.keys() == state.keys()
    assert all(imputer.__dict__[name] is value for name, value in state.items())
    assert_array_equal(imputer.transform(X_holes), before)
    with pytest.raises(ValueError, match="features"):
        imputer.transform(X_holes[:, :3])


@parametrize_with_checks(
    [
        EMImputer(random_state=0),
        EMImputer(
            ProbabilisticPCA(n_components=1, random_state=0),
            add_indicator=True,
            keep_empty_features=True,
        ),
        EMImputer(missing_values=-1, standardize=False, random_state=0),
    ]
)
def test_sklearn_compatible_imputer(estimator, check):
    check(estimator)


def test_a_feature_with_a_few_rare_values_is_imputed_with_its_most_common_value():
    """One stroke among 600 observed values: a Gaussian would extrapolate from it."""
    X = correlated_data(n_samples=800)
    X[:, 2] = 0.0
    X[7, 2] = 40.0  # observed, rare (1 in about 640 observed values)
    X_holes = with_holes(X, 0.2)
    X_holes[7, 2] = 40.0
    imputer = EMImputer(random_state=0).fit(X_holes)
    assert imputer.estimator_.estimators_[0].n_features_in_ == X.shape[1] - 1
    imputed = imputer.transform(X_holes)
    assert_array_equal(imputed[np.isnan(X_holes[:, 2]), 2], 0.0)
    # with 2% of them rare, the feature is modelled again
    X_holes[np.flatnonzero(~np.isnan(X_holes[:, 2]))[:13], 2] = 40.0
    assert EMImputer(random_state=0).fit(X_holes).estimator_.estimators_[0].n_features_in_ == 5
