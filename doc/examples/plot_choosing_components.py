"""
Choosing the number of components, three ways
=============================================

How many clusters are in the data? Three answers on the same data, the
standardised iris measurements (150 flowers, 4 features, 3 species, two of
which overlap):

- **BIC search** (:class:`skem.GaussianMixtureIC`, mclust's workflow): fit every
  number of components and covariance type, keep the lowest BIC.
- **Variational pruning** (:class:`skem.VariationalGaussianMixture`): one fit
  with a Dirichlet-process prior on the weights and more components than
  needed; the data leave the unneeded ones empty.
- **Held-out likelihood** (``GridSearchCV`` over
  :class:`skem.EMGaussianMixture`): the number of components whose density
  scores best on rows it was not fitted on.

The numbers printed are those of the run that built this page.
"""

import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_iris
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.preprocessing import StandardScaler

from skem import (
    DegenerateComponentWarning,
    EMGaussianMixture,
    GaussianMixtureIC,
    VariationalGaussianMixture,
)

X = StandardScaler().fit_transform(load_iris().data)
sizes = range(1, 9)
# The measurements are rounded to 0.1 cm, so many flowers share values: with
# many components, some sit on a few repeated values and collapse there (held
# at the variance floor, each named in a DegenerateComponentWarning). We
# silence those warnings here; the large candidates they concern lose anyway.
warnings.simplefilter("ignore", DegenerateComponentWarning)

# %%
# BIC over sizes and covariance types
# -----------------------------------

start = time.perf_counter()
search = GaussianMixtureIC(n_components=8, random_state=0).fit(X)
bic_seconds = time.perf_counter() - start
print(
    f"BIC search: {search.n_components_} components, '{search.covariance_type_}' "
    f"({len(search.results_['criterion'])} fits, {bic_seconds:.2f} s)"
)

# %%
# One variational fit that prunes
# -------------------------------

start = time.perf_counter()
vgm = VariationalGaussianMixture(n_components=8, n_init=3, max_iter=500, random_state=0).fit(X)
vgm_seconds = time.perf_counter() - start
print(
    f"Variational mixture: {vgm.n_components_effective_} components hold data "
    f"({vgm_seconds:.2f} s); weights {np.sort(vgm.weights_)[::-1].round(3)}"
)

# %%
# Held-out log-likelihood by 5-fold cross-validation
# --------------------------------------------------

start = time.perf_counter()
grid = GridSearchCV(
    EMGaussianMixture(random_state=0),
    {"n_components": list(sizes), "covariance_type": ["full", "diag"]},
    cv=KFold(5, shuffle=True, random_state=0),
).fit(X)
cv_seconds = time.perf_counter() - start
best = grid.best_params_
print(
    f"Cross-validation: {best['n_components']} components, '{best['covariance_type']}', "
    f"held-out {grid.best_score_:.3f} nats per row ({cv_seconds:.2f} s)"
)

# %%
# The three views side by side
# ----------------------------

fig, (left, middle, right) = plt.subplots(1, 3, figsize=(11, 3.4))
results = search.results_
for name in ("full", "tied", "diag", "spherical"):
    chosen = results["covariance_type"] == name
    left.plot(results["n_components"][chosen], results["criterion"][chosen], "o-", label=name)
left.set(xlabel="components", ylabel="BIC (lower is better)", title="BIC search")
left.legend(fontsize="small")
middle.bar(np.arange(1, 9), np.sort(vgm.weights_)[::-1], color="C2")
middle.set(xlabel="component (by weight)", ylabel="weight", title="variational mixture")
scores = grid.cv_results_["mean_test_score"]
for name in ("full", "diag"):
    chosen = grid.cv_results_["param_covariance_type"] == name
    right.plot(np.array(list(sizes)), scores[chosen], "o-", label=name)
right.set(xlabel="components", ylabel="held-out nats per row", title="cross-validation")
right.legend(fontsize="small")
fig.tight_layout()
plt.show()

# %%
# The three need not agree. BIC penalises each parameter by ``log N`` and on
# 150 rows prefers fewer, larger components; the variational mixture's prior
# keeps a component when enough rows support it, and may split an elongated
# cluster in two; cross-validation asks which density predicts new rows best,
# the question to ask when the mixture is a density estimate rather than a
# clustering. ``GaussianMixtureIC.results_`` and ``GridSearchCV.cv_results_``
# hold the whole tables behind the curves.
