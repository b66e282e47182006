"""Continuous latent-variable models of a linear Gaussian decoder, fitted by exact EM."""

from ._ppca import ProbabilisticPCA

__all__ = ["ProbabilisticPCA"]
