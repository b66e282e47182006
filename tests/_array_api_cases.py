"""The array-API cases of ``test_array_api.py``, run in a child process with
SCIPY_ARRAY_API=1 (scikit-learn's dispatch needs it before scipy is imported).

torch (CPU) and array-api-strict (whose second device catches arrays made on
the wrong device): every model's float64 fit, predictions, scores and draws
equal the numpy fit's from the same random_state, in the input's namespace and
on its device; NaN; float32; weights from another namespace; partial_fit;
the same-namespace rule; scikit-learn's array-API estimator checks.
"""

import os
import pickle
import warnings

import numpy as np
import pytest
import sklearn
from numpy.testing import assert_allclose, assert_array_equal

CHILD = os.environ.get("SCIPY_ARRAY_API") == "1"

if not CHILD:  # (the cases below need the dispatch)
    pytest.skip("array-API cases run in a child process", allow_module_level=True)

from sklearn.utils.estimator_checks import _yield_array_api_checks  # noqa: E402

from skem import (  # noqa: E402
    AmortizedVAE,
    BernoulliMixture,
    EMGaussianMixture,
    FactorAnalysis,
    MixtureOfFactorAnalyzers,
    MixtureOfPPCA,
    ProbabilisticPCA,
    VariationalGaussianMixture,
)

LIBRARIES = ["torch", "array_api_strict"]


def namespace(library):
    """``(xp, device)``: torch on the CPU, array-api-strict on its second device."""
    pytest.importorskip(library)
    compat = pytest.importorskip("array_api_compat")
    if library == "torch":
        import torch

        return compat.array_namespace(torch.zeros(1)), torch.device("cpu")
    import array_api_strict

    return array_api_strict, array_api_strict.Device("device1")


def dispatch():
    return sklearn.config_context(array_api_dispatch=True)


def to_numpy(array):
    return np.from_dlpack(array)


def data(kind="gaussian", n=240, d=4, missing=0.0, seed=0):
    rng = np.random.RandomState(seed)
    if kind == "binary":
        return (rng.rand(n, d) < np.linspace(0.2, 0.8, d)).astype(float)
    X = rng.randn(n, d) @ rng.randn(d, d) * np.logspace(-2, 2, d)  # badly scaled
    X[: n // 3] += 5 * np.logspace(-2, 2, d)
    if missing:
        X[rng.rand(n, d) < missing] = np.nan
        X[np.isnan(X).all(axis=1), 0] = 1.0
    return X


MODELS = {
    **{
        f"gmm-{kind}-{init}": (
            lambda kind=kind, init=init: EMGaussianMixture(
                3, covariance_type=kind, init_params=init, random_state=0
            ),
            "gaussian",
        )
        for kind, init in [
            ("full", "kmeans"),
            ("tied", "k-means++"),
            ("diag", "random"),
            ("spherical", "random_from_data"),
            ("tied_diag", "kmeans"),
        ]
    },
    "vgm": (lambda: VariationalGaussianMixture(n_components=3, random_state=0), "gaussian"),
    "ppca-eig": (lambda: ProbabilisticPCA(2, solver="eig"), "gaussian"),
    "ppca-em": (lambda: ProbabilisticPCA(2, solver="em", random_state=0), "gaussian"),
    "mppca": (lambda: MixtureOfPPCA(2, n_latent=2, random_state=0), "gaussian"),
    "fa": (lambda: FactorAnalysis(2, random_state=0), "gaussian"),
    "mfa": (lambda: MixtureOfFactorAnalyzers(2, n_latent=2, random_state=0), "gaussian"),
    "bernoulli": (lambda: BernoulliMixture(3, random_state=0), "binary"),
    "vae": (
        lambda: AmortizedVAE(hidden_layer_sizes=(8,), max_iter=5, random_state=0),
        "gaussian",
    ),
}

METHODS = ("score_samples", "predict", "predict_proba", "transform")


def array_attributes(model):
    """The fitted array attributes (not the parameters, which stay as given)."""
    parameters = model._get_param_names()
    return {
        key: value
        for key, value in vars(model).items()
        if isinstance(value, np.ndarray) and key not in parameters
    }


def assert_same_fit(reference, model, xp, device, rtol=1e-10):
    """Every array attribute of the numpy fit is on ``device`` in ``xp``, with its values."""
    expected = array_attributes(reference)
    assert expected
    array_type = type(xp.asarray(np.zeros(1), device=device))
    for key, value in expected.items():
        got = getattr(model, key)
        assert type(got) is array_type and got.device == device, (key, type(got))
        assert_allclose(to_numpy(got), value, rtol=rtol, atol=1e-12, err_msg=key)


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("name", list(MODELS))
def test_float64_fit_and_predictions_equal_numpys(library, name):
    """The same fit as on numpy from the same random_state: attributes, predictions,
    scores, draws, in the input's namespace and on its device."""
    xp, device = namespace(library)
    make, kind = MODELS[name]
    X = data(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (convergence warnings of the tiny fits)
        reference = make().fit(X)
        with dispatch():
            model = make().fit(xp.asarray(X, device=device))
    # (the accelerated factor mixture on a device: SQUAREM amplifies the last
    # bits of sums taken in another order; see the low-rank mixtures' test)
    on_device = library == "array_api_strict"
    assert_same_fit(
        reference, model, xp, device, rtol=1e-7 if name == "mfa" and on_device else 1e-10
    )
    X_new = data(kind, n=50, seed=1)
    with dispatch():
        X_xp = xp.asarray(X_new, device=device)
        for method in METHODS:
            if hasattr(reference, method):
                got = getattr(model, method)(X_xp)
                assert got.device == device
                expected = getattr(reference, method)(X_new)  # (probabilities: to 1e-12)
                assert_allclose(to_numpy(got), expected, rtol=1e-10, atol=1e-12)
        score = model.score(X_xp)
        drawn, latent = model.sample(7, random_state=3)
    assert isinstance(score, float)
    assert abs(score - reference.score(X_new)) <= 1e-10 * abs(score)
    expected, expected_latent = reference.sample(7, random_state=3)
    assert drawn.device == device and latent.device == device
    assert_allclose(to_numpy(drawn), expected, rtol=1e-10)
    assert_allclose(to_numpy(latent), expected_latent, rtol=1e-10)


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("name", ["gmm-full-kmeans", "gmm-diag-random", "vgm", "mppca", "mfa"])
def test_missing_values_fit_and_impute_as_on_numpy(library, name):
    """NaN (missing at random): the fit, the scores of partly observed rows and the
    imputations are numpy's, in the input's namespace."""
    xp, device = namespace(library)
    make, _ = MODELS[name]
    X = data(missing=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = make().fit(X)
        with dispatch():
            model = make().fit(xp.asarray(X, device=device))
    assert_same_fit(reference, model, xp, device, rtol=1e-9)
    assert np.all(np.diff(reference.lower_bounds_) >= -1e-12 * np.abs(reference.lower_bounds_[1:]))
    with dispatch():
        X_xp = xp.asarray(X, device=device)
        imputed = model.impute(X_xp)
        drawn = model.impute(X_xp, sample_posterior=True, random_state=0)
        log_density = model.score_samples(X_xp)
    assert imputed.device == device and not np.isnan(to_numpy(imputed)).any()
    assert_allclose(to_numpy(imputed), reference.impute(X), rtol=1e-9)
    assert_allclose(
        to_numpy(drawn), reference.impute(X, sample_posterior=True, random_state=0), rtol=1e-9
    )
    assert_allclose(to_numpy(log_density), reference.score_samples(X), rtol=1e-9)


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("name", ["gmm-full-kmeans", "gmm-tied_diag-kmeans", "mfa", "vgm"])
def test_float32_stays_float32_and_the_bound_never_falls(library, name):
    xp, device = namespace(library)
    make, _ = MODELS[name]
    X = data().astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = make().fit(X)
        with dispatch():
            model = make().fit(xp.asarray(X, device=device))
    for key, value in array_attributes(reference).items():
        got = getattr(model, key)
        assert got.dtype == getattr(xp, str(value.dtype)), key
        assert_allclose(to_numpy(got), value, rtol=1e-5, atol=1e-6, err_msg=key)
    bounds = to_numpy(model.lower_bounds_)
    assert np.all(np.diff(bounds) >= -1e-6 * np.abs(bounds[1:]))
    with dispatch():
        log_density = model.score_samples(xp.asarray(X, device=device))
    expected = reference.score_samples(X)  # (float64 sums, as on numpy)
    assert log_density.dtype == getattr(xp, str(expected.dtype))
    assert_allclose(to_numpy(log_density), expected, rtol=1e-6)


@pytest.mark.parametrize("library", LIBRARIES)
def test_weights_from_another_namespace_and_partial_fit(library):
    """sample_weight may come from numpy or another library; partial_fit's batches
    keep the model where its data are."""
    xp, device = namespace(library)
    X = data()
    weights = np.random.RandomState(1).uniform(0.5, 2.0, X.shape[0])
    reference = EMGaussianMixture(3, random_state=0).fit(X, sample_weight=weights)
    with dispatch():
        model = EMGaussianMixture(3, random_state=0).fit(
            xp.asarray(X, device=device), sample_weight=weights
        )
    assert_same_fit(reference, model, xp, device)
    online = MixtureOfPPCA(2, n_latent=2, random_state=0)
    online_np = MixtureOfPPCA(2, n_latent=2, random_state=0)
    for batch in np.array_split(X, 4):
        online_np.partial_fit(batch)
        with dispatch():
            online.partial_fit(xp.asarray(batch, device=device))
    assert_same_fit(online_np, online, xp, device)


@pytest.mark.parametrize("library", LIBRARIES)
def test_data_from_elsewhere_than_the_fit_is_a_clear_error(library):
    """With the dispatch on, a model takes data only from where it was fitted
    (scikit-learn's rule), and says so before any work."""
    xp, device = namespace(library)
    X = data()
    numpy_model = EMGaussianMixture(2, random_state=0).fit(X)
    with dispatch():
        model = EMGaussianMixture(2, random_state=0).fit(xp.asarray(X, device=device))
        means = to_numpy(model.means_).copy()
        with pytest.raises(ValueError, match=r"EMGaussianMixture.predict\(\) must use the same"):
            model.predict(X)
        with pytest.raises(ValueError, match="fitted on numpy"):
            numpy_model.score_samples(xp.asarray(X, device=device))
    assert_allclose(to_numpy(model.means_), means, rtol=0)
    # without the dispatch, arrays are converted to numpy, as scikit-learn does
    assert isinstance(model.predict(X), np.ndarray)
    converted = EMGaussianMixture(2, random_state=0).fit(xp.asarray(X, device=device))
    assert isinstance(converted.means_, np.ndarray)
    assert_allclose(converted.means_, numpy_model.means_, rtol=1e-12)


def test_a_pickled_model_predicts_where_it_was_fitted():
    xp, device = namespace("torch")
    X = data()
    with dispatch():
        model = EMGaussianMixture(3, random_state=0).fit(xp.asarray(X, device=device))
        again = pickle.loads(pickle.dumps(model))
        X_xp = xp.asarray(X, device=device)
        assert_allclose(to_numpy(again.score_samples(X_xp)), to_numpy(model.score_samples(X_xp)))


def test_means_init_in_the_namespace():
    """Starting parameters given as arrays of the input's library."""
    xp, device = namespace("torch")
    X = data()
    means = X[[0, 100, 200]]
    reference = EMGaussianMixture(3, means_init=means, random_state=0).fit(X)
    with dispatch():
        model = EMGaussianMixture(3, means_init=xp.asarray(means, device=device), random_state=0)
        model.fit(xp.asarray(X, device=device))
    assert_same_fit(reference, model, xp, device)
    assert isinstance(model.means_init, type(model.means_))  # (the parameter as given)


@pytest.mark.parametrize(
    "estimator",
    [
        EMGaussianMixture(2, random_state=0),
        EMGaussianMixture(2, covariance_type="tied_diag", random_state=0),
        VariationalGaussianMixture(n_components=2, random_state=0),
        ProbabilisticPCA(2),
        MixtureOfPPCA(2, n_latent=1, random_state=0),
        FactorAnalysis(2, random_state=0),
        MixtureOfFactorAnalyzers(2, n_latent=1, random_state=0),
        BernoulliMixture(2, binarize=0.0, random_state=0),
    ],
    ids=lambda estimator: type(estimator).__name__,
)
def test_scikit_learns_array_api_checks(estimator):
    """check_estimator's array-API checks (the tag array_api_support is set)."""
    ran = 0
    for check in _yield_array_api_checks(estimator):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                check(type(estimator).__name__, estimator)
        except Exception as error:  # noqa: BLE001 - unittest's SkipTest: absent device
            if type(error).__name__ != "SkipTest":
                raise
            continue
        ran += 1
    assert ran >= 5


@pytest.fixture
def device_work(monkeypatch):
    """Device work (``skem._core._device``) for torch on the CPU too, counting the
    device twins' blocks (array-api-strict's second device takes that route anyway)."""
    from skem._core import _device, _namespaces

    monkeypatch.setattr(_namespaces, "DEVICE_WORK_ON_HOST", True)
    calls = {"block_terms": 0, "log_density": 0}
    for name in calls:
        original = getattr(_device.MixtureDeviceTerms, name)

        def counted(self, *args, _original=original, _name=name):
            calls[_name] += 1
            return _original(self, *args)

        monkeypatch.setattr(_device.MixtureDeviceTerms, name, counted)
    return calls


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("kind", ["full", "tied", "diag", "spherical", "tied_diag"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_gaussian_mixtures_e_step_on_the_device(library, kind, dtype, device_work):
    """EMGaussianMixture's E-step and log-densities run where the data are (their
    device twins), with the numpy fit's numbers: float64 to 1e-10, float32 to its
    rounding, the bound never falling; weights; the start read on the host."""
    xp, device = namespace(library)
    X = data(n=400).astype(dtype)
    weights = np.random.RandomState(2).uniform(0.5, 2.0, X.shape[0])
    for init in ("kmeans", "random_from_data"):
        make = lambda: EMGaussianMixture(  # noqa: E731
            3, covariance_type=kind, init_params=init, random_state=0
        )
        reference = make().fit(X, sample_weight=weights)
        with dispatch():
            X_xp = xp.asarray(X, device=device)
            model = make().fit(X_xp, sample_weight=weights)
            log_density = model.score_samples(X_xp)
            labels = model.predict(X_xp)
        assert model.n_iter_ == reference.n_iter_
        if dtype == np.float64:
            assert_same_fit(reference, model, xp, device)
            assert_allclose(to_numpy(log_density), reference.score_samples(X), rtol=1e-10)
        else:
            for key in ("means_", "covariances_", "weights_"):
                got = to_numpy(getattr(model, key))
                assert got.dtype == np.float32
                assert_allclose(got, getattr(reference, key), rtol=2e-4, atol=1e-5, err_msg=key)
            bounds = to_numpy(model.lower_bounds_)
            assert np.all(np.diff(bounds) >= -1e-6 * np.abs(bounds[1:]))
        assert labels.device == device
        assert_array_equal(to_numpy(labels), reference.predict(X))
    assert device_work["block_terms"] >= model.n_iter_
    assert device_work["log_density"] >= 1


@pytest.mark.parametrize("library", LIBRARIES)
def test_rows_with_nan_on_the_device_are_read_on_the_host(library, device_work, monkeypatch):
    """A block with a missing value takes the host's exact E-step (its twin only
    takes complete blocks); the fit is numpy's."""
    from skem._core import _blocks

    monkeypatch.setattr(_blocks, "CHUNK_FLOATS", 2000)  # (blocks of about 1000 rows)
    xp, device = namespace(library)
    X = data(n=3000, missing=0.0)
    X[2500:, 1] = np.nan  # the last block only
    reference = EMGaussianMixture(3, random_state=0).fit(X)
    with dispatch():
        model = EMGaussianMixture(3, random_state=0).fit(xp.asarray(X, device=device))
        imputed = model.impute(xp.asarray(X, device=device))
    assert_same_fit(reference, model, xp, device)
    assert_allclose(to_numpy(imputed), reference.impute(X), rtol=1e-10)
    assert device_work["block_terms"] >= model.n_iter_  # (the complete blocks)


@pytest.mark.parametrize("library", LIBRARIES)
def test_bad_data_on_the_device_gets_the_hosts_message(library, device_work):
    xp, device = namespace(library)
    X = data()
    X[5, 2] = np.inf
    model = EMGaussianMixture(2, random_state=0)
    with dispatch():
        with pytest.raises(ValueError, match="Input X contains infinity"):
            model.fit(xp.asarray(X, device=device))
        with pytest.raises(ValueError, match="magnitude up to 1e"):
            model.fit(xp.asarray(np.full((5, 2), 1e120), device=device))
        with pytest.raises(ValueError, match="minimum of 2 is required"):
            model.fit(xp.asarray(X[:1], device=device))
    assert not hasattr(model, "means_")


def test_parameters_stay_as_given_and_threads_take_turns():
    """A numpy parameter (means_init) stays numpy after a fit on torch; threads
    predicting with one model fitted on torch get the answers of one thread."""
    from concurrent.futures import ThreadPoolExecutor

    xp, device = namespace("torch")
    X = data(n=2000)
    means = X[[0, 1000, 1500]]
    with dispatch():
        model = EMGaussianMixture(3, means_init=means, random_state=0)
        model.fit(xp.asarray(X, device=device))
    assert isinstance(model.means_init, np.ndarray)
    X_xp = xp.asarray(X, device=device)

    def predict(_):
        with dispatch():
            return to_numpy(model.predict_proba(X_xp))

    expected = predict(None)
    with ThreadPoolExecutor(4) as pool:
        for got in pool.map(predict, range(16)):
            assert_array_equal(got, expected)
    assert type(model.means_) is type(X_xp)


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("kind", ["full", "tied", "diag", "spherical", "tied_diag"])
def test_the_variational_mixtures_e_step_on_the_device(library, kind, device_work):
    """VariationalGaussianMixture's E-step (responsibilities, their entropy, the
    statistics) runs on the device; q(theta) and the ELBO are the host's: numpy's fit."""
    xp, device = namespace(library)
    X = data(n=400)
    weights = np.random.RandomState(2).uniform(0.5, 2.0, X.shape[0])
    iterations = 0
    for prior in ("dirichlet_process", "dirichlet_distribution"):
        make = lambda: VariationalGaussianMixture(  # noqa: E731
            n_components=3,
            covariance_type=kind,
            weight_concentration_prior_type=prior,
            random_state=0,
        )
        reference = make().fit(X, sample_weight=weights)
        with dispatch():
            model = make().fit(xp.asarray(X, device=device), sample_weight=weights)
        assert model.n_iter_ == reference.n_iter_
        assert_same_fit(reference, model, xp, device)
        iterations += model.n_iter_
    assert device_work["block_terms"] == iterations  # (one block per pass here)


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("weighted", [False, True])
def test_the_k_means_start_on_the_device_is_scikit_learns(library, weighted):
    """KMeans(n_init=1).labels_ and kmeans_plusplus's seeds from the same
    RandomState, computed on the device (the start of the Gaussian mixtures)."""
    from sklearn.cluster import KMeans, kmeans_plusplus

    from skem._core._device import device_kmeans

    xp, device = namespace(library)
    for seed, (n, d, k) in enumerate([(500, 3, 4), (2000, 10, 8), (300, 2, 12)]):
        X = data(n=n, d=d, seed=seed)
        weights = np.random.RandomState(seed).uniform(0.2, 3.0, n) if weighted else None
        X_xp = xp.asarray(X, device=device)
        expected = KMeans(k, n_init=1, random_state=np.random.RandomState(seed)).fit(
            X, sample_weight=weights
        )
        labels = device_kmeans(X_xp, weights, k, np.random.RandomState(seed))
        assert labels is not None
        assert_array_equal(labels, expected.labels_)
        _, indices = kmeans_plusplus(
            X, k, random_state=np.random.RandomState(seed), sample_weight=weights
        )
        seeds = device_kmeans(X_xp, weights, k, np.random.RandomState(seed), seeds_only=True)
        assert_array_equal(seeds, indices)
    # float32 rows far from the origin: distances in float64, as scikit-learn's
    # (in float32 the norms swallowed the gaps between clusters: other seeds)
    rng = np.random.RandomState(0)
    corners = ([0, 0, 0], [5, 5, 0], [0, 6, 6], [8, 0, 3])
    X = (np.vstack([rng.randn(100, 3) + c for c in corners]) + 1e4).astype(np.float32)
    for seed in range(6):
        _, indices = kmeans_plusplus(X, 4, random_state=np.random.RandomState(seed))
        seeds = device_kmeans(
            xp.asarray(X, device=device), None, 4, np.random.RandomState(seed), seeds_only=True
        )
        assert_array_equal(seeds, indices)


def test_an_emptied_cluster_leaves_the_start_to_the_host(monkeypatch):
    """Where scikit-learn would relocate an emptied cluster, the device k-means
    gives up and the host's KMeans starts from the same random state."""
    from skem._core import _device

    xp, device = namespace("array_api_strict")
    lloyd_step = _device._lloyd_step

    def emptied(*args):  # (after the seeds' random draws)
        labels, centers, weight_in = lloyd_step(*args)
        return labels, centers, weight_in * 0

    monkeypatch.setattr(_device, "_lloyd_step", emptied)
    X = data()
    reference = EMGaussianMixture(3, random_state=0).fit(X)
    with dispatch():
        model = EMGaussianMixture(3, random_state=0).fit(xp.asarray(X, device=device))
    assert_same_fit(reference, model, xp, device)


# ---------------------------------------------------------------------- a review's cases


@pytest.mark.parametrize("library", LIBRARIES)
def test_starting_values_with_data_on_the_device(library, device_work):
    """means_init, weights_init and precisions_init (numpy, or the data's library)
    start a fit whose data stay on the device (they failed on its dtype)."""
    xp, device = namespace(library)
    X = data()
    given = {
        "means_init": X[[0, 100, 200]],
        "weights_init": np.array([0.2, 0.3, 0.5]),
        "precisions_init": np.stack([np.eye(4)] * 3),
    }
    for name, value in given.items():
        reference = EMGaussianMixture(3, random_state=0, **{name: value}).fit(X)
        for start in (value, xp.asarray(value, device=device)):
            with dispatch():
                model = EMGaussianMixture(3, random_state=0, **{name: start})
                model.fit(xp.asarray(X, device=device))
            assert_same_fit(reference, model, xp, device)


def test_a_parameter_in_another_namespace_does_not_move_the_model():
    """A torch means_init with numpy data: the model is numpy's, and takes numpy."""
    xp, device = namespace("torch")
    X = data()
    model = EMGaussianMixture(3, means_init=xp.asarray(X[[0, 100, 200]]), random_state=0)
    with dispatch():
        model.fit(X)
        labels = model.predict(X)
        drawn = model.sample(3)[0]
    assert isinstance(model.means_, np.ndarray) and isinstance(labels, np.ndarray)
    assert isinstance(drawn, np.ndarray)


@pytest.mark.parametrize("library", LIBRARIES)
def test_a_failed_fit_leaves_the_model_where_it_was(library):
    xp, device = namespace(library)
    X = data()
    model = EMGaussianMixture(2, random_state=0).fit(X)
    means = model.means_.copy()
    bad = X.copy()
    bad[3, 1] = np.inf
    with dispatch():
        with pytest.raises(ValueError, match="infinity"):
            model.fit(xp.asarray(bad, device=device))
        assert isinstance(model.means_, np.ndarray)
        assert_array_equal(model.means_, means)
        model.predict(X)  # (still a numpy model)
        torch_model = EMGaussianMixture(2, random_state=0).fit(xp.asarray(X, device=device))
        saved = dict(vars(torch_model))
        with pytest.raises(ValueError, match="infinity"):
            torch_model.fit(xp.asarray(bad, device=device))
    assert all(vars(torch_model)[key] is value for key, value in saved.items())


def test_threads_with_and_without_the_dispatch_share_a_model():
    """One model fitted on torch: threads predicting on torch (dispatch on) and on
    numpy (dispatch off) at once all get the one-thread answers."""
    from concurrent.futures import ThreadPoolExecutor

    xp, device = namespace("torch")
    X = data(n=3000)
    with dispatch():
        model = EMGaussianMixture(3, random_state=0).fit(xp.asarray(X, device=device))
    X_xp = xp.asarray(X, device=device)
    expected = model.score_samples(X)

    def call(i):
        if i % 2:
            with dispatch():
                return to_numpy(model.score_samples(X_xp))
        return model.score_samples(X)

    with ThreadPoolExecutor(4) as pool:
        for got in pool.map(call, range(200)):
            assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize("library", LIBRARIES)
def test_predictions_on_the_device_check_as_numpys(library, device_work):
    """Predictions take values beyond the fit's magnitude limit (as in memory),
    name the rows with nothing observed, and float16 data are converted."""
    xp, device = namespace(library)
    X = data()
    reference = EMGaussianMixture(2, random_state=0).fit(X)
    far = X[:3].copy()
    far[0, 0] = 1e120
    with dispatch():
        model = EMGaussianMixture(2, random_state=0).fit(xp.asarray(X, device=device))
        got = to_numpy(model.score_samples(xp.asarray(far, device=device)))
        empty = X[:3].copy()
        empty[1] = np.nan
        with pytest.raises(ValueError, match=r"Rows \[1\] of X"):
            model.score_samples(xp.asarray(empty, device=device))
        if library == "torch":
            half = xp.asarray(X.astype(np.float16), device=device)
            converted = EMGaussianMixture(2, random_state=0).fit(half)
            expected = EMGaussianMixture(2, random_state=0).fit(X.astype(np.float16))
            assert_allclose(to_numpy(converted.means_), expected.means_, rtol=1e-10)
    assert_allclose(got, reference.score_samples(far), rtol=1e-10)


def assert_same_fit_with_missing_values(make, X, xp, device, rtol):
    """``make()`` fitted on X with a value of every 7th row missing: numpy's fit
    (the blocks with NaN take the host's exact E-step)."""
    X_nan = X.copy()
    X_nan[::7, 2] = np.nan
    reference = make().fit(X_nan)
    with dispatch():
        fitted = make().fit(xp.asarray(X_nan, device=device))
    assert_same_fit(reference, fitted, xp, device, rtol=rtol)


def count_twin_calls(monkeypatch, terms_class, method):
    """Device work for torch on the CPU too; a list that records, for each call of
    ``terms_class.method``, whether the twin took the block (not None)."""
    from skem._core import _namespaces

    monkeypatch.setattr(_namespaces, "DEVICE_WORK_ON_HOST", True)
    calls = []
    original = getattr(terms_class, method)

    def counted(self, *args):
        result = original(self, *args)
        calls.append(result is not None)
        return result

    monkeypatch.setattr(terms_class, method, counted)
    return calls


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("model", ["ppca-em", "fa", "fa-plain"])
def test_the_low_rank_e_step_on_the_device(library, model, monkeypatch):
    """ProbabilisticPCA's and FactorAnalysis' E-step (posterior means, the
    lemma's log-densities with cancelling rows recomputed, the statistics) on the
    device, with numpy's fit; a block with NaN or a far row is the host's."""
    from skem.decomposition import _lowrank_device

    calls = count_twin_calls(monkeypatch, _lowrank_device.LowRankDeviceTerms, "block_terms")
    xp, device = namespace(library)
    make = {
        "ppca-em": lambda: ProbabilisticPCA(2, solver="em", random_state=0),
        "fa": lambda: FactorAnalysis(2, random_state=0),
        "fa-plain": lambda: FactorAnalysis(2, accelerate=False, max_iter=200, random_state=0),
    }[model]
    X = data(n=600, d=6)  # (badly scaled: the lemma cancels on some rows)
    weights = np.random.RandomState(1).uniform(0.5, 2.0, X.shape[0])
    for w in (None, weights):
        reference = make().fit(X, sample_weight=w)
        with dispatch():
            fitted = make().fit(xp.asarray(X, device=device), sample_weight=w)
            log_density = fitted.score_samples(xp.asarray(X, device=device))
        assert fitted.n_iter_ == reference.n_iter_
        # SQUAREM's extrapolations amplify the last bits (the device sums in
        # another order) along the flat directions of the likelihood: the two
        # fits stop within tol (1e-6) of each other's bound and their
        # parameters differ by up to about sqrt(tol) relative along those
        # directions (2e-6 seen); plain EM's agree to 1e-10 and 1e-9
        rtol = 1e-4 if model == "fa" else 1e-9
        bound_gap = abs(to_numpy(fitted.lower_bounds_)[-1] - reference.lower_bound_)
        assert bound_gap <= (
            reference.tol if model == "fa" else 1e-10 * abs(reference.lower_bound_)
        )
        assert_same_fit(reference, fitted, xp, device, rtol=rtol)
        assert_allclose(to_numpy(log_density), reference.score_samples(X), rtol=10 * rtol)
    assert calls and all(calls)
    assert_same_fit_with_missing_values(make, X, xp, device, rtol)


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("init", ["kmeans", "k-means++", "random", "random_from_data"])
def test_the_bernoulli_mixtures_e_step_on_the_device(library, init, device_work):
    """BernoulliMixture's E-step on the device (binary rows, or binarised there),
    numpy's fit; NaN blocks the host's; non-binary data the host's message."""
    xp, device = namespace(library)
    weights = np.random.RandomState(3).uniform(0.5, 2.0, 500)
    for X, options in ((data("binary", n=500, d=8), {}), (data(n=500, d=8), {"binarize": 0.0})):
        make = lambda: BernoulliMixture(3, init_params=init, random_state=0, **options)  # noqa: E731
        reference = make().fit(X, sample_weight=weights)
        with dispatch():
            X_xp = xp.asarray(X, device=device)
            model = make().fit(X_xp, sample_weight=weights)
            probabilities = model.predict_proba(X_xp)
        assert model.n_iter_ == reference.n_iter_
        assert_same_fit(reference, model, xp, device)
        assert_allclose(to_numpy(probabilities), reference.predict_proba(X), rtol=1e-10, atol=1e-12)
    assert device_work["block_terms"] >= model.n_iter_
    X = data("binary", n=500, d=8)
    X[::9, 3] = np.nan
    reference = BernoulliMixture(3, init_params=init, random_state=0).fit(X)
    with dispatch():
        model = BernoulliMixture(3, init_params=init, random_state=0)
        model.fit(xp.asarray(X, device=device))
        with pytest.raises(ValueError, match="takes binary data"):
            BernoulliMixture(2).fit(xp.asarray(data(n=50), device=device))
    assert_same_fit(reference, model, xp, device)


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("model", ["mppca", "mfa", "mfa-plain"])
def test_the_low_rank_mixtures_e_step_on_the_device(library, model, monkeypatch):
    """MixtureOfPPCA's and MixtureOfFactorAnalyzers' E-step (each component's lemma,
    cancelling rows recomputed; the closed form's scatters) and log-densities on
    the device, with numpy's fit; blocks with NaN the host's."""
    from skem.mixture import _lowrank_mixture_device

    twin = _lowrank_mixture_device.LowRankMixtureDeviceTerms
    calls = count_twin_calls(monkeypatch, twin, "log_prob")
    xp, device = namespace(library)
    make = {
        "mppca": lambda: MixtureOfPPCA(2, n_latent=2, random_state=0),
        "mfa": lambda: MixtureOfFactorAnalyzers(2, n_latent=2, random_state=0),
        "mfa-plain": lambda: MixtureOfFactorAnalyzers(
            2, n_latent=2, accelerate=False, random_state=0
        ),
    }[model]
    # SQUAREM's extrapolations amplify the last bits (the device sums in another
    # order, and takes the d x d scatters where numpy's fit in memory takes the
    # O(n d q) sums of the same step): 1e-9 relative seen; plain EM's 1e-11
    rtol = 1e-7 if model == "mfa" else 1e-9
    X = data(n=600, d=6)
    weights = np.random.RandomState(1).uniform(0.5, 2.0, X.shape[0])
    for w in (None, weights):
        reference = make().fit(X, sample_weight=w)
        with dispatch():
            X_xp = xp.asarray(X, device=device)
            fitted = make().fit(X_xp, sample_weight=w)
            log_density = fitted.score_samples(X_xp)
        assert fitted.n_iter_ == reference.n_iter_
        assert_same_fit(reference, fitted, xp, device, rtol=rtol)
        assert_allclose(to_numpy(log_density), reference.score_samples(X), rtol=rtol)
    assert calls and all(calls)
    assert_same_fit_with_missing_values(make, X, xp, device, rtol)
