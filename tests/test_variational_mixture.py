"""VariationalGaussianMixture against scikit-learn, closed forms and scipy's Student-t."""

import warnings
from math import lgamma, log, pi

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy import integrate, stats
from scipy.special import betaln, multigammaln
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture
from sklearn.mixture._bayesian_mixture import _log_wishart_norm

from skem import VariationalGaussianMixture
from skem._core._covariance import COVARIANCES
from skem.mixture._variational_maths import (
    Moments,
    Posterior,
    Priors,
    evidence_lower_bound,
    weight_concentration,
    wishart_update,
)

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
PRIOR_TYPES = ["dirichlet_process", "dirichlet_distribution"]
INITS = ["kmeans", "k-means++", "random", "random_from_data"]

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def blobs(n_per_blob=60, n_features=3, n_blobs=3, seed=0):
    """Three correlated Gaussian blobs, well apart."""
    rng = np.random.RandomState(seed)
    parts = [
        rng.randn(n_per_blob, n_features) @ rng.randn(n_features, n_features)
        + 6 * rng.randn(n_features)
        for _ in range(n_blobs)
    ]
    return np.vstack(parts)


X = blobs()


def both(**params):
    """scikit-learn's and skem's fits with the same parameters."""
    return BayesianGaussianMixture(**params).fit(X), VariationalGaussianMixture(**params).fit(X)


def deviation(reference, model, data=X):
    """Largest absolute difference of the parameters and of ``predict_proba``."""
    names = ["weights_", "means_", "covariances_", "precisions_cholesky_", "mean_precision_"]
    names += ["degrees_of_freedom_"]
    gaps = [np.max(np.abs(np.asarray(getattr(reference, n)) - getattr(model, n))) for n in names]
    gaps.append(
        np.max(
            np.abs(
                np.ravel(reference.weight_concentration_) - np.ravel(model.weight_concentration_)
            )
        )
    )
    gaps.append(np.max(np.abs(reference.predict_proba(data) - model.predict_proba(data))))
    return max(gaps)


def sklearn_bound_constant(model, n_samples):
    """What scikit-learn's bound leaves out of the ELBO (REFERENCE.md), in its own
    Wishart normaliser (which omits the ln(pi) term, as does its bound)."""
    n_components, n_features = model.means_.shape
    prior = np.atleast_2d(model.covariance_prior_)
    if model.covariance_type in ("full", "tied"):
        log_det_prior = np.linalg.slogdet(prior)[1]
    else:
        log_det_prior = np.log(model.covariance_prior_).sum() * (
            n_features if model.covariance_type == "spherical" else 1
        )
    log_wishart = _log_wishart_norm(
        np.array([model.degrees_of_freedom_prior_]), np.array([-0.5 * log_det_prior]), n_features
    )[0]
    gamma = model.weight_concentration_prior_
    if model.weight_concentration_prior_type == "dirichlet_distribution":
        log_weights = lgamma(n_components * gamma) - n_components * lgamma(gamma)
    else:
        log_weights = n_components * log(gamma)
    return (
        -0.5 * n_samples * n_features * log(2 * pi)
        + n_components * log_wishart
        + 0.5 * n_components * n_features * log(model.mean_precision_prior_)
        + log_weights
    )


# ---------------------------------------------------------------------- parity


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
def test_parameters_and_bound_equal_sklearn_every_iteration(covariance_type, prior_type):
    params = dict(
        n_components=5,
        covariance_type=covariance_type,
        weight_concentration_prior_type=prior_type,
        reg_covar=0,
        max_iter=25,
        tol=0,
        random_state=1,
    )
    reference, model = both(**params)
    assert deviation(reference, model) < 1e-8
    converted = (np.ravel(reference.lower_bounds_) + sklearn_bound_constant(model, len(X))) / len(X)
    assert model.lower_bounds_.shape == (25,)
    np.testing.assert_allclose(model.lower_bounds_, converted, rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    "covariance_type, init_params",
    [
        (covariance_type, init_params)
        for covariance_type in COVARIANCE_TYPES
        for init_params in INITS
        # (scikit-learn's tied start from one-hot rows differs: see the next test)
        if not (covariance_type == "tied" and init_params in ("k-means++", "random_from_data"))
    ],
)
def test_every_start_equals_sklearn_with_the_default_floor(covariance_type, init_params):
    # (n_init=2 with the Dirichlet process only: restarts that find the same
    # clusters in another order tie under a Dirichlet distribution, and
    # rounding then picks one)
    for prior_type, n_init in [("dirichlet_process", 2), ("dirichlet_distribution", 1)]:
        reference, model = both(
            n_components=4,
            covariance_type=covariance_type,
            weight_concentration_prior_type=prior_type,
            init_params=init_params,
            n_init=n_init,
            max_iter=15,
            tol=0,
            random_state=3,
        )
        assert deviation(reference, model) < 1e-8


@pytest.mark.parametrize("init_params", ["k-means++", "random_from_data"])
def test_tied_from_a_one_hot_start_equals_sklearn_from_the_same_start(init_params):
    """With one row per component, scikit-learn's first tied update reads the
    uncentred X^T X of *every* row (its formula assumes each row's
    responsibilities sum to one), which is not translation-invariant; skem
    uses the chosen rows only. From the same start the fits agree."""
    params = dict(
        n_components=4, covariance_type="tied", init_params=init_params, tol=0, random_state=2
    )
    reference = BayesianGaussianMixture(max_iter=0, **params).fit(X)
    model = VariationalGaussianMixture(max_iter=0, **params).fit(X)
    names = ["weight_concentration_", "mean_precision_", "means_", "degrees_of_freedom_"]
    for name in [*names, "covariances_", "precisions_cholesky_", "weights_"]:
        setattr(model, name, getattr(reference, name))
    reference.set_params(max_iter=20, warm_start=True).fit(X)
    model.set_params(max_iter=20, warm_start=True).fit(X)
    assert deviation(reference, model) < 1e-8


# ---------------------------------------------------------------------- the bound


def conjugate_log_evidence(data, mean_prior, mean_precision, dof, scale_inverse):
    """ln p(X) of one Gaussian with a Normal-Wishart prior (Murphy 2007, eq. 266)."""
    n, d = data.shape
    mean = data.mean(axis=0)
    centered = data - mean
    offset = mean - mean_prior
    posterior_precision = mean_precision + n
    posterior_scale_inverse = (
        scale_inverse
        + centered.T @ centered
        + mean_precision * n / posterior_precision * np.outer(offset, offset)
    )
    return (
        -0.5 * n * d * log(pi)
        + multigammaln(0.5 * (dof + n), d)
        - multigammaln(0.5 * dof, d)
        + 0.5 * dof * np.linalg.slogdet(scale_inverse)[1]
        - 0.5 * (dof + n) * np.linalg.slogdet(posterior_scale_inverse)[1]
        + 0.5 * d * log(mean_precision / posterior_precision)
    )


@pytest.mark.parametrize(
    "covariance_type, n_features",
    [("full", 3), ("tied", 3), ("diag", 1), ("spherical", 1), ("tied_diag", 1)],
)
@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
def test_one_component_bound_is_the_log_evidence(covariance_type, n_features, prior_type):
    """With one component q is the exact posterior, so the ELBO is ln p(X) (for the
    Dirichlet process, ln p(X, all rows in the first component): the first stick
    leaves mass to the others, and E[v^N] = B(1 + N, gamma) / B(1, gamma))."""
    data = X[:, :n_features]
    model = VariationalGaussianMixture(
        covariance_type=covariance_type,
        weight_concentration_prior_type=prior_type,
        reg_covar=0,
        max_iter=1,
        mean_precision_prior=0.3,
        degrees_of_freedom_prior=n_features + 1.5,
    ).fit(data)
    expected = conjugate_log_evidence(
        data, model.mean_prior_, 0.3, n_features + 1.5, np.atleast_2d(model.covariance_prior_)
    )
    if prior_type == "dirichlet_process":  # (gamma = 1 with one component)
        expected += betaln(1 + len(data), 1.0) - betaln(1.0, 1.0)
    assert model.lower_bound_ * len(data) == pytest.approx(expected, rel=0, abs=1e-9)


@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
def test_the_update_maximises_the_bound_given_the_responsibilities(prior_type):
    """Central differences of the ELBO along every parameter of q(theta) vanish
    at the update (and the bound is lower on both sides)."""
    rng = np.random.RandomState(0)
    data = X[:40]
    responsibilities = rng.dirichlet(np.ones(3), size=len(data))
    nk = responsibilities.sum(axis=0)
    means = responsibilities.T @ data / nk[:, None]
    scatter = np.array(
        [
            (responsibilities[:, k, None] * (data - means[k])).T @ (data - means[k]) / nk[k]
            for k in range(3)
        ]
    )
    covariance = COVARIANCES["full"]
    prior_cov = np.cov(data.T)
    priors = Priors(0.4, 0.7, data.mean(axis=0), 4.0, prior_cov, -np.linalg.slogdet(prior_cov)[1])
    moments = Moments(nk, means, scatter)
    entropy = float(-(responsibilities * np.log(responsibilities)).sum())

    def bound(concentration, beta, m, dof, covariances):
        precisions = np.linalg.inv(covariances)
        posterior = Posterior(
            concentration,
            beta,
            m,
            dof,
            precisions,
            0.5 * np.linalg.slogdet(precisions)[1],
        )
        return evidence_lower_bound(covariance, priors, posterior, moments, entropy, prior_type)

    concentration = weight_concentration(nk, 0.4, prior_type)
    beta = 0.7 + nk
    m = (0.7 * priors.mean + nk[:, None] * means) / beta[:, None]
    dof, covariances = wishart_update(covariance, priors, moments, beta, 0.0)
    optimum = (concentration, beta, m, dof, covariances)
    best = bound(*optimum)
    directions = {
        "concentration": lambda h: (
            concentration + h
            if prior_type == "dirichlet_distribution"
            else (concentration[0] + h, concentration[1] - h)
        ),
        "beta": lambda h: beta + h,
        "m": lambda h: m + h * np.array([1.0, -2.0, 0.5]),
        "dof": lambda h: dof + h,
        "covariances": lambda h: covariances * (1 + h),
    }
    h = 1e-5
    for index, (name, move) in enumerate(directions.items()):
        sides = []
        for step in (h, -h):
            moved = list(optimum)
            moved[index] = move(step)
            sides.append(bound(*moved))
        assert abs(sides[0] - sides[1]) / (2 * h) < 1e-4, name
        assert max(sides) <= best, name


@pytest.mark.parametrize("covariance_type", [*COVARIANCE_TYPES, "tied_diag"])
@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
def test_bound_never_falls_without_floor(covariance_type, prior_type):
    model = VariationalGaussianMixture(
        n_components=6,
        covariance_type=covariance_type,
        weight_concentration_prior_type=prior_type,
        reg_covar=0,
        max_iter=60,
        tol=0,
        init_params="random",
        random_state=0,
    ).fit(X)
    assert np.all(np.diff(model.lower_bounds_) >= -1e-12)


def test_tol_applies_to_the_per_sample_bound():
    model = VariationalGaussianMixture(n_components=4, tol=1e-2, random_state=0).fit(X)
    changes = np.abs(np.diff(model.lower_bounds_))
    assert model.converged_ and changes[-1] < 1e-2 and np.all(changes[:-1] >= 1e-2)


# ---------------------------------------------------------------------- predictive


def predictive_by_scipy(model, data):
    """sum_k weights_[k] St(x | means_[k], L_k, nu_k + 1 - d), from the fitted attributes."""
    n_components, n_features = model.means_.shape
    dof = np.broadcast_to(model.degrees_of_freedom_, (n_components,))
    density = np.zeros(len(data))
    for k in range(n_components):
        covariance = {
            "full": lambda: model.covariances_[k],
            "tied": lambda: model.covariances_,
            "diag": lambda: np.diag(model.covariances_[k]),
            "spherical": lambda: model.covariances_[k] * np.eye(n_features),
            "tied_diag": lambda: np.diag(model.covariances_),
        }[model.covariance_type]()
        t_dof = dof[k] + 1 - n_features
        beta = model.mean_precision_[k]
        scale = t_dof * beta / ((1 + beta) * dof[k])  # L_k = scale * precisions_[k]
        t = stats.multivariate_t(loc=model.means_[k], shape=covariance / scale, df=t_dof)
        density += model.weights_[k] * t.pdf(data)
    return np.log(density)


@pytest.mark.parametrize("covariance_type", [*COVARIANCE_TYPES, "tied_diag"])
@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
def test_score_samples_is_the_student_t_mixture(covariance_type, prior_type):
    model = VariationalGaussianMixture(
        n_components=4,
        covariance_type=covariance_type,
        weight_concentration_prior_type=prior_type,
        random_state=0,
    ).fit(X)
    points = np.vstack([X[::7], blobs(5, seed=4) * 1.5])
    np.testing.assert_allclose(
        model.score_samples(points), predictive_by_scipy(model, points), rtol=1e-10
    )


def test_predictive_density_integrates_to_one_in_1d():
    data = np.random.RandomState(0).randn(20, 1)
    data[:8] += 4
    model = VariationalGaussianMixture(n_components=3, random_state=0).fit(data)
    total, error = integrate.quad(
        lambda x: np.exp(model.score_samples([[x]])[0]), -np.inf, np.inf, limit=200
    )
    assert total == pytest.approx(1.0, abs=1e-7)


def test_sample_draws_from_the_predictive():
    data = np.random.RandomState(0).randn(8, 1) * 2 + 1
    model = VariationalGaussianMixture(random_state=0).fit(data)
    draws, labels = model.sample(20_000, random_state=0)
    assert np.all(labels == 0)
    t_dof = model.degrees_of_freedom_[0]
    beta = model.mean_precision_[0]
    scale = np.sqrt(model.covariances_[0, 0] * (1 + beta) / beta)  # 1-D: shape = cov / scale
    predictive = stats.t(df=t_dof, loc=model.means_[0, 0], scale=scale)
    assert stats.kstest(draws[:, 0], predictive.cdf).pvalue > 0.05
    normal = stats.norm(loc=model.means_[0, 0], scale=np.sqrt(model.covariances_[0, 0]))
    assert stats.kstest(draws[:, 0], normal.cdf).pvalue < 1e-3  # not the plug-in


# ---------------------------------------------------------------------- data


def test_integer_weights_equal_repeated_rows():
    rng = np.random.RandomState(0)
    counts = rng.randint(0, 4, size=len(X))
    params = dict(
        n_components=3,
        weight_concentration_prior_type="dirichlet_distribution",
        max_iter=30,
        tol=0,
        random_state=0,
    )
    weighted = VariationalGaussianMixture(**params).fit(X, sample_weight=counts)
    repeated = VariationalGaussianMixture(**params).fit(np.repeat(X, counts, axis=0))
    order_w, order_r = np.argsort(weighted.means_[:, 0]), np.argsort(repeated.means_[:, 0])
    for name in ["weights_", "means_", "covariances_", "mean_precision_", "degrees_of_freedom_"]:
        np.testing.assert_allclose(
            getattr(weighted, name)[order_w], getattr(repeated, name)[order_r], rtol=1e-9
        )
    np.testing.assert_allclose(weighted.covariance_prior_, repeated.covariance_prior_, rtol=1e-12)
    np.testing.assert_allclose(weighted.lower_bounds_, repeated.lower_bounds_, rtol=1e-9)


def test_one_feature_types_agree():
    """In one dimension full, diag and spherical are one model, and so are tied and tied_diag."""
    data = X[:, :1]
    fits = {
        kind: VariationalGaussianMixture(
            n_components=3, covariance_type=kind, max_iter=20, tol=0, random_state=0
        ).fit(data)
        for kind in [*COVARIANCE_TYPES, "tied_diag"]
    }
    for first, second in [("full", "diag"), ("full", "spherical"), ("tied", "tied_diag")]:
        np.testing.assert_allclose(
            fits[first].lower_bounds_, fits[second].lower_bounds_, rtol=1e-12
        )
        np.testing.assert_allclose(
            np.ravel(fits[first].covariances_), np.ravel(fits[second].covariances_), rtol=1e-10
        )


def test_effective_components_count_the_used_ones():
    model = VariationalGaussianMixture(
        n_components=8, weight_concentration_prior=1e-3, max_iter=500, random_state=0
    ).fit(X)
    counts = model.mean_precision_ - model.mean_precision_prior_
    assert model.n_components_effective_ == 3 == np.count_nonzero(counts >= 1)
    assert np.isclose(counts.sum(), len(X))


def test_dask_array_fits_as_in_memory():
    da = pytest.importorskip("dask.array")
    params = dict(n_components=3, init_params="random_from_data", max_iter=10, random_state=0)
    in_memory = VariationalGaussianMixture(**params).fit(X)
    chunked = VariationalGaussianMixture(**params).fit(da.from_array(X, chunks=50))
    np.testing.assert_allclose(chunked.means_, in_memory.means_, rtol=1e-12)
    np.testing.assert_allclose(chunked.lower_bounds_, in_memory.lower_bounds_, rtol=1e-12)


# ---------------------------------------------------------------------- checks


@pytest.mark.parametrize(
    "params, message",
    [
        ({"covariance_prior": np.eye(2)}, "'full covariance_prior' should have the shape"),
        ({"covariance_prior": -np.eye(3)}, "'full precision' should be symmetric, positive"),
        (
            {"covariance_type": "diag", "covariance_prior": [1.0, -1.0, 1.0]},
            "'diag precision' should be positive",
        ),
        ({"mean_prior": [0.0, 1.0]}, "The parameter 'means' should have the shape of"),
        ({"degrees_of_freedom_prior": 2.0}, "should be greater than 2, but got 2.000"),
    ],
)
def test_bad_priors_raise_and_leave_the_model_unchanged(params, message):
    model = VariationalGaussianMixture(n_components=2, random_state=0).fit(X)
    before = {name: np.copy(value) for name, value in vars(model).items() if name.endswith("_")}
    with pytest.raises(ValueError, match=message):
        model.set_params(**params).fit(X)
    for name, value in before.items():
        np.testing.assert_array_equal(getattr(model, name), value)


def test_singular_prior_covariance_still_fits():
    """Fewer rows than features: the default prior's covariance is singular (as in
    scikit-learn, which fits); the bound is then its finite part."""
    data = np.random.RandomState(0).rand(8, 12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = VariationalGaussianMixture(n_components=2, random_state=0).fit(data)
        reference = BayesianGaussianMixture(n_components=2, random_state=0).fit(data)
    assert np.all(np.isfinite(model.lower_bounds_))
    # (precisions near 1 / reg_covar in the null directions amplify rounding)
    assert deviation(reference, model, data) < 1e-6


# ---------------------------------------------------------------------- partial_fit (SVI)


def _svi_blobs(seed=0):
    rng = np.random.RandomState(seed)
    X = np.vstack([rng.normal(c, 0.5, size=(150, 2)) for c in ([0, 0], [5, 0], [0, 5])])
    rng.shuffle(X)
    return X


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_partial_fit_on_the_fitted_data_is_a_fixed_point(covariance_type):
    """With total_samples = N, a step on the rows a converged fit saw changes nothing,
    and its batch bound is the fit's bound (the ELBO of the same q(Z) and q(theta))."""
    X = _svi_blobs()
    weights = np.random.RandomState(1).uniform(0.5, 2.0, size=len(X))
    model = VariationalGaussianMixture(
        n_components=3,
        covariance_type=covariance_type,
        reg_covar=0.0,
        tol=1e-12,
        max_iter=2000,
        random_state=0,
        total_samples=weights.sum(),
    ).fit(X, sample_weight=weights)
    fitted = {
        name: np.copy(getattr(model, name)) for name in ("weights_", "means_", "covariances_")
    }
    bound = model.lower_bound_
    model.partial_fit(X, sample_weight=weights)
    for name, value in fitted.items():
        assert_allclose(getattr(model, name), value, rtol=1e-9, atol=1e-12)
    assert_allclose(model.lower_bounds_[-1], bound, rtol=1e-9)


def test_one_svi_step_is_the_update_of_the_running_moments_by_hand():
    """fit on A, then partial_fit on B: q(Z) of B from the fitted q, moments averaged with
    step (offset + n_A / n_B) ** -decay, and Bishop's updates (10.58-10.63) with N = n_A + n_B."""
    X = _svi_blobs()
    A, B = X[:300], X[300:]
    model = VariationalGaussianMixture(
        n_components=3,
        weight_concentration_prior_type="dirichlet_distribution",
        reg_covar=0.0,
        tol=1e-12,
        max_iter=2000,
        random_state=0,
    ).fit(A)

    def moments(rows, r):
        nk = r.sum(axis=0)
        means = r.T @ rows / nk[:, None]
        second = np.einsum("nk,nd,ne->kde", r, rows, rows) / nk[:, None, None]
        return nk / len(rows), means, second  # shares, means, raw second moments

    n_a, mean_a, second_a = moments(A, model.predict_proba(A))
    n_b, mean_b, second_b = moments(B, model.predict_proba(B))
    step = (10.0 + len(A) / len(B)) ** -0.7
    n = (1 - step) * n_a + step * n_b
    mean = ((1 - step) * n_a[:, None] * mean_a + step * n_b[:, None] * mean_b) / n[:, None]
    second = (
        (1 - step) * n_a[:, None, None] * second_a + step * n_b[:, None, None] * second_b
    ) / n[:, None, None]
    covariance = second - np.einsum("kd,ke->kde", mean, mean)
    counts = n * len(X)
    beta0, m0, nu0 = model.mean_precision_prior_, model.mean_prior_, model.degrees_of_freedom_prior_
    psi0 = model.covariance_prior_
    beta = beta0 + counts
    means = (beta0 * m0 + counts[:, None] * mean) / beta[:, None]
    offsets = mean - m0
    scale_inverse = (
        psi0
        + counts[:, None, None] * covariance
        + (beta0 * counts / beta)[:, None, None] * np.einsum("kd,ke->kde", offsets, offsets)
    )
    nu = nu0 + counts
    model.partial_fit(B)
    assert_allclose(
        model.weight_concentration_, model.weight_concentration_prior_ + counts, rtol=1e-7
    )
    assert_allclose(model.mean_precision_, beta, rtol=1e-7)
    assert_allclose(model.means_, means, rtol=1e-7, atol=1e-9)
    assert_allclose(model.degrees_of_freedom_, nu, rtol=1e-7)
    assert_allclose(model.covariances_, scale_inverse / nu[:, None, None], rtol=1e-6, atol=1e-9)


def test_a_stream_finds_the_clusters_and_validates_its_parameters():
    X = _svi_blobs()
    model = VariationalGaussianMixture(n_components=3, random_state=0)
    for batch in np.array_split(X, 9):
        model.partial_fit(batch)
    assert model.n_steps_ == 9 and model.n_samples_seen_ == len(X)
    found = np.sort(np.round(model.means_).astype(int), axis=0)
    assert_array_equal(np.sort(found[:, 0]), [0, 0, 5])
    assert_allclose(np.sort(model.weights_), [1 / 3] * 3, atol=0.03)
    with pytest.raises(ValueError, match="learning_decay"):
        VariationalGaussianMixture(learning_decay=0.2).partial_fit(X)
