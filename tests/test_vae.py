"""AmortizedVAE: gradients, the bound against closed forms, and its use as a density."""

import pickle
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import expit
from scipy.stats import multivariate_normal
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skem import AmortizedVAE, EMGaussianMixture, ProbabilisticPCA
from skem.datasets import load_anomaly_split, load_dequantized_digits
from skem.neural_network._elbo import _MinibatchELBO, moment_matched_normal, softplus_and_sigmoid
from skem.neural_network._mlp import Adam, forward


def fitted_vae(likelihood, activation, hidden=(7, 6), seed=0):
    rng = np.random.RandomState(seed)
    X = rng.uniform(size=(30, 5)) if likelihood == "bernoulli" else rng.normal(size=(30, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        vae = AmortizedVAE(
            3,
            hidden_layer_sizes=hidden,
            activation=activation,
            likelihood=likelihood,
            max_iter=2,
            training_dtype="float64",
            random_state=seed,
        ).fit(X)
    return vae, vae._standardize(X, np.float64)


def objective(vae, parameters, X, weights, noise, kl_weight):
    """The training objective, computed forward only."""
    encoder, decoder = vae._networks(parameters)
    _, mean, log_variance = vae._encode(encoder, X)
    std = np.exp(0.5 * log_variance)
    decoded = forward(decoder, mean + std * noise, vae.activation)[-1]
    reconstruction, _ = vae._reconstruction(X, decoded)
    kl = 0.5 * np.sum(mean**2 + std**2 - 1 - log_variance, axis=1)
    return np.sum(weights * (reconstruction - kl_weight * kl)) / weights.sum()


def assert_gradient_matches_central_differences(vae, gradient, objective_at, parameters):
    """Central differences (step 1e-6) of ``objective_at`` agree with ``gradient``
    in every weight and bias block of the encoder and decoder."""
    numeric = np.empty_like(parameters)
    for i in range(parameters.size):
        step = np.zeros_like(parameters)
        step[i] = 1e-6
        numeric[i] = (objective_at(parameters + step) - objective_at(parameters - step)) / 2e-6
    encoder, decoder = vae._networks(np.arange(parameters.size))
    for weight, bias in encoder + decoder:
        for block in (weight.ravel(), bias):
            error = np.abs(numeric[block] - gradient[block]).max()
            assert error <= 1e-6 * np.abs(gradient).max()


def perturbed_point(vae, n_samples, seed):
    """Parameters near the fit's, reparameterisation noise (n, 3) and row weights, from one seed."""
    rng = np.random.RandomState(seed)
    parameters = vae.parameters_ + rng.normal(scale=0.1, size=vae.parameters_.shape)
    noise, weights = rng.normal(size=(n_samples, 3)), rng.uniform(0.5, 2.0, size=n_samples)
    return parameters, noise, weights


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_gradients_match_finite_differences_in_every_parameter_block(likelihood, activation):
    vae, X = fitted_vae(likelihood, activation)
    parameters, noise, weights = perturbed_point(vae, len(X), seed=1)
    _, gradient = vae._objective_and_gradient(parameters, X, weights, noise, 0.7)
    assert_gradient_matches_central_differences(
        vae, gradient, lambda point: objective(vae, point, X, weights, noise, 0.7), parameters
    )


def linear_gaussian_vae():
    """A VAE trained on PPCA data with affine networks and a constant decoder variance."""
    rng = np.random.RandomState(0)
    loadings = rng.normal(size=(6, 2)) * 2
    X = rng.normal(size=(4000, 2)) @ loadings.T + 0.5 * rng.normal(size=(4000, 6)) + 3
    X_train, X_test = X[:2000], X[2000:]
    vae = AmortizedVAE(2, hidden_layer_sizes=(), random_state=0, max_iter=2000).fit(X_train)
    return vae, X_train, X_test


@pytest.fixture(scope="module")
def linear_case():
    return linear_gaussian_vae()


def test_trained_linear_vae_approaches_the_ppca_optimum(linear_case):
    vae, X_train, X_test = linear_case
    two, one = (ProbabilisticPCA(q).fit(X_train).score(X_test) for q in (2, 1))
    assert abs(vae.score(X_test) - two) < 0.1 * abs(two - one)


def test_bounds_stay_below_the_closed_form_and_tighten_with_more_samples(linear_case):
    vae, _, X_test = linear_case
    vae, X_test = pickle.loads(pickle.dumps(vae)), X_test[:500]
    _, decoder = vae._networks(vae.parameters_)
    weight, bias = decoder[0]
    n_features = X_test.shape[1]
    weight[:, n_features:] = 0.0  # constant decoder variance: a linear-Gaussian model
    loadings, offset = weight[:, :n_features].astype(float), bias[:n_features].astype(float)
    variance = vae._decoder_floor() + np.logaddexp(0, bias[n_features:].astype(float))
    scale = vae.feature_scale_
    covariance = (loadings.T @ loadings + np.diag(variance)) * np.outer(scale, scale)
    exact = multivariate_normal(offset * scale + vae.feature_mean_, covariance).logpdf(X_test)

    assert vae.elbo_samples(X_test)["elbo"].mean() < exact.mean()
    errors = []
    for n_draws in (1, 10, 100, 1000, 5000):
        estimate = vae.set_params(n_importance_samples=n_draws).score_samples(X_test)
        assert estimate.mean() < exact.mean() + 3 * estimate.std() / np.sqrt(len(X_test))
        errors.append(np.abs(estimate - exact).mean())
    assert errors[-1] < errors[0] / 20
    assert errors[-1] < 2e-3


def test_scores_are_per_row_deterministic_and_finite():
    X = StandardScaler().fit_transform(load_breast_cancer().data)
    vae = AmortizedVAE(4, max_iter=20, random_state=0).fit(X)
    scores = vae.score_samples(X)
    # Per-row determinism is the promise, not bitwise identity across batch
    # layouts: BLAS blocking depends on a row's position, so the last bits
    # may differ when the same row is scored in another batch or order.
    assert_allclose(vae.score_samples(X[::-1]), scores[::-1], rtol=1e-12)
    assert_allclose(vae.score_samples(X[5:6]), scores[5:6], rtol=1e-12)
    assert np.all(np.isfinite(vae.score_samples(X * 1e3)))
    again = AmortizedVAE(4, max_iter=20, random_state=0).fit(X)
    assert_array_equal(again.score_samples(X), scores)


def test_scores_are_in_the_users_units():
    X = StandardScaler().fit_transform(load_breast_cancer().data)
    vae = AmortizedVAE(4, max_iter=20, random_state=0).fit(X)
    scaled = AmortizedVAE(4, max_iter=20, random_state=0).fit(X * 10.0)
    assert_allclose(
        scaled.score_samples(X * 10.0), vae.score_samples(X) - X.shape[1] * np.log(10.0), rtol=1e-4
    )


def test_digits_held_out_likelihood_beats_mixtures_and_ppca():
    """Default settings, only n_components: the table the issue asks for."""
    X, _ = load_dequantized_digits()
    X_train, X_test = train_test_split(X, random_state=0)
    vae = AmortizedVAE(10, random_state=0).fit(X_train)
    best_mixture = max(
        EMGaussianMixture(k, covariance_type="diag", random_state=0).fit(X_train).score(X_test)
        for k in (20, 50)
    )
    best_ppca = ProbabilisticPCA(63).fit(X_train).score(X_test)
    assert vae.score(X_test) > max(best_mixture, best_ppca)


def test_anomaly_detection_in_a_pipeline_at_least_as_good_as_a_gaussian_mixture():
    train, test, is_anomaly = load_anomaly_split()
    auc = {}
    for name, model in {
        "vae": AmortizedVAE(4, random_state=0),
        "gmm": EMGaussianMixture(2, random_state=0),
    }.items():
        scores = make_pipeline(StandardScaler(), model).fit(train).score_samples(test)
        assert np.all(np.isfinite(scores))
        auc[name] = roc_auc_score(is_anomaly, -scores)
    assert auc["vae"] >= auc["gmm"] - 0.01


def test_early_stopping_records_validation_bounds_and_keeps_the_best_epoch():
    X = StandardScaler().fit_transform(load_breast_cancer().data)
    vae = AmortizedVAE(4, max_iter=500, n_iter_no_change=5, random_state=0).fit(X)
    assert vae.validation_bounds_.shape == vae.lower_bounds_.shape
    assert vae.n_iter_ < 500 and vae.converged_
    best_epoch = int(np.argmax(vae.validation_bounds_))
    assert vae.n_iter_ - 1 - best_epoch <= 5  # stopped within n_iter_no_change of the best
    refit = AmortizedVAE(4, max_iter=best_epoch + 1, n_iter_no_change=500, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        refit.fit(X)
    assert_allclose(refit.parameters_, vae.parameters_)  # the kept epoch is the best one


def test_bernoulli_likelihood_on_binary_images():
    X = (load_digits().data > 7).astype(float)
    vae = AmortizedVAE(8, likelihood="bernoulli", max_iter=50, random_state=0).fit(X)
    samples, latent = vae.sample(5, random_state=0)
    assert set(np.unique(samples)) <= {0.0, 1.0} and latent.shape == (5, 8)
    probabilities = vae.inverse_transform(vae.transform(X[:5]))
    assert np.all((probabilities >= 0) & (probabilities <= 1))
    assert vae.score(X) > X.shape[1] * np.log(0.5)
    with pytest.raises(ValueError, match="needs data in \\[0, 1\\]"):
        AmortizedVAE(likelihood="bernoulli").fit(X * 2)


def test_elbo_terms_add_up_and_transform_is_the_encoder_mean():
    X = StandardScaler().fit_transform(load_breast_cancer().data)
    vae = AmortizedVAE(3, max_iter=10, random_state=0).fit(X)
    terms = vae.elbo_samples(X)
    assert_allclose(terms["elbo"], terms["reconstruction"] - terms["kl"])
    assert np.all(terms["kl"] >= 0)
    encoder, _ = vae._networks(vae.parameters_.astype(float))
    assert_allclose(vae.transform(X), vae._encode(encoder, vae._standardize(X, float))[1])
    assert vae.parameters_.dtype == np.float32
    assert vae.transform(X.astype(np.float32)).dtype == np.float32


def test_bad_parameters_raise_value_error():
    X = np.random.RandomState(0).normal(size=(20, 3))
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        AmortizedVAE(hidden_layer_sizes=(4, 0)).fit(X)
    with pytest.raises(ValueError, match="likelihood"):
        AmortizedVAE(likelihood="poisson").fit(X)
    with pytest.raises(ValueError, match="Z has 3 columns"):
        AmortizedVAE(2, max_iter=2).fit(X).inverse_transform(np.zeros((1, 3)))


def test_moment_matched_noise_has_exact_first_two_moments():
    noise = moment_matched_normal(50, 3, np.random.RandomState(0))
    assert_allclose(noise.mean(axis=0), 0.0, atol=1e-12)
    assert_allclose(noise.T @ noise / 50, np.eye(3), atol=1e-12)
    assert_array_equal(moment_matched_normal(1, 3, np.random.RandomState(0)), np.zeros((1, 3)))


def test_set_output_and_feature_names():
    from sklearn.datasets import load_iris

    X = load_iris(as_frame=True).data
    vae = AmortizedVAE(2, max_iter=5, random_state=0).set_output(transform="pandas")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        frame = vae.fit(X).transform(X)
    assert list(frame.columns) == ["amortizedvae0", "amortizedvae1"]


def test_restarts_keep_their_own_validation_history_and_plot():
    X = StandardScaler().fit_transform(load_breast_cancer().data)
    vae = AmortizedVAE(3, max_iter=40, n_init=3, random_state=0).fit(X)
    assert vae.validation_bounds_.shape == vae.lower_bounds_.shape


def test_zero_weight_rows_are_ignored_and_bad_weights_are_value_errors():
    X = StandardScaler().fit_transform(load_breast_cancer().data)
    weights = np.r_[np.ones(300), np.zeros(len(X) - 300)]
    vae = AmortizedVAE(3, max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        vae.fit(X, sample_weight=weights)
    assert np.all(np.isfinite(vae.parameters_))
    with pytest.raises(ValueError, match="at least two rows of positive sample_weight"):
        AmortizedVAE(3).fit(X, sample_weight=np.r_[1.0, np.zeros(len(X) - 1)])


def test_clipped_log_variance_has_zero_gradient():
    vae, X = fitted_vae("gaussian", "tanh")
    encoder, _ = vae._networks(vae.parameters_)
    encoder[-1][1][3:] = -40.0  # push every log-variance below the clip
    noise = np.random.RandomState(0).normal(size=(len(X), 3))
    _, gradient = vae._objective_and_gradient(vae.parameters_, X, None, noise, 1.0)
    gradient_encoder, _ = vae._networks(gradient)
    assert_allclose(gradient_encoder[-1][1][3:], 0.0)


def test_bernoulli_model_rejects_data_outside_the_unit_interval_at_score_time():
    X = (load_digits().data > 7).astype(float)
    vae = AmortizedVAE(2, likelihood="bernoulli", max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        vae.fit(X)
    with pytest.raises(ValueError, match="values in \\[0, 1\\]"):
        vae.score_samples(X * 5)


def test_no_information_criteria_without_a_parameter_count():
    """The VAE's likelihood is only bounded: no bic or aic, rather than a raise."""
    assert not hasattr(AmortizedVAE(), "bic") and not hasattr(AmortizedVAE(), "aic")
    assert hasattr(EMGaussianMixture(), "bic") and hasattr(EMGaussianMixture(), "aic")


def reference_terms(vae, parameters, X, noise):
    """Per-row reconstruction and KL, and the decoder output gradient, by the scoring formulas."""
    encoder, decoder = vae._networks(parameters)
    _, mean, log_variance = vae._encode(encoder, X)
    std = np.exp(0.5 * log_variance)
    decoded = forward(decoder, mean + std * noise, vae.activation)[-1]
    reconstruction, output_gradient = vae._reconstruction(X, decoded)
    kl = 0.5 * np.sum(mean**2 + std**2 - 1 - log_variance, axis=1)
    return reconstruction, kl, output_gradient


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_in_place_training_step_matches_the_allocating_formulas(likelihood, activation):
    """Training fuses the ELBO into in-place passes; scoring keeps the plain formulas."""
    vae, X = fitted_vae(likelihood, activation)
    parameters, noise, weights = perturbed_point(vae, len(X), seed=3)
    step = _MinibatchELBO(vae, parameters, len(X))
    step.load(X, np.arange(len(X)))
    elbo, _ = step(len(X), weights, noise, 0.7)
    reconstruction, kl, output_gradient = reference_terms(vae, parameters, X, noise)
    assert_allclose(elbo, reconstruction - kl, rtol=1e-12)
    # the gradient with respect to the decoder output, before backpropagation
    scaled = output_gradient * (weights / weights.sum())[:, np.newaxis]
    assert_allclose(
        step.views(len(X)).output_gradient.T, scaled, rtol=1e-10, atol=1e-14 * np.abs(scaled).max()
    )


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_training_step_reuses_its_buffers_across_batch_sizes(likelihood, activation):
    """One step object serves every batch of a fit, the last one shorter: nothing leaks."""
    vae, X = fitted_vae(likelihood, activation)
    rng = np.random.RandomState(2)
    step = _MinibatchELBO(vae, vae.parameters_, 12)
    for rows in (np.arange(12), rng.permutation(30)[:5], rng.permutation(30)[:12], [29, 3, 3]):
        rows = np.asarray(rows)
        noise, weights = rng.normal(size=(rows.size, 3)), rng.uniform(0.5, 2.0, size=rows.size)
        step.load(X, rows)
        elbo, gradient = step(rows.size, weights, noise, 0.3)
        fresh_elbo, fresh_gradient = vae._objective_and_gradient(
            vae.parameters_, X[rows], weights, noise, 0.3
        )
        assert_allclose(elbo, fresh_elbo, rtol=1e-12)
        assert_allclose(
            gradient, fresh_gradient, rtol=1e-12, atol=1e-14 * np.abs(fresh_gradient).max()
        )


def test_float32_training_step_stays_float32_and_agrees_with_float64():
    vae, X = fitted_vae("gaussian", "tanh")
    rng = np.random.RandomState(4)
    noise, weights = rng.normal(size=(len(X), 3)), rng.uniform(0.5, 2.0, size=len(X))
    elbo, gradient = vae._objective_and_gradient(vae.parameters_, X, weights, noise, 0.5)
    elbo32, gradient32 = vae._objective_and_gradient(
        vae.parameters_.astype(np.float32), X.astype(np.float32), weights, noise, 0.5
    )
    assert elbo32.dtype == np.float32 and gradient32.dtype == np.float32
    # float32 rounding (eps 6e-8) accumulated over sums of 30 rows and a few layers
    assert_allclose(elbo32, elbo, rtol=1e-5)
    assert_allclose(gradient32, gradient, rtol=0, atol=1e-5 * np.abs(gradient).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softplus_and_sigmoid_are_stable_at_every_scale(dtype):
    x = np.concatenate([-np.logspace(-8, 4, 40), [0.0], np.logspace(-8, 4, 40)]).astype(dtype)
    softplus, sigmoid = np.empty_like(x), np.empty_like(x)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow is fine
        softplus_and_sigmoid(x, softplus, sigmoid)
    exact = x.astype(np.float64)
    eps, tiny = np.finfo(dtype).eps, np.finfo(dtype).tiny
    assert_allclose(softplus, np.logaddexp(0, exact).astype(dtype), rtol=2 * eps, atol=tiny)
    # sigmoid(x) = exp(x - softplus(x)): the subtraction rounds at the scale of |x|
    relative_error = np.abs(sigmoid - expit(exact)) / np.maximum(expit(exact), tiny / eps)
    assert np.all(relative_error <= 2 * eps * np.maximum(1, np.abs(exact)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_in_place_matches_the_textbook_update(dtype):
    rng = np.random.RandomState(0)
    parameters = rng.normal(size=50).astype(dtype)
    expected, first, second = parameters.astype(np.float64), np.zeros(50), np.zeros(50)
    optimizer = Adam(50, dtype, 0.01)
    for step in range(1, 8):
        gradient = rng.normal(size=50).astype(dtype)
        optimizer.ascend(parameters, gradient)
        first = 0.9 * first + 0.1 * gradient
        second = 0.999 * second + 0.001 * gradient.astype(np.float64) ** 2
        expected += 0.01 * (first / (1 - 0.9**step)) / (np.sqrt(second / (1 - 0.999**step)) + 1e-8)
        assert parameters.dtype == dtype
        assert_allclose(parameters, expected, rtol=0, atol=50 * np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_keeps_the_moving_average_of_its_iterates(dtype):
    rng = np.random.RandomState(0)
    parameters = rng.normal(size=50).astype(dtype)
    average = parameters.copy()
    expected = average.astype(np.float64)
    optimizer = Adam(50, dtype, 0.01, average_decay=0.5)
    for step in range(1, 8):
        optimizer.ascend(parameters, rng.normal(size=50).astype(dtype), average)
        decay = min(0.5, (1 + step) / (10 + step))  # the warm-up, then the decay
        expected = decay * expected + (1 - decay) * parameters
        assert average.dtype == dtype
        assert_allclose(average, expected, rtol=0, atol=50 * np.finfo(dtype).eps)


def test_the_model_is_the_average_of_the_iterates_and_training_continues_from_it():
    X = StandardScaler().fit_transform(load_breast_cancer().data)
    settings = dict(hidden_layer_sizes=(8,), max_iter=3, early_stopping=False, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        plain = AmortizedVAE(2, average_decay=0.0, **settings).fit(X)
        averaged = AmortizedVAE(2, **settings).fit(X)
    assert plain._iterate is plain.parameters_  # one buffer: the model is the iterate
    # a continued fit starts from the model kept, not from the last iterate
    assert averaged._iterate is not averaged.parameters_
    assert_array_equal(averaged._iterate, averaged.parameters_)
    assert not np.allclose(averaged.parameters_, plain.parameters_)
    # partial_fit keeps its iterate from call to call, and averaging changes what
    # is kept, not the steps: the iterate is that of the model without averaging
    streams = [
        AmortizedVAE(2, hidden_layer_sizes=(8,), average_decay=decay, random_state=0)
        for decay in (0.0, 0.995)
    ]
    for vae in streams:
        vae.partial_fit(X[:300]).partial_fit(X[300:])
    assert_array_equal(streams[1]._iterate, streams[0].parameters_)
    assert not np.allclose(streams[1].parameters_, streams[0].parameters_)
    assert np.isfinite(streams[1].score_samples(X)).all()


def test_training_runs_blas_on_one_thread(monkeypatch):
    from threadpoolctl import threadpool_info

    threads = []
    ascend = Adam.ascend

    def counting_ascend(self, *args):
        blas = [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]
        threads.append(max(blas, default=1))
        return ascend(self, *args)

    monkeypatch.setattr(Adam, "ascend", counting_ascend)
    X = np.random.RandomState(0).normal(size=(40, 3))
    vae = AmortizedVAE(2, hidden_layer_sizes=(4,), batch_size=20, max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        vae.fit(X).partial_fit(X)
    assert len(threads) == 2 * 2 + 2 and set(threads) == {1}


def test_warm_start_trains_on_with_new_buffers():
    X = StandardScaler().fit_transform(load_breast_cancer().data)
    vae = AmortizedVAE(3, max_iter=2, warm_start=True, early_stopping=False, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        first = vae.fit(X).parameters_.copy()
        assert not hasattr(vae, "_step")  # the buffers are fit scratch
        second = vae.fit(X).parameters_
    # (each fit ends without Adam's state: the warm start's Adam was a fresh one)
    assert vae._optimizer is None and vae._average_steps > 0
    assert np.all(np.isfinite(second)) and not np.array_equal(first, second)
    cold = AmortizedVAE(3, max_iter=2, early_stopping=False, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert not np.allclose(cold.fit(X).parameters_, second)  # (it went on from the first)


def test_hyper_parameters_changed_after_fit_do_not_change_the_fitted_model():
    X = StandardScaler().fit_transform(load_breast_cancer().data)
    vae = AmortizedVAE(3, hidden_layer_sizes=(16,), max_iter=5, random_state=0).fit(X)
    scores, latent = vae.score_samples(X[:20]), vae.transform(X[:20])
    vae.set_params(
        n_components=5, hidden_layer_sizes=(8, 8), likelihood="bernoulli", activation="relu"
    )
    assert_allclose(vae.score_samples(X[:20]), scores, rtol=1e-12)
    assert_allclose(vae.transform(X[:20]), latent, rtol=1e-12)
    assert vae.get_feature_names_out().shape == (3,)
    assert vae.sample(4, random_state=0)[0].shape == (4, X.shape[1])
    with pytest.raises(ValueError, match="warm_start=True continues the fitted model"):
        vae.set_params(warm_start=True).fit(X)


def test_diverged_training_raises_and_leaves_the_estimator_unchanged():
    X = StandardScaler().fit_transform(load_breast_cancer().data)
    vae = AmortizedVAE(
        2,
        hidden_layer_sizes=(8,),
        max_iter=30,
        learning_rate=1e38,
        early_stopping=False,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ValueError, match="Training diverged at epoch"):
            vae.fit(X)
    assert not hasattr(vae, "parameters_")


def test_one_huge_sample_weight_trains_a_finite_model():
    X = StandardScaler().fit_transform(load_breast_cancer().data)
    weights = np.ones(len(X))
    weights[0] = 1e300
    vae = AmortizedVAE(2, hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            vae.fit(X, sample_weight=weights)
        except ValueError as error:  # a clear refusal is honest too; NaN is not
            assert "diverged" in str(error) and not hasattr(vae, "parameters_")
            return
    assert np.isfinite(vae.parameters_).all() and np.isfinite(vae.score_samples(X)).all()


def test_rows_beyond_the_float_range_in_feature_scales_score_minus_inf_not_nan():
    """After a fit on data of scale 1e-100, values of 1e300 lie about 1e400 feature
    scales out: standardised they overflowed to inf, which the encoder turned into
    NaN (inf - inf) and the score into NaN. Their log-density is below the float
    range: the decoder's outputs are bounded (tanh hidden units lie in [-1, 1]), so
    for every z the first value's term (x - mean)^2 / variance, computed here in
    log10, exceeds twice the largest float. The other rows score as they do alone."""
    X = np.random.RandomState(0).normal(size=(200, 4)) * 1e-100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        vae = AmortizedVAE(2, hidden_layer_sizes=(8,), max_iter=10, random_state=0).fit(X)
    beyond = np.array([[1e300] * 4, [-1e300, 0.0, 0.0, 0.0], [1e300, np.nan, 0.0, 0.0]])
    rows = np.vstack([beyond, X[:2], [X[2, 0], np.nan, X[2, 2], X[2, 3]]])
    scores = vae.score_samples(rows)
    weight, bias = vae._networks(vae.parameters_)[1][-1]
    output_bound = np.abs(weight).sum(axis=0, dtype=np.float64) + np.abs(bias)
    mean_bound, variance_bound = (
        output_bound[0],
        vae._decoder_floor()[0] + np.logaddexp(0, output_bound[4]),
    )
    log10_standardised = np.log10(np.abs(beyond[:, 0] - vae.feature_mean_[0])) - np.log10(
        vae.feature_scale_[0]
    )
    assert np.all(log10_standardised > 300) and mean_bound < 1e300  # |x - mean| > x / 2 then
    log10_term = 2 * (log10_standardised - np.log10(2)) - np.log10(variance_bound)
    assert np.all(log10_term > np.log10(2) + np.log10(np.finfo(np.float64).max))
    assert_array_equal(scores[:3], -np.inf)
    assert_allclose(scores[3:], vae.score_samples(rows[3:]), rtol=1e-12)
    assert np.isfinite(scores[3:]).all()
    estimates = vae.importance_weighted_estimates(beyond, 10, 2, random_state=0)
    assert_array_equal(estimates, -np.inf)


def test_set_params_between_calls_applies_to_the_continued_training():
    """average_decay and learning_rate changed between calls take effect (review: they
    were read once, from the first fit's optimiser); after fit a fresh Adam starts from
    the kept weights, whichever restart was kept."""
    X = np.random.RandomState(0).randn(200, 4)
    vae = AmortizedVAE(2, hidden_layer_sizes=(8,), max_iter=3, n_init=2, random_state=0)
    vae.fit(X)
    assert vae._optimizer is None  # (the kept restart's Adam is not the last's)
    kept = vae.parameters_.copy()
    vae.set_params(average_decay=0.0, learning_rate=1e-12).partial_fit(X)
    assert vae._iterate is vae.parameters_
    np.testing.assert_allclose(vae.parameters_, kept, atol=1e-9)  # (a step of ~1e-12)
    assert vae._optimizer.step_count == int(np.ceil(200 / vae.batch_size))
    vae.set_params(average_decay=0.9, learning_rate=1e-3).partial_fit(X)
    assert vae._iterate is not vae.parameters_ and vae._optimizer.average_decay == 0.9
    # the average follows its formula from the kept weights over this call's steps
    stream = AmortizedVAE(2, hidden_layer_sizes=(8,), average_decay=0.0, random_state=0)
    stream.partial_fit(X)
    before = stream.parameters_.copy()
    stream.set_params(average_decay=0.5).partial_fit(X)
    assert not np.allclose(stream._iterate, before)
    assert np.all(np.isfinite(stream.parameters_))


def test_a_continued_fit_moves_the_kept_average_slowly():
    """warm_start: the average keeps its count of steps, so a continuation moves it
    slowly (a new user's continued fits each scored lower when the average restarted
    its warm-up: 76.65, 76.59, 76.37, 76.26 on digits)."""
    X = StandardScaler().fit_transform(load_breast_cancer().data)
    vae = AmortizedVAE(3, hidden_layer_sizes=(16,), max_iter=30, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        vae.fit(X)
    start = vae.parameters_.copy()
    assert vae._optimizer is None and vae._average_steps > 0  # (no Adam state kept)
    # a gentle continuation moves the average little in its first epoch: far less
    # than the same continuation's last iterate (average_decay=0, the same steps)
    vae.set_params(warm_start=True, learning_rate=1e-3, max_iter=1, early_stopping=False)
    last_iterate = pickle.loads(pickle.dumps(vae)).set_params(average_decay=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        vae.fit(X)
        last_iterate.fit(X)
    moved = np.abs(vae.parameters_ - start).max()
    assert 0 < moved < 0.2 * np.abs(last_iterate.parameters_ - start).max()


def test_the_fitted_latent_size_is_public():
    X = StandardScaler().fit_transform(load_breast_cancer().data)  # 30 features: 'auto' is 7
    vae = AmortizedVAE(max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        vae.fit(X)
    assert vae.n_components_ == 7 == vae.transform(X[:2]).shape[1]
    assert vae.get_feature_names_out().shape == (7,)
