"""skem: latent-variable models trained by EM and variational inference.

scikit-learn compatible estimators that share one EM fit loop and record the
lower bound at every iteration.
"""

from importlib import import_module

__version__ = "0.1.0.dev0"

# Public names and the module of each, imported on first use so that
# ``import skem`` (and the command line's start-up) stays fast.
_MODULES = {
    "AmortizedVAE": ".neural_network",
    "BaseEM": "._core",
    "BaseMixture": ".mixture",
    "BernoulliMixture": ".mixture",
    "DegenerateComponentWarning": ".exceptions",
    "EMGaussianMixture": ".mixture",
    "EMImputer": ".impute",
    "FactorAnalysis": ".decomposition",
    "MixtureOfFactorAnalyzers": ".mixture",
    "GaussianMixtureIC": ".mixture",
    "MixtureOfPPCA": ".mixture",
    "ProbabilisticPCA": ".decomposition",
    "VarianceFloorWarning": ".exceptions",
    "VariationalGaussianMixture": ".mixture",
}

__all__ = [*sorted(_MODULES), "__version__"]


def __getattr__(name):
    if name in _MODULES:
        value = getattr(import_module(_MODULES[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'skem' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_MODULES])
