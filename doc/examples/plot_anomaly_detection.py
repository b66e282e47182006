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
fig, ax = plt.subplots(figsize=(6, 5))
for name, detector in detectors.items():
    scores = make_pipeline(StandardScaler(), detector).fit(train).score_samples(test)
    false_positive, true_positive, _ = roc_curve(is_anomaly, -scores)
    auc = roc_auc_score(is_anomaly, -scores)
    ax.plot(false_positive, true_positive, label=f"{name} (AUC {auc:.3f})")
    print(f"{name:<22} ROC AUC {auc:.3f}")
ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
ax.set_xlabel("false positive rate")
ax.set_ylabel("true positive rate")
ax.set_title("Malignant tumours as anomalies of the benign ones")
ax.legend(fontsize="small")
