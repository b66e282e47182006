"""The importance-weighted training objective (IWAE) and the KL weight of AmortizedVAE."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.special import logsumexp
from sklearn.exceptions import ConvergenceWarning
from test_vae import assert_gradient_matches_central_differences, fitted_vae

from skem import AmortizedVAE
from skem.neural_network._mlp import forward


def iwae_objective(vae, parameters, X, weights, noise, kl_weight, n_samples):
    """Written forward only: per row log mean_j w_ij with
    log w_ij = log p(x|z_ij) + kl_weight (log N(z_ij; 0, I) - log N(z_ij; mu, sigma^2)),
    returning (weighted mean objective, per-row bound at kl_weight=1)."""
    encoder, decoder = vae._networks(parameters)
    _, mean, log_variance = vae._encode(encoder, X)
    std = np.exp(0.5 * log_variance)
    draws = noise.reshape(X.shape[0], n_samples, -1)
    latent = mean[:, None, :] + std[:, None, :] * draws
    flat = latent.reshape(-1, latent.shape[-1])
    decoded = forward(decoder, flat, vae.activation)[-1]
    reconstruction, _ = vae._reconstruction(np.repeat(X, n_samples, axis=0), decoded)
    reconstruction = reconstruction.reshape(X.shape[0], n_samples)
    log_prior = -0.5 * np.sum(latent**2 + np.log(2 * np.pi), axis=2)
    log_q = -0.5 * np.sum(draws**2 + log_variance[:, None, :] + np.log(2 * np.pi), axis=2)
    bound = logsumexp(reconstruction + log_prior - log_q, axis=1) - np.log(n_samples)
    trained = logsumexp(reconstruction + kl_weight * (log_prior - log_q), axis=1)
    return np.sum(weights * trained) / weights.sum(), bound


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("kl_weight", [1.0, 0.6])
def test_importance_weighted_gradients_match_finite_differences(likelihood, activation, kl_weight):
    vae, X = fitted_vae(likelihood, activation)
    rng = np.random.RandomState(4)
    parameters = vae.parameters_ + rng.normal(scale=0.1, size=vae.parameters_.shape)
    k = 4
    noise, weights = rng.normal(size=(len(X) * k, 3)), rng.uniform(0.5, 2.0, size=len(X))
    bound, gradient = vae._objective_and_gradient(parameters, X, weights, noise, kl_weight, k)
    expected_value, expected_bound = iwae_objective(
        vae, parameters, X, weights, noise, kl_weight, k
    )
    assert_allclose(bound, expected_bound, rtol=1e-12, atol=1e-12)
    assert_gradient_matches_central_differences(
        vae,
        gradient,
        lambda point: iwae_objective(vae, point, X, weights, noise, kl_weight, k)[0],
        parameters,
    )


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_one_draw_is_todays_elbo(likelihood):
    """n_samples=1 is the ELBO with the KL in closed form, and its expectation is the
    one-draw importance-weighted bound: the two agree on average over many draws."""
    vae, X = fitted_vae(likelihood, "tanh")
    rng = np.random.RandomState(5)
    noise = rng.normal(size=(len(X), 3))
    elbo, gradient = vae._objective_and_gradient(vae.parameters_, X, None, noise, 1.0, 1)
    reconstruction, kl = vae._elbo_terms(X, noise[:, None, :])
    assert_allclose(elbo, reconstruction[:, 0] - kl, rtol=1e-12)
    # the sampled-KL form (k = 1 of the IWAE formula) has the same mean
    many = rng.normal(size=(4000, 3))
    sampled = [
        iwae_objective(vae, vae.parameters_, X[:1], np.ones(1), draw[None], 1.0, 1)[1][0]
        for draw in many
    ]
    reconstruction, kl = vae._elbo_terms(X[:1], many[None])
    assert abs(np.mean(sampled) - (reconstruction.mean() - kl[0])) < 4 * np.std(sampled) / 60


def test_importance_weighted_bound_rises_with_the_draws_and_training_records_it():
    """On average over draws the k-draw bound rises with k (Burda et al.'s theorem 1);
    a model trained with k=5 records that bound in lower_bounds_."""
    vae, X = fitted_vae("gaussian", "tanh")
    rng = np.random.RandomState(6)
    means = []
    for k in (1, 4, 16):
        values = [
            vae._objective_and_gradient(
                vae.parameters_, X, None, rng.normal(size=(len(X) * k, 3)), 1.0, k
            )[0].mean()
            for _ in range(50)
        ]
        means.append(np.mean(values))
    assert means[0] < means[1] < means[2]
    rng = np.random.RandomState(0)
    data = np.tanh(rng.normal(size=(300, 2))) @ rng.normal(size=(2, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = AmortizedVAE(2, n_training_samples=5, max_iter=15, random_state=0).fit(data)
    assert (
        np.isfinite(model.lower_bounds_).all() and model.lower_bounds_[-1] > model.lower_bounds_[0]
    )
    assert np.isfinite(model.score_samples(data)).all()


def test_kl_weight_changes_training_not_the_reported_bound():
    """A beta-VAE's lower_bounds_ remain the ELBO: the epoch's bound equals the ELBO
    recomputed from the final parameters within the minibatch noise."""
    rng = np.random.RandomState(0)
    data = np.tanh(rng.normal(size=(300, 2))) @ rng.normal(size=(2, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        kwargs = dict(max_iter=20, random_state=0, early_stopping=False, kl_warmup=0)
        plain = AmortizedVAE(2, **kwargs).fit(data)
        heavy = AmortizedVAE(2, kl_weight=4.0, **kwargs).fit(data)
    # a larger KL weight shrinks the KL and the ELBO's reconstruction term
    kl_plain = plain.elbo_samples(data)["kl"].mean()
    kl_heavy = heavy.elbo_samples(data)["kl"].mean()
    assert kl_heavy < kl_plain
    elbo = heavy.elbo_samples(data)["elbo"].mean()
    assert abs(heavy.lower_bounds_[-1] - elbo) < 0.5


def test_the_variance_floor_is_relative_to_the_median_feature_scale():
    """Every feature's decoder variance is at least decoder_variance_floor_ =
    variance_floor x the squared median feature deviation, in the user's units, so a
    feature nearly constant in training (named in a warning) no longer makes a test
    row that differs there score hundreds of thousands of nats below the rest."""
    from skem import VarianceFloorWarning

    rng = np.random.RandomState(0)
    X = np.tanh(rng.normal(size=(400, 2))) @ rng.normal(size=(2, 5)) * [1.0, 2.0, 3.0, 0.5, 1.0]
    X[:, 2] = 7.0 + 1e-7 * rng.normal(size=400)  # nearly constant
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with pytest.warns(VarianceFloorWarning, match=r"features \[2\]"):
            vae = AmortizedVAE(2, max_iter=20, random_state=0).fit(X)
    median_deviation = np.median(X.std(axis=0))
    assert_allclose(vae.decoder_variance_floor_, 1e-3 * median_deviation**2, rtol=1e-10)
    _, deviation = vae._decode(rng.normal(scale=3.0, size=(500, 2)))
    assert deviation.min() ** 2 >= vae.decoder_variance_floor_ * (1 - 1e-9)
    shifted = X[:5].copy()
    shifted[:, 2] += 1.0  # a unit away on the nearly constant feature
    # at most (1 / floor) / 2 below: about 1e3 nats here, 5e13 with a per-feature floor
    drop = vae.score_samples(X[:5]) - vae.score_samples(shifted)
    assert np.all(drop < 0.5 / vae.decoder_variance_floor_ + 50)


def test_binary_data_with_a_gaussian_decoder_point_to_bernoulli():
    from skem import VarianceFloorWarning

    X = (np.random.RandomState(0).uniform(size=(200, 6)) < 0.3).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with pytest.warns(VarianceFloorWarning, match="likelihood='bernoulli'"):
            AmortizedVAE(2, max_iter=2, random_state=0).fit(X)
        with warnings.catch_warnings():
            warnings.simplefilter("error", VarianceFloorWarning)
            AmortizedVAE(2, max_iter=2, likelihood="bernoulli", random_state=0).fit(X)


@pytest.mark.parametrize("n_features, latent", [(6, 2), (64, 16), (200, 20)])
def test_the_default_latent_size_follows_the_number_of_features(n_features, latent):
    X = np.random.RandomState(0).normal(size=(60, n_features))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        vae = AmortizedVAE(hidden_layer_sizes=(8,), max_iter=2, random_state=0).fit(X)
        assert vae.transform(X[:3]).shape == (3, latent)
        vae.partial_fit(X[:30])  # 'auto' resolves to the fitted size again
    assert vae.n_components == "auto" and vae.n_steps_ == 1


def test_features_on_far_apart_scales_and_constant_columns_train_in_any_units():
    """The floor's ratio is clipped in logarithms (it overflowed float32 and float64
    before), and an exactly constant column is scaled as a typical feature, so its
    density does not depend on the data's units."""
    rng = np.random.RandomState(0)
    base = np.tanh(rng.normal(size=(200, 2))) @ rng.normal(size=(2, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)
        far = AmortizedVAE(2, max_iter=3, random_state=0).fit(
            base * [1e-12, 1e10, 1e10, 1e10, 1e10]
        )
        assert np.isfinite(far.score_samples(base * [1e-12, 1e10, 1e10, 1e10, 1e10])).all()
        wide = AmortizedVAE(2, max_iter=3, training_dtype="float64", random_state=0)
        wide.fit(base * [1e-150, 1e-150, 1e98, 1e98, 1e98])
        assert np.isfinite(wide.parameters_).all()
        constant = np.column_stack([base, np.zeros(len(base))])
        scores = []
        for units in (1e-3, 1.0, 1e3):
            model = AmortizedVAE(2, max_iter=5, random_state=0).fit(constant * units)
            scores.append(model.score_samples(constant * units) + 6 * np.log(units))
    assert_allclose(scores[0], scores[1], rtol=1e-4)
    assert_allclose(scores[2], scores[1], rtol=1e-4)
