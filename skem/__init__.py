"""skem: latent-variable models trained by EM and variational inference.

scikit-learn compatible estimators that share one EM fit loop and record the
lower bound at every iteration.
"""

from ._base import BaseEM
from ._gaussian_mixture import EMGaussianMixture
from ._mixture import BaseMixture
from ._mixture_ppca import MixtureOfPPCA
from ._ppca import ProbabilisticPCA
from ._vae import AmortizedVAE
from .exceptions import DegenerateComponentWarning

__version__ = "0.1.0.dev0"

__all__ = [
    "AmortizedVAE",
    "BaseEM",
    "BaseMixture",
    "DegenerateComponentWarning",
    "EMGaussianMixture",
    "MixtureOfPPCA",
    "ProbabilisticPCA",
    "__version__",
]
