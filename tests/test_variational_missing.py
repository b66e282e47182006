"""VariationalGaussianMixture with missing values (NaN), against references written here.

The E-step integrates each row's missing values out of the complete-data
expected log-density (checked by quadrature of the complete rows' terms), the
update is Bishop's (10.58-10.63) on the expected statistics of q(x_M | k),
written row by row here, the bound is the ELBO of q(Z, X_M) q(theta) written
with scipy's Wishart entropy, and the predictive density and ``impute`` are
the Student-t mixture's marginal and conditional (checked by quadrature of the
complete rows' predictive density, and by scipy's multivariate t).
"""

from math import log, pi

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import digamma, gammaln, logsumexp, multigammaln

from skem import VariationalGaussianMixture

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

TYPES = ["full", "tied", "diag", "spherical", "tied_diag"]


def data_with_holes(n_per_blob=50, seed=0, share=0.25, one_hole=False):
    """Two correlated blobs in 3-D, about ``share`` of the values missing (each row keeps one)."""
    rng = np.random.RandomState(seed)
    parts = [
        rng.randn(n_per_blob, 3) @ np.array([[1.0, 0.6, 0.2], [0.0, 0.8, 0.5], [0.0, 0.0, 0.4]])
        + center
        for center in ([0.0, 0.0, 0.0], [4.0, -3.0, 2.0])
    ]
    complete = np.vstack(parts)
    holes = rng.rand(*complete.shape) < share
    if one_hole:  # at most one missing value per row (for the quadratures)
        holes &= np.arange(3) == rng.randint(3, size=(len(complete), 1))
    holes[holes.all(axis=1), 0] = False
    data = complete.copy()
    data[holes] = np.nan
    return data, complete


def fit(data, **params):
    params = {"n_components": 3, "random_state": 0, **params}
    return VariationalGaussianMixture(**params).fit(data)


def integrate_missing(function, row):
    """The integral over the one missing coordinate of ``row`` of ``function(full row)``."""
    column = int(np.flatnonzero(np.isnan(row))[0])

    def at(value):
        full = row.copy()
        full[column] = value
        return function(full)

    return integrate.quad(at, -np.inf, np.inf, epsabs=0, epsrel=1e-11, limit=200)[0]


# ---------------------------------------------------------------------- the E-step


@pytest.mark.parametrize("covariance_type", TYPES)
def test_responsibilities_integrate_the_missing_value_out(covariance_type):
    """ln rho_nk(x_O) = ln int exp(E_q[ln pi_k N(x | mu_k, Lambda_k^-1)]) dx_M, the complete
    rows' term, so predict_proba of a row with NaN is that, normalised."""
    data, _ = data_with_holes(one_hole=True)
    model = fit(data, covariance_type=covariance_type)
    rows = data[np.isnan(data).any(axis=1)][:6]
    for row in rows:
        terms = np.array(
            [
                integrate_missing(
                    lambda full, k=k: np.exp(model._estimate_weighted_log_prob(full[None])[0, k]),
                    row,
                )
                for k in range(model.n_components)
            ]
        )
        np.testing.assert_allclose(
            model.predict_proba(row[None])[0], terms / terms.sum(), atol=1e-9
        )


# ---------------------------------------------------------------------- the update


def textbook_iteration(model, data):
    """Responsibilities and Bishop's update from q(theta) of ``model`` ('full',
    Dirichlet distribution), row by row: q(x_M | k) = N(m_M - P_MM^-1 P_MO (x_O -
    m_O), P_MM^-1) with P = E[Lambda_k]; the statistics take its mean and covariance."""
    n_components, d = model.means_.shape
    nu, beta, means = model.degrees_of_freedom_, model.mean_precision_, model.means_
    precision = model.precisions_
    scale = precision / nu[:, None, None]  # W_k
    alpha = model.weight_concentration_
    log_pi = digamma(alpha) - digamma(alpha.sum())
    log_det_lambda = np.array(
        [
            digamma(0.5 * (nu[k] - np.arange(d))).sum()
            + d * log(2)
            + np.linalg.slogdet(scale[k])[1]
            for k in range(n_components)
        ]
    )
    log_rho = np.zeros((len(data), n_components))
    filled = np.zeros((len(data), n_components, d))
    covariances = np.zeros((len(data), n_components, d, d))
    for n, row in enumerate(data):
        o, m = ~np.isnan(row), np.isnan(row)
        for k in range(n_components):
            p = precision[k]
            sigma_oo = np.linalg.inv(p)[np.ix_(o, o)]
            offset = row[o] - means[k][o]
            log_det_mm = np.linalg.slogdet(p[np.ix_(m, m)])[1] if m.any() else 0.0
            log_rho[n, k] = (
                log_pi[k]
                + 0.5 * log_det_lambda[k]
                - 0.5 * d / beta[k]
                - 0.5 * o.sum() * log(2 * pi)
                - 0.5 * log_det_mm
                - 0.5 * offset @ np.linalg.solve(sigma_oo, offset)
            )
            filled[n, k] = row
            if m.any():
                conditional = np.linalg.inv(p[np.ix_(m, m)])
                filled[n, k, m] = means[k][m] - conditional @ p[np.ix_(m, o)] @ offset
                covariances[n, k][np.ix_(m, m)] = conditional
    r = np.exp(log_rho - logsumexp(log_rho, axis=1, keepdims=True))
    # Bishop 10.51-10.53 and 10.58-10.63
    nk = r.sum(axis=0) + 10 * np.finfo(float).eps
    xbar = np.einsum("nk,nkd->kd", r, filled) / nk[:, None]
    spread = np.zeros((n_components, d, d))
    for k in range(n_components):
        centered = filled[:, k] - xbar[k]
        spread[k] = np.einsum("n,ni,nj->ij", r[:, k], centered, centered)
        spread[k] += np.einsum("n,nij->ij", r[:, k], covariances[:, k])
    beta0, m0, nu0 = model.mean_precision_prior_, model.mean_prior_, model.degrees_of_freedom_prior_
    new_beta = beta0 + nk
    new_means = (beta0 * m0 + nk[:, None] * xbar) / new_beta[:, None]
    new_nu = nu0 + nk
    inverse_scale = np.array(
        [
            model.covariance_prior_
            + spread[k]
            + beta0 * nk[k] / new_beta[k] * np.outer(xbar[k] - m0, xbar[k] - m0)
            for k in range(n_components)
        ]
    )
    new_precisions = np.array([new_nu[k] * np.linalg.inv(inverse_scale[k]) for k in range(3)])
    return log_rho, {
        "weight_concentration_": model.weight_concentration_prior_ + nk,
        "mean_precision_": new_beta,
        "means_": new_means,
        "degrees_of_freedom_": new_nu,
        "precisions_": new_precisions,
    }


def test_one_iteration_is_the_textbook_update_row_by_row():
    data, _ = data_with_holes()
    params = dict(weight_concentration_prior_type="dirichlet_distribution", reg_covar=0.0)
    model = fit(data, max_iter=3, **params)
    _, expected = textbook_iteration(model, data)
    model.set_params(warm_start=True, max_iter=1).fit(data)
    for name, value in expected.items():
        np.testing.assert_allclose(getattr(model, name), value, rtol=1e-9, err_msg=name)


def textbook_bound(model, data):
    """The ELBO of q(Z, X_M) optimal for q(theta) of ``model``, per row: sum_n ln sum_k
    rho_nk less the divergences of q(weights) and of each q(mu_k, Lambda_k)."""
    log_rho, _ = textbook_iteration(model, data)
    n_components, d = model.means_.shape
    alpha, alpha0 = model.weight_concentration_, model.weight_concentration_prior_
    weights_kl = (
        gammaln(alpha.sum())
        - gammaln(alpha).sum()
        - gammaln(n_components * alpha0)
        + n_components * gammaln(alpha0)
        + np.sum((alpha - alpha0) * (digamma(alpha) - digamma(alpha.sum())))
    )
    nu0, beta0, m0 = model.degrees_of_freedom_prior_, model.mean_precision_prior_, model.mean_prior_
    prior_inverse_scale = model.covariance_prior_
    components_kl = 0.0
    for k in range(n_components):
        nu, beta, m = model.degrees_of_freedom_[k], model.mean_precision_[k], model.means_[k]
        expected_lambda = model.precisions_[k]
        scale = expected_lambda / nu
        log_det_lambda = (
            digamma(0.5 * (nu - np.arange(d))).sum() + d * log(2) + np.linalg.slogdet(scale)[1]
        )
        prior_log_norm = (
            0.5 * nu0 * np.linalg.slogdet(prior_inverse_scale)[1]
            - 0.5 * nu0 * d * log(2)
            - multigammaln(0.5 * nu0, d)
        )
        cross = (
            prior_log_norm
            + 0.5 * (nu0 - d - 1) * log_det_lambda
            - 0.5 * np.trace(prior_inverse_scale @ expected_lambda)
        )
        components_kl += -stats.wishart(df=nu, scale=scale).entropy() - cross
        components_kl += 0.5 * (
            d * beta0 / beta
            - d
            + d * log(beta / beta0)
            + beta0 * (m - m0) @ expected_lambda @ (m - m0)
        )
    return (logsumexp(log_rho, axis=1).sum() - weights_kl - components_kl) / len(data)


def test_bound_is_the_elbo_of_the_missing_values_too():
    data, _ = data_with_holes()
    model = fit(
        data,
        weight_concentration_prior_type="dirichlet_distribution",
        reg_covar=0.0,
        tol=1e-12,
        max_iter=500,
    )
    assert model.converged_
    assert model.lower_bound_ == pytest.approx(textbook_bound(model, data), rel=0, abs=1e-8)


@pytest.mark.parametrize("covariance_type", TYPES)
@pytest.mark.parametrize("prior_type", ["dirichlet_process", "dirichlet_distribution"])
def test_bound_never_falls_with_missing_values(covariance_type, prior_type):
    data, _ = data_with_holes(share=0.4)
    model = fit(
        data,
        covariance_type=covariance_type,
        weight_concentration_prior_type=prior_type,
        reg_covar=0.0,
        tol=0,
        max_iter=60,
        init_params="random",
    )
    bounds = np.asarray(model.lower_bounds_)
    assert np.all(np.isfinite(bounds))
    assert np.diff(bounds).min() > -1e-12 * np.abs(bounds).max()


def test_badly_scaled_features_with_missing_values_fit_as_the_rescaled_data():
    """Features 1e-4 and 1e4 apart: the same fit as the standardised data, up to the
    Jacobian (the default priors are the data's moments, so the fit is scale-equivariant)."""
    data, _ = data_with_holes(share=0.3)
    factors = np.array([1e-4, 1.0, 1e4])
    params = dict(tol=0, max_iter=40, reg_covar=0.0, init_params="random")
    plain, scaled = fit(data, **params), fit(data * factors, **params)
    np.testing.assert_allclose(scaled.means_, plain.means_ * factors, rtol=1e-7)
    # (a row's density is of its observed values: the Jacobian of those)
    jacobian = (np.log(factors) * ~np.isnan(data)).sum(axis=1)
    np.testing.assert_allclose(
        np.asarray(scaled.lower_bounds_),
        np.asarray(plain.lower_bounds_) - jacobian.mean(),
        rtol=1e-9,
    )
    np.testing.assert_allclose(
        scaled.score_samples(data * factors), plain.score_samples(data) - jacobian, rtol=1e-9
    )


# ---------------------------------------------------------------------- priors, weights, dask


def test_default_priors_are_the_observed_moments():
    data, _ = data_with_holes(share=0.3)
    model = fit(data, max_iter=2)
    np.testing.assert_allclose(model.mean_prior_, np.nanmean(data, axis=0), rtol=1e-12)
    prior = model.covariance_prior_
    np.testing.assert_allclose(np.diag(prior), np.nanvar(data, axis=0, ddof=1), rtol=1e-12)
    assert np.linalg.eigvalsh(prior).min() > 0
    diag = fit(data, covariance_type="diag", max_iter=2)
    np.testing.assert_allclose(diag.covariance_prior_, np.nanvar(data, axis=0, ddof=1), rtol=1e-12)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_integer_weights_equal_repeated_rows_with_missing_values(covariance_type):
    data, _ = data_with_holes(share=0.3)
    counts = np.random.RandomState(1).randint(0, 4, size=len(data))
    params = dict(covariance_type=covariance_type, max_iter=20, tol=0, random_state=0)
    weighted = VariationalGaussianMixture(n_components=3, **params)
    weighted.fit(data, sample_weight=counts)
    repeated = VariationalGaussianMixture(n_components=3, **params)
    repeated.fit(np.repeat(data, counts, axis=0))
    np.testing.assert_allclose(weighted.covariance_prior_, repeated.covariance_prior_, rtol=1e-12)
    np.testing.assert_allclose(weighted.mean_prior_, repeated.mean_prior_, rtol=1e-12)
    order_w = np.argsort(weighted.means_[:, 0])
    order_r = np.argsort(repeated.means_[:, 0])
    np.testing.assert_allclose(weighted.means_[order_w], repeated.means_[order_r], rtol=1e-8)
    np.testing.assert_allclose(weighted.lower_bounds_, repeated.lower_bounds_, rtol=1e-9)


def test_dask_array_with_missing_values_fits_as_in_memory():
    da = pytest.importorskip("dask.array")
    data, _ = data_with_holes(share=0.3)
    params = dict(init_params="random_from_data", max_iter=15, tol=0)
    in_memory = fit(data, **params)
    chunked = fit(da.from_array(data, chunks=(30, 3)), **params)
    np.testing.assert_allclose(chunked.means_, in_memory.means_, rtol=1e-10)
    np.testing.assert_allclose(chunked.lower_bounds_, in_memory.lower_bounds_, rtol=1e-10)


def test_partial_fit_takes_missing_values():
    data, complete = data_with_holes(n_per_blob=400, share=0.2, seed=3)
    rng = np.random.RandomState(0)
    order = rng.permutation(len(data))
    model = VariationalGaussianMixture(n_components=2, random_state=0, total_samples=len(data))
    for batch in np.array_split(order, 8):
        model.partial_fit(data[batch])
    batch_fit = fit(data, n_components=2)
    assert model.score(data) == pytest.approx(batch_fit.score(data), abs=0.05)
    assert np.all(np.isfinite(model.score_samples(data)))


# ---------------------------------------------------------------------- predictive and impute


def student_marginal_by_scipy(model, row):
    """ln sum_k weights_k St(x_O | m_O, ((L_k^-1)_OO)^-1, nu_k + 1 - d) ('full')."""
    observed = ~np.isnan(row)
    n_features = row.size
    total = 0.0
    for k in range(model.n_components):
        dof = model.degrees_of_freedom_[k] + 1 - n_features
        beta = model.mean_precision_[k]
        scale = dof * beta / ((1 + beta) * model.degrees_of_freedom_[k])
        shape = model.covariances_[k][np.ix_(observed, observed)] / scale
        t = stats.multivariate_t(loc=model.means_[k][observed], shape=shape, df=dof)
        total += model.weights_[k] * t.pdf(row[observed])
    return np.log(total)


def test_score_samples_of_rows_with_nan_is_the_predictives_marginal():
    data, _ = data_with_holes(n_per_blob=15, share=0.4)  # (few rows: heavy tails)
    model = fit(data)
    rows = data[np.isnan(data).any(axis=1)]
    expected = [student_marginal_by_scipy(model, row) for row in rows]
    np.testing.assert_allclose(model.score_samples(rows), expected, rtol=1e-10)
    # complete rows in the same call keep their density
    np.testing.assert_allclose(model.score_samples(data)[np.isnan(data).any(axis=1)], expected)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_marginal_density_and_imputation_integrate_the_complete_density(covariance_type):
    """score_samples(x_O) = ln int p(x) dx_M, and impute gives int x_M p(x) dx_M / p(x_O)."""
    data, _ = data_with_holes(n_per_blob=15, share=0.3, one_hole=True)
    model = fit(data, covariance_type=covariance_type)
    rows = data[np.isnan(data).any(axis=1)][:5]
    imputed = model.impute(rows)
    for row, filled in zip(rows, imputed):
        column = np.flatnonzero(np.isnan(row))[0]

        def density(full):
            return np.exp(model.score_samples(full[None])[0])

        mass = integrate_missing(density, row)
        first = integrate_missing(lambda full: full[column] * density(full), row)
        assert model.score_samples(row[None])[0] == pytest.approx(np.log(mass), abs=1e-9)
        assert filled[column] == pytest.approx(first / mass, rel=1e-8, abs=1e-8)
        np.testing.assert_array_equal(np.delete(filled, column), np.delete(row, column))


def test_imputation_draws_follow_the_student_t_conditional():
    """One component, few rows (a heavy-tailed predictive): the draws' mean and variance
    of the missing value are the conditional's, by quadrature of the complete density."""
    rng = np.random.RandomState(0)
    data = rng.randn(12, 2) @ np.array([[1.0, 0.7], [0.0, 0.5]])
    model = VariationalGaussianMixture(n_components=1, random_state=0).fit(data)
    row = np.array([1.5, np.nan])

    def density(full):
        return np.exp(model.score_samples(full[None])[0])

    mass = integrate_missing(density, row)
    mean = integrate_missing(lambda full: full[1] * density(full), row) / mass
    variance = integrate_missing(lambda full: (full[1] - mean) ** 2 * density(full), row) / mass
    draws = model.impute(np.tile(row, (40_000, 1)), sample_posterior=True, random_state=0)[:, 1]
    assert draws.mean() == pytest.approx(mean, abs=4 * np.sqrt(variance / draws.size))
    assert draws.var() == pytest.approx(variance, rel=0.05)
    # a Gaussian with that variance would have lighter tails: the draws' kurtosis is a t's
    excess = stats.kurtosis(draws)
    assert excess > 0.1
    again = model.impute(np.tile(row, (40_000, 1)), sample_posterior=True, random_state=0)
    np.testing.assert_array_equal(again[:, 1], draws)


def test_a_given_covariance_prior_needs_no_spread_of_the_data():
    """With covariance_prior given only the mean of X is taken: weights summing to
    less than one, or a column observed once, do not matter (they did: review)."""
    rng = np.random.RandomState(0)
    data = rng.randn(40, 3)
    model = VariationalGaussianMixture(n_components=2, covariance_prior=np.eye(3), random_state=0)
    model.fit(data, sample_weight=np.full(40, 1 / 40))
    np.testing.assert_allclose(model.mean_prior_, data.mean(axis=0), rtol=1e-12)
    once = data.copy()
    once[1:, 2] = np.nan
    model.fit(once)
    np.testing.assert_allclose(model.mean_prior_, np.nanmean(once, axis=0), rtol=1e-12)
    assert np.all(np.isfinite(model.lower_bounds_))
    with pytest.raises(ValueError, match=r"Columns \[2\] of X are observed in rows of total"):
        VariationalGaussianMixture(n_components=2).fit(once)


@pytest.mark.parametrize(
    "estimator", ["VariationalGaussianMixture", "EMGaussianMixture", "MixtureOfPPCA"]
)
def test_a_start_from_rows_missing_a_column_does_not_depend_on_the_origin(estimator):
    """random_from_data picks rows that may all miss a column: the start's centre there
    is the data's column mean, so shifting the column shifts the fit (it was 0: review)."""
    import skem

    rng = np.random.RandomState(0)
    data = np.column_stack([rng.randn(200), 1000 + rng.randn(200), rng.randn(200)])
    data[rng.rand(200) < 0.7, 1] = np.nan
    shift = np.array([0.0, 1000.0, 0.0])
    params = dict(n_components=2, init_params="random_from_data", random_state=2, max_iter=20)
    model = getattr(skem, estimator)
    here = model(**params, tol=0).fit(data)
    moved = model(**params, tol=0).fit(data - shift)
    np.testing.assert_allclose(here.means_, moved.means_ + shift, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(here.lower_bounds_, moved.lower_bounds_, rtol=1e-9)
