"""The demo's numbers, as its sections return them, against independent computations."""

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import train_test_split

from skem import demo
from skem.datasets import load_dequantized_digits, make_low_rank_mixture


@pytest.fixture(scope="module")
def mixture_result():
    return demo.gaussian_mixture()


@pytest.fixture(scope="module")
def ppca_result():
    return demo.probabilistic_pca()


@pytest.fixture(scope="module")
def low_rank_result():
    return demo.mixture_of_ppca()


@pytest.fixture(scope="module")
def digits_split():
    X, _ = load_dequantized_digits()
    return train_test_split(X, random_state=0)


def test_gaussian_mixture_demo_matches_sklearn_and_picks_three_components(mixture_result):
    bounds = mixture_result.lower_bounds
    assert len(bounds) > 3 and np.diff(bounds).min() >= -1e-6  # reg_covar's dip at most
    # the same k-means start as scikit-learn's GaussianMixture: the same model
    assert mixture_result.held_out == pytest.approx(mixture_result.sklearn_held_out, abs=1e-8)
    assert mixture_result.best_n_components == 3
    assert mixture_result.adjusted_rand > 0.75


def test_report_prints_the_returned_numbers_and_each_rise(mixture_result):
    report = demo.format_report({"gaussian_mixture": mixture_result})
    assert f"{mixture_result.held_out:.4f}" in report
    assert f"-> best {mixture_result.best_n_components}" in report
    assert report.count("\n") >= len(mixture_result.lower_bounds) + 5
    rise = mixture_result.lower_bounds[1] - mixture_result.lower_bounds[0]
    assert f"{mixture_result.lower_bounds[1]:11.6f}   {rise:+.2e}" in report


def _closed_form_ppca_held_out(X_train, X_test, n_components):
    """Tipping & Bishop's maximum-likelihood PPCA from the eigenvalues, scored by scipy."""
    mean = X_train.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(X_train.T, bias=True))
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    noise_variance = eigenvalues[n_components:].mean()
    loadings = eigenvectors[:, :n_components] * np.sqrt(eigenvalues[:n_components] - noise_variance)
    covariance = loadings @ loadings.T + noise_variance * np.eye(len(mean))
    return multivariate_normal(mean, covariance).logpdf(X_test).mean(), noise_variance


def test_ppca_demo_scans_every_q_and_its_best_is_the_closed_forms_best(ppca_result, digits_split):
    X_train, X_test = digits_split
    largest = X_train.shape[1] - 1
    assert sorted(ppca_result.held_out) == list(range(1, largest + 1))
    reference = {q: _closed_form_ppca_held_out(X_train, X_test, q) for q in range(1, largest + 1)}
    for q, (held_out, noise_variance) in reference.items():
        assert ppca_result.held_out[q] == pytest.approx(held_out, abs=1e-6)
        assert ppca_result.noise_variance[q] == pytest.approx(noise_variance, rel=1e-8)
    best = max(reference, key=lambda q: reference[q][0])
    assert ppca_result.best_n_components == best < largest
    # q = d - 1 is the full-covariance Gaussian, as the report says
    full = multivariate_normal(X_train.mean(axis=0), np.cov(X_train.T, bias=True))
    assert ppca_result.held_out[largest] == pytest.approx(full.logpdf(X_test).mean(), abs=1e-6)
    report = demo.format_report({"probabilistic_pca": ppca_result})
    assert f"best held-out q of 1 to {largest} (all PPCA allows in 64 dimensions): {best}" in report
    assert f"{largest}  " in report and "= one full-covariance Gaussian" in report
    noise_variance = reference[best][1]
    assert f"its noise variance {noise_variance:.4f}" in report
    assert abs(noise_variance - 1 / 12) < 0.005  # near the added uniform noise's variance


def _observed_log_likelihood(mean, covariance, rows):
    """Mean over rows of scipy's log-density of each row's observed values."""
    values = []
    for row in rows:
        observed = ~np.isnan(row)
        marginal = covariance[np.ix_(observed, observed)]
        values.append(multivariate_normal(mean[observed], marginal).logpdf(row[observed]))
    return np.mean(values)


def test_missing_pixel_lines_compare_like_with_like(ppca_result, digits_split):
    X_train, X_test = digits_split
    missing = X_train.copy()
    missing[np.random.RandomState(0).rand(*missing.shape) < 0.2] = np.nan
    assert ppca_result.mean_observed == pytest.approx(np.sum(~np.isnan(missing)) / len(missing))
    # the complete-data model on the same observed pixels, by scipy's marginals
    X_mean = X_train.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(X_train.T, bias=True))
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    noise_variance = eigenvalues[20:].mean()
    loadings = eigenvectors[:, :20] * np.sqrt(eigenvalues[:20] - noise_variance)
    covariance = loadings @ loadings.T + noise_variance * np.eye(64)
    reference = _observed_log_likelihood(X_mean, covariance, missing)
    assert ppca_result.complete_on_observed == pytest.approx(reference, abs=1e-6)
    # the bound is the same kind of number: the fitted model's observed-pixel log-likelihood
    model = ppca_result.missing_model
    fitted = _observed_log_likelihood(model.mean_, model.get_covariance(), missing)
    assert ppca_result.missing_converged
    assert 0 <= fitted - ppca_result.missing_lower_bounds[-1] < 1e-3
    assert fitted > reference  # EM maximised exactly this quantity
    held_out = multivariate_normal(model.mean_, model.get_covariance()).logpdf(X_test).mean()
    assert ppca_result.missing_held_out == pytest.approx(held_out, abs=1e-6)
    report = demo.format_report({"probabilistic_pca": ppca_result})
    assert f"scores the same observed pixels {reference:.3f}" in report
    assert f"held-out mean log-likelihood of the complete test images: {held_out:.3f}" in report


def test_mixture_of_ppca_demo_climbs_and_separates_what_the_others_cannot(low_rank_result):
    result = low_rank_result
    bounds = result.lower_bounds
    assert len(bounds) >= 3 and np.diff(bounds)[0] > 1  # EM visibly climbs from its start
    assert np.diff(bounds).min() >= -1e-9 * abs(bounds[-1])
    X, labels = make_low_rank_mixture(120, 100, 4, 3, separation=0.5, random_state=0)
    X_train, X_test, _, y_test = train_test_split(X, labels, test_size=0.5, random_state=0)
    model = result.model
    components = [
        multivariate_normal(mean, loadings.T @ loadings + noise * np.eye(100)).logpdf(X_test)
        for mean, loadings, noise in zip(model.means_, model.components_, model.noise_variance_)
    ]
    mixture_density = logsumexp(np.log(model.weights_)[:, None] + np.array(components), axis=0)
    assert result.held_out["MixtureOfPPCA(4, 3)"] == pytest.approx(mixture_density.mean(), abs=1e-6)
    assert result.adjusted_rand["MixtureOfPPCA(4, 3)"] == 1.0
    kmeans = KMeans(4, random_state=0).fit(X_train)
    assert result.adjusted_rand["KMeans(4)"] == adjusted_rand_score(y_test, kmeans.predict(X_test))
    for name in ("EMGaussianMixture(4, 'tied')", "EMGaussianMixture(4, 'diag')", "KMeans(4)"):
        assert result.adjusted_rand[name] < 0.2
    for name in ("EMGaussianMixture(4, 'tied')", "EMGaussianMixture(4, 'diag')"):
        assert result.held_out[name] < result.held_out["MixtureOfPPCA(4, 3)"] - 40
    assert result.n_train // result.n_components < result.n_features  # full: singular
    report = demo.format_report({"mixture_of_ppca": result})
    assert "EMGaussianMixture(4, 'full')" not in report
    assert "about 60 rows, so it is singular" in report


def test_vae_lines_name_the_kept_epoch_and_the_best_ppca():
    validation = np.array([-150.0, -140.0, -139.0, -139.5, -139.2])
    result = demo.VAEDemo(
        n_train=10,
        n_test=5,
        lower_bounds=np.linspace(-160, -150, 5),
        validation_bounds=validation,
        n_iter_no_change=2,
        tol=1e-3,
        elbo=-117.0,
        reconstruction=-101.0,
        kl=16.0,
        n_importance_samples=100,
        held_out=-112.0,
        mixture_held_out=-116.0,
        ppca_n_components=55,
        ppca_held_out=-132.0,
        model=None,
        X_test=None,
        y_test=None,
    )
    report = demo.format_report({"vae": result})
    assert "kept epoch 3, the best validation ELBO (-139.000)" in report
    assert "ProbabilisticPCA(55), the best q above: -132.00" in report
