"""BernoulliMixture against a textbook EM written here, scipy's densities and closed forms."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import logsumexp
from scipy.stats import bernoulli
from sklearn.exceptions import ConvergenceWarning

from skem import BernoulliMixture

FLOOR = 1e-6  # the default min_probability


def three_clusters(n_samples=1500, seed=0):
    rng = np.random.RandomState(seed)
    probabilities = np.array([[0.9] * 4 + [0.1] * 4, [0.1] * 4 + [0.9] * 4, [0.5] * 8])
    labels = rng.choice(3, n_samples, p=[0.4, 0.4, 0.2])
    return (rng.uniform(size=(n_samples, 8)) < probabilities[labels]).astype(float)


def log_joint(X, weights, means):
    """log w_k + log p(x_observed | k) from scipy's Bernoulli pmf; NaN is missing."""
    observed = ~np.isnan(X)
    values = np.where(observed, X, 0)
    log_pmf = bernoulli.logpmf(values[:, None, :], means[None])  # (n, K, d)
    return np.log(weights) + np.where(observed[:, None, :], log_pmf, 0.0).sum(axis=2)


def textbook_em_step(X, weights, means, sample_weight=None, floor=FLOOR):
    """One EM step (Bishop 9.3.3), missing values integrated out: the E-step on the
    observed values, the M-step's sums with E[x_d | k] = mu_kd where x_d is missing."""
    w = np.ones(len(X)) if sample_weight is None else sample_weight
    joint = log_joint(X, weights, means)
    log_likelihood = logsumexp(joint, axis=1)
    r = np.exp(joint - log_likelihood[:, None]) * w[:, None]
    nk = r.sum(axis=0)
    expected = np.where(np.isnan(X)[:, None, :], means[None], np.nan_to_num(X)[:, None, :])
    sums = np.einsum("nk,nkd->kd", r, expected)
    new_means = np.clip(sums / nk[:, None], floor, 1 - floor)
    return nk / nk.sum(), new_means, np.average(log_likelihood, weights=w)


def start_of(model, X, sample_weight=None):
    """The fitted start (max_iter=0) of ``model`` on X."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = model.set_params(max_iter=0).fit(X, sample_weight=sample_weight)
    return start.weights_.copy(), start.means_.copy()


@pytest.mark.parametrize("missing_share", [0.0, 0.25])
@pytest.mark.parametrize("weighted", [False, True])
def test_every_iteration_is_the_textbook_em_step(missing_share, weighted):
    """Parameters and bound of each of 15 iterations equal textbook EM's from the same start."""
    rng = np.random.RandomState(1)
    X = three_clusters()
    X[rng.uniform(size=X.shape) < missing_share] = np.nan
    X[np.isnan(X).all(axis=1), 0] = 1.0  # (every row observed somewhere)
    sample_weight = rng.uniform(0.2, 3.0, len(X)) if weighted else None
    weights, means = start_of(BernoulliMixture(3, random_state=0), X, sample_weight)
    bounds = []
    for _ in range(15):
        weights, means, bound = textbook_em_step(X, weights, means, sample_weight)
        bounds.append(bound)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = BernoulliMixture(3, max_iter=15, tol=0, random_state=0)
        model.fit(X, sample_weight=sample_weight)
    assert_allclose(model.weights_, weights, rtol=1e-12, atol=1e-14)
    assert_allclose(model.means_, means, rtol=1e-12, atol=1e-14)
    assert_allclose(model.lower_bounds_, bounds, rtol=1e-13)
    assert np.all(np.diff(model.lower_bounds_) >= -1e-13)


def test_the_fit_is_a_fixed_point_of_the_em_map_and_scores_the_mixture_likelihood():
    X = three_clusters()
    # EM converges linearly: run it to the rounding level (a change of the bound
    # below tol leaves the parameters moving by about sqrt(tol))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = BernoulliMixture(3, tol=0, max_iter=3000, random_state=0).fit(X)
    weights, means, bound = textbook_em_step(X, model.weights_, model.means_)
    assert_allclose(weights, model.weights_, atol=1e-12)
    assert_allclose(means, model.means_, atol=1e-12)
    expected = logsumexp(log_joint(X, model.weights_, model.means_), axis=1)
    assert_allclose(model.score_samples(X), expected, rtol=1e-13)
    assert_allclose(model.score(X), bound, rtol=1e-13)
    posterior = np.exp(log_joint(X, model.weights_, model.means_) - expected[:, None])
    assert_allclose(model.predict_proba(X), posterior, atol=1e-13)
    # the clusters are found: two of 0.9/0.1 and one of 0.5
    order = np.argsort(model.means_[:, 0])
    assert_allclose(model.means_[order][:, 0], [0.1, 0.5, 0.9], atol=0.06)


def test_missing_values_score_the_observed_values_and_impute_the_conditional_mean():
    X = three_clusters()
    model = BernoulliMixture(3, random_state=0).fit(X)
    rows = X[:40].copy()
    rows[np.random.RandomState(2).uniform(size=rows.shape) < 0.3] = np.nan
    rows[np.isnan(rows).all(axis=1), 1] = 0.0
    joint = log_joint(rows, model.weights_, model.means_)
    assert_allclose(model.score_samples(rows), logsumexp(joint, axis=1), rtol=1e-13)
    posterior = np.exp(joint - logsumexp(joint, axis=1)[:, None])
    expected = np.where(np.isnan(rows), posterior @ model.means_, rows)
    assert_allclose(model.impute(rows), expected, rtol=1e-12)
    draws = model.impute(rows, sample_posterior=True, random_state=0)
    assert set(np.unique(draws)) <= {0.0, 1.0}
    assert_array_equal(draws[~np.isnan(rows)], rows[~np.isnan(rows)])
    assert_array_equal(draws, model.impute(rows, sample_posterior=True, random_state=0))
    # many draws of one row: each missing value is 1 with its conditional probability
    many = np.repeat(rows[:1], 20000, axis=0)
    mean_draw = model.impute(many, sample_posterior=True, random_state=1).mean(axis=0)
    assert_allclose(mean_draw, expected[0], atol=0.015)


def test_integer_weights_are_repeated_rows_from_the_same_start():
    X = three_clusters(300)
    counts = np.random.RandomState(3).randint(0, 4, len(X))
    start = BernoulliMixture(3, random_state=0).fit(X)
    fits = []
    for data, weight in [(X, counts), (np.repeat(X, counts, axis=0), None)]:
        model = BernoulliMixture(3, max_iter=20, tol=0, warm_start=True, random_state=0)
        model.fit(X[:10])  # (fitted attributes to continue from)
        model.weights_, model.means_ = start.weights_.copy(), start.means_.copy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fits.append(model.fit(data, sample_weight=weight))
    # (to rounding: the sums run over other rows in another order)
    assert_allclose(fits[0].means_, fits[1].means_, rtol=1e-10)
    assert_allclose(fits[0].lower_bounds_, fits[1].lower_bounds_, rtol=1e-12)


def test_partial_fit_averages_the_statistics_with_the_step_size():
    """After a fit, one batch moves the normalised statistics (w, w mu) by
    eta = (offset + steps seen) ** -decay toward the batch's, then the M-step."""
    X = three_clusters(2000)
    first, batch = X[:1000], X[1000:1100]
    model = BernoulliMixture(3, random_state=0, learning_offset=10.0, learning_decay=0.7)
    model.fit(first)
    weights, means = model.weights_.copy(), model.means_.copy()
    joint = log_joint(batch, weights, means)
    r = np.exp(joint - logsumexp(joint, axis=1)[:, None]) / len(batch)
    eta = (10.0 + 1000 / 100) ** -0.7  # the fit's rows, in batches of this batch's size
    nk = (1 - eta) * weights + eta * r.sum(axis=0)
    sums = (1 - eta) * weights[:, None] * means + eta * r.T @ batch
    model.partial_fit(batch)
    assert_allclose(model.weights_, nk / nk.sum(), rtol=1e-10)
    assert_allclose(model.means_, np.clip(sums / nk[:, None], FLOOR, 1 - FLOOR), rtol=1e-10)


def test_dask_arrays_fit_as_in_memory():
    da = pytest.importorskip("dask.array")
    X = three_clusters()
    X[::7, 3] = np.nan
    params = dict(n_components=3, init_params="random_from_data", random_state=0, tol=1e-8)
    in_memory = BernoulliMixture(**params).fit(X)
    on_dask = BernoulliMixture(**params).fit(da.from_array(X, chunks=400))
    # (to rounding: dask adds the blocks' sums in a tree)
    assert_allclose(on_dask.means_, in_memory.means_, rtol=1e-10, atol=1e-12)
    scores = on_dask.score_samples(da.from_array(X, chunks=400)).compute()
    assert_allclose(scores, in_memory.score_samples(X), rtol=1e-12)
    assert_allclose(on_dask.impute(da.from_array(X, chunks=400)).compute(), in_memory.impute(X))


def test_bad_input_is_refused_before_any_work_and_binarize_thresholds():
    X = three_clusters(200)
    model = BernoulliMixture(2, random_state=0).fit(X)
    means = model.means_.copy()
    with pytest.raises(ValueError, match="binary data: X has values other than 0, 1"):
        model.fit(X * 2)
    assert_array_equal(model.means_, means)
    with pytest.raises(ValueError, match="values other than 0, 1"):
        model.score_samples(X[:3] + 0.5)
    continuous = np.random.RandomState(0).randn(200, 8)
    thresholded = BernoulliMixture(2, binarize=0.0, random_state=0).fit(continuous)
    plain = BernoulliMixture(2, random_state=0).fit((continuous > 0).astype(float))
    assert_allclose(thresholded.means_, plain.means_, rtol=1e-13)
    assert_allclose(thresholded.score_samples(continuous), plain.score_samples(continuous > 0))


def test_a_value_never_seen_costs_log_min_probability_not_infinity():
    X = three_clusters(300)
    X[:, 5] = 0.0  # a feature never on in training
    model = BernoulliMixture(3, random_state=0).fit(X)
    assert_allclose(model.means_[:, 5], FLOOR)
    row = X[:1].copy()
    row[0, 5] = 1.0
    change = model.score_samples(row) - model.score_samples(X[:1])
    assert_allclose(change, np.log(FLOOR) - np.log1p(-FLOOR), rtol=1e-9)
    samples, labels = model.sample(2000, random_state=0)
    assert set(np.unique(samples)) <= {0.0, 1.0}
    assert_allclose(samples.mean(axis=0), model.weights_ @ model.means_, atol=0.04)


def test_callbacks_see_each_iteration_and_the_model_after_it():
    pytest.importorskip("sklearn.callback")
    from test_monitor import Recorder

    X = three_clusters(400)
    recorder = Recorder()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = BernoulliMixture(3, max_iter=4, tol=0, random_state=0).set_callbacks(recorder)
        model.fit(X)
    tasks = [event[2] for event in recorder.events if event[0] == "begin"]
    assert tasks == ["fit", "restart"] + ["iteration"] * 4
    # the model after an iteration scores the next iteration's bound
    assert_allclose(recorder.scores[:3], model.lower_bounds_[1:], rtol=1e-12)


def test_a_changed_structure_and_an_unresolvable_floor_are_refused():
    X = three_clusters(200)
    model = BernoulliMixture(2, warm_start=True, random_state=0).fit(X)
    with pytest.raises(ValueError, match="continues the fitted model, which has n_components=2"):
        model.set_params(n_components=3).fit(X)
    with pytest.raises(ValueError, match="partial_fit continues the fitted model"):
        model.partial_fit(X[:50])
    assert model.weights_.shape == (2,)
    for dtype, floor in [(np.float64, 1e-17), (np.float32, 1e-8)]:
        with pytest.raises(ValueError, match="below the resolution of"):
            BernoulliMixture(2, min_probability=floor).fit(X.astype(dtype))
