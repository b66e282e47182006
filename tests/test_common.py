"""scikit-learn's estimator checks on every public skem estimator."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skem import (
    AmortizedVAE,
    BernoulliMixture,
    EMGaussianMixture,
    FactorAnalysis,
    GaussianMixtureIC,
    MixtureOfFactorAnalyzers,
    MixtureOfPPCA,
    ProbabilisticPCA,
    VariationalGaussianMixture,
)

ESTIMATORS = [
    EMGaussianMixture(random_state=0),
    EMGaussianMixture(n_components=2, covariance_type="diag", random_state=0),
    EMGaussianMixture(n_components=2, covariance_type="tied_diag", random_state=0),
    ProbabilisticPCA(),
    ProbabilisticPCA(n_components=1, solver="em", random_state=0),
    MixtureOfPPCA(n_components=1, n_latent=1, random_state=0),
    MixtureOfPPCA(n_components=2, n_latent=1, random_state=0),
    AmortizedVAE(hidden_layer_sizes=(8,), max_iter=20, random_state=0),
    BernoulliMixture(binarize=0.0, random_state=0),
    FactorAnalysis(random_state=0),
    FactorAnalysis(n_components=1, random_state=0),
    MixtureOfFactorAnalyzers(n_components=1, n_latent=1, random_state=0),
    MixtureOfFactorAnalyzers(n_components=2, n_latent=1, random_state=0),
    BernoulliMixture(n_components=2, binarize=0.0, random_state=0),
    VariationalGaussianMixture(random_state=0),
    GaussianMixtureIC(n_components=2, covariance_type="diag", random_state=0),
    VariationalGaussianMixture(
        n_components=2,
        covariance_type="tied_diag",
        weight_concentration_prior_type="dirichlet_distribution",
        random_state=0,
    ),
]


def expected_failed_checks(estimator):
    """The only checks allowed to fail, each with its reason."""
    if isinstance(estimator, AmortizedVAE):
        return {
            "check_sample_weight_equivalence_on_dense_data": (
                "Stochastic gradient training draws its minibatches and noise per "
                "row, so repeated rows and integer weights follow different random "
                "paths; weights scale each row's share of the gradient exactly."
            ),
        }
    if isinstance(estimator, FactorAnalysis) and estimator.n_components is None:
        return {
            "check_sample_weight_equivalence_on_dense_data": (
                "With n_features - 1 factors on the check's random data, the factors "
                "beyond the data's structure carry no variance: their posterior means "
                "are rounding noise (about 1e-10, either sign), which the check's 1e-9 "
                "tolerance sees."
            ),
        }
    if isinstance(estimator, (ProbabilisticPCA, BernoulliMixture)) or estimator.n_components == 1:
        # (a Bernoulli mixture's k-means start on binary rows finds the same centres)
        return {}
    return {
        "check_sample_weight_equivalence_on_dense_data": (
            "EM finds a local optimum from a random start: k-means on weighted rows "
            "and k-means on repeated rows draw different initial centres, so the "
            "fits differ. From the same starting parameters weighted EM equals EM "
            "on repeated rows (tests/test_gaussian_mixture.py checks this)."
        ),
    }


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
