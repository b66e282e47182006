"""
Choosing the number of components and latent dimensions with GridSearchCV
=========================================================================

``score`` is the mean held-out log-likelihood, so ``GridSearchCV`` with its
default scoring picks the model that predicts new data best. Here it searches
the number of components of a Gaussian mixture, and then the latent dimension
of probabilistic PCA on data drawn from a model with four latent dimensions.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_blobs
from sklearn.model_selection import GridSearchCV

from skem import EMGaussianMixture, ProbabilisticPCA

X_blobs, _ = make_blobs(600, n_features=2, centers=4, cluster_std=1.0, random_state=3)
mixtures = GridSearchCV(EMGaussianMixture(random_state=0), {"n_components": range(1, 9)}).fit(
    X_blobs
)

rng = np.random.RandomState(0)
loadings = rng.normal(size=(12, 4)) * 2
X_ppca = rng.normal(size=(800, 4)) @ loadings.T + 0.5 * rng.normal(size=(800, 12))
subspaces = GridSearchCV(ProbabilisticPCA(), {"n_components": range(1, 10)}).fit(X_ppca)

fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
left.plot(range(1, 9), mixtures.cv_results_["mean_test_score"], marker="o")
left.set_xlabel("n_components")
left.set_ylabel("held-out mean log-likelihood")
left.set_title(f"mixture: best {mixtures.best_params_['n_components']} (true 4)")
right.plot(range(1, 10), subspaces.cv_results_["mean_test_score"], marker="o")
right.set_xlabel("latent dimension")
right.set_title(f"PPCA: best {subspaces.best_params_['n_components']} (true 4)")
fig.tight_layout()
print(mixtures.best_params_, subspaces.best_params_)
