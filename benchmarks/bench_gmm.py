"""Time EMGaussianMixture against scikit-learn's GaussianMixture in one run.

Both start from the same parameters and run the same number of EM iterations
(tol=0), so the ratio is a ratio of time per iteration. Prints, for each
covariance type and dtype, the median time of each, their ratio and the
difference of the final bound.

    python benchmarks/bench_gmm.py [--n-samples 100000] [--repeats 3]
"""

import argparse
import subprocess
import sys
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from skem import EMGaussianMixture


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


def time_fit(estimator, X):
    start = time.perf_counter()
    estimator.fit(X)
    return time.perf_counter() - start


def measure(args, covariance_type, dtype):
    """Time both estimators on one configuration, alternating, and print a row."""
    warnings.simplefilter("ignore", ConvergenceWarning)
    X64 = make_data(args.n_samples, args.n_features, args.n_components)
    X = X64.astype(dtype)
    params = dict(
        n_components=args.n_components,
        covariance_type=covariance_type,
        max_iter=args.n_iter,
        tol=0.0,
        **starting_point(X64, args.n_components, covariance_type),
    )
    reference, ours = GaussianMixture(**params), EMGaussianMixture(**params)
    reference_times, our_times = [], []
    for _ in range(args.repeats):
        reference_times.append(time_fit(reference, X))
        our_times.append(time_fit(ours, X))
    reference_time, our_time = np.median(reference_times), np.median(our_times)
    difference = abs(ours.lower_bound_ - reference.lower_bound_)
    print(f"{covariance_type:<10} {np.dtype(dtype).name:<8} {reference_time:>10.3f} "
          f"{our_time:>8.3f} {our_time / reference_time:>6.2f} {difference:>11.2e}",
          flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=100_000)
    parser.add_argument("--n-features", type=int, default=50)
    parser.add_argument("--n-components", type=int, default=20)
    parser.add_argument("--n-iter", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--covariance-types", default="full,diag")
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.single:
        measure(args, args.covariance_types, np.dtype(args.dtypes))
        return
    print(
        f"N={args.n_samples} D={args.n_features} K={args.n_components}, "
        f"{args.n_iter} EM iterations from the same start, median of {args.repeats} "
        "alternating runs, each configuration in a fresh process",
        flush=True,
    )
    print(f"{'covariance':<10} {'dtype':<8} {'sklearn s':>10} {'skem s':>8} "
          f"{'ratio':>6} {'bound diff':>11}", flush=True)
    for covariance_type in args.covariance_types.split(","):
        for dtype in args.dtypes.split(","):
            command = [sys.executable, __file__, "--single",
                       "--covariance-types", covariance_type, "--dtypes", dtype]
            for name in ("n_samples", "n_features", "n_components", "n_iter", "repeats"):
                command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
            subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
