"""Fits on dask arrays equal the in-memory fits; predictions stay lazy; bad input is refused.

The threaded scheduler runs in every test; one module-scoped LocalCluster of
two worker processes checks that the block functions travel to other
processes and give the same numbers.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose

da = pytest.importorskip("dask.array")

from skem import AmortizedVAE, EMGaussianMixture, MixtureOfPPCA, ProbabilisticPCA  # noqa: E402

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical", "tied_diag"]

# (short fits from fixed starts: not converging is expected)
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    centres = np.array([[0.0, 0, 0, 0], [4, 4, 0, 0], [0, 4, 4, 4]])
    X = np.vstack([rng.randn(1000, 4) @ rng.randn(4, 4) * 0.5 + c for c in centres])
    X = X[rng.permutation(len(X))]
    weights = rng.uniform(0.2, 3.0, len(X))
    return X, weights


def dask_of(X, rows=700):
    """A dask array with uneven row blocks (the last one shorter) and two column blocks."""
    return da.from_array(X, chunks=(rows, 2))


def started_mixture(X, covariance_type):
    """A GMM with an explicit start (taken from a short in-memory fit)."""
    start = EMGaussianMixture(3, covariance_type=covariance_type, max_iter=2, random_state=0)
    start.fit(X)
    return EMGaussianMixture(
        3,
        covariance_type=covariance_type,
        weights_init=start.weights_,
        means_init=start.means_,
        precisions_init=start.precisions_,
        tol=1e-9,
        max_iter=30,
    )


def assert_same_fit(memory, lazy, names):
    assert lazy.n_iter_ == memory.n_iter_
    assert_allclose(lazy.lower_bounds_, memory.lower_bounds_, rtol=1e-12, atol=1e-10)
    for name in names:
        assert_allclose(getattr(lazy, name), getattr(memory, name), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_gaussian_mixture_on_dask_equals_the_fit_in_memory(data, covariance_type, weighted):
    X, weights = data
    weights = weights if weighted else None
    memory = started_mixture(X, covariance_type).fit(X, sample_weight=weights)
    lazy = started_mixture(X, covariance_type).fit(dask_of(X), sample_weight=weights)
    assert_same_fit(memory, lazy, ["weights_", "means_", "covariances_", "precisions_cholesky_"])
    assert lazy.n_features_in_ == 4
    scores = lazy.score_samples(dask_of(X))
    assert isinstance(scores, da.Array)
    assert_allclose(scores.compute(), memory.score_samples(X), rtol=1e-10, atol=1e-10)
    probabilities = lazy.predict_proba(dask_of(X))
    assert isinstance(probabilities, da.Array) and probabilities.shape == (len(X), 3)
    assert_allclose(probabilities.compute(), memory.predict_proba(X), atol=1e-10)
    assert_allclose(lazy.predict(dask_of(X)).compute(), memory.predict(X))
    score = lazy.score(dask_of(X), sample_weight=weights)
    assert isinstance(score, float)
    assert_allclose(score, memory.score(X, sample_weight=weights), rtol=1e-12)


def test_random_rows_are_drawn_alike_on_dask_and_in_memory(data):
    """init_params='random_from_data' reads only the rows it draws: the same rows."""
    X, weights = data
    model = EMGaussianMixture(3, init_params="random_from_data", random_state=3, max_iter=20)
    memory = model.fit(X, sample_weight=weights)
    memory = {"bounds": memory.lower_bounds_, "means": memory.means_}
    lazy = model.fit(dask_of(X), sample_weight=weights)
    assert_allclose(lazy.lower_bounds_, memory["bounds"], rtol=1e-12)
    assert_allclose(lazy.means_, memory["means"], atol=1e-10)


def test_kmeans_start_on_dask_uses_a_sample_of_init_size_rows(data):
    """The default start reads init_size rows; with init_size >= n it is the in-memory start."""
    X, _ = data
    model = EMGaussianMixture(3, random_state=0, init_size=len(X), max_iter=5)
    memory = model.fit(X).lower_bounds_
    assert_allclose(model.fit(dask_of(X)).lower_bounds_, memory, rtol=1e-12)
    sampled = EMGaussianMixture(3, random_state=0, init_size=500, tol=1e-6)
    # a start from 500 rows reaches the same optimum on these separated clusters
    assert_allclose(
        sampled.fit(dask_of(X)).lower_bound_,
        model.set_params(max_iter=100).fit(X).lower_bound_,
        rtol=1e-6,
    )


@pytest.mark.parametrize("solver", ["eig", "em"])
def test_probabilistic_pca_on_dask_equals_the_fit_in_memory(data, solver):
    X, weights = data
    model = ProbabilisticPCA(2, solver=solver, tol=1e-10, max_iter=300, random_state=0)
    memory = model.fit(X, sample_weight=weights)
    expected = {
        name: getattr(memory, name)
        for name in ("lower_bounds_", "components_", "mean_", "noise_variance_")
    }
    transformed = memory.transform(X)
    lazy = model.fit(dask_of(X), sample_weight=weights)
    assert_allclose(lazy.lower_bounds_, expected["lower_bounds_"], rtol=1e-12)
    for name in ("components_", "mean_", "noise_variance_"):
        assert_allclose(getattr(lazy, name), expected[name], rtol=1e-9, atol=1e-10)
    lazy_transformed = lazy.transform(dask_of(X))
    assert isinstance(lazy_transformed, da.Array)
    assert_allclose(lazy_transformed.compute(), transformed, rtol=1e-9, atol=1e-10)


def test_probabilistic_pca_with_missing_values_on_dask(data):
    X, _ = data
    X = X.copy()
    X[np.random.RandomState(1).rand(*X.shape) < 0.1] = np.nan
    X[np.isnan(X).all(axis=1), 0] = 1.0
    model = ProbabilisticPCA(2, tol=1e-10, max_iter=50, random_state=0)
    memory = model.fit(X).lower_bounds_
    assert_allclose(model.fit(dask_of(X)).lower_bounds_, memory, rtol=1e-12)


def test_mixture_of_ppca_on_dask_equals_the_fit_in_memory(data):
    X, weights = data
    # (the start from all rows: random rows would start each component from one
    # row, whose principal directions are those of rounding noise)
    model = MixtureOfPPCA(3, n_latent=2, init_size=len(X), random_state=0, max_iter=30)
    memory = model.fit(X, sample_weight=weights)
    memory = {"bounds": memory.lower_bounds_, "components": memory.components_}
    lazy = model.fit(dask_of(X), sample_weight=weights)
    assert_allclose(lazy.lower_bounds_, memory["bounds"], rtol=1e-12)
    assert_allclose(lazy.components_, memory["components"], atol=1e-8)
    assert_allclose(lazy.transform(dask_of(X)).compute(), model.transform(X))


# ---------------------------------------------------------------------- input checks


def refused(model, X, match, **fit_params):
    """fit raises ValueError with the message, and leaves the model as it was."""
    before = dict(model.__dict__)
    with pytest.raises(ValueError, match=match):
        model.fit(X, **fit_params)
    assert model.__dict__.keys() == before.keys()


@pytest.mark.parametrize(
    "value, match", [(np.inf, "Input X contains infinity"), (1e120, "magnitude up to 1e\\+120")]
)
def test_bad_values_in_one_block_give_the_in_memory_message(data, value, match):
    X = data[0].copy()
    X[2500, 1] = value
    refused(EMGaussianMixture(2), dask_of(X), match)
    with pytest.raises(ValueError, match=match):
        EMGaussianMixture(2).fit(X)


def test_bad_sample_weights_are_refused(data):
    X, weights = data
    negative = weights.copy()
    negative[2800] = -1.0
    refused(EMGaussianMixture(2), dask_of(X), "non-negative", sample_weight=negative)
    refused(EMGaussianMixture(2), dask_of(X), "zero everywhere", sample_weight=np.zeros(len(X)))
    refused(EMGaussianMixture(2), dask_of(X), "shape", sample_weight=weights[:-1])


def test_wrong_shapes_and_types_are_refused(data):
    X, _ = data
    refused(EMGaussianMixture(2), da.from_array(X[:1]), "minimum of 2")
    refused(EMGaussianMixture(2), da.from_array(X.astype(str)), "numeric")
    refused(EMGaussianMixture(2), da.from_array(X[:, 0]), "2-dimensional")
    unknown = dask_of(X)[dask_of(X)[:, 0] > 0]
    refused(EMGaussianMixture(2), unknown, "compute_chunk_sizes")
    refused(EMGaussianMixture(2), dask_of(X * 1e120), "magnitude")
    fitted = EMGaussianMixture(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="features"):
        fitted.score_samples(dask_of(X[:, :3]))


def test_integer_dask_data_are_fitted_as_float64(data):
    X = np.round(data[0] * 10).astype(np.int64)
    model = EMGaussianMixture(2, init_params="random_from_data", random_state=0, max_iter=5)
    memory = model.fit(X).lower_bounds_
    assert_allclose(model.fit(dask_of(X)).lower_bounds_, memory, rtol=1e-12)
    assert model.means_.dtype == np.float64


def test_float32_dask_data_keep_their_dtype(data):
    X = data[0].astype(np.float32)
    model = EMGaussianMixture(2, init_params="random_from_data", random_state=0, max_iter=5)
    memory = model.fit(X).lower_bounds_
    lazy = model.fit(dask_of(X))
    assert lazy.means_.dtype == np.float32
    assert_allclose(lazy.lower_bounds_, memory, rtol=1e-6)


# ---------------------------------------------------------------------- online EM on blocks


def test_partial_fit_refuses_a_dask_array_and_a_loop_over_its_blocks_works(data):
    X, _ = data
    lazy = dask_of(X, rows=500)
    with pytest.raises(ValueError, match="partial_fit on each block"):
        EMGaussianMixture(3).partial_fit(lazy)
    by_block = EMGaussianMixture(3, random_state=0)
    for block in lazy.blocks:
        by_block.partial_fit(block.compute())
    by_array = EMGaussianMixture(3, random_state=0)
    for start in range(0, len(X), 500):
        by_array.partial_fit(X[start : start + 500])
    assert by_block.n_steps_ == 6 and by_block.n_samples_seen_ == len(X)
    assert_allclose(by_block.means_, by_array.means_, rtol=1e-12)
    assert_allclose(by_block.lower_bounds_, by_array.lower_bounds_, rtol=1e-12)


def test_lazy_predictions_are_those_of_the_model_when_they_were_asked_for(data):
    X, _ = data
    model = EMGaussianMixture(2, random_state=0).fit(X)
    expected = model.score_samples(X), model.predict(X)
    scores, labels = model.score_samples(dask_of(X)), model.predict(dask_of(X))
    model.set_params(n_components=3).fit(X[:, ::-1] * 2)  # the estimator changes meanwhile
    assert_allclose(scores.compute(), expected[0], rtol=1e-12)
    assert_allclose(labels.compute(), expected[1])


def test_predictions_on_blocks_without_rows(data):
    X, _ = data
    model = ProbabilisticPCA(2).fit(X)
    keep = (np.arange(len(X)) >= 700) & (X[:, 0] > 0)  # the first block ends up empty
    filtered = dask_of(X)[da.from_array(keep, chunks=700)]
    filtered.compute_chunk_sizes()
    assert filtered.chunks[0][0] == 0
    kept = X[keep]
    assert_allclose(model.score_samples(filtered).compute(), model.score_samples(kept))
    assert_allclose(model.transform(filtered).compute(), model.transform(kept))
    mixture = EMGaussianMixture(2, random_state=0).fit(X)
    assert_allclose(mixture.predict_proba(filtered).compute(), mixture.predict_proba(kept))


def test_score_on_dask_checks_the_weights(data):
    X, weights = data
    model = EMGaussianMixture(2, random_state=0).fit(X)
    negative = weights.copy()
    negative[10] = -1.0
    with pytest.raises(ValueError, match="non-negative"):
        model.score(dask_of(X), sample_weight=negative)
    with pytest.raises(ValueError, match="finite"):
        model.score(dask_of(X), sample_weight=np.full(len(X), np.nan))
    assert_allclose(
        model.score(dask_of(X), sample_weight=weights), model.score(X, sample_weight=weights)
    )


def test_the_fit_scratch_is_not_pickled_so_passes_do_not_ship_the_data(data):
    """A cluster receives the estimator with every pass: the monitor (which holds
    X) and the rest of the fit's scratch stay behind."""
    import pickle

    X, _ = data
    model = EMGaussianMixture(2, random_state=0).fit(X)
    model._monitor = np.zeros(10**6)  # as during a fit
    shipped = pickle.loads(pickle.dumps(model))
    assert not hasattr(shipped, "_monitor") and hasattr(model, "_monitor")
    assert len(pickle.dumps(model)) < 10**5


def test_the_dask_start_samples_rows_of_positive_weight(data):
    """With few rows of positive weight the sampled start still sees them."""
    X, _ = data
    weights = np.zeros(len(X))
    weights[np.random.RandomState(0).choice(len(X), 40, replace=False)] = 1.0
    kwargs = dict(n_components=3, random_state=0, init_size=500, tol=1e-8)
    lazy = EMGaussianMixture(**kwargs).fit(dask_of(X), sample_weight=weights)
    memory = EMGaussianMixture(**kwargs).fit(X[weights > 0])
    assert_allclose(np.sort(lazy.weights_), np.sort(memory.weights_), atol=1e-6)


@pytest.mark.parametrize(
    "model",
    [
        EMGaussianMixture(3, random_state=0),
        ProbabilisticPCA(2, random_state=0),
        MixtureOfPPCA(3, n_latent=2, random_state=0),
    ],
    ids=["gmm", "ppca", "mppca"],
)
def test_impute_on_dask_is_lazy_and_equals_the_impute_in_memory(data, model):
    X = data[0].copy()
    X[np.random.RandomState(2).rand(*X.shape) < 0.2] = np.nan
    X[np.isnan(X).all(axis=1), 0] = 1.0
    model.fit(X)
    imputed = model.impute(dask_of(X))
    assert isinstance(imputed, da.Array)
    assert_allclose(imputed.compute(), model.impute(X), rtol=1e-12)
    with pytest.raises(ValueError, match="each block"):
        model.impute(dask_of(X), sample_posterior=True)


# ---------------------------------------------------------------------- the VAE's predictions


class ComputeCounter:
    """Counts the dask graphs computed while it is active (a dask callback)."""

    def __enter__(self):
        from dask.callbacks import Callback

        self.count = 0
        self._callback = Callback(start=lambda graph: setattr(self, "count", self.count + 1))
        self._callback.__enter__()
        return self

    def __exit__(self, *exc_info):
        self._callback.__exit__(*exc_info)


def vae_predictions(vae, X, Z):
    """Every prediction of the VAE on X (and the decoder mean of Z), by name."""
    terms = vae.elbo_samples(X)
    return {
        "transform": vae.transform(X),
        "score_samples": vae.score_samples(X),
        "impute": vae.impute(X),
        "elbo": terms["elbo"],
        "kl": terms["kl"],
        "importance_weighted_estimates": vae.importance_weighted_estimates(
            X, 7, n_repeats=3, random_state=0
        ),
        "inverse_transform": vae.inverse_transform(Z),
    }


@pytest.mark.parametrize("missing", [False, True], ids=["complete", "with-nan"])
def test_vae_predictions_on_dask_are_lazy_and_equal_those_in_memory(data, missing):
    """Nothing is computed at the call; each row's result, block by block, is the
    in-memory one (the scores' noise draws are shared by all rows)."""
    X = data[0][:1000].copy()
    if missing:
        X[np.random.RandomState(2).rand(*X.shape) < 0.2] = np.nan
        X[np.isnan(X).all(axis=1), 0] = 1.0
    Z = np.random.RandomState(3).normal(size=(300, 2))
    vae = AmortizedVAE(
        2, hidden_layer_sizes=(8,), max_iter=3, n_importance_samples=20, random_state=0
    ).fit(X)
    with ComputeCounter() as computes:
        lazy = vae_predictions(vae, dask_of(X, rows=300), da.from_array(Z, chunks=(120, 1)))
    assert computes.count == 0
    expected = vae_predictions(vae, X, Z)
    for name, value in lazy.items():
        assert isinstance(value, da.Array), name
        assert_allclose(value.compute(), expected[name], rtol=1e-12, atol=1e-12, err_msg=name)
    assert_allclose(vae.score(dask_of(X)), vae.score(X), rtol=1e-12)


def test_vae_predictions_on_dask_refuse_bad_rows_when_computed(data):
    X = data[0][:600]
    vae = AmortizedVAE(2, hidden_layer_sizes=(8,), max_iter=2, random_state=0).fit(X)
    empty = X.copy()
    empty[400] = np.nan
    with ComputeCounter() as computes:
        scores = vae.score_samples(dask_of(empty, rows=300))
        imputed = vae.impute(dask_of(empty, rows=300))  # fills the empty row from the prior
    assert computes.count == 0
    with pytest.raises(ValueError, match="1 row of X is entirely NaN"):
        scores.compute()
    assert_allclose(imputed.compute(), vae.impute(empty), rtol=1e-12)
    with pytest.raises(ValueError, match="latent dimensions"):
        vae.inverse_transform(da.zeros((10, 3), chunks=5))
    bernoulli = AmortizedVAE(2, hidden_layer_sizes=(8,), likelihood="bernoulli", max_iter=2)
    bernoulli.fit((X > 0).astype(float))
    with pytest.raises(ValueError, match="values in \\[0, 1\\]"):
        bernoulli.transform(dask_of(X)).compute()


# ---------------------------------------------------------------------- a cluster


@pytest.fixture(scope="module")
def cluster_client():
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def test_fits_on_a_local_cluster_of_two_processes_equal_the_fits_in_memory(data, cluster_client):
    X, weights = data
    memory = started_mixture(X, "full").fit(X, sample_weight=weights)
    lazy = started_mixture(X, "full").fit(dask_of(X).persist(), sample_weight=weights)
    assert_same_fit(memory, lazy, ["weights_", "means_", "covariances_"])
    assert_allclose(lazy.score(dask_of(X)), memory.score(X), rtol=1e-12)

    ppca = ProbabilisticPCA(2, solver="em", tol=1e-10, max_iter=100, random_state=0)
    expected = ppca.fit(X).lower_bounds_
    assert_allclose(ppca.fit(dask_of(X)).lower_bounds_, expected, rtol=1e-12)

    mixture = MixtureOfPPCA(3, n_latent=2, init_size=len(X), random_state=0)
    expected = mixture.fit(X).lower_bounds_
    assert_allclose(mixture.fit(dask_of(X)).lower_bounds_, expected, rtol=1e-12)


def test_ppca_decoder_mean_of_a_dask_array_is_lazy(data):
    """``inverse_transform`` of latent coordinates on dask: nothing computed at the
    call (it read every block), ``W z + mean`` block by block."""
    X = data[0][:600]
    model = ProbabilisticPCA(2).fit(X)
    Z = np.random.RandomState(3).normal(size=(300, 2))
    with ComputeCounter() as computes:
        lazy = model.inverse_transform(da.from_array(Z, chunks=(120, 1)))
    assert computes.count == 0 and isinstance(lazy, da.Array)
    assert_allclose(lazy.compute(), Z @ model.components_ + model.mean_, rtol=1e-12)


def test_weights_of_the_wrong_length_or_near_the_float_limit(data):
    X, weights = data
    model = EMGaussianMixture(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(3000,\), got \(300,\)"):
        model.score(dask_of(X), sample_weight=weights[:300])
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(3000,\), got \(300,\)"):
        EMGaussianMixture(2).fit(dask_of(X), sample_weight=weights[:300])
    huge = weights * 1e307
    assert_allclose(
        model.score(dask_of(X), sample_weight=huge), model.score(X, sample_weight=weights)
    )


def test_a_pass_on_dask_threads_derives_the_terms_once_on_the_calling_thread(data, monkeypatch):
    """dask's threads share the estimator: they read the terms pinned for the pass
    and never derive (or write) them."""
    import threading

    X, _ = data
    derived_on = []
    derive = EMGaussianMixture._derive_terms

    def recorded(self):
        derived_on.append(threading.current_thread() is threading.main_thread())
        return derive(self)

    monkeypatch.setattr(EMGaussianMixture, "_derive_terms", recorded)
    EMGaussianMixture(3, max_iter=4, tol=0, random_state=0).fit(dask_of(X, rows=300))
    assert derived_on and all(derived_on)


def test_vae_draws_on_dask_are_refused_with_the_imputation_message(data):
    X, _ = data
    holes = X.copy()
    holes[::5, 1] = np.nan
    vae = AmortizedVAE(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(holes)
    with pytest.raises(ValueError, match=r"impute\(sample_posterior=True\) takes arrays in memory"):
        vae.impute(dask_of(holes), sample_posterior=True)
