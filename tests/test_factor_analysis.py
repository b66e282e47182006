"""FactorAnalysis against scikit-learn's optimum, scipy's densities and a textbook EM."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.stats import multivariate_normal
from sklearn.datasets import load_digits, load_wine
from sklearn.decomposition import FactorAnalysis as SklearnFactorAnalysis
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

from skem import FactorAnalysis, VarianceFloorWarning


def heteroscedastic(n_samples=2000, seed=0):
    rng = np.random.RandomState(seed)
    loadings = rng.standard_normal((2, 6))
    noise = np.array([0.3, 0.5, 0.7, 1.0, 1.5, 2.0])
    X = rng.standard_normal((n_samples, 2)) @ loadings + rng.standard_normal((n_samples, 6)) * noise
    return X + [1.0, -2.0, 3.0, 0.0, 10.0, -5.0]


@pytest.mark.parametrize("name, n_latent", [("wine", 3), ("digits", 10)])
def test_reaches_scikit_learns_maximum_likelihood(name, n_latent):
    """Standardised wine (q=3) and dequantised digits (q=10): the training score
    within 1e-5 nats of scikit-learn's FactorAnalysis(tol=1e-10, svd_method='lapack')
    and the covariance W W^T + Psi within 1e-4 (relative Frobenius)."""
    if name == "wine":
        X = StandardScaler().fit_transform(load_wine().data)
    else:
        X = (load_digits().data + np.random.RandomState(0).uniform(size=(1797, 64))) / 17
    ours = FactorAnalysis(n_latent, tol=1e-10, max_iter=20000, random_state=0).fit(X)
    theirs = SklearnFactorAnalysis(n_latent, tol=1e-10, svd_method="lapack", max_iter=100000)
    theirs.fit(X)
    assert abs(ours.score(X) - theirs.score(X)) < 1e-5
    difference = np.linalg.norm(ours.get_covariance() - theirs.get_covariance())
    assert difference < 1e-4 * np.linalg.norm(theirs.get_covariance())
    assert np.all(np.diff(ours.lower_bounds_) >= -1e-12 * np.abs(ours.lower_bounds_[1:]))


def test_densities_transform_and_precision_are_the_gaussians():
    X = heteroscedastic()
    model = FactorAnalysis(2, random_state=0).fit(X)
    covariance = model.get_covariance()
    assert_allclose(model.get_precision() @ covariance, np.eye(6), atol=1e-10)
    expected = multivariate_normal(model.mean_, covariance).logpdf(X[:50])
    assert_allclose(model.score_samples(X[:50]), expected, rtol=1e-11)
    W, psi = model.components_.T, model.noise_variance_
    M = np.eye(2) + W.T @ (W / psi[:, None])
    posterior_mean = np.linalg.solve(M, (W / psi[:, None]).T @ (X[:50] - model.mean_).T).T
    assert_allclose(model.transform(X[:50]), posterior_mean, rtol=1e-10, atol=1e-12)
    samples, _ = model.sample(200000, random_state=0)
    assert_allclose(np.cov(samples.T), covariance, atol=0.05 * np.abs(covariance).max())
    n_parameters = 6 * 2 - 1 + 2 * 6
    assert_allclose(model.bic(X), -2 * model.score(X) * len(X) + n_parameters * np.log(len(X)))


def textbook_missing_em(X, W, mu, psi, n_iter):
    """EM for factor analysis with missing values (Ghahramani & Jordan 1994): the
    E-step on each row's observed block, the M-step with E[x_m z~], E[x_m^2] filled in."""
    n, d = X.shape
    q = W.shape[1]
    for _ in range(n_iter):
        loadings = np.hstack([W, mu[:, None]])
        A = np.zeros((q + 1, q + 1))
        B = np.zeros((d, q + 1))
        D = np.zeros(d)
        for x in X:
            o = ~np.isnan(x)
            Wo, po = W[o], psi[o]
            M = np.eye(q) + Wo.T @ (Wo / po[:, None])
            covariance = np.linalg.inv(M)
            mean = covariance @ (Wo / po[:, None]).T @ (x[o] - mu[o])
            zz = np.zeros((q + 1, q + 1))
            zz[:q, :q] = covariance + np.outer(mean, mean)
            zz[:q, q] = zz[q, :q] = mean
            zz[q, q] = 1.0
            z = np.append(mean, 1.0)
            A += zz
            B[o] += np.outer(x[o], z)
            B[~o] += loadings[~o] @ zz
            D[o] += x[o] ** 2
            D[~o] += np.einsum("ja,ab,jb->j", loadings[~o], zz, loadings[~o]) + psi[~o]
        new = np.linalg.solve(A, B.T).T
        psi = (D - np.sum(new * B, axis=1)) / n
        W, mu = new[:, :q], new[:, q]
    return W, mu, psi


def test_missing_values_fit_a_fixed_point_of_the_textbook_em_and_score_the_observed_marginal():
    """With 20% NaN, the fit is a fixed point of an independent EM map (Ghahramani &
    Jordan's, written above), and its scores are scipy's marginal densities."""
    X = heteroscedastic(400)
    rng = np.random.RandomState(1)
    X[rng.uniform(size=X.shape) < 0.2] = np.nan
    X[np.isnan(X).all(axis=1), 0] = 0.0
    model = FactorAnalysis(2, tol=1e-12, max_iter=5000, random_state=0).fit(X)
    assert model.converged_
    assert np.all(np.diff(model.lower_bounds_) >= -1e-12 * np.abs(model.lower_bounds_[1:]))
    W, mu, psi = textbook_missing_em(
        X, model.components_.T, model.mean_, model.noise_variance_, n_iter=1
    )
    # (EM converges linearly: at a bound change of 1e-12 a step still moves
    # the parameters by about 1e-7)
    assert_allclose(mu, model.mean_, rtol=1e-7, atol=1e-8)
    assert_allclose(W @ W.T + np.diag(psi), model.get_covariance(), rtol=1e-6, atol=1e-7)
    rows = X[:30]
    covariance = model.get_covariance()
    for row, score in zip(rows, model.score_samples(rows)):
        o = ~np.isnan(row)
        expected = multivariate_normal(model.mean_[o], covariance[np.ix_(o, o)]).logpdf(row[o])
        assert_allclose(score, expected, rtol=1e-11)
    # the conditional mean fills the holes
    filled = model.impute(rows)
    for row, result in zip(rows, filled):
        o = ~np.isnan(row)
        if o.all():
            continue
        gain = covariance[np.ix_(~o, o)] @ np.linalg.inv(covariance[np.ix_(o, o)])
        assert_allclose(result[~o], model.mean_[~o] + gain @ (row[o] - model.mean_[o]), rtol=1e-9)


def test_integer_weights_are_repeated_rows_from_the_same_start():
    X = heteroscedastic(300)
    counts = np.random.RandomState(3).randint(0, 4, len(X))
    start = FactorAnalysis(2, random_state=0).fit(X)
    fits = []
    for data, weight in [(X, counts), (np.repeat(X, counts, axis=0), None)]:
        model = FactorAnalysis(2, max_iter=30, tol=0, warm_start=True).fit(X[:20])
        model.components_ = start.components_.copy()
        model.mean_, model.noise_variance_ = start.mean_.copy(), start.noise_variance_.copy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fits.append(model.fit(data, sample_weight=weight))
    assert_allclose(fits[0].get_covariance(), fits[1].get_covariance(), rtol=1e-10)
    assert_allclose(fits[0].lower_bounds_, fits[1].lower_bounds_, rtol=1e-11)


def test_a_heywood_case_is_floored_and_named():
    X = heteroscedastic()
    # x6 = 2 x0 - x1: the three span two dimensions, which the two factors
    # explain exactly, so all three noise variances go to zero
    X = np.hstack([X, 2 * X[:, :1] - X[:, 1:2]])
    with pytest.warns(VarianceFloorWarning, match=r"features \[0, 1, 6\]"):
        model = FactorAnalysis(2, random_state=0).fit(X)
    # each at its floor: noise_variance_floor (1e-6) times the feature's variance
    assert_allclose(model.noise_variance_[[0, 1, 6]], 1e-6 * X.var(axis=0)[[0, 1, 6]])
    assert np.isfinite(model.score_samples(X)).all()


def test_dask_arrays_fit_as_in_memory():
    da = pytest.importorskip("dask.array")
    X = heteroscedastic(3000)
    X[::9, 2] = np.nan
    in_memory = FactorAnalysis(2, random_state=0).fit(X)
    on_dask = FactorAnalysis(2, random_state=0).fit(da.from_array(X, chunks=700))
    assert_allclose(on_dask.get_covariance(), in_memory.get_covariance(), rtol=1e-9)
    scores = on_dask.score_samples(da.from_array(X, chunks=700)).compute()
    assert_allclose(scores, in_memory.score_samples(X), rtol=1e-10)


def test_squarem_reaches_a_bound_at_least_plain_ems_in_fewer_iterations_never_falling():
    """Standardised wine, q=3 (EM crawls there): SQUAREM's bound never falls, ends at
    least as high as plain EM's at the same tol, in at most a third of the iterations."""
    X = StandardScaler().fit_transform(load_wine().data)
    plain = FactorAnalysis(3, tol=1e-10, max_iter=20000, accelerate=False, random_state=0).fit(X)
    fast = FactorAnalysis(3, tol=1e-10, max_iter=20000, random_state=0).fit(X)
    assert np.all(np.diff(fast.lower_bounds_) >= 0)
    assert fast.lower_bound_ >= plain.lower_bound_ - 1e-12
    assert fast.n_iter_ * 3 <= plain.n_iter_
    assert_allclose(fast.get_covariance(), plain.get_covariance(), rtol=1e-4, atol=1e-6)


def test_moments_log_likelihood_is_scipys_mean_log_density():
    """The Woodbury/determinant-lemma form equals scipy's Gaussian on badly scaled data."""
    from skem.decomposition._lowrank import moments_log_likelihood

    rng = np.random.RandomState(3)
    X = heteroscedastic(500) * np.logspace(-3, 3, 6)
    W, psi = rng.normal(size=(2, 6)) * np.logspace(-2, 2, 6), np.logspace(-3, 3, 6)
    mean = X.mean(axis=0)
    covariance = np.cov(X.T, bias=True)
    expected = multivariate_normal(mean, W.T @ W + np.diag(psi)).logpdf(X).mean()
    assert_allclose(moments_log_likelihood(covariance, W, psi), expected, rtol=1e-10)


def test_partial_fit_of_one_batch_is_the_fit():
    """Online EM's first step fits the batch's own moments: the maximum-likelihood fit."""
    X = StandardScaler().fit_transform(load_wine().data)
    fitted = FactorAnalysis(3, tol=1e-12, max_iter=20_000, random_state=0).fit(X)
    online = FactorAnalysis(3, tol=1e-12, max_iter=20_000, random_state=0).partial_fit(X)
    assert_allclose(online.score(X), fitted.score(X), atol=1e-9)
    assert_allclose(online.get_covariance(), fitted.get_covariance(), atol=1e-5)
    assert_allclose(online.mean_, X.mean(axis=0), atol=1e-12)


def test_partial_fit_fits_the_running_moments_averaged_by_hand():
    """After several batches the mean is the step-size-weighted running mean and the
    factors are a fixed point of factor-analysis EM on the running covariance."""
    from skem.decomposition._lowrank import factor_analysis_step

    X = heteroscedastic(3000, seed=1)
    batches = np.array_split(X, 5)
    model = FactorAnalysis(2, tol=1e-12, max_iter=20_000, learning_offset=4.0, random_state=0)
    mean, second = batches[0].mean(axis=0), batches[0].T @ batches[0] / len(batches[0])
    for t, batch in enumerate(batches):
        model.partial_fit(batch)
        if t:  # raw moments average linearly (equal batch weights: steps unscaled)
            step = (4.0 + t) ** -0.7
            mean = (1 - step) * mean + step * batch.mean(axis=0)
            second = (1 - step) * second + step * batch.T @ batch / len(batch)
    covariance = second - np.outer(mean, mean)
    assert_allclose(model.mean_, mean, atol=1e-12)
    W, psi = model.components_[None], model.noise_variance_[None]
    stepped_W, stepped_psi = factor_analysis_step(covariance[None], W, psi, 1e-12)
    assert_allclose(stepped_W @ np.swapaxes(stepped_W, 1, 2), W @ np.swapaxes(W, 1, 2), atol=1e-6)
    assert_allclose(stepped_psi, psi, atol=1e-6)
    assert model.n_steps_ == 5 and model.lower_bounds_.shape == (5,)


def near_copy_wine():
    """Standardised wine plus a near copy of its first feature: a noise variance at the
    floor, where the matrix-inversion lemma cancels (the factors explain ~all of |r|^2)."""
    wine = StandardScaler().fit_transform(load_wine().data)
    rng = np.random.RandomState(0)
    return np.hstack([wine, wine[:, :1] + 1e-3 * rng.standard_normal((len(wine), 1))])


def test_densities_stay_exact_and_the_bound_never_falls_at_the_floor():
    X = near_copy_wine()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VarianceFloorWarning)
        model = FactorAnalysis(3, tol=0, max_iter=300, accelerate=False, random_state=0).fit(X)
    assert model.noise_variance_.min() < 2e-6
    expected = multivariate_normal(model.mean_, model.get_covariance()).logpdf(X)
    assert_allclose(model.score_samples(X), expected, rtol=0, atol=1e-8)
    assert np.all(np.diff(model.lower_bounds_) >= 0)


def test_the_fit_is_the_same_in_any_units():
    """Floors relative to each feature's variance and a start from the standardised
    features: rescaling features rescales the fit and shifts the score by the Jacobian."""
    X = heteroscedastic(1000)
    scales = np.array([1e4, 1.0, 1e-3, 1.0, 30.0, 1e-6])[: X.shape[1]]
    plain = FactorAnalysis(2, accelerate=False, tol=1e-12, max_iter=5000, random_state=0)
    scaled = FactorAnalysis(2, accelerate=False, tol=1e-12, max_iter=5000, random_state=0)
    plain.fit(X)
    scaled.fit(X * scales)
    assert_allclose(scaled.score(X * scales) + np.log(scales).sum(), plain.score(X), atol=1e-10)
    assert_allclose(scaled.noise_variance_ / scales**2, plain.noise_variance_, rtol=1e-8)
    assert_allclose(
        scaled.get_covariance() / np.outer(scales, scales), plain.get_covariance(), rtol=1e-7
    )
