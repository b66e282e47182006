"""MixtureOfFactorAnalyzers against FactorAnalysis, scipy's densities and its own bound."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.exceptions import ConvergenceWarning
from test_ppca import FAR_ROWS, rescaled_gaussian_log_density

from skem import FactorAnalysis, MixtureOfFactorAnalyzers


def two_factor_clusters(n_per_cluster=600, seed=0):
    rng = np.random.RandomState(seed)
    X = np.vstack(
        [
            rng.normal(size=(n_per_cluster, 1)) * [2.0, 1.0, 1.0, 0.0, 1.0] + [8, 0, 0, 0, 0],
            rng.normal(size=(n_per_cluster, 1)) * [0.0, 1.0, 2.0, 1.0, -1.0],
        ]
    )
    return X + rng.normal(size=X.shape) * [0.3, 0.5, 1.0, 0.3, 0.7]


def mixture_log_density(model, X):
    """log sum_k w_k N(x_o; m_k, W_k W_k^T + Psi_k) from scipy, on each row's observed values."""
    covariances = [
        w.T @ w + np.diag(psi) for w, psi in zip(model.components_, model.noise_variance_)
    ]
    scores = []
    for row in X:
        o = ~np.isnan(row)
        joint = [
            np.log(weight) + multivariate_normal(mean[o], covariance[np.ix_(o, o)]).logpdf(row[o])
            for weight, mean, covariance in zip(model.weights_, model.means_, covariances)
        ]
        scores.append(logsumexp(joint))
    return np.array(scores)


def quietly(model, X, **fit):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, **fit)


def test_one_component_steps_as_factor_analysis_from_the_same_start():
    """With one component the M-step (the weighted mean, then one factor-analysis
    step from the covariance about it) is FactorAnalysis's EM step (whose joint
    regression keeps the mean at the data's)."""
    X = two_factor_clusters()[:600]
    start = quietly(FactorAnalysis(1, max_iter=3, accelerate=False, random_state=0), X)
    mixture = MixtureOfFactorAnalyzers(1, 1, max_iter=12, tol=0, warm_start=True)
    factor = FactorAnalysis(1, max_iter=12, tol=0, warm_start=True)
    for model in (mixture, factor):
        quietly(model.set_params(accelerate=False), X)
    mixture.weights_ = np.ones(1)
    mixture.means_, mixture.components_ = start.mean_[None], start.components_[None]
    mixture.noise_variance_ = start.noise_variance_[None]
    factor.mean_, factor.components_ = start.mean_.copy(), start.components_.copy()
    factor.noise_variance_ = start.noise_variance_.copy()
    quietly(mixture, X)
    quietly(factor, X)
    assert_allclose(mixture.means_[0], factor.mean_, rtol=1e-10, atol=1e-12)
    assert_allclose(
        mixture.components_[0].T @ mixture.components_[0],
        factor.components_.T @ factor.components_,
        rtol=1e-9,
        atol=1e-12,
    )
    assert_allclose(mixture.noise_variance_[0], factor.noise_variance_, rtol=1e-9)
    assert_allclose(mixture.lower_bounds_, factor.lower_bounds_, rtol=1e-11)


@pytest.mark.parametrize("accelerate", [False, True])
@pytest.mark.parametrize("missing_share", [0.0, 0.2])
def test_scores_are_the_mixture_of_gaussians_and_the_bound_never_falls(accelerate, missing_share):
    X = two_factor_clusters()
    rng = np.random.RandomState(1)
    X[rng.uniform(size=X.shape) < missing_share] = np.nan
    X[np.isnan(X).all(axis=1), 0] = 0.0
    weights = rng.uniform(0.5, 2.0, len(X))
    model = MixtureOfFactorAnalyzers(2, 1, accelerate=accelerate, random_state=0)
    model.fit(X, sample_weight=weights)
    assert np.all(np.diff(model.lower_bounds_) >= -1e-12 * np.abs(model.lower_bounds_[1:]))
    assert_allclose(model.score_samples(X[:40]), mixture_log_density(model, X[:40]), rtol=1e-10)
    assert_allclose(
        model.score(X, sample_weight=weights),
        np.average(mixture_log_density(model, X), weights=weights),
        rtol=1e-10,
    )
    # the clusters and each feature's noise are found (the cluster without a
    # loading on feature 3 has its variance there as noise)
    near_zero = np.argmin(np.abs(model.means_[:, 0]))
    assert_allclose(np.sqrt(model.noise_variance_[near_zero])[[0, 1, 3]], [0.3, 0.5, 0.3], rtol=0.2)


def test_squarem_ends_at_least_as_high_in_fewer_iterations():
    X = two_factor_clusters()
    plain = quietly(
        MixtureOfFactorAnalyzers(2, 1, tol=1e-8, max_iter=5000, accelerate=False, random_state=0),
        X,
    )
    fast = quietly(MixtureOfFactorAnalyzers(2, 1, tol=1e-8, max_iter=5000, random_state=0), X)
    assert fast.lower_bound_ >= plain.lower_bound_ - 1e-9
    assert fast.n_iter_ * 2 <= plain.n_iter_
    assert np.all(np.diff(fast.lower_bounds_) >= 0)


class ScatterMixtureOfFactorAnalyzers(MixtureOfFactorAnalyzers):
    """The d x d scatters at every step, as for data with NaN."""

    def _prepare_fit(self, X, sample_weight, random_state):
        super()._prepare_fit(X, sample_weight, random_state)
        self._keep_posterior_means = False


@pytest.mark.parametrize("accelerate", [False, True])
def test_posterior_mean_sums_step_as_the_scatters(accelerate):
    # the O(n d q) statistics (sum r (x - m) E[z]^T, sum r (x - m)**2) give
    # the factor-analysis step of the d x d scatters, weights and all
    X = two_factor_clusters()
    weights = np.random.RandomState(1).uniform(0.5, 2.0, size=X.shape[0])
    params = dict(n_components=2, n_latent=2, max_iter=6, accelerate=accelerate, random_state=0)
    fast = quietly(MixtureOfFactorAnalyzers(**params), X, sample_weight=weights)
    scatter = quietly(ScatterMixtureOfFactorAnalyzers(**params), X, sample_weight=weights)
    assert fast.n_iter_ == scatter.n_iter_ == 6
    assert_allclose(fast.lower_bounds_, scatter.lower_bounds_, rtol=1e-12)
    for name in ("weights_", "means_", "components_", "noise_variance_"):
        assert_allclose(getattr(fast, name), getattr(scatter, name), rtol=1e-9, atol=1e-12)


def test_impute_fills_the_conditional_mean_and_dask_fits_as_in_memory():
    X = two_factor_clusters()
    holes = X.copy()
    holes[::3, 2] = np.nan
    model = MixtureOfFactorAnalyzers(2, 1, random_state=0).fit(holes)
    filled = model.impute(holes[:30])
    covariances = [
        w.T @ w + np.diag(psi) for w, psi in zip(model.components_, model.noise_variance_)
    ]
    for row, result in zip(holes[:30], filled):
        o = ~np.isnan(row)
        if o.all():
            continue
        joint = [
            np.log(weight) + multivariate_normal(m[o], c[np.ix_(o, o)]).logpdf(row[o])
            for weight, m, c in zip(model.weights_, model.means_, covariances)
        ]
        posterior = np.exp(np.array(joint) - logsumexp(joint))
        conditional = [
            m[~o] + c[np.ix_(~o, o)] @ np.linalg.solve(c[np.ix_(o, o)], row[o] - m[o])
            for m, c in zip(model.means_, covariances)
        ]
        assert_allclose(result[~o], posterior @ np.array(conditional), rtol=1e-9)
    da = pytest.importorskip("dask.array")
    params = dict(n_components=2, n_latent=1, init_params="random_from_data", random_state=0)
    in_memory = MixtureOfFactorAnalyzers(**params).fit(holes)
    on_dask = MixtureOfFactorAnalyzers(**params).fit(da.from_array(holes, chunks=500))
    assert_allclose(on_dask.means_, in_memory.means_, rtol=1e-9, atol=1e-10)
    assert_allclose(on_dask.noise_variance_, in_memory.noise_variance_, rtol=1e-8)


def test_the_bound_never_falls_with_a_noise_variance_at_the_floor():
    """A near copy of a feature drives its noise variance to the floor, where the
    matrix-inversion lemma cancels; densities stay scipy's and the bound monotone."""
    from sklearn.datasets import load_wine
    from sklearn.preprocessing import StandardScaler

    wine = StandardScaler().fit_transform(load_wine().data)
    rng = np.random.RandomState(0)
    X = np.hstack([wine, wine[:, :1] + 1e-3 * rng.standard_normal((len(wine), 1))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MixtureOfFactorAnalyzers(2, 3, tol=0, max_iter=200, accelerate=False)
        model.set_params(random_state=0).fit(X)
    assert np.all(np.diff(model.lower_bounds_) >= 0)
    assert_allclose(model.score_samples(X), mixture_log_density(model, X), rtol=0, atol=1e-8)


@pytest.mark.parametrize("data_scale", FAR_ROWS)
def test_far_rows_score_the_exact_mixture_log_density_at_every_data_scale(data_scale):
    """The E-step takes |r|^2 and r W in the scaled coordinates from r = x - m
    itself (``r**2 @ psi^-1``, ``r Psi^-1 W``), and scales r only for the rows
    it looks at again: far rows still score the exact log-density, never NaN."""
    from sklearn.datasets import load_iris

    X = load_iris().data * data_scale
    model = quietly(MixtureOfFactorAnalyzers(2, 1, random_state=0), X)
    rows = np.array(FAR_ROWS[data_scale])
    with np.errstate(divide="ignore"):
        exact = logsumexp(
            [
                np.log(weight) + rescaled_gaussian_log_density(mean, w.T @ w + np.diag(psi), rows)
                for weight, mean, w, psi in zip(
                    model.weights_, model.means_, model.components_, model.noise_variance_
                )
            ],
            axis=0,
        )
    scores = model.score_samples(rows)
    finite = np.isfinite(exact)
    assert finite.any()
    assert_allclose(scores[finite], exact[finite], rtol=1e-9)
    assert np.all(scores[~finite] == -np.inf)
