"""Time ProbabilisticPCA against scikit-learn's PCA (full and randomized SVD).

Each row is fit + score_samples on the same data in the same run; the ratio is
skem's time over PCA's. The held-out mean log-likelihoods are printed too
(PCA's uses the N-1 covariance, so it differs slightly from the ML value).

    python benchmarks/bench_ppca.py [--n-samples 20000] [--n-features 1000]
"""

import argparse
import time

import numpy as np
from sklearn.decomposition import PCA

from skem import ProbabilisticPCA


def make_data(n_samples, n_features, n_latent, seed=0):
    rng = np.random.RandomState(seed)
    loadings = rng.normal(size=(n_features, n_latent)) * np.linspace(3, 1, n_latent)
    latent = rng.normal(size=(n_samples, n_latent))
    return latent @ loadings.T + rng.normal(size=(n_samples, n_features))


def fit_and_score(estimator, X_train, X_test):
    start = time.perf_counter()
    estimator.fit(X_train)
    score = float(np.mean(estimator.score_samples(X_test)))
    return time.perf_counter() - start, score


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=20_000)
    parser.add_argument("--n-features", type=int, default=1000)
    parser.add_argument("--n-components", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    q = args.n_components
    X = make_data(2 * args.n_samples, args.n_features, q)
    X_train, X_test = X[: args.n_samples], X[args.n_samples :]
    print(f"fit + score_samples, N={args.n_samples} D={args.n_features} q={q}, "
          f"median of {args.repeats} alternating runs")
    contenders = {
        "PCA(svd_solver='full')": lambda: PCA(q, svd_solver="full"),
        "PCA(svd_solver='randomized')": lambda: PCA(q, svd_solver="randomized", random_state=0),
        "ProbabilisticPCA(solver='em')": lambda: ProbabilisticPCA(q, solver="em", random_state=0),
        "ProbabilisticPCA(solver='eig')": lambda: ProbabilisticPCA(q, solver="eig"),
    }
    times = {name: [] for name in contenders}
    scores = {}
    for _ in range(args.repeats):
        for name, make in contenders.items():
            elapsed, scores[name] = fit_and_score(make(), X_train, X_test)
            times[name].append(elapsed)
    medians = {name: float(np.median(values)) for name, values in times.items()}
    print(f"{'estimator':<32} {'seconds':>8} {'held-out score':>15}")
    for name in contenders:
        print(f"{name:<32} {medians[name]:>8.3f} {scores[name]:>15.4f}")
    for ours in ("ProbabilisticPCA(solver='em')", "ProbabilisticPCA(solver='eig')"):
        for theirs in ("PCA(svd_solver='full')", "PCA(svd_solver='randomized')"):
            print(f"ratio {ours} / {theirs}: {medians[ours] / medians[theirs]:.2f}")


if __name__ == "__main__":
    main()
