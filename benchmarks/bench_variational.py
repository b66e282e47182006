"""Time VariationalGaussianMixture against scikit-learn's BayesianGaussianMixture in one run.

Both start from the same rows (``init_params='random_from_data'``, one seed)
and run the same number of iterations (tol=0), so the ratio is a ratio of
time per iteration; the largest difference of the fitted means is printed as
a check that both did the same work. Each thread setting runs in a fresh
process: the default BLAS threads, and ``OPENBLAS_NUM_THREADS=1``.

    python benchmarks/bench_variational.py [--n-samples 50000] [--n-features 50]
        [--n-components 20] [--n-iter 10] [--repeats 3]
        [--covariance-types full,tied,diag,spherical]

RESULTS (2026-12-07, AMD EPYC, 2 cores; ``--repeats 3``, the defaults above)::

    quiet machine (load average 0.8 at the start, 1.5 at the end):
     default       full  sklearn    8.33 s  skem    1.89 s  ratio  0.23  max |means gap| 1.9e-14
    1 thread       full  sklearn    7.63 s  skem    1.85 s  ratio  0.24  max |means gap| 1.7e-14
    after the scatters skip rows below their rounding (a98e478, load 1.3):
     default       full  sklearn    6.76 s  skem    1.66 s  ratio  0.25  max |means gap| 2.0e-14
    1 thread       full  sklearn    8.22 s  skem    1.60 s  ratio  0.19  max |means gap| 1.9e-14
    loaded machine (load average 3.5 to 5.6, other jobs running):
     default       full  sklearn   63.51 s  skem    6.46 s  ratio  0.10  max |means gap| 1.9e-14
    1 thread       full  sklearn   13.95 s  skem    5.33 s  ratio  0.38  max |means gap| 1.7e-14

skem's chunks run on its own two threads (one BLAS thread each) in both
settings; on a busy machine they get less than two cores, hence its 0.38 there.
With everything on one thread (``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1``,
loaded machine) skem took 3.5 s against scikit-learn's 9.8 s (0.36): both spend
their time in the same matrix products, skem 1.5 K N D^2 multiply-adds per
iteration (a product for the E-step, a syrk for the statistics), scikit-learn
2 K N D^2 plus its N x D temporaries.
"""

import argparse
import os
import subprocess
import sys
import time
import warnings

import numpy as np
from _machine import cpu_name
from bench_gmm import make_data  # (the same overlapping mixture as the EM benchmark)
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture

from skem import VariationalGaussianMixture

THREAD_SETTINGS = {"default": {}, "1 thread": {"OPENBLAS_NUM_THREADS": "1"}}


def time_both(X, n_components, covariance_type, n_iter, repeats):
    """Median seconds of each estimator (interleaved runs) and the means' difference."""
    params = dict(
        n_components=n_components,
        covariance_type=covariance_type,
        max_iter=n_iter,
        tol=0,
        init_params="random_from_data",
        random_state=0,
    )
    times = {"sklearn": [], "skem": []}
    fitted = {}
    for _ in range(repeats):
        for name, estimator in [
            ("sklearn", BayesianGaussianMixture),
            ("skem", VariationalGaussianMixture),
        ]:
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                fitted[name] = estimator(**params).fit(X)
            times[name].append(time.perf_counter() - start)
    gap = float(np.abs(fitted["sklearn"].means_ - fitted["skem"].means_).max())
    return float(np.median(times["sklearn"])), float(np.median(times["skem"])), gap


def run_single(arguments):
    X = make_data(arguments.n_samples, arguments.n_features, arguments.n_components)
    for covariance_type in arguments.covariance_types.split(","):
        reference, ours, gap = time_both(
            X, arguments.n_components, covariance_type, arguments.n_iter, arguments.repeats
        )
        print(
            f"{arguments.threads:>8}  {covariance_type:>9}  sklearn {reference:7.2f} s  "
            f"skem {ours:7.2f} s  ratio {ours / reference:5.2f}  max |means gap| {gap:.1e}",
            flush=True,
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=50_000)
    parser.add_argument("--n-features", type=int, default=50)
    parser.add_argument("--n-components", type=int, default=20)
    parser.add_argument("--n-iter", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--covariance-types", default="full")
    parser.add_argument("--threads", default=None, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.threads is not None:  # (a child process: one thread setting)
        run_single(arguments)
        return
    print(
        f"{cpu_name()}, {os.cpu_count()} cores; N={arguments.n_samples} "
        f"D={arguments.n_features} K={arguments.n_components}, {arguments.n_iter} iterations, "
        f"median of {arguments.repeats}"
    )
    for threads, env_update in THREAD_SETTINGS.items():
        command = [sys.executable, *sys.argv, "--threads", threads]
        subprocess.run(command, check=True, env={**os.environ, **env_update})


if __name__ == "__main__":
    main()
