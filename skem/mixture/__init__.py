"""Mixture models: a discrete latent component, fitted by exact EM."""

from ._base import BaseMixture
from ._bernoulli import BernoulliMixture
from ._factor_mixture import MixtureOfFactorAnalyzers
from ._gaussian_mixture import EMGaussianMixture
from ._mixture_ppca import MixtureOfPPCA

__all__ = [
    "BaseMixture",
    "BernoulliMixture",
    "EMGaussianMixture",
    "MixtureOfFactorAnalyzers",
    "MixtureOfPPCA",
]
