"""
Density estimation and sampling on digits
=========================================

Pixel values are integers, and integers have no density. Adding uniform
noise in [0, 1) makes them continuous ("dequantisation",
:func:`skem.datasets.load_dequantized_digits`), so held-out log-likelihoods
compare. We fit a mixture, a mixture of PPCA and a VAE,
print their held-out scores, and draw new digits from each.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import train_test_split

from skem import AmortizedVAE, EMGaussianMixture, MixtureOfPPCA
from skem.datasets import load_dequantized_digits

X, _ = load_dequantized_digits()
X_train, X_test = train_test_split(X, random_state=0)

models = {
    "EMGaussianMixture(50, diag)": EMGaussianMixture(50, covariance_type="diag", random_state=0),
    "MixtureOfPPCA(10, 10)": MixtureOfPPCA(10, 10, random_state=0),
    "AmortizedVAE(10)": AmortizedVAE(10, random_state=0),
}
fig, rows = plt.subplots(len(models), 8, figsize=(8, 3.4))
for (name, model), axes in zip(models.items(), rows):
    model.fit(X_train)
    print(f"{name:<28} held-out {model.score(X_test):8.2f} nats per image")
    samples, _ = model.sample(8, random_state=1)
    for ax, image in zip(axes, samples):
        ax.imshow(np.clip(image, 0, 17).reshape(8, 8), cmap="gray_r")
        ax.set_axis_off()
    axes[0].set_title(name, loc="left", fontsize="small")
fig.tight_layout()
