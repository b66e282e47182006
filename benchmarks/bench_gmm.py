"""Time EMGaussianMixture against scikit-learn's GaussianMixture in one run.

Both start from the same parameters and run the same number of EM iterations
(tol=0), so the ratio is a ratio of time per iteration. Every configuration
runs in a fresh process, twice: with the default BLAS threads and with
``OPENBLAS_NUM_THREADS=1``. For each covariance type and dtype it prints the
median time of each estimator, their ratio and the difference of the final
bound; for full covariance also the GFLOP/s of skem's iteration (the E-step
product and the M-step scatter product) against a GEMM measured in the same
process, so the distance to the compute floor is visible. The flops are those
of the dense products: the M-step skips the rows that change a component's
scatter by less than its rounding (most rows, once the responsibilities
settle), so this figure is dense-equivalent and may pass the GEMM's.

    python benchmarks/bench_gmm.py [--covariance-types full,tied,diag,spherical]
        [--dtypes float64,float32] [--n-samples 100000] [--repeats 3]
    python benchmarks/bench_gmm.py --memory      # peak memory, N=1M D=50 K=20 full
    python benchmarks/bench_gmm.py --scaling     # time per iteration vs N, K, D
"""

import argparse
import os
import subprocess
import sys
import time
import tracemalloc
import warnings

import numpy as np
from _machine import cpu_name
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from skem import EMGaussianMixture

THREAD_SETTINGS = {"default": {}, "1 thread": {"OPENBLAS_NUM_THREADS": "1"}}


def make_data(n_samples, n_features, n_components, seed=0):
    """Draw from a random mixture of correlated Gaussians with some overlap.

    Each covariance is a rank-5 part plus isotropic noise, and the component
    weights are equal, so every component has many more rows than features.
    """
    rng = np.random.RandomState(seed)
    centers = rng.normal(scale=1.0, size=(n_components, n_features))
    labels = rng.randint(n_components, size=n_samples)
    loadings = rng.normal(scale=0.5, size=(n_components, n_features, 5))
    latent = rng.normal(size=(n_samples, 5))
    noise = 0.7 * rng.normal(size=(n_samples, n_features))
    return centers[labels] + np.einsum("nq,ndq->nd", latent, loadings[labels]) + noise


def starting_point(X, n_components, covariance_type, seed=0):
    """Same initial parameters for both: random rows, equal weights, global spread."""
    rng = np.random.RandomState(seed)
    means = X[rng.choice(X.shape[0], n_components, replace=False)]
    weights = np.full(n_components, 1.0 / n_components)
    variance = X.var(axis=0)
    precisions = {
        "full": np.array([np.diag(1 / variance)] * n_components),
        "tied": np.diag(1 / variance),
        "diag": np.array([1 / variance] * n_components),
        "spherical": np.full(n_components, 1 / variance.mean()),
    }[covariance_type]
    return dict(weights_init=weights, means_init=means, precisions_init=precisions)


def estimators(X64, n_components, covariance_type, n_iter):
    params = dict(
        n_components=n_components,
        covariance_type=covariance_type,
        max_iter=n_iter,
        tol=0.0,
        **starting_point(X64, n_components, covariance_type),
    )
    return GaussianMixture(**params), EMGaussianMixture(**params)


def time_fit(estimator, X):
    start = time.perf_counter()
    estimator.fit(X)
    return time.perf_counter() - start


def gemm_peak(dtype, size=2000, repeats=5):
    """GFLOP/s of a square matrix product in this process (the best of a few)."""
    rng = np.random.RandomState(0)
    A, B = rng.normal(size=(2, size, size)).astype(dtype)
    A @ B
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        A @ B
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def measure(args, covariance_type, dtype):
    """Time both estimators on one configuration, alternating; print one row."""
    warnings.simplefilter("ignore", ConvergenceWarning)
    X64 = make_data(args.n_samples, args.n_features, args.n_components)
    X = X64.astype(dtype)
    reference, ours = estimators(X64, args.n_components, covariance_type, args.n_iter)
    reference_times, our_times = [], []
    for _ in range(args.repeats):
        reference_times.append(time_fit(reference, X))
        our_times.append(time_fit(ours, X))
    reference_time, our_time = np.median(reference_times), np.median(our_times)
    difference = abs(ours.lower_bound_ - reference.lower_bound_)
    row = (
        f"{args.threads:<9} {covariance_type:<10} {np.dtype(dtype).name:<8} "
        f"{reference_time:>10.3f} {our_time:>8.3f} {our_time / reference_time:>6.2f} "
        f"{difference:>11.2e}"
    )
    if covariance_type == "full":
        # E-step: one (N x D) @ (D x K D) product; M-step: (K D x N) @ (N x D)
        # (dense-equivalent: the M-step skips rows that add nothing but rounding)
        n, d, k = args.n_samples, args.n_features, args.n_components
        flops = 4.0 * n * k * d * d * args.n_iter
        # the fit also makes one initialisation pass; count the iterations only
        achieved = flops / our_time / 1e9
        # the peak of the cores skem uses: with BLAS on one thread, skem still
        # runs one thread per core over chunks, each at the one-thread peak
        from threadpoolctl import threadpool_info

        from skem._core._parallel import n_threads

        blas_threads = max(
            info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"
        )
        peak = gemm_peak(dtype) * (n_threads() if blas_threads == 1 else 1)
        row += f"   {achieved:>6.1f} of {peak:>6.1f} GFLOP/s ({achieved / peak:>4.0%})"
    print(row, flush=True)


def peak_memory(args):
    """Peak memory allocated during fit (tracemalloc), beyond the data itself."""
    warnings.simplefilter("ignore", ConvergenceWarning)
    X = make_data(args.n_samples, args.n_features, args.n_components)
    estimator = dict(
        zip(("sklearn", "skem"), estimators(X, args.n_components, "full", args.n_iter))
    )[args.estimator]
    tracemalloc.start()
    start = time.perf_counter()
    estimator.fit(X)
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"{args.estimator:<8} data {X.nbytes / 2**20:>8.0f} MiB   peak during fit "
        f"{peak / 2**20:>8.0f} MiB   ({elapsed:.1f} s, {args.n_iter} iterations)",
        flush=True,
    )


def scaling(args):
    """Seconds per iteration of both, as N, K and D grow (full covariance)."""
    warnings.simplefilter("ignore", ConvergenceWarning)
    n, d, k = args.n_samples, args.n_features, args.n_components
    X64 = make_data(n, d, k)
    reference, ours = estimators(X64, k, "full", args.n_iter)
    times = {"sklearn": [], "skem": []}
    for _ in range(args.repeats):
        times["sklearn"].append(time_fit(reference, X64) / args.n_iter)
        times["skem"].append(time_fit(ours, X64) / args.n_iter)
    sk, us = np.median(times["sklearn"]), np.median(times["skem"])
    print(f"{n:>9} {d:>5} {k:>5} {sk:>12.4f} {us:>10.4f} {us / sk:>6.2f}", flush=True)


def run(args, mode, env_update=None, **overrides):
    """Run one measurement in a fresh process (BLAS threads are fixed at import)."""
    command = [sys.executable, __file__, "--single", mode]
    values = {
        name: getattr(args, name)
        for name in (
            "n_samples",
            "n_features",
            "n_components",
            "n_iter",
            "repeats",
            "covariance_types",
            "dtypes",
            "threads",
            "estimator",
        )
    }
    values.update(overrides)
    for name, value in values.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    subprocess.run(command, check=True, env={**os.environ, **(env_update or {})})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=100_000)
    parser.add_argument("--n-features", type=int, default=50)
    parser.add_argument("--n-components", type=int, default=20)
    parser.add_argument("--n-iter", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--covariance-types", default="full,tied,diag,spherical")
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument(
        "--memory", action="store_true", help="peak memory of sklearn and skem, N=1M D=50 K=20 full"
    )
    parser.add_argument(
        "--scaling", action="store_true", help="time per iteration for growing N, K and D"
    )
    parser.add_argument("--single", help=argparse.SUPPRESS)
    parser.add_argument("--estimator", default="skem", help=argparse.SUPPRESS)
    parser.add_argument("--threads", default="default", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.single == "ratio":
        measure(args, args.covariance_types, np.dtype(args.dtypes))
        return
    if args.single == "memory":
        peak_memory(args)
        return
    if args.single == "scaling":
        scaling(args)
        return
    if args.memory:
        print(
            "Peak memory of one fit, full covariance, N=1000000 D=50 K=20, 3 iterations, "
            "each in a fresh process",
            flush=True,
        )
        for name in ("sklearn", "skem"):
            run(args, "memory", estimator=name, n_samples=1_000_000, n_iter=3)
        return
    if args.scaling:
        print(
            f"Seconds per EM iteration, full covariance, float64, {args.n_iter} iterations, "
            f"median of {args.repeats}, default threads",
            flush=True,
        )
        print(
            f"{'N':>9} {'D':>5} {'K':>5} {'sklearn s/it':>12} {'skem s/it':>10} {'ratio':>6}",
            flush=True,
        )
        grid = (
            [dict(n_samples=n) for n in (10_000, 100_000, 1_000_000)]
            + [dict(n_components=k) for k in (5, 80)]
            + [dict(n_features=d) for d in (10, 200)]
        )
        for overrides in grid:
            run(args, "scaling", **overrides)
        return
    print(
        f"N={args.n_samples} D={args.n_features} K={args.n_components}, "
        f"{args.n_iter} EM iterations from the same start, median of {args.repeats} "
        f"alternating runs, each configuration in a fresh process; {cpu_name()}, "
        f"{os.cpu_count()} CPUs",
        flush=True,
    )
    print(
        f"{'threads':<9} {'covariance':<10} {'dtype':<8} {'sklearn s':>10} {'skem s':>8} "
        f"{'ratio':>6} {'bound diff':>11}   skem full: achieved of GEMM peak",
        flush=True,
    )
    for covariance_type in args.covariance_types.split(","):
        for dtype in args.dtypes.split(","):
            for threads, env_update in THREAD_SETTINGS.items():
                run(
                    args,
                    "ratio",
                    env_update,
                    threads=threads,
                    covariance_types=covariance_type,
                    dtypes=dtype,
                )


if __name__ == "__main__":
    main()
