"""Time ProbabilisticPCA against scikit-learn's PCA (full and randomized SVD).

Each row is fit + score_samples on the same data in the same run; the ratio is
skem's time over PCA's. The held-out mean log-likelihoods are printed too
(PCA's uses the N-1 covariance, so it differs slightly from the ML value).

The comparison runs twice: with the default BLAS threads in this process, then
with OPENBLAS_NUM_THREADS=1 in a subprocess (the variable must be set before
numpy is imported). Within each, the contenders alternate (in reversed order
every other repeat) and the medians are compared; the range of the per-repeat
ratios shows how noisy the machine was.

    python benchmarks/bench_ppca.py [--n-samples 20000] [--n-features 1000] [--repeats 5]
"""

import argparse
import os
import subprocess
import sys
import time

import numpy as np
from _machine import cpu_name
from sklearn.decomposition import PCA
from threadpoolctl import threadpool_info

from skem import ProbabilisticPCA

SINGLE_THREAD_FLAG = "--single-thread-child"


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


def blas_threads():
    """Thread count of every BLAS library loaded (numpy's and scipy's OpenBLAS)."""
    return ", ".join(
        f"{os.path.basename(info['filepath']).split('-')[0]}={info['num_threads']}"
        for info in threadpool_info()
        if info["user_api"] == "blas"
    )


def compare(args, setting):
    q = args.n_components
    X = make_data(2 * args.n_samples, args.n_features, q)
    X_train, X_test = X[: args.n_samples], X[args.n_samples :]
    print(f"\n== {setting}: {blas_threads()}; {cpu_name()}, {os.cpu_count()} CPUs")
    print(
        f"fit + score_samples, N={args.n_samples} D={args.n_features} q={q}, "
        f"median of {args.repeats} alternating runs",
        flush=True,
    )
    contenders = {
        "PCA(svd_solver='full')": lambda: PCA(q, svd_solver="full"),
        "PCA(svd_solver='randomized')": lambda: PCA(q, svd_solver="randomized", random_state=0),
        "ProbabilisticPCA() ('auto')": lambda: ProbabilisticPCA(q, random_state=0),
        "ProbabilisticPCA(solver='em')": lambda: ProbabilisticPCA(q, solver="em", random_state=0),
        "ProbabilisticPCA(solver='eig')": lambda: ProbabilisticPCA(q, solver="eig"),
    }
    names = list(contenders)
    for make in contenders.values():  # warm up: libraries loaded, thread pools started
        fit_and_score(make(), X_train[:2000], X_test[:2000])
    times = {name: [] for name in names}
    scores = {}
    for repeat in range(args.repeats):
        for name in names if repeat % 2 == 0 else reversed(names):
            elapsed, scores[name] = fit_and_score(contenders[name](), X_train, X_test)
            times[name].append(elapsed)
    medians = {name: float(np.median(values)) for name, values in times.items()}
    print(f"{'estimator':<32} {'median s':>8} {'min s':>7} {'max s':>7} {'held-out score':>15}")
    for name in names:
        print(
            f"{name:<32} {medians[name]:>8.3f} {min(times[name]):>7.3f} "
            f"{max(times[name]):>7.3f} {scores[name]:>15.4f}"
        )
    print("ratio of medians (range of the per-repeat ratios):")
    for ours in names[2:]:
        for theirs in names[:2]:
            per_repeat = np.divide(times[ours], times[theirs])
            print(
                f"  {ours:<31} / {theirs:<29} {medians[ours] / medians[theirs]:5.2f} "
                f"({per_repeat.min():.2f}-{per_repeat.max():.2f})"
            )
    sys.stdout.flush()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=20_000)
    parser.add_argument("--n-features", type=int, default=1000)
    parser.add_argument("--n-components", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(SINGLE_THREAD_FLAG, action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if getattr(args, SINGLE_THREAD_FLAG[2:].replace("-", "_")):
        compare(args, "OPENBLAS_NUM_THREADS=1")
        return
    default = os.environ.get("OPENBLAS_NUM_THREADS")
    compare(
        args,
        "default BLAS threads"
        if default is None
        else f"BLAS threads as set (OPENBLAS_NUM_THREADS={default})",
    )
    child_arguments = [arg for arg in sys.argv[1:] if arg != SINGLE_THREAD_FLAG]
    subprocess.run(
        [sys.executable, os.path.abspath(__file__), *child_arguments, SINGLE_THREAD_FLAG],
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
        check=True,
    )


if __name__ == "__main__":
    main()
