"""
EM on a dask cluster, and online EM
===================================

A Gaussian mixture fitted on a ``dask.array`` runs each E-step where the
blocks live, sums the statistics in a tree, and makes the M-step on the
client: from the same start it is the fit in memory, to rounding. Here the
cluster is a ``distributed.LocalCluster`` of two worker processes on this
machine; a real cluster's ``Client`` is used the same way. The array is
generated on the workers and stays there (``persist``), so each iteration
moves only the parameters and the sums.

The same data, read once in batches of 1000 rows, feed online EM
(``partial_fit``), which comes close to the full fit in a single pass: its
held-out log-likelihood after each batch climbs to that of the full fit.

In a script, a ``LocalCluster`` with worker processes must be created under
``if __name__ == "__main__":`` (the workers import the main module). Needs
``pip install "skem[dask]"``.
"""

import dask
import dask.array as da
import matplotlib.pyplot as plt
import numpy as np
from distributed import Client, LocalCluster

from skem import EMGaussianMixture

N_FEATURES, N_COMPONENTS, BLOCK_ROWS, N_BLOCKS = 5, 4, 25_000, 8


def make_block(index):
    """Block ``index`` of rows of a fixed four-component mixture (reproducible)."""
    centers = np.random.RandomState(0).normal(scale=3.0, size=(N_COMPONENTS, N_FEATURES))
    rng = np.random.RandomState(index + 1)
    labels = rng.randint(N_COMPONENTS, size=BLOCK_ROWS)
    return centers[labels] + rng.normal(size=(BLOCK_ROWS, N_FEATURES))


def lazy_data():
    blocks = [
        da.from_delayed(dask.delayed(make_block)(i), (BLOCK_ROWS, N_FEATURES), np.float64)
        for i in range(N_BLOCKS)
    ]
    return da.concatenate(blocks)


if __name__ == "__main__":
    X_memory = np.vstack([make_block(i) for i in range(N_BLOCKS)])
    # the start: k-means on 2000 rows (max_iter=0 stops there)
    start = EMGaussianMixture(N_COMPONENTS, max_iter=0, random_state=0).fit(X_memory[:2000])
    same_start = dict(
        weights_init=start.weights_,
        means_init=start.means_,
        precisions_init=start.precisions_,
        tol=1e-8,
    )
    in_memory = EMGaussianMixture(N_COMPONENTS, **same_start).fit(X_memory)

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster),
    ):
        X = lazy_data().persist()  # generated on the workers, kept there
        on_cluster = EMGaussianMixture(N_COMPONENTS, **same_start).fit(X)
        labels = on_cluster.predict(X)  # a lazy dask array
        counts = np.bincount(labels.compute(), minlength=N_COMPONENTS)
        held_out = on_cluster.score(make_block(100))

    print(f"{X.shape[0]:,} rows in {X.numblocks[0]} blocks on 2 worker processes")
    print(
        "largest difference of the bounds, cluster vs memory:",
        np.abs(on_cluster.lower_bounds_ - in_memory.lower_bounds_).max(),
    )
    print("rows per component:", counts)

    X_held_out = make_block(100)
    online = EMGaussianMixture(N_COMPONENTS, random_state=0)
    online_held_out = []
    for begin in range(0, len(X_memory), 1000):
        online.partial_fit(X_memory[begin : begin + 1000])
        online_held_out.append(online.score(X_held_out))
    print(
        f"held-out log-likelihood per sample: full EM {held_out:.4f}, "
        f"one pass of partial_fit {online_held_out[-1]:.4f}"
    )

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    iterations = np.arange(1, in_memory.n_iter_ + 1)
    left.plot(iterations, in_memory.lower_bounds_, "o-", label="numpy array in memory")
    left.plot(iterations, on_cluster.lower_bounds_, "x--", label="dask array on 2 workers")
    left.set_xlabel("EM iteration")
    left.set_ylabel("mean log-likelihood")
    left.set_title("Exact EM: the same bounds")
    left.legend()
    calls = np.arange(1, len(online_held_out) + 1)
    right.plot(calls, online_held_out, label="online EM, after each call")
    right.axhline(held_out, color="k", linestyle=":", label="full EM")
    right.set_xlabel("partial_fit call (1000 rows each)")
    right.set_ylabel("held-out mean log-likelihood")
    right.set_title("Online EM: one pass")
    right.legend(loc="lower right")
    fig.tight_layout()
