"""Mixture models: a discrete latent component, fitted by exact EM or variational inference."""

from ._base import BaseMixture
from ._bernoulli import BernoulliMixture
from ._factor_mixture import MixtureOfFactorAnalyzers
from ._gaussian_mixture import EMGaussianMixture
from ._mixture_ppca import MixtureOfPPCA
from ._selection import GaussianMixtureIC
from ._variational import VariationalGaussianMixture

__all__ = [
    "BaseMixture",
    "BernoulliMixture",
    "EMGaussianMixture",
    "GaussianMixtureIC",
    "MixtureOfFactorAnalyzers",
    "MixtureOfPPCA",
    "VariationalGaussianMixture",
]
