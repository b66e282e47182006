"""
Probabilistic PCA with missing values
=====================================

EM for PPCA handles missing values exactly, with no imputation step. Each
row's posterior comes from its observed coordinates, and the rows of the
loading matrix are regressed jointly with the mean. Filling the gaps with
column means instead biases the subspace. We hide a growing share of the
breast-cancer measurements and compare both subspaces with the one fitted
on the complete data.
"""

import matplotlib.pyplot as plt
import numpy as np
from scipy.linalg import subspace_angles
from sklearn.datasets import load_breast_cancer
from sklearn.preprocessing import StandardScaler

from skem import ProbabilisticPCA

X = StandardScaler().fit_transform(load_breast_cancer().data)
complete = ProbabilisticPCA(3).fit(X)


def largest_angle(model):
    """Largest principal angle (degrees) between a model's subspace and the complete one's."""
    return np.degrees(subspace_angles(model.components_.T, complete.components_.T)).max()


fractions = [0.05, 0.1, 0.2, 0.3, 0.4]
n_masks = 5
em_angles = np.empty((len(fractions), n_masks))
imputed_angles = np.empty_like(em_angles)
for i, fraction in enumerate(fractions):
    for seed in range(n_masks):
        missing = X.copy()
        missing[np.random.RandomState(seed).rand(*X.shape) < fraction] = np.nan
        em_angles[i, seed] = largest_angle(ProbabilisticPCA(3, random_state=0).fit(missing))
        filled = np.where(np.isnan(missing), np.nanmean(missing, axis=0), missing)
        imputed_angles[i, seed] = largest_angle(ProbabilisticPCA(3).fit(filled))

fig, ax = plt.subplots()
for angles, marker, label in [
    (em_angles, "o", "EM with missing values"),
    (imputed_angles, "s", "mean imputation, then PPCA"),
]:
    line = ax.plot(fractions, angles.mean(axis=1), marker=marker, label=label)[0]
    ax.plot(np.repeat(fractions, n_masks), angles.ravel(), ".", color=line.get_color(), alpha=0.3)
ax.set_xlabel("fraction of values missing")
ax.set_ylabel("largest principal angle to the\ncomplete-data subspace (degrees)")
ax.set_title(f"mean over {n_masks} random masks (dots: each mask)")
ax.legend()
print(em_angles.mean(axis=1).round(2), imputed_angles.mean(axis=1).round(2))
