"""Impute removed cells of real data sets: skem's EMImputer against scikit-learn's imputers.

Each data set bundled with scikit-learn (wine, breast cancer, diabetes, digits)
is standardised (so errors are in standard deviations), then cells are removed

- completely at random: 10% or 30% of all cells ("10%", "30%");
- at random given another column ("MAR"): the columns are paired at random,
  one column of each pair always observed; a value of the other is removed
  with probability 0.6 times the rank of its partner's value in that row
  (from 0 for the partner's lowest value to 0.6 for its highest): 30% of the
  values of half the columns, more where the partner is high, which biases a
  column-mean imputation.

Every imputer fits and transforms the data with holes (``fit_transform``); the
table gives the root-mean-square error on the removed cells (mean over seeds),
the median time, and skem's time over IterativeImputer's. Each thread setting
runs in a fresh process (BLAS threads are fixed at import): the default, and
one thread (``OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1``: skem's chunk threads
and the OpenMP of the k-means start follow ``OMP_NUM_THREADS``; on a busy
machine their threads waiting for a core can cost more than the work).

    python benchmarks/bench_impute.py [--datasets wine,breast_cancer,diabetes,digits]
        [--patterns 10%,30%,MAR] [--seeds 0,1,2] [--threads default,1]
"""

import argparse
import os
import subprocess
import sys
import time
import warnings

import numpy as np
from _machine import cpu_name
from sklearn import datasets
from sklearn.exceptions import ConvergenceWarning
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer
from sklearn.linear_model import BayesianRidge
from sklearn.preprocessing import StandardScaler

from skem import EMImputer

DATASETS = {
    "wine": datasets.load_wine,
    "breast_cancer": datasets.load_breast_cancer,
    "diabetes": datasets.load_diabetes,
    "digits": datasets.load_digits,
}

THREAD_SETTINGS = {"default": {}, "1": {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}}

METHODS = ("skem", "mean", "knn", "iterative")


def load_standardized(name):
    return StandardScaler().fit_transform(DATASETS[name]().data)


def removed_cells(X, pattern, seed):
    """Boolean mask of the cells to remove, for a pattern of PATTERNS."""
    rng = np.random.RandomState(seed)
    if pattern.endswith("%"):
        return rng.uniform(size=X.shape) < float(pattern[:-1]) / 100
    n_samples, n_features = X.shape
    columns = rng.permutation(n_features)
    n_pairs = n_features // 2
    partners, targets = columns[:n_pairs], columns[n_pairs : 2 * n_pairs]
    # ranks of the partner's values in [0, 1), ties broken by row order
    ranks = np.argsort(np.argsort(X[:, partners], axis=0, kind="stable"), axis=0) / n_samples
    mask = np.zeros(X.shape, dtype=bool)
    mask[:, targets] = rng.uniform(size=ranks.shape) < 0.6 * ranks
    return mask


def imputers(seed):
    return {
        "skem": EMImputer(random_state=seed),
        "mean": SimpleImputer(strategy="mean"),
        "knn": KNNImputer(),
        "iterative": IterativeImputer(estimator=BayesianRidge(), random_state=seed),
    }


def impute_once(imputer, X, mask):
    """Fit-transform X with ``mask`` removed; return (RMSE on the removed cells, seconds)."""
    holes = np.where(mask, np.nan, X)
    start = time.perf_counter()
    imputed = imputer.fit_transform(holes)
    elapsed = time.perf_counter() - start
    return float(np.sqrt(np.mean((imputed[mask] - X[mask]) ** 2))), elapsed


def measure(name, pattern, seeds):
    """Mean RMSE and median time of every method, over the seeds' masks."""
    X = load_standardized(name)
    errors = {method: [] for method in METHODS}
    times = {method: [] for method in METHODS}
    for seed in seeds:
        mask = removed_cells(X, pattern, seed)
        for method, imputer in imputers(seed).items():
            error, elapsed = impute_once(imputer, X, mask)
            errors[method].append(error)
            times[method].append(elapsed)
    return (
        {method: float(np.mean(values)) for method, values in errors.items()},
        {method: float(np.median(values)) for method, values in times.items()},
    )


def format_row(threads, name, pattern, errors, times):
    others = min(errors[method] for method in METHODS if method != "skem")
    verdict = "yes" if errors["skem"] < others else "NO"
    rmse = " ".join(f"{errors[method]:>9.3f}" for method in METHODS)
    seconds = " ".join(f"{times[method]:>9.3f}" for method in METHODS)
    ratio = times["skem"] / times["iterative"]
    return f"{threads:<8} {name:<14} {pattern:<4} {rmse}  {verdict:>5}  {seconds}  {ratio:>6.2f}"


def header():
    rmse = " ".join(f"{method:>9}" for method in METHODS)
    seconds = " ".join(f"{method + ' s':>9}" for method in METHODS)
    return f"{'threads':<8} {'dataset':<14} {'rate':<4} {rmse}  {'best?':>5}  {seconds}  {'skem/it':>6}"


def run_single(args):
    """Measure every data set and pattern in this process; print one row each."""
    warnings.simplefilter("ignore", ConvergenceWarning)  # IterativeImputer's max_iter
    seeds = [int(seed) for seed in args.seeds.split(",")]
    for name in args.datasets.split(","):
        for pattern in args.patterns.split(","):
            errors, times = measure(name, pattern, seeds)
            print(format_row(args.threads, name, pattern, errors, times), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--patterns", default="10%,30%,MAR")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--threads", default="default,1")
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single:
        run_single(args)
        return
    print(
        f"RMSE of the removed cells in standard deviations (mean over seeds {args.seeds}) "
        f"and median seconds of fit_transform; best? = skem below every other RMSE; "
        f"{cpu_name()}, {os.cpu_count()} CPUs",
        flush=True,
    )
    print(header(), flush=True)
    for threads in args.threads.split(","):
        command = [sys.executable, __file__, "--single", "--threads", threads]
        for option in ("datasets", "patterns", "seeds"):
            command += [f"--{option}", getattr(args, option)]
        subprocess.run(command, check=True, env={**os.environ, **THREAD_SETTINGS[threads]})


if __name__ == "__main__":
    main()
