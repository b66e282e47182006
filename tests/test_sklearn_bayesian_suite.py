"""scikit-learn's own BayesianGaussianMixture tests, run unchanged on VariationalGaussianMixture.

The installed ``sklearn/mixture/tests/test_bayesian_mixture.py`` is read at
test time, every ``BayesianGaussianMixture`` is renamed
``VariationalGaussianMixture`` (messages included, as a search-and-replace
would) and imported from skem, and its tests of the estimator are collected
here. Nothing of scikit-learn's test code is stored in this repository.
"""

from _sklearn_suites import load_renamed_suite

# Every test of the estimator, the two that call its private
# ``_check_parameters(X)`` and ``_initialize_parameters(X, random_state)``
# (test_compare_covar_type) included. Left out: test_log_dirichlet_norm and
# test_log_wishart_norm, which test scikit-learn's private helper functions
# (``_log_dirichlet_norm``, ``_log_wishart_norm``) and never build an estimator.
ESTIMATOR_TESTS = [
    "test_bayesian_mixture_weights_prior_initialisation",
    "test_bayesian_mixture_mean_prior_initialisation",
    "test_bayesian_mixture_precisions_prior_initialisation",
    "test_bayesian_mixture_check_is_fitted",
    "test_bayesian_mixture_weights",
    "test_monotonic_likelihood",
    "test_compare_covar_type",
    "test_check_covariance_precision",
    "test_invariant_translation",
    "test_bayesian_mixture_fit_predict",
    "test_bayesian_mixture_fit_predict_n_init",
    "test_bayesian_mixture_predict_predict_proba",
]

_suite = load_renamed_suite(
    "test_bayesian_mixture.py",
    {"BayesianGaussianMixture": "VariationalGaussianMixture"},
    {
        "from sklearn.mixture import VariationalGaussianMixture": (
            "from skem import VariationalGaussianMixture"
        )
    },
)

for _name in ESTIMATOR_TESTS:
    globals()[f"{_name}_sklearn"] = getattr(_suite, _name)
