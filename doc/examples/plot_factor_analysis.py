"""
Factor analysis on digits: one noise variance per pixel
=======================================================

Probabilistic PCA gives every feature the same noise variance. On images
that is wrong: a border pixel of ``load_digits`` is almost always blank
and varies only by its dequantisation noise, while a pixel in the middle
of the strokes varies a lot. Factor analysis
(:class:`skem.FactorAnalysis`) gives each pixel its own noise variance,
and :class:`skem.MixtureOfFactorAnalyzers` one per pixel and component.

We fit both on dequantised digits, ``(X + U(0, 1)) / 17`` with an 80/20
split, show the noise variances each learns, and compare held-out
log-likelihoods (nats per image, higher is better) and fit times with a
full-covariance Gaussian mixture and a mixture of PPCA. The numbers are
those of the run that built this page.
"""

import time

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm
from sklearn.model_selection import train_test_split

from skem import (
    EMGaussianMixture,
    FactorAnalysis,
    MixtureOfFactorAnalyzers,
    MixtureOfPPCA,
    ProbabilisticPCA,
)
from skem.datasets import load_dequantized_digits

X = load_dequantized_digits(random_state=0)[0] / 17
X_train, X_test = train_test_split(X, test_size=0.2, random_state=0)

# %%
# One noise variance, or one per pixel
# ------------------------------------
# PPCA's single noise variance sits between the quiet border pixels and the
# busy centre; factor analysis follows the data's own variance where the
# ten factors do not explain it.

ppca = ProbabilisticPCA(10).fit(X_train)
fa = FactorAnalysis(10, random_state=0).fit(X_train)
variances = {
    "data variance": X_train.var(axis=0),
    f"PPCA noise ({ppca.noise_variance_:.2g}, every pixel)": np.full(64, ppca.noise_variance_),
    "factor analysis noise": fa.noise_variance_,
}
norm = LogNorm(vmin=min(v.min() for v in variances.values()), vmax=X_train.var(axis=0).max())
fig, axes = plt.subplots(1, 3, figsize=(9, 3.4))
for ax, (title, values) in zip(axes, variances.items()):
    image = ax.imshow(values.reshape(8, 8), norm=norm, cmap="viridis")
    ax.set_title(title, fontsize="small")
    ax.set_axis_off()
fig.colorbar(image, ax=axes, shrink=0.8, label="variance (log scale)")
print(f"PPCA(10):           held-out {ppca.score(X_test):6.2f} nats per image")
print(f"FactorAnalysis(10): held-out {fa.score(X_test):6.2f} nats per image")

# %%
# Mixtures: a few low-rank components against a full-covariance mixture
# ----------------------------------------------------------------------
# Each model at its defaults but the sizes, from ``random_state=0``.

models = {
    "EMGaussianMixture(5, full)": EMGaussianMixture(5, covariance_type="full", random_state=0),
    "MixtureOfPPCA(5, 10)": MixtureOfPPCA(5, 10, random_state=0),
    "MixtureOfFactorAnalyzers(5, 10)": MixtureOfFactorAnalyzers(5, 10, random_state=0),
    "MixtureOfFactorAnalyzers(10, 5)": MixtureOfFactorAnalyzers(10, 5, random_state=0),
}
names, scores, seconds = [], [], []
for name, model in models.items():
    start = time.perf_counter()
    model.fit(X_train)
    seconds.append(time.perf_counter() - start)
    scores.append(model.score(X_test))
    names.append(name)
    print(
        f"{name:<32} held-out {scores[-1]:6.2f} nats per image, "
        f"{model.n_iter_:3d} iterations, {seconds[-1]:5.2f} s"
    )

fig, ax = plt.subplots(figsize=(7, 2.8))
ax.barh(names, scores, color=["0.6", "C0", "C1", "C1"])
for y, (score, second) in enumerate(zip(scores, seconds)):
    ax.text(score, y, f" {score:.1f} ({second:.2f} s)", va="center", fontsize="small")
ax.set_xlabel("held-out log-likelihood (nats per image)")
ax.set_xlim(0, max(scores) * 1.25)
ax.invert_yaxis()
fig.tight_layout()
plt.show()
