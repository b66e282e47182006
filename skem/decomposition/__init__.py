"""Continuous latent-variable models of a linear Gaussian decoder, fitted by exact EM."""

from ._factor_analysis import FactorAnalysis
from ._ppca import ProbabilisticPCA

__all__ = ["FactorAnalysis", "ProbabilisticPCA"]
