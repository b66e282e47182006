"""The base classes: a new EM model written from their docstrings, and the loop."""

import runpy
import warnings
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import logsumexp
from scipy.stats import poisson
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score

from skem import AmortizedVAE, EMGaussianMixture, MixtureOfPPCA, ProbabilisticPCA

# A user's model, a mixture of independent Poissons, as the gallery example
# writes it (the one copy of it).
matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
EXAMPLE = Path(__file__).parent.parent / "doc" / "examples" / "plot_custom_em_model.py"
PoissonMixture = runpy.run_path(str(EXAMPLE), run_name="poisson_example")["PoissonMixture"]
matplotlib.pyplot.close("all")


def poisson_data(seed=0, n_samples=600):
    rng = np.random.RandomState(seed)
    rates = np.array([[1.0, 8.0, 3.0], [10.0, 2.0, 0.5], [4.0, 4.0, 12.0]])
    labels = rng.choice(3, size=n_samples, p=[0.5, 0.3, 0.2])
    return rng.poisson(rates[labels]).astype(float), labels, rates


def test_user_model_bound_never_decreases_and_recovers_the_truth():
    X, labels, rates = poisson_data(n_samples=3000)
    model = PoissonMixture(3, tol=1e-10, max_iter=500, random_state=0).fit(X)
    assert model.converged_
    assert np.diff(model.lower_bounds_).min() >= -1e-12 * abs(model.lower_bound_)
    assert adjusted_rand_score(labels, model.predict(X)) > 0.9
    fitted = model.rates_[np.argsort(model.rates_[:, 0])]
    truth = rates[np.argsort(rates[:, 0])]
    counts = np.bincount(labels)[np.argsort(rates[:, 0])]
    standard_errors = np.sqrt(truth / counts[:, None])
    assert np.all(np.abs(fitted - truth) < 4 * standard_errors)


def test_user_model_scores_are_the_closed_form_mixture_log_pmf():
    X, _, _ = poisson_data()
    model = PoissonMixture(3, random_state=0).fit(X)
    log_joint = np.log(model.weights_) + np.stack(
        [poisson.logpmf(X, rate).sum(axis=1) for rate in model.rates_], axis=1
    )
    assert_allclose(model.score_samples(X), logsumexp(log_joint, axis=1), rtol=1e-12)
    assert_allclose(model.predict_proba(X).sum(axis=1), 1.0)
    assert model.sample(10, random_state=0)[0].shape == (10, 3)
    assert model._n_parameters() == 3 * 3 + 2


def test_user_model_weights_equal_repeated_rows():
    X, _, _ = poisson_data()
    weights = np.random.RandomState(0).randint(0, 3, size=len(X))
    start = PoissonMixture(3, max_iter=0, random_state=0).fit(X)
    weighted = PoissonMixture(3, max_iter=20, tol=0, warm_start=True)
    repeated = PoissonMixture(3, max_iter=20, tol=0, warm_start=True)
    for model in (weighted, repeated):
        model._set_parameters(start._get_parameters())
        model.converged_, model.lower_bound_ = False, -np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted.fit(X, sample_weight=weights)
        repeated.fit(np.repeat(X, weights, axis=0))
    assert_allclose(weighted.rates_, repeated.rates_, rtol=1e-10)
    assert_allclose(weighted.lower_bounds_, repeated.lower_bounds_, rtol=1e-10)


def test_restarts_share_one_generator_and_keep_the_best():
    X, _, _ = poisson_data()
    single = [
        PoissonMixture(3, init_params="random", random_state=s).fit(X).lower_bound_
        for s in range(3)
    ]
    best = PoissonMixture(3, init_params="random", n_init=3, random_state=0).fit(X)
    assert best.lower_bound_ >= single[0] - 1e-12
    again = PoissonMixture(3, init_params="random", n_init=3, random_state=0).fit(X)
    assert_array_equal(again.rates_, best.rates_)


def test_convergence_warning_and_verbose_output(capsys):
    X, _, _ = poisson_data()
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        PoissonMixture(3, max_iter=2, tol=0, verbose=2, verbose_interval=1, random_state=0).fit(X)
    output = capsys.readouterr().out
    assert "Initialization 0" in output and "Iteration 2" in output
    assert "did not converge" in output and "lower bound" in output


def test_warm_start_continues_the_bound_history():
    X, _, _ = poisson_data()
    full = PoissonMixture(3, max_iter=6, tol=0, random_state=0)
    steps = PoissonMixture(3, max_iter=3, tol=0, warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        full.fit(X)
        first = steps.fit(X).lower_bounds_
        second = steps.fit(X).lower_bounds_
    assert_allclose(np.r_[first, second], full.lower_bounds_, rtol=1e-12)
    assert_allclose(steps.rates_, full.rates_, rtol=1e-12)


def test_failed_fit_leaves_a_fitted_estimator_untouched():
    X, _, _ = poisson_data()
    model = EMGaussianMixture(2, random_state=0).fit(X)
    state = {name: value for name, value in vars(model).items()}
    with pytest.raises(ValueError):
        model.fit(X[:, :2], sample_weight=-np.ones(len(X)))
    assert vars(model).keys() == state.keys()
    assert model.n_features_in_ == 3


def test_weights_near_the_float_limit_mean_what_they_say():
    X, _, _ = poisson_data()
    start = PoissonMixture(3, max_iter=0, random_state=0).fit(X)
    params = dict(n_components=3, max_iter=5, tol=0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        unit = PoissonMixture(**params).fit(X)
        huge = PoissonMixture(**params).fit(X, sample_weight=np.full(len(X), 1e308))
        one_heavy = np.ones(len(X))
        one_heavy[0] = 1e300
        heavy = PoissonMixture(**params).fit(X, sample_weight=one_heavy)
    assert start.n_iter_ == 0
    assert_allclose(huge.rates_, unit.rates_, rtol=1e-12)
    assert np.all(np.isfinite(heavy.rates_)) and np.isfinite(heavy.lower_bound_)


@pytest.mark.parametrize(
    "estimator",
    [EMGaussianMixture(2), ProbabilisticPCA(1), MixtureOfPPCA(2, 1), AmortizedVAE(max_iter=2)],
    ids=lambda estimator: type(estimator).__name__,
)
def test_data_too_large_to_square_is_refused_with_the_remedy(estimator):
    X, _, _ = poisson_data()
    with pytest.raises(ValueError, match=r"magnitude up to 1\.2e\+200.*Divide X by a constant"):
        estimator.fit(X * 1e200 / X.max() * 1.2)
    assert not hasattr(estimator, "n_iter_")


def test_float32_data_beyond_its_variance_range_are_refused():
    X = (np.random.RandomState(0).normal(size=(100, 2)) * 1e20).astype(np.float32)
    with pytest.raises(ValueError, match="convert X to float64"):
        EMGaussianMixture(1).fit(X)
    assert np.isfinite(EMGaussianMixture(1).fit(X.astype(np.float64)).covariances_).all()


@pytest.mark.parametrize(
    "estimator, change",
    [
        (EMGaussianMixture(2, random_state=0), {"n_components": 3}),
        (EMGaussianMixture(2, random_state=0), {"covariance_type": "tied_diag"}),
        (MixtureOfPPCA(2, 1, random_state=0), {"n_components": 3}),
        (MixtureOfPPCA(2, 1, random_state=0), {"n_latent": 2}),
        (ProbabilisticPCA(1, solver="em", random_state=0), {"n_components": 2}),
    ],
    ids=lambda value: str(value),
)
def test_warm_start_after_a_change_of_structure_is_a_clear_error(estimator, change):
    X, _, _ = poisson_data()
    model = estimator.fit(X).set_params(warm_start=True, **change)
    state = dict(vars(model))
    name = next(iter(change))
    with pytest.raises(ValueError, match=f"warm_start=True continues the fitted model.*{name}"):
        model.fit(X)
    assert vars(model).keys() == state.keys()


DISPATCHED = """
import numpy as np, pytest, sklearn
from skem import EMImputer, GaussianMixtureIC
import {library} as xp
X = np.random.RandomState(0).randn(50, 3)
with sklearn.config_context(array_api_dispatch=True):
    for model in (GaussianMixtureIC(n_components=2), EMImputer()):
        with pytest.raises(ValueError, match="X is a {library} array and scikit-learn's"):
            model.fit(xp.asarray(X))
        assert not hasattr(model, "n_features_in_")
print("ok")
"""


@pytest.mark.parametrize("library", ["array_api_strict", "torch"])
def test_numpy_only_estimators_say_so_under_array_api_dispatch(library):
    """With scikit-learn's dispatch on, a torch or array-api-strict array was passed
    through and failed on numpy's dtypes (TypeError); the estimators that compute
    on numpy only (the EM models take such arrays: test_array_api.py) say so, before
    any work. (In a child process: the dispatch needs SCIPY_ARRAY_API=1 before
    scipy is imported.)"""
    import os
    import subprocess
    import sys

    pytest.importorskip(library)
    completed = subprocess.run(
        [sys.executable, "-c", DISPATCHED.format(library=library)],
        env={**os.environ, "SCIPY_ARRAY_API": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.stdout.strip() == "ok", completed.stderr
