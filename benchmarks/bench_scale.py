"""More data than memory: the three routes of skem, side by side in one run.

On N = 1M, D = 50, K = 20 full covariance it times, each in a fresh process:

- ``memory``: ``fit`` on a numpy array (chunks of rows on all cores);
- ``threads``: ``fit`` on a dask array with dask's threaded scheduler;
- ``cluster``: ``fit`` on a dask array persisted on a ``distributed.LocalCluster``
  of 2 worker processes (one thread each);
- ``online``: one pass of ``partial_fit`` in batches of 1000 rows.

The three batch fits start from the same parameters (k-means and one EM
iteration on 20 000 rows)
and run the same iterations (tol=0), so they must give the same bound; the
time per iteration is ``(t(max_iter=m) - t(max_iter=0)) / m``, which leaves
out the passes every fit makes once (validation, column moments). Peak
memory is the largest resident set of the process (with its workers, for the
cluster). The online pass reports the held-out log-likelihood against the
in-memory fit's.

Then it fits 10M x 50 (4 GB) on dask: a generated array persisted on the
cluster, and the same data as a memory-mapped .npy file on the threaded
scheduler. The compute floor of one iteration is the two products of the
full-covariance iteration, 2 x (2 N K D^2) flops, at the GEMM speed measured
in the same process.

    python benchmarks/bench_scale.py [--n-samples 1000000] [--big 10000000]
        [--iterations 5] [--threads both|default|1]

Needs the dask extra: ``pip install "skem[dask]"``.
"""

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
from _machine import cpu_name

N_FEATURES, N_COMPONENTS = 50, 20
HELD_OUT = 50_000


def make_block(index, rows, n_features=N_FEATURES, n_components=N_COMPONENTS):
    """Rows of a fixed mixture of correlated Gaussians; block ``index`` is reproducible."""
    shape = np.random.RandomState(12345)
    centers = shape.normal(scale=1.5, size=(n_components, n_features))
    loadings = shape.normal(scale=0.5, size=(n_components, n_features, 5))
    rng = np.random.RandomState(index)
    labels = rng.randint(n_components, size=rows)
    latent = rng.normal(size=(rows, 5))
    noise = 0.7 * rng.normal(size=(rows, n_features))
    return centers[labels] + np.einsum("nq,ndq->nd", latent, loadings[labels]) + noise


def block_rows(n_samples):
    """Rows per dask block: 100 000, or fewer so that small runs have 8 blocks."""
    return min(100_000, -(-n_samples // 8))


def block_sizes(n_samples):
    rows = block_rows(n_samples)
    return [min(rows, n_samples - start) for start in range(0, n_samples, rows)]


def numpy_data(n_samples):
    return np.vstack([make_block(i, rows) for i, rows in enumerate(block_sizes(n_samples))])


def dask_data(n_samples):
    import dask
    import dask.array as da

    blocks = [
        da.from_delayed(
            dask.delayed(make_block)(i, rows), shape=(rows, N_FEATURES), dtype=np.float64
        )
        for i, rows in enumerate(block_sizes(n_samples))
    ]
    return da.concatenate(blocks, axis=0)


@functools.lru_cache
def start_parameters():
    """k-means on 20 000 rows of block 0: the same start for every batch route."""
    from skem import EMGaussianMixture

    sample = make_block(0, 20_000)
    start = EMGaussianMixture(N_COMPONENTS, max_iter=1, random_state=0).fit(sample)
    return {
        "weights_init": start.weights_,
        "means_init": start.means_,
        "precisions_init": start.precisions_,
    }


def model(max_iter, **extra):
    from skem import EMGaussianMixture

    return EMGaussianMixture(
        N_COMPONENTS, tol=0.0, max_iter=max_iter, **start_parameters(), **extra
    )


def gemm_gflops(size=2000, repeats=3):
    a = np.random.RandomState(0).rand(size, size)
    a @ a
    start = time.perf_counter()
    for _ in range(repeats):
        a @ a
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def max_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed_fit(make_model, X, iterations):
    """Seconds per iteration, seconds of the longer fit, and that fitted model.

    Fits of ``iterations`` and ``2 * iterations`` iterations (tol=0) differ only
    by the iterations: the passes every fit makes once (validation, moments)
    cancel. A first short fit warms up threads, pools and caches.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        make_model(1).fit(X)
        start = time.perf_counter()
        make_model(iterations).fit(X)
        middle = time.perf_counter()
        fitted = make_model(2 * iterations).fit(X)
        end = time.perf_counter()
    return (end - middle - (middle - start)) / iterations, end - middle, fitted


# ---------------------------------------------------------------------- one route per process


def route_memory(args):
    X = numpy_data(args.n_samples)
    per_iteration, total, fitted = timed_fit(model, X, args.iterations)
    held_out = make_block(10_000, HELD_OUT)
    return {
        "per_iteration": per_iteration,
        "total": total,
        "bound": fitted.lower_bound_,
        "held_out": fitted.score(held_out),
        "memory_mb": max_rss_mb(),
    }


def route_threads(args):
    import dask

    X = dask_data(args.n_samples)
    with dask.config.set(scheduler="threads"):
        X = X.persist()  # generated once, like the numpy array of the memory route
        per_iteration, total, fitted = timed_fit(model, X, args.iterations)
    return {
        "per_iteration": per_iteration,
        "total": total,
        "bound": fitted.lower_bound_,
        "memory_mb": max_rss_mb(),
    }


def cluster_memory_mb(client):
    workers = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return max_rss_mb() + sum(workers.values())


def fit_on_local_cluster(n_samples, iterations):
    """Generate the data on 2 worker processes, keep them there, and time the fit."""
    from distributed import Client, LocalCluster, wait

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        X = dask_data(n_samples).persist()
        wait(X)
        per_iteration, total, fitted = timed_fit(model, X, iterations)
        return {
            "per_iteration": per_iteration,
            "total": total,
            "bound": fitted.lower_bound_,
            "memory_mb": cluster_memory_mb(client),
        }


def route_cluster(args):
    return fit_on_local_cluster(args.n_samples, args.iterations)


#: partial_fit's batch here: a full covariance in 50-d has 1275 parameters per
#: component, so a step needs several thousand rows for 20 of them (batches of
#: 1000 suit fewer parameters, as in the quality check below).
ONLINE_BATCH = 10_000


def route_online(args):
    from skem import EMGaussianMixture

    X = numpy_data(args.n_samples)
    online = EMGaussianMixture(N_COMPONENTS, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        for begin in range(0, len(X), ONLINE_BATCH):
            online.partial_fit(X[begin : begin + ONLINE_BATCH])
        total = time.perf_counter() - start
    return {
        "per_iteration": total,  # one pass over the data
        "total": total,
        "bound": float("nan"),  # (a batch's bound is not the training bound)
        "held_out": online.score(make_block(10_000, HELD_OUT)),
        "memory_mb": max_rss_mb(),
    }


def route_quality(args):
    """The issue's quality check: 200k x 10, K = 8 full, one pass in batches of 1000."""
    from skem import EMGaussianMixture

    def draw(n_samples, seed):
        blocks = block_sizes(n_samples)
        return np.vstack(
            [
                make_block(seed + i, rows, n_features=10, n_components=8)
                for i, rows in enumerate(blocks)
            ]
        )

    X, held_out = draw(200_000, 100), draw(HELD_OUT, 200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        full = EMGaussianMixture(8, random_state=0).fit(X)
        full_time = time.perf_counter() - start
        online = EMGaussianMixture(8, n_init=5, random_state=0)
        start = time.perf_counter()
        for begin in range(0, len(X), 1000):
            online.partial_fit(X[begin : begin + 1000])
        online_time = time.perf_counter() - start
    return {
        "full": full.score(held_out),
        "full_time": full_time,
        "full_iterations": full.n_iter_,
        "online": online.score(held_out),
        "online_time": online_time,
    }


def route_big_cluster(args):
    return {**fit_on_local_cluster(args.big, 1), "gflops": gemm_gflops()}


def route_big_memmap(args):
    import dask
    import dask.array as da

    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "X.npy")
        mapped = np.lib.format.open_memmap(
            path, mode="w+", dtype=np.float64, shape=(args.big, N_FEATURES)
        )
        step = block_rows(args.big)
        for i, rows in enumerate(block_sizes(args.big)):
            mapped[i * step : i * step + rows] = make_block(i, rows)
        mapped.flush()
        del mapped
        X = da.from_array(np.load(path, mmap_mode="r"), chunks=(step, N_FEATURES))
        with dask.config.set(scheduler="threads"):
            per_iteration, total, fitted = timed_fit(model, X, 1)
        return {
            "per_iteration": per_iteration,
            "total": total,
            "bound": fitted.lower_bound_,
            "memory_mb": max_rss_mb(),
            "gflops": gemm_gflops(),
        }


ROUTES = {
    "memory": route_memory,
    "threads": route_threads,
    "cluster": route_cluster,
    "online": route_online,
    "quality": route_quality,
    "big-cluster": route_big_cluster,
    "big-memmap": route_big_memmap,
}


def run_route(route, args, env_update):
    command = [sys.executable, __file__, "--route", route, "--n-samples", str(args.n_samples)]
    command += ["--big", str(args.big), "--iterations", str(args.iterations)]
    output = subprocess.run(
        command,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **env_update},
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=1_000_000)
    parser.add_argument("--big", type=int, default=10_000_000, help="0 skips the big fit")
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--threads", choices=["both", "default", "1"], default="both")
    parser.add_argument("--route", choices=sorted(ROUTES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.route:
        print(json.dumps(ROUTES[args.route](args)))
        return

    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; numpy {np.__version__}")
    print(
        f"N={args.n_samples:,} D={N_FEATURES} K={N_COMPONENTS} full covariance, "
        f"{args.iterations} iterations from the same start; dask blocks of "
        f"{block_rows(args.n_samples):,} rows"
    )
    settings = {"default": {}, "1": {"OPENBLAS_NUM_THREADS": "1"}}
    if args.threads != "both":
        settings = {args.threads: settings[args.threads]}
    for name, env_update in settings.items():
        print(f"\nBLAS threads: {name}")
        print(f"{'route':<24}{'s/iteration':>12}{'x memory':>10}{'peak MB':>10}{'bound':>14}")
        routes = ["memory", "threads", "cluster", "online"]
        results = {route: run_route(route, args, env_update) for route in routes}
        reference = results["memory"]["per_iteration"]
        labels = {
            "memory": "in memory (numpy)",
            "threads": "dask, threads",
            "cluster": "dask, LocalCluster x2",
            "online": f"partial_fit, 1 pass ({ONLINE_BATCH // 1000}k)",
        }
        for route, label in labels.items():
            result = results[route]
            ratio = "" if route == "online" else f"{result['per_iteration'] / reference:.2f}"
            print(
                f"{label:<24}{result['per_iteration']:>12.3f}{ratio:>10}"
                f"{result['memory_mb']:>10.0f}{result['bound']:>14.6f}"
            )
        print(
            f"bound difference, dask vs memory: threads "
            f"{abs(results['threads']['bound'] - results['memory']['bound']):.1e}, cluster "
            f"{abs(results['cluster']['bound'] - results['memory']['bound']):.1e}"
        )
        print(
            f"held-out log-likelihood per sample: full EM ({2 * args.iterations} iterations) "
            f"{results['memory']['held_out']:.4f}, one partial_fit pass "
            f"{results['online']['held_out']:.4f}"
        )
        if name == "default":
            quality = run_route("quality", args, env_update)
            print(
                "quality, 200k x 10, K=8 full, held-out log-likelihood per sample: full EM "
                f"{quality['full']:.4f} ({quality['full_iterations']} iterations, "
                f"{quality['full_time']:.1f} s), one partial_fit pass in batches of 1000 "
                f"(n_init=5) {quality['online']:.4f} ({quality['online_time']:.1f} s): "
                f"{quality['full'] - quality['online']:.4f} nats apart"
            )
        if args.big and name == "default":
            flops = 2 * 2 * args.big * N_COMPONENTS * N_FEATURES**2
            for route, label in [
                ("big-cluster", "LocalCluster x2"),
                ("big-memmap", "memmap, threads"),
            ]:
                result = run_route(route, args, env_update)
                floor = flops / (result["gflops"] * 1e9)
                print(
                    f"{args.big:,} x {N_FEATURES} on dask ({label}): "
                    f"{result['per_iteration']:.2f} s/iteration, a fit of 2 iterations in "
                    f"{result['total']:.1f} s with its setup passes; compute floor "
                    f"{floor:.2f} s/iteration at {result['gflops']:.0f} GFLOP/s (GEMM); "
                    f"peak {result['memory_mb']:.0f} MB"
                )


if __name__ == "__main__":
    main()
