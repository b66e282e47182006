"""MixtureOfPPCA against PPCA, closed-form densities and known mixtures."""

import pickle
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.preprocessing import StandardScaler
from test_gaussian_mixture import rows_with_a_far_one
from test_ppca import FAR_ROWS, rescaled_gaussian_log_density

from skem import (
    DegenerateComponentWarning,
    EMGaussianMixture,
    MixtureOfPPCA,
    ProbabilisticPCA,
)
from skem._core import _blocks, add_statistics
from skem.datasets import load_dequantized_digits, make_low_rank_mixture
from skem.decomposition._lowrank import latent_precision_terms
from skem.mixture import _mixture_ppca
from skem.mixture._base import MixturePosterior


def low_rank_mixture(
    n_per_component=60,
    n_features=100,
    n_components=4,
    n_latent=3,
    noise=0.5,
    separation=3.0,
    seed=0,
):
    return make_low_rank_mixture(
        n_per_component,
        n_features,
        n_components,
        n_latent,
        noise=noise,
        separation=separation,
        random_state=seed,
    )


def standardized(loader):
    return StandardScaler().fit_transform(loader().data)


@pytest.mark.parametrize("loader", [load_iris, load_wine, load_breast_cancer])
@pytest.mark.parametrize("n_latent", [1, 2, 3])
def test_one_component_reproduces_the_ppca_optimum(loader, n_latent):
    X = standardized(loader)
    mixture = MixtureOfPPCA(1, n_latent, tol=1e-12, max_iter=5000, random_state=0).fit(X)
    ppca = ProbabilisticPCA(n_latent, solver="eig").fit(X)
    assert_allclose(mixture.score(X), ppca.score(X), rtol=1e-8)
    assert_allclose(mixture.noise_variance_[0], ppca.noise_variance_, rtol=1e-6)


@pytest.mark.parametrize("loader", [load_iris, load_wine, load_breast_cancer, load_digits])
@pytest.mark.parametrize("n_components", [2, 4])
def test_bound_never_decreases_on_real_data(loader, n_components):
    X = standardized(loader)
    model = MixtureOfPPCA(n_components, 2, tol=1e-8, max_iter=300, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X)
    assert model.n_iter_ >= 3  # the exact M-step converges on iris K=2 in 3
    assert np.diff(model.lower_bounds_).min() >= -1e-12 * abs(model.lower_bound_)


def test_score_samples_is_the_mixture_of_low_rank_gaussians():
    X, _ = low_rank_mixture(n_features=20)
    model = MixtureOfPPCA(4, 3, random_state=0).fit(X)
    log_joint = np.stack(
        [
            np.log(w) + multivariate_normal(m, W.T @ W + s * np.eye(20)).logpdf(X)
            for w, m, W, s in zip(
                model.weights_, model.means_, model.components_, model.noise_variance_
            )
        ],
        axis=1,
    )
    assert_allclose(model.score_samples(X), logsumexp(log_joint, axis=1), rtol=1e-10)
    assert_allclose(
        model.predict_proba(X),
        np.exp(log_joint - logsumexp(log_joint, axis=1)[:, None]),
        atol=1e-10,
    )


def test_recovers_a_known_mixture_in_high_dimension():
    X, labels = low_rank_mixture()
    model = MixtureOfPPCA(4, 3, random_state=0).fit(X)
    assert adjusted_rand_score(labels, model.predict(X)) > 0.99


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grid_search_over_n_components_picks_the_true_number(seed):
    """Restarts matter: one k-means start can merge clusters on a training fold."""
    X, _ = low_rank_mixture(n_per_component=80, separation=6.0, seed=seed)
    search = GridSearchCV(
        MixtureOfPPCA(n_latent=3, n_init=3, random_state=0), {"n_components": [2, 3, 4, 5, 6]}
    ).fit(X)
    assert search.best_params_ == {"n_components": 4}


def test_beats_a_full_covariance_mixture_where_its_assumption_holds():
    X, labels = low_rank_mixture(n_per_component=240)
    X_train, X_test = train_test_split(X, test_size=0.5, random_state=0, stratify=labels)
    mixture = MixtureOfPPCA(4, 3, random_state=0).fit(X_train)
    full = EMGaussianMixture(4, random_state=0).fit(X_train)
    assert mixture.score(X_test) > full.score(X_test) + 10
    assert mixture._n_parameters() < full._n_parameters() / 10


def test_documented_digits_numbers():
    """The table in the class docstring: isotropic noise loses on pixels."""
    X, _ = load_dequantized_digits()
    X_train, X_test = train_test_split(X, random_state=0)
    mixture = MixtureOfPPCA(10, 10, random_state=0).fit(X_train)
    full = EMGaussianMixture(10, random_state=0).fit(X_train)
    assert_allclose(mixture.score(X_test), -141.6, atol=0.05)
    assert_allclose(full.score(X_test), -134.1, atol=0.05)
    assert (mixture._n_parameters(), full._n_parameters()) == (6609, 21449)


def test_transform_is_the_posterior_mean_under_the_most_probable_component():
    X, _ = low_rank_mixture(n_features=20)
    model = MixtureOfPPCA(4, 3, random_state=0).fit(X)
    labels = model.predict(X)
    for i in (0, 100, 200):
        W, s = model.components_[labels[i]].T, model.noise_variance_[labels[i]]
        expected = np.linalg.solve(W.T @ W + s * np.eye(3), W.T @ (X[i] - model.means_[labels[i]]))
        assert_allclose(model.transform(X[i : i + 1])[0], expected, rtol=1e-10)


def test_integer_weights_equal_repeated_rows_from_the_same_start():
    X, _ = low_rank_mixture(n_features=20)
    weights = np.random.RandomState(1).randint(0, 3, size=len(X))
    start = MixtureOfPPCA(4, 3, max_iter=0, random_state=0).fit(X)
    fits = []
    for data, sample_weight in ((X, weights), (np.repeat(X, weights, axis=0), None)):
        model = MixtureOfPPCA(4, 3, max_iter=30, tol=0, warm_start=True)
        model._set_parameters(start._get_parameters())
        model._noise_floor, model.converged_, model.lower_bound_ = (
            start._noise_floor,
            False,
            -np.inf,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fits.append(model.fit(data, sample_weight=sample_weight))
    assert_allclose(fits[0].lower_bounds_, fits[1].lower_bounds_, rtol=1e-10)
    assert_allclose(fits[0].components_, fits[1].components_, rtol=1e-8, atol=1e-10)


def test_collapsed_components_warn_and_keep_scores_finite():
    rng = np.random.RandomState(0)
    X = np.repeat(rng.normal(size=(4, 10)), 10, axis=0)
    model = MixtureOfPPCA(4, 2, random_state=0)
    with pytest.warns(DegenerateComponentWarning, match="degenerate"):
        model.fit(X)
    assert np.all(np.isfinite(model.score_samples(rng.normal(size=(20, 10)) * 50)))


def test_samples_follow_each_component():
    X, _ = low_rank_mixture(n_features=10)
    model = MixtureOfPPCA(4, 3, random_state=0).fit(X)
    samples, labels = model.sample(40000, random_state=0)
    assert_allclose(np.bincount(labels, minlength=4) / 40000, model.weights_, atol=0.01)
    k = int(np.argmax(model.weights_))
    W, s = model.components_[k].T, model.noise_variance_[k]
    covariance = W @ W.T + s * np.eye(10)
    assert_allclose(np.cov(samples[labels == k].T), covariance, atol=0.1 * np.abs(covariance).max())


def test_fit_predict_and_pickle():
    X, _ = low_rank_mixture(n_features=20)
    model = MixtureOfPPCA(4, 3, random_state=0)
    labels = model.fit_predict(X)
    assert_array_equal(labels, model.predict(X))
    restored = pickle.loads(pickle.dumps(model))
    assert_array_equal(restored.score_samples(X), model.score_samples(X))


def test_bad_parameters_raise_value_error():
    X = load_iris().data
    with pytest.raises(ValueError, match="n_latent=5 must be at most n_features=4"):
        MixtureOfPPCA(2, 5).fit(X)
    with pytest.raises(ValueError, match="Expected n_samples >= n_components"):
        MixtureOfPPCA(5, 1).fit(X[:3])
    with pytest.raises(ValueError, match="n_latent"):
        MixtureOfPPCA(2, 0).fit(X)


def test_fewer_distinct_points_than_components_fits_with_a_warning():
    with pytest.warns(DegenerateComponentWarning):
        model = MixtureOfPPCA(2, 2, random_state=0).fit(np.ones((10, 4)))
    assert np.all(np.isfinite(model.score_samples(np.zeros((3, 4)))))


# ---------------------------------------------------------------- closed-form M-step


def m_step_from(model, X, responsibilities, sample_weight=None, n_chunks=3):
    """One M-step of ``model`` from given responsibilities, summed over row chunks."""
    statistics = None
    for rows in np.array_split(np.arange(len(X)), n_chunks):
        weights = None if sample_weight is None else sample_weight[rows]
        posterior = MixturePosterior(responsibilities[rows])
        chunk = model._sufficient_statistics(X[rows], weights, posterior)
        statistics = add_statistics(statistics, chunk)
    model._m_step(statistics)
    return model


def test_closed_form_m_step_is_weighted_ppca_maximum_likelihood():
    """Per component: the eigen-solution of PPCA with weights r_nk * sample_weight."""
    X = standardized(load_wine)
    rng = np.random.RandomState(0)
    responsibilities = rng.dirichlet(np.ones(3), size=len(X))
    responsibilities[::4, 0] = 0.0  # rows of zero responsibility are skipped
    responsibilities /= responsibilities.sum(axis=1, keepdims=True)
    sample_weight = rng.uniform(0.5, 2.0, size=len(X))
    model = MixtureOfPPCA(3, 3, max_iter=0, random_state=0).fit(X)
    assert model._closed_form
    # sums about means far from the new ones exercise the recentring
    model.means_ = model.means_ + rng.normal(scale=3.0, size=model.means_.shape)
    m_step_from(model, X, responsibilities, sample_weight)

    weights = responsibilities * sample_weight[:, np.newaxis]
    assert_allclose(model.weights_, weights.sum(axis=0) / weights.sum(), rtol=1e-14)
    for k in range(3):
        ppca = ProbabilisticPCA(3, solver="eig").fit(X, sample_weight=weights[:, k])
        assert_allclose(model.means_[k], ppca.mean_, rtol=0, atol=1e-14)
        assert_allclose(model.noise_variance_[k], ppca.noise_variance_, rtol=1e-13)
        W, W_ppca = model.components_[k].T, ppca.components_.T
        assert_allclose(W @ W.T, W_ppca @ W_ppca.T, rtol=0, atol=1e-13)
        # and the same from the eigen-decomposition computed here
        centered = (X - ppca.mean_) * np.sqrt(weights[:, k] / weights[:, k].sum())[:, None]
        eigenvalues, eigenvectors = np.linalg.eigh(centered.T @ centered)
        noise_variance = eigenvalues[:-3].mean()
        U = eigenvectors[:, -3:]
        expected = U @ np.diag(eigenvalues[-3:] - noise_variance) @ U.T
        assert_allclose(model.noise_variance_[k], noise_variance, rtol=1e-13)
        assert_allclose(W @ W.T, expected, rtol=0, atol=1e-13)


class RecomputingMixtureOfPPCA(MixtureOfPPCA):
    """The statistics recompute x - m_k instead of taking the E-step's (as on dask)."""

    def _prepare_fit(self, X, sample_weight, random_state):
        super()._prepare_fit(X, sample_weight, random_state)
        self._keep = False


def test_the_e_steps_residuals_give_the_statistics_of_recomputed_ones():
    # rows of zero weight have zero responsibility: the kept residuals are
    # then taken at the rows of positive responsibility only
    X = standardized(load_wine)
    sample_weight = np.random.RandomState(0).uniform(0.5, 2.0, size=len(X))
    sample_weight[::5] = 0.0
    params = dict(n_components=3, n_latent=2, max_iter=8, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        kept = MixtureOfPPCA(**params).fit(X, sample_weight=sample_weight)
        recomputed = RecomputingMixtureOfPPCA(**params).fit(X, sample_weight=sample_weight)
    assert not hasattr(kept, "_keep")  # (fit scratch)
    assert_allclose(kept.lower_bounds_, recomputed.lower_bounds_, rtol=1e-13)
    for name in ("weights_", "means_", "noise_variance_"):
        assert_allclose(getattr(kept, name), getattr(recomputed, name), rtol=1e-11)


def test_closed_form_m_step_honours_the_noise_floor():
    """Eigenvalues below the floor give zero loadings, as in PPCA's eigen-solution."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(40, 2)) @ rng.normal(size=(2, 6))  # rank 2 in 6 dimensions
    responsibilities = np.column_stack([np.ones(40), np.zeros(40)])
    model = MixtureOfPPCA(2, 3, noise_variance_floor=1e-3, max_iter=0, random_state=0).fit(X)
    empty_mean = model.means_[1].copy()
    m_step_from(model, X, responsibilities)
    ppca = ProbabilisticPCA(3, solver="eig", noise_variance_floor=1e-3).fit(X)
    assert_allclose(model.noise_variance_[0], model._noise_floor, rtol=1e-15)
    assert_allclose(model.noise_variance_[0], ppca.noise_variance_, rtol=1e-14)
    W, W_ppca = model.components_[0].T, ppca.components_.T
    assert_allclose(W @ W.T, W_ppca @ W_ppca.T, rtol=0, atol=1e-13 * np.abs(W_ppca).max() ** 2)
    assert np.linalg.matrix_rank(W) == 2
    # the empty component: mean unchanged, no loadings, noise at the floor
    assert_array_equal(model.means_[1], empty_mean)
    assert_allclose(model.noise_variance_[1], model._noise_floor, rtol=1e-15)
    assert_array_equal(model.components_[1], 0.0)


@pytest.mark.parametrize(
    "dataset, n_components, n_latent",
    [
        ("digits", 5, 10),
        ("wine", 4, 2),
        ("breast_cancer", 5, 10),
    ],
)
def test_closed_form_bound_never_decreases_with_a_tiny_floor(dataset, n_components, n_latent):
    X = {
        "digits": lambda: load_dequantized_digits()[0],
        "wine": lambda: standardized(load_wine),
        "breast_cancer": lambda: standardized(load_breast_cancer),
    }[dataset]()
    model = MixtureOfPPCA(
        n_components, n_latent, noise_variance_floor=1e-12, tol=0, max_iter=40, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X)
    assert model._closed_form and model.n_iter_ == 40
    assert model.lower_bounds_[-1] > model.lower_bounds_[0]
    assert np.diff(model.lower_bounds_).min() >= -1e-13 * abs(model.lower_bound_)


def test_closed_form_bound_never_decreases_where_the_floor_binds():
    """Twelve components on iris: some collapse onto the floor."""
    X = standardized(load_iris)
    model = MixtureOfPPCA(12, 2, tol=0, max_iter=100, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with pytest.warns(DegenerateComponentWarning):
            model.fit(X)
    assert np.any(model.noise_variance_ <= model._noise_floor * (1 + 1e-9))
    assert np.diff(model.lower_bounds_).min() >= -1e-13 * abs(model.lower_bound_)


def test_closed_form_and_one_step_update_reach_the_same_optimum(monkeypatch):
    X, labels = low_rank_mixture(
        n_per_component=200, n_features=20, n_components=3, n_latent=3, noise=2.0
    )
    X_train, X_test = train_test_split(X, test_size=0.5, random_state=0, stratify=labels)
    closed = MixtureOfPPCA(3, 3, tol=1e-10, max_iter=5000, random_state=0).fit(X_train)
    monkeypatch.setattr(_mixture_ppca, "CLOSED_FORM_MAX_FEATURES", 0)
    one_step = MixtureOfPPCA(3, 3, tol=1e-10, max_iter=5000, random_state=0).fit(X_train)
    assert closed._closed_form and not one_step._closed_form
    assert closed.converged_ and one_step.converged_
    # the one-step update creeps up to the optimum the closed form jumps to
    assert closed.n_iter_ * 10 < one_step.n_iter_
    assert closed.lower_bound_ >= one_step.lower_bound_ - 1e-12
    assert_allclose(closed.lower_bound_, one_step.lower_bound_, rtol=0, atol=1e-8)
    assert_allclose(closed.score(X_test), one_step.score(X_test), rtol=0, atol=1e-4)
    assert_allclose(closed.noise_variance_, one_step.noise_variance_, rtol=1e-4)


def test_closed_form_statistics_add_up_over_chunks(monkeypatch):
    X = load_dequantized_digits()[0][:600]
    whole = MixtureOfPPCA(4, 5, tol=0, max_iter=10, random_state=0)
    chunked = MixtureOfPPCA(4, 5, tol=0, max_iter=10, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        whole.fit(X)
        # chunks of 97 rows: the E-step needs K + 3 d + 2 q floats per row
        monkeypatch.setattr(_blocks, "CHUNK_FLOATS", 97 * (4 + 3 * 64 + 2 * 5))
        chunked.fit(X)
    assert_allclose(chunked.lower_bounds_, whole.lower_bounds_, rtol=1e-13)
    assert_allclose(chunked.means_, whole.means_, rtol=1e-12)
    assert_allclose(chunked.noise_variance_, whole.noise_variance_, rtol=1e-11)


def test_m_step_follows_the_number_of_features():
    rng = np.random.RandomState(0)
    limit = _mixture_ppca.CLOSED_FORM_MAX_FEATURES
    for n_features, closed_form in ((limit, True), (limit + 1, False)):
        model = MixtureOfPPCA(2, 2, max_iter=2, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(rng.normal(size=(30, n_features)))
        assert model._closed_form is closed_form


def test_fitted_model_ignores_hyper_parameters_changed_after_fit():
    X = standardized(load_wine)
    model = MixtureOfPPCA(2, 2, random_state=0).fit(X)
    scores, bic, latent = model.score_samples(X), model.bic(X), model.transform(X)
    model.set_params(n_components=3, n_latent=1)
    assert_allclose(model.score_samples(X), scores, rtol=1e-12)
    assert model.bic(X) == pytest.approx(bic, rel=1e-12)
    assert_allclose(model.transform(X), latent, rtol=1e-12)
    assert model.get_feature_names_out().shape == (2,)
    assert model.sample(4, random_state=0)[0].shape == (4, X.shape[1])


def test_far_rows_never_score_or_assign_nan():
    X = standardized(load_iris)
    model = MixtureOfPPCA(2, 1, random_state=0).fit(X)
    rows = np.array([[1e154] * 4, [1e100] * 4, [1e200] * 4, [-1e300] * 4])
    scores = model.score_samples(rows)
    assert not np.isnan(scores).any() and np.isfinite(scores[1])
    assert np.all(scores[[0, 2, 3]] == -np.inf)  # true values near -1e308 and below
    assert_allclose(model.predict_proba(rows).sum(axis=1), 1.0)


def test_parameters_changed_by_hand_change_scores_transform_and_imputations():
    """Loadings scaled in place and a new noise variance are what scores read (scipy).

    The factorisations of the fit used to stay: scores, latent means and
    imputations ignored the change while ``sample`` followed it.
    """
    X = StandardScaler().fit_transform(load_iris().data)
    model = MixtureOfPPCA(2, n_latent=2, random_state=0).fit(X)
    model.components_ *= 1.5
    model.noise_variance_ = model.noise_variance_ * 2.0
    identity = np.eye(X.shape[1])
    covariances = [w.T @ w + s * identity for w, s in zip(model.components_, model.noise_variance_)]
    joint = np.log(model.weights_) + np.column_stack(
        [multivariate_normal(m, c).logpdf(X) for m, c in zip(model.means_, covariances)]
    )
    assert_allclose(model.score_samples(X), logsumexp(joint, axis=1), rtol=1e-10)
    labels = joint.argmax(axis=1)
    assert_array_equal(model.predict(X), labels)
    for i in range(5):
        w, s = model.components_[labels[i]], model.noise_variance_[labels[i]]
        expected = np.linalg.solve(w @ w.T + s * np.eye(2), w @ (X[i] - model.means_[labels[i]]))
        assert_allclose(model.transform(X[i : i + 1])[0], expected, rtol=1e-9)
    row = X[:1].copy()
    row[0, 2:] = np.nan
    observed = [0, 1]
    marginal = np.log(model.weights_) + [
        multivariate_normal(m[observed], c[np.ix_(observed, observed)]).logpdf(row[0, observed])
        for m, c in zip(model.means_, covariances)
    ]
    posterior = np.exp(marginal - logsumexp(marginal))
    expected = sum(
        p * (m[2:] + c[2:, :2] @ np.linalg.solve(c[:2, :2], row[0, :2] - m[:2]))
        for p, m, c in zip(posterior, model.means_, covariances)
    )
    assert_allclose(model.impute(row)[0, 2:], expected, rtol=1e-9)


@pytest.mark.parametrize("data_scale", FAR_ROWS)
def test_far_rows_score_the_exact_mixture_log_density_at_every_data_scale(data_scale):
    """Far rows, complete or not, against the mixture of log-densities on rescaled
    residuals (the same far-row path as ProbabilisticPCA's: a row at 1e308
    scored +0.6 beside data of unit scale, where typical rows score -4)."""
    X = load_iris().data * data_scale
    model = MixtureOfPPCA(2, 1, random_state=0).fit(X)
    rows = np.array(FAR_ROWS[data_scale])
    incomplete = rows.copy()
    incomplete[:, 1] = np.nan
    rows = np.vstack([rows, incomplete])
    identity = np.eye(X.shape[1])
    with np.errstate(divide="ignore"):
        exact = logsumexp(
            [
                np.log(weight) + rescaled_gaussian_log_density(mean, w.T @ w + s * identity, rows)
                for weight, mean, w, s in zip(
                    model.weights_, model.means_, model.components_, model.noise_variance_
                )
            ],
            axis=0,
        )
    scores = model.score_samples(rows)
    finite = np.isfinite(exact)
    assert finite.any() and not finite.all()
    assert_allclose(scores[finite], exact[finite], rtol=1e-9)
    assert_array_equal(scores[~finite], -np.inf)


def test_squarem_never_lowers_the_bound_and_ends_as_high():
    """accelerate=True: every recorded bound at least the last, in fewer iterations on iris
    (whose plain EM crawls), to the plain fit's maximum within tol."""
    from sklearn.datasets import load_iris

    X = load_iris().data
    plain = MixtureOfPPCA(3, n_latent=1, random_state=0, tol=1e-8, max_iter=5000).fit(X)
    fast = MixtureOfPPCA(3, n_latent=1, random_state=0, tol=1e-8, max_iter=5000, accelerate=True)
    fast.fit(X)
    assert np.all(np.diff(fast.lower_bounds_) >= 0)
    assert fast.n_iter_ < plain.n_iter_
    assert fast.lower_bound_ >= plain.lower_bound_ - 1e-6
    assert_allclose(fast.score(X), plain.score(X), atol=1e-6)


def test_stacked_latent_precision_terms_are_those_of_each_component():
    rng = np.random.RandomState(0)
    components, noise = rng.normal(size=(3, 4, 9)), rng.uniform(0.1, 2.0, size=3)
    inverses, log_dets = latent_precision_terms(components, noise)
    for w, s, inverse, log_det in zip(components, noise, inverses, log_dets):
        precision = w @ w.T + s * np.eye(4)
        assert_allclose(inverse, np.linalg.inv(precision), rtol=1e-10)
        assert_allclose(log_det, np.linalg.slogdet(precision)[1], rtol=1e-12)


@pytest.mark.parametrize("far", ["every direction", "one direction"])
def test_low_rank_statistics_skip_only_rows_below_their_rounding(far):
    """MixtureOfPPCA's closed-form scatters leave out the rows of a component
    that change them by less than their rounding, and only those: each entry
    equal to the dense sum to rounding of sqrt(S_ii S_jj), with a far row (of
    tiny responsibility, or far in one direction only) kept. First moments,
    and the factor analysers' sums, take every row of positive responsibility."""
    from skem.mixture._lowrank_mixture import factor_statistics, scatter_statistics

    rng = np.random.RandomState(1)
    residuals, responsibilities = rows_with_a_far_one(far, rng)
    residuals = np.ascontiguousarray(residuals.transpose(1, 0, 2))  # (K x n x d)
    n_components, n_samples, n_features = residuals.shape
    n_latent = 2
    betas = rng.normal(size=(n_components, n_features, n_latent))
    posterior_means = [residuals[k] @ betas[k] for k in range(n_components)]
    means = np.zeros((n_components, n_features))
    squared_norms = np.einsum("knd,knd->kn", residuals, residuals)
    scatter = scatter_statistics(
        residuals[0], responsibilities, means, residuals.copy(), squared_norms
    )
    factor = factor_statistics(residuals, posterior_means, responsibilities)
    traces = np.einsum("nk,kn->k", responsibilities, squared_norms)
    assert traces[0] > 1e6  # the far row's share
    for k in range(n_components):
        r, y = responsibilities[:, k], residuals[k]
        atol = 1e-13 * traces[k]
        dense = (y * r[:, None]).T @ y
        scale = np.sqrt(np.outer(np.diagonal(dense), np.diagonal(dense)))
        assert np.all(np.abs(scatter["scatter"][k] - dense) <= 1e-13 * scale)
        assert_allclose(factor["feature_squares"][k], r @ y**2, rtol=0, atol=atol)
        cross = (y * r[:, None]).T @ posterior_means[k]
        assert_allclose(factor["cross"][k], cross, rtol=0, atol=atol * np.abs(betas[k]).sum())
        first = r @ y
        rounding = 1e-14 * (r @ np.abs(y))
        for sums in (scatter, factor):
            assert np.all(np.abs(sums["sum_residual"][k] - first) <= rounding)


def test_means_follow_the_textbook_m_step_near_a_lattice():
    """Many rows on or next to a component's mean (integer lattice data) have
    tiny squared residuals: the scatter may skip them, the means may not.
    Each iteration's means are the responsibility-weighted means of X under
    the previous iteration's parameters, to rounding (1e-13 here; they
    drifted by 4e-10 when the mean's sum skipped the rows the scatter skips)."""
    n_features = 40
    block = np.vstack([np.zeros((900, n_features)), np.eye(n_features), -np.eye(n_features)])
    block = np.repeat(block, [1] * 900 + [17] * (2 * n_features), axis=0)
    X = np.vstack([block, block + 2.2 * np.eye(n_features)[0]])  # (means 7e-10 off the lattice)
    previous = None
    for n_iter in range(1, 6):
        model = MixtureOfPPCA(2, n_latent=1, tol=0, max_iter=n_iter, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X)
        if previous is not None:
            responsibilities = previous.predict_proba(X)
            expected = responsibilities.T @ X / responsibilities.sum(axis=0)[:, np.newaxis]
            assert_allclose(model.means_, expected, rtol=0, atol=1e-12)
        previous = model
