"""
Weighted EM
===========

``fit(X, sample_weight=w)`` runs EM with each row counted ``w`` times. That
is useful for data that arrive as unique rows with counts, for importance
weights, and for removing rows (weight 0) without copying. From the same
start, integer weights give exactly the fit on repeated rows.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_blobs

from skem import EMGaussianMixture
from skem.plotting import plot_mixture_ellipses

X, _ = make_blobs(300, centers=3, cluster_std=[1.0, 1.5, 0.5], random_state=2)
counts = np.random.RandomState(0).randint(1, 5, size=len(X))

start = EMGaussianMixture(3, max_iter=0, random_state=0).fit(X)
same_start = dict(
    weights_init=start.weights_,
    means_init=start.means_,
    precisions_init=start.precisions_,
    tol=1e-10,
)
weighted = EMGaussianMixture(3, **same_start).fit(X, sample_weight=counts)
repeated = EMGaussianMixture(3, **same_start).fit(np.repeat(X, counts, axis=0))
print("largest difference of the means:", np.abs(weighted.means_ - repeated.means_).max())
print("bounds equal:", np.allclose(weighted.lower_bounds_, repeated.lower_bounds_))

fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
plot_mixture_ellipses(EMGaussianMixture(3, random_state=0).fit(X), X, ax=left)
left.set_title("unweighted")
plot_mixture_ellipses(weighted, X, ax=right)
right.set_title("weighted by counts")
fig.tight_layout()
