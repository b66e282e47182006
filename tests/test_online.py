"""Online (stepwise) EM: partial_fit on EMGaussianMixture and ProbabilisticPCA.

The running moments are checked against weighted moments computed directly,
PPCA's online fit against its closed form on the weighted union of the
batches, and one pass over 200k rows against a full EM fit.
"""

import pickle

import numpy as np
import pytest
from numpy.testing import assert_allclose

from skem import AmortizedVAE, EMGaussianMixture, MixtureOfPPCA, ProbabilisticPCA
from skem._core._covariance import COVARIANCES, combine_moments

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical", "tied_diag"]


def direct_moments(covariance, X, responsibilities, row_weights):
    """Normalised moments of weighted, softly assigned rows, from their definition."""
    weighted = responsibilities * row_weights[:, None]
    n = weighted.sum(axis=0)
    means = weighted.T @ X / n[:, None]
    full = np.array(
        [(weighted[:, k, None] * (X - means[k])).T @ (X - means[k]) / n[k] for k in range(len(n))]
    )
    total = n.sum()
    shares = n / total
    if covariance.name == "full":
        covariances = full
    elif covariance.name == "tied":
        covariances = np.tensordot(shares, full, axes=1)
    else:
        variances = np.einsum("kii->ki", full)
        covariances = {
            "diag": variances,
            "spherical": variances.mean(axis=1),
            "tied_diag": shares @ variances,
        }[covariance.name]
    return {"n": shares, "means": means, "covariances": covariances}


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_combined_moments_are_the_weighted_moments_of_the_union(covariance_type):
    """(1 - eta) * moments(A) + eta * moments(B), re-centred, equals the moments of
    A and B together with row weights (1 - eta) / W_A and eta / W_B."""
    covariance = COVARIANCES[covariance_type]
    rng = np.random.RandomState(0)
    first, second = rng.randn(40, 3) * 2 + 5, rng.randn(60, 3) + [0, 9, -4]
    r_first, r_second = rng.dirichlet(np.ones(2), 40), rng.dirichlet(np.ones(2), 60)
    w_first, w_second = rng.uniform(0.5, 2, 40), rng.uniform(0.5, 2, 60)
    step = 0.3
    combined = combine_moments(
        direct_moments(covariance, first, r_first, w_first / w_first.sum()),
        direct_moments(covariance, second, r_second, w_second / w_second.sum()),
        step,
        covariance,
    )
    union = direct_moments(
        covariance,
        np.vstack([first, second]),
        np.vstack([r_first, r_second]),
        np.concatenate([(1 - step) * w_first / w_first.sum(), step * w_second / w_second.sum()]),
    )
    for name in ("n", "means", "covariances"):
        assert_allclose(combined[name], union[name], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("weight", [None, 0.25])
def test_online_ppca_is_the_closed_form_of_the_weighted_union(weight):
    """PPCA's statistics do not depend on the parameters: two steps of online EM
    equal the closed form on both batches with weights (1 - eta) / n_A, eta / n_B.
    The second step is eta = (offset + 1) ** -decay times the batch's weight over
    the mean batch weight: weights keep their meaning across calls."""
    rng = np.random.RandomState(0)
    mixing = rng.randn(5, 5)
    first, second = rng.randn(300, 5) @ mixing, rng.randn(200, 5) @ mixing + 1.0
    online = ProbabilisticPCA(2, learning_decay=0.6, learning_offset=4.0)
    second_weight = None if weight is None else np.full(200, weight)
    online.partial_fit(first).partial_fit(second, sample_weight=second_weight)
    batch_weight = 200 * (1.0 if weight is None else weight)
    step = (4.0 + 1) ** -0.6 * batch_weight / ((300 + batch_weight) / 2)
    weights = np.concatenate([np.full(300, (1 - step) / 300), np.full(200, step / 200)])
    batch = ProbabilisticPCA(2).fit(np.vstack([first, second]), sample_weight=weights)
    assert_allclose(online.components_, batch.components_, rtol=1e-10, atol=1e-12)
    assert_allclose(online.mean_, batch.mean_, rtol=1e-12)
    assert_allclose(online.noise_variance_, batch.noise_variance_, rtol=1e-10)
    assert_allclose(online.explained_variance_, batch.explained_variance_, rtol=1e-10)
    # the bound of each call is that of the batch at the parameters before the step
    assert online.lower_bounds_.shape == (2,)
    before = ProbabilisticPCA(2).partial_fit(first)
    assert_allclose(online.lower_bounds_[1], before.score(second), rtol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_a_step_from_the_moments_of_a_fitted_model_gives_it_back(covariance_type):
    """partial_fit after fit continues from the fitted parameters: their moments
    (floor removed) give the same parameters by the M-step."""
    rng = np.random.RandomState(1)
    X = np.vstack([rng.randn(200, 3), rng.randn(200, 3) + 6])
    model = EMGaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X)
    fitted = {name: getattr(model, name).copy() for name in ("weights_", "means_", "covariances_")}
    model._m_step_from_moments(model._moments_of_parameters())
    for name, value in fitted.items():
        assert_allclose(getattr(model, name), value, rtol=1e-12, atol=1e-14)


def draw_mixture(n_samples, random_state):
    rng = np.random.RandomState(0)  # the same mixture for every draw
    means = rng.randn(8, 10) * 3
    factors = rng.randn(8, 10, 10) * 0.3 + np.eye(10)
    draws = np.random.RandomState(random_state)
    labels = draws.randint(8, size=n_samples)
    noise = draws.randn(n_samples, 10)
    return means[labels] + np.einsum("nd,nde->ne", noise, factors[labels])


def test_one_pass_in_batches_of_1000_comes_within_0_05_nats_of_full_em():
    """The issue's quality target, on 200k rows of an 8-component mixture in 10-d.

    The clusters overlap: a k-means start from one batch of 1000 rows misses
    them in about half the seeds (1.2 nats worse, for full EM from that
    start too), so the first call's restarts matter here: n_init=5.
    """
    X, held_out = draw_mixture(200_000, 1), draw_mixture(20_000, 2)
    full = EMGaussianMixture(8, random_state=0).fit(X)
    online = EMGaussianMixture(8, n_init=5, random_state=0)
    for start in range(0, len(X), 1000):
        online.partial_fit(X[start : start + 1000])
    assert online.n_steps_ == 200 and online.n_samples_seen_ == 200_000
    assert online.lower_bounds_.shape == (200,)
    assert full.score(held_out) - online.score(held_out) < 0.05


def test_partial_fit_attributes_resets_and_checks():
    rng = np.random.RandomState(0)
    X = rng.randn(500, 3)
    model = EMGaussianMixture(2, random_state=0)
    model.partial_fit(X[:200]).partial_fit(X[200:300])
    assert (model.n_steps_, model.n_samples_seen_, model.n_iter_) == (2, 300, 2)
    assert model.lower_bound_ == model.lower_bounds_[-1]
    assert hasattr(model, "precisions_")
    with pytest.raises(ValueError, match="3 features"):
        model.partial_fit(X[:, :2])
    assert model.n_steps_ == 2  # unchanged by the refused call
    model.fit(X)  # fit starts over
    assert not hasattr(model, "n_steps_")
    model.partial_fit(X[:100])  # and partial_fit continues from the fit
    assert model.n_steps_ == 1 and model.lower_bounds_.shape == (1,)
    with pytest.raises(ValueError, match="learning_decay"):
        EMGaussianMixture(learning_decay=0.5).partial_fit(X)
    with pytest.raises(ValueError, match="learning_offset"):
        ProbabilisticPCA(learning_offset=0.5).partial_fit(X)


def test_partial_fit_is_reproducible_and_keeps_float32():
    X = draw_mixture(3000, 3).astype(np.float32)

    def run():
        model = EMGaussianMixture(4, random_state=5)
        for start in range(0, len(X), 500):
            model.partial_fit(X[start : start + 500])
        return model

    first, second = run(), run()
    assert first.means_.dtype == np.float32
    assert_allclose(first.means_, second.means_, rtol=0)
    assert_allclose(first.lower_bounds_, second.lower_bounds_, rtol=0)


def test_online_mixture_of_ppca_comes_close_to_full_em():
    """One pass of MixtureOfPPCA.partial_fit against full EM, on 40k rows."""
    X, held_out = draw_mixture(40_000, 1), draw_mixture(10_000, 2)
    full = MixtureOfPPCA(8, n_latent=4, random_state=0).fit(X)
    online = MixtureOfPPCA(8, n_latent=4, n_init=5, random_state=0)
    for start in range(0, len(X), 2000):
        online.partial_fit(X[start : start + 2000])
    assert online.n_steps_ == 20
    assert full.score(held_out) - online.score(held_out) < 0.05


def test_mixture_of_ppca_steps_from_the_moments_of_its_parameters_give_them_back():
    """partial_fit after fit continues from the model's own moments: W W^T + s I."""
    rng = np.random.RandomState(1)
    X = np.vstack([rng.randn(200, 5) @ rng.randn(5, 5), rng.randn(200, 5) + 6])
    model = MixtureOfPPCA(2, n_latent=2, random_state=0).fit(X)
    means, weights = model.means_.copy(), model.weights_.copy()
    covariances = model._moments_of_parameters()["covariances"]
    model._m_step_from_moments(model._moments_of_parameters())
    assert_allclose(model.means_, means, rtol=1e-12)
    assert_allclose(model.weights_, weights, rtol=1e-12)
    assert_allclose(model._moments_of_parameters()["covariances"], covariances, rtol=1e-10)


@pytest.mark.parametrize(
    "make_model",
    [
        lambda: EMGaussianMixture(3, random_state=0),
        lambda: ProbabilisticPCA(2, random_state=0),
        lambda: MixtureOfPPCA(3, n_latent=2, random_state=0),
    ],
    ids=["gmm", "ppca", "mppca"],
)
def test_online_em_with_missing_values_comes_close_to_exact_em(make_model):
    """With 20% of the cells missing, one pass of partial_fit lands near the
    batch fit by exact EM (held-out log-likelihood of the observed values)."""
    rng = np.random.RandomState(0)
    mixing = rng.randn(4, 4)

    def draw(n):
        labels = rng.randint(3, size=n)
        return rng.randn(n, 4) @ mixing + 4.0 * np.eye(3, 4)[labels]

    def holes(X):
        X = X.copy()
        X[rng.rand(*X.shape) < 0.2] = np.nan
        X[np.isnan(X).all(axis=1), 0] = 0.0
        return X

    X, held_out = holes(draw(20_000)), holes(draw(5_000))
    full = make_model().fit(X)
    online = make_model()
    for start in range(0, len(X), 1000):
        online.partial_fit(X[start : start + 1000])
    assert np.isfinite(online.lower_bounds_).all()
    assert full.score(held_out) - online.score(held_out) < 0.05


def test_partial_fit_reports_to_the_callbacks_and_tears_them_down():
    """Every call is a fit task of one iteration; nothing is left on the estimator."""
    pytest.importorskip("sklearn.callback")
    from test_monitor import Recorder

    X = draw_mixture(3000, 4)
    recorder = Recorder()
    model = EMGaussianMixture(4, random_state=0).set_callbacks(recorder)
    for start in range(0, len(X), 1000):
        model.partial_fit(X[start : start + 1000])
    assert recorder.events.count(("setup", "EMGaussianMixture")) == 3
    assert recorder.events.count(("teardown", "EMGaussianMixture")) == 3
    iterations = [event for event in recorder.events if event[-1] == "iteration"]
    assert len(iterations) >= 2 * 3  # the first call's fit, then one per later call
    assert not hasattr(model, "_callback_fit_ctx")
    assert not hasattr(model, "_monitor")


ONLINE_MODELS = {
    "gmm": (lambda: EMGaussianMixture(2, random_state=0), {"n_components": 3}),
    "ppca": (lambda: ProbabilisticPCA(2, random_state=0), {"n_components": 3}),
    "mppca": (lambda: MixtureOfPPCA(2, n_latent=1, random_state=0), {"n_latent": 2}),
    "vae": (lambda: AmortizedVAE(n_components=2, max_iter=3, random_state=0), {"n_components": 3}),
}


@pytest.mark.parametrize("weights", [None, "varied", "near the float limit"])
def test_partial_fit_after_fit_steps_as_the_batch_after_the_fits_weight(weights):
    """The first step after a fit on 20,000 rows (total weight W) is the step of
    batch W / w + 1 of the schedule: the mean moves by eta = (10 + W / w) ** -0.7 of
    the way to the batch's mean (eta was 0.2 whatever the fit's size)."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(20_000, 3))
    batch = rng.normal(loc=1.0, size=(100, 3))
    fit_weights = batch_weights = None
    unit = 1e307 if weights == "near the float limit" else 1.0  # (sums overflow there)
    if weights is not None:
        fit_weights = rng.uniform(0.5, 1.5, size=len(X)) * unit
        batch_weights = rng.uniform(0.5, 1.5, size=len(batch)) * unit
    model = EMGaussianMixture(1, random_state=0).fit(X, sample_weight=fit_weights)
    before = model.means_[0].copy()
    model.partial_fit(batch, sample_weight=batch_weights)
    fitted_weight = len(X) if fit_weights is None else (fit_weights / unit).sum()
    batch_weight = len(batch) if batch_weights is None else (batch_weights / unit).sum()
    eta = (10 + fitted_weight / batch_weight) ** -0.7
    batch_mean = np.average(
        batch, axis=0, weights=None if batch_weights is None else batch_weights / unit
    )
    assert_allclose(model.means_[0], (1 - eta) * before + eta * batch_mean, rtol=1e-10)


def test_ten_small_batches_after_a_large_fit_keep_its_accuracy():
    """Ten batches of 100 rows after a fit on 100,000 rows of N(0, I): the mean
    stays within 0.01 of the truth (the fit's own error is about 0.003; steps
    of 0.2 put it 6 times further off)."""
    rng = np.random.RandomState(1)
    model = EMGaussianMixture(1, random_state=0).fit(rng.normal(size=(100_000, 4)))
    for _ in range(10):
        model.partial_fit(rng.normal(size=(100, 4)))
    assert np.abs(model.means_[0]).max() < 0.01


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("name", ONLINE_MODELS)
def test_partial_fit_validates_every_call_and_keeps_the_fitted_structure(name):
    """Every call validates the parameters (scikit-learn's message) and refuses a
    changed structure, leaving the model as it was; a batch in which a column
    has no observed value is a valid step for every model (ProbabilisticPCA
    refused it); a row with no observed value is refused by every model."""
    make, structure = ONLINE_MODELS[name]
    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 4))
    model = make().fit(X)
    state = pickle.dumps(model)
    if name != "vae":
        model.set_params(learning_decay=2.0)
        with pytest.raises(ValueError, match="learning_decay"):
            model.partial_fit(X[:50])
        model.set_params(learning_decay=0.7)
    changed = {key: getattr(model, key) for key in structure}
    model.set_params(**structure)
    with pytest.raises(ValueError, match="partial_fit continues the fitted model"):
        model.partial_fit(X[:50])
    model.set_params(**changed)
    empty_row = X[:50].copy()
    empty_row[3] = np.nan
    with pytest.raises(ValueError, match=r"Rows \[3\] of X are entirely NaN"):
        model.partial_fit(empty_row)
    assert pickle.dumps(model) == state
    empty_column = X[:50].copy()
    empty_column[:, 1] = np.nan
    model.partial_fit(empty_column)
    assert np.isfinite(model.score(X))
    if name == "ppca":  # the column's mean moves to the batch's conditional means
        reference = make().fit(X)
        eta = (10 + 300 / 50) ** -0.7  # the step after a fit on 300 rows, batch of 50
        imputed_mean = reference.impute(empty_column)[:, 1].mean()
        expected = (1 - eta) * reference.mean_[1] + eta * imputed_mean
        assert_allclose(model.mean_[1], expected, rtol=1e-10)
