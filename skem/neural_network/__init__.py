"""Amortised variational inference: the VAE and its networks."""

from ._vae import AmortizedVAE

__all__ = ["AmortizedVAE"]
