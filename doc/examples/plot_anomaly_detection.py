"""
Anomaly detection with ``score_samples`` in a Pipeline
======================================================

Every skem model gives a true log-density, so a low ``score_samples`` flags
an unusual row. We train on benign tumours of the breast-cancer data. Then
we rank held-out benign and malignant tumours, and compare the ROC curves
with scikit-learn's detectors on the same split.
"""

import matplotlib.pyplot as plt
from sklearn.covariance import EllipticEnvelope
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.neighbors import LocalOutlierFactor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skem import AmortizedVAE, EMGaussianMixture, ProbabilisticPCA
from skem.datasets import load_anomaly_split

train, test, is_anomaly = load_anomaly_split()

detectors = {
    "EMGaussianMixture(2)": EMGaussianMixture(2, random_state=0),
    "ProbabilisticPCA(5)": ProbabilisticPCA(5),
    "AmortizedVAE(4)": AmortizedVAE(4, random_state=0),
    "IsolationForest": IsolationForest(random_state=0),
    "LocalOutlierFactor": LocalOutlierFactor(novelty=True),
    "EllipticEnvelope": EllipticEnvelope(support_fraction=1.0, random_state=0),
}
curves = {}
for name, detector in detectors.items():
    scores = make_pipeline(StandardScaler(), detector).fit(train).score_samples(test)
    false_positive, true_positive, _ = roc_curve(is_anomaly, -scores)
    curves[name] = false_positive, true_positive, roc_auc_score(is_anomaly, -scores)
    print(f"{name:<22} ROC AUC {curves[name][2]:.3f}")

# %%
# The curves lie close together, so each detector gets its own panel, with the
# other five in grey behind it.
fig, axes = plt.subplots(2, 3, figsize=(10, 6.5), sharex=True, sharey=True)
for index, (ax, name) in enumerate(zip(axes.flat, curves)):
    for other, (other_false, other_true, _) in curves.items():
        if other != name:
            ax.plot(other_false, other_true, color="0.8", linewidth=1)
    false_positive, true_positive, auc = curves[name]
    ax.plot(false_positive, true_positive, color="C0" if index < 3 else "C1", linewidth=2)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_title(f"{name}\nAUC {auc:.3f}", fontsize="medium")
for ax in axes[-1]:
    ax.set_xlabel("false positive rate")
for ax in axes[:, 0]:
    ax.set_ylabel("true positive rate")
fig.suptitle(
    "Malignant tumours as anomalies of the benign ones\nskem (top row), scikit-learn (bottom row)"
)
fig.tight_layout()
