"""
Imputation by EM
================

EM fits a density to data with holes without filling them first: the E-step
integrates each row's missing values out, and the fitted density then fills
them with their conditional expectation given the observed values.

On the left, two clusters whose second coordinate is missing in a third of
the rows. Filling with the column mean puts every hole on one horizontal
line, between the clusters. The mixture's conditional mean puts each on its
cluster's regression line, weighted by how likely each cluster is given the
observed coordinate.

On the right, skem's :class:`~skem.impute.EMImputer` against scikit-learn's
imputers on the wine data (standardised), with 10% and 30% of the cells
removed at random: the error of the imputed cells.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_wine
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer
from sklearn.preprocessing import StandardScaler

from skem import EMGaussianMixture
from skem.impute import EMImputer

rng = np.random.RandomState(0)

# ---------------------------------------------------------------- two clusters
slopes = [1.5, -1.0]
clusters = []
for center, slope in zip([-3.0, 3.0], slopes):
    x = rng.normal(center, 1.0, 300)
    clusters.append(np.column_stack([x, slope * (x - center) + rng.normal(0, 0.4, 300)]))
complete = np.vstack(clusters)
holes = complete.copy()
hidden = rng.rand(len(holes)) < 1 / 3
holes[hidden, 1] = np.nan

mixture = EMGaussianMixture(2, random_state=0).fit(holes)
by_em = mixture.impute(holes)
by_mean = np.where(np.isnan(holes), np.nanmean(holes, axis=0), holes)
print("monotone bound with holes:", bool(np.all(np.diff(mixture.lower_bounds_) >= -1e-6)))

# ---------------------------------------------------------------- wine
X = StandardScaler().fit_transform(load_wine().data)
imputers = {
    "column mean": lambda: SimpleImputer(strategy="mean"),
    "KNNImputer": lambda: KNNImputer(),
    "IterativeImputer": lambda: IterativeImputer(random_state=0, max_iter=25),
    "skem EMImputer": lambda: EMImputer(random_state=0),
}
rates = [0.1, 0.3]
errors = {name: [] for name in imputers}
for rate in rates:
    removed = np.random.RandomState(1).rand(*X.shape) < rate
    with_holes = np.where(removed, np.nan, X)
    for name, make in imputers.items():
        filled = make().fit_transform(with_holes)
        errors[name].append(np.sqrt(np.mean((filled[removed] - X[removed]) ** 2)))
for name, values in errors.items():
    print(f"{name:>17}: RMSE " + ", ".join(f"{v:.3f}" for v in values) + " (10%, 30%)")

fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
left.scatter(*complete[~hidden].T, s=6, color="0.7", label="observed")
left.scatter(*by_mean[hidden].T, s=8, marker="_", color="tab:orange", label="column mean")
left.scatter(*by_em[hidden].T, s=10, color="tab:blue", label="E[x2 | x1], mixture")
left.set_xlabel("x1 (observed)")
left.set_ylabel("x2 (missing in a third of the rows)")
left.set_title("Filling the holes")
left.legend(loc="lower center", fontsize=8)

width = 0.2
for i, (name, values) in enumerate(errors.items()):
    bars = right.bar(np.arange(len(rates)) + (i - 1.5) * width, values, width, label=name)
    right.bar_label(bars, fmt="%.2f", fontsize=7)
right.set_xticks(range(len(rates)), [f"{int(rate * 100)}% missing" for rate in rates])
right.set_ylabel("RMSE of the imputed cells (standard units)")
right.set_title("wine")
right.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
fig.tight_layout()
