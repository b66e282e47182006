"""
A variational autoencoder on digits: defaults, IWAE training and the floor
==========================================================================

:class:`skem.AmortizedVAE` fits a deep latent-variable model by stochastic
gradient ascent on the ELBO and scores held-out rows with the
importance-weighted bound (see the user guide). Here it models the
dequantised 8x8 digits, ``(X + U(0, 1)) / 17``
(:func:`skem.datasets.load_dequantized_digits`), with an 80/20 split, and we
print held-out log-likelihoods in nats per image (higher is better) and fit
times for:

* the model with every parameter at its default (the latent size ``'auto'``
  follows the number of features);
* ``n_components=20``, every other parameter at its default;
* the former defaults, one tanh layer of 128 trained at a learning rate of
  1e-3 with no average of the iterates, to see what the new defaults gained;
* the importance-weighted training objective (IWAE, ``n_training_samples=5``),
  what it gains and what it costs in time.

Then we show what the decoder's ``variance_floor`` does, on the dequantised
pixels and on the integer pixels themselves. The numbers are those of the run
that built this page (one seed, on whatever machine built it), not a
benchmark: the fit times in particular depend on how busy that machine was.
"""

import textwrap
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from skem import AmortizedVAE, VarianceFloorWarning
from skem.datasets import load_dequantized_digits

X = load_dequantized_digits(random_state=0)[0] / 17
X_train, X_test = train_test_split(X, test_size=0.2, random_state=0)
print(f"{len(X_train)} training and {len(X_test)} held-out images of {X.shape[1]} pixels")

# %%
# Defaults, a larger latent space, the former defaults and IWAE training
# ----------------------------------------------------------------------
# Each model is trained with early stopping on a tenth of the training rows
# (the default), from ``random_state=0``. The fitted weights are the moving
# average of Adam's iterates (``average_decay=0.995``); the former defaults
# kept the last iterate instead (``average_decay=0``).

models = {
    "AmortizedVAE() (all defaults)": AmortizedVAE(random_state=0),
    "n_components=20": AmortizedVAE(n_components=20, random_state=0),
    "n_components=20, former defaults": AmortizedVAE(
        n_components=20,
        hidden_layer_sizes=(128,),
        learning_rate=1e-3,
        average_decay=0,
        random_state=0,
    ),
    "n_components=20, IWAE k=5": AmortizedVAE(
        n_components=20, n_training_samples=5, random_state=0
    ),
}
scores, seconds = {}, {}
print(f"{'model':<34} {'latent':>6} {'epochs':>6} {'nats/image':>10} {'fit s':>6}")
for name, model in models.items():
    start = time.perf_counter()
    model.fit(X_train)
    seconds[name] = time.perf_counter() - start
    scores[name] = model.score(X_test)
    latent = model.transform(X_test[:1]).shape[1]
    print(f"{name:<34} {latent:>6} {model.n_iter_:>6} {scores[name]:>10.2f} {seconds[name]:>6.1f}")

gain = scores["n_components=20, IWAE k=5"] - scores["n_components=20"]
cost = seconds["n_components=20, IWAE k=5"] / seconds["n_components=20"]
print(f"IWAE (k=5) against the ELBO (k=1): {gain:+.2f} nats per image in {cost:.1f} times the time")
gain = scores["n_components=20"] - scores["n_components=20, former defaults"]
print(f"the new defaults against the former ones (n_components=20): {gain:+.2f} nats per image")

# %%
# The validation bound recorded in training (``validation_bounds_``, the
# ELBO of the held-out tenth, epoch by epoch) shows the difference: with the
# deeper network, the larger step and the average of the iterates, the bound
# climbs faster and levels off higher, and early stopping ends the fit sooner.
# The ELBO lies below the importance-weighted scores printed above: it is a
# looser bound. The IWAE model is left out: its validation curve is an
# importance-weighted estimate, not an ELBO, and would not compare.

fig, ax = plt.subplots(figsize=(6.4, 3.6))
for name in (
    "n_components=20",
    "n_components=20, former defaults",
    "AmortizedVAE() (all defaults)",
):
    bounds = models[name].validation_bounds_
    ax.plot(np.arange(1, len(bounds) + 1), bounds, label=name)
ax.set_ylim(np.percentile(models["n_components=20, former defaults"].validation_bounds_, 5), None)
ax.set_xlabel("epoch")
ax.set_ylabel("validation ELBO (nats per image)")
ax.legend(fontsize="small")
fig.tight_layout()

# %%
# The decoder's variance floor
# ----------------------------
# The Gaussian decoder gives no pixel a variance below ``variance_floor``
# times the squared median of the pixels' standard deviations
# (``decoder_variance_floor_``, printed below for each setting). On the
# dequantised digits every pixel keeps at least the variance of its uniform
# noise, even a border pixel that is always blank, and the default floor lies
# below it, so the data, not the floor, decide the score. A floor above that
# noise variance widens the density of the quiet pixels, and a larger one
# lowers the score of every image. On the integer pixels before
# dequantisation (``load_digits().data / 17``), several pixels are constant or
# nearly so in training. The floor then sets their density, the model warns
# (a :class:`~skem.VarianceFloorWarning`, caught and printed here), and the
# held-out score follows the floor: an integer-valued pixel has no density,
# and the smaller the floor, the higher the spikes the decoder may put on its
# values.
#
# We also smudge every held-out image at its top-left pixel, blank in every
# training image, setting it to 8/17, and print the mean change of its score.
#
# To keep this page quick to build, these fits stop after 40 epochs
# (``max_iter=40``, the ``ConvergenceWarning`` silenced), so their scores
# sit below those of the full fits above; the comparison between floors
# is what counts here.

pixels = load_digits().data / 17
pixels_train, pixels_test = train_test_split(pixels, test_size=0.2, random_state=0)
print(
    f"smallest pixel variance in training: dequantised {X_train.var(axis=0).min():.2g}, "
    f"integer {pixels_train.var(axis=0).min():.2g}"
)
default_floor = AmortizedVAE().get_params()["variance_floor"]
floors = [1e-1, 1e-2, default_floor, 1e-8]
datasets = {"dequantised": (X_train, X_test), "integer pixels": (pixels_train, pixels_test)}
held_out = {name: [] for name in datasets}
smudge_cost = {name: [] for name in datasets}
print(f"{'data':<15} {'variance_floor':>14} {'floor':>9} {'nats/image':>10} {'smudge':>9}")
for name, (train, test) in datasets.items():
    smudged = test.copy()
    smudged[:, 0] = 8 / 17
    for floor in floors:
        model = AmortizedVAE(20, variance_floor=floor, max_iter=40, random_state=0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("always", VarianceFloorWarning)
            model.fit(train)
        scores_test = model.score_samples(test)
        held_out[name].append(scores_test.mean())
        smudge_cost[name].append(np.mean(model.score_samples(smudged) - scores_test))
        print(
            f"{name:<15} {floor:>14.0e} {model.decoder_variance_floor_:>9.2g} "
            f"{held_out[name][-1]:>10.2f} {smudge_cost[name][-1]:>9.1f}"
        )
        floor_warnings = [w for w in caught if issubclass(w.category, VarianceFloorWarning)]
        if floor == default_floor and floor_warnings:
            message = f"VarianceFloorWarning: {floor_warnings[0].message}"
            print(textwrap.fill(message, 100, initial_indent="  ", subsequent_indent="  "))

# %%
# Below the noise variance of the dequantised pixels, neither their held-out
# score nor the cost of the smudge moves much with the floor. On the integer
# pixels the score keeps rising as the floor shrinks, and a smudge costs far
# more than on the dequantised pixels: how much depends on how far training
# has driven the pixel's variance towards the floor. Dequantise discrete data
# before comparing densities.

fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
for name in datasets:
    left.semilogx(floors, held_out[name], marker="o", label=name)
    right.loglog(floors, -np.array(smudge_cost[name]), marker="o", label=name)
for ax in (left, right):
    ax.axvline(default_floor, color="grey", linestyle=":", label="default floor")
    ax.set_xlabel("variance_floor")
left.set_ylabel("held-out nats per image")
right.set_ylabel("mean drop of the score (nats)")
right.set_title("cost of a smudge: top-left pixel set to 8/17", fontsize="small")
left.set_title("held-out score", fontsize="small")
left.legend(fontsize="small")
fig.tight_layout()
