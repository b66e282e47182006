"""Fits and predictions on dask arrays: the in-memory block functions, on a cluster.

Imported only when a model meets a ``dask.array.Array``; the rest of skem never
imports dask. Every pass a model makes over its data is a sum of a block
function (``skem._core._routes``); here that function runs on each block
of the dask array where the block lives, and the per-block sums are added in a
tree, pairwise, so the client receives one small result per pass. The M-step
and everything else that is small (initialisation on a sample of rows, the
closed-form eigen-solutions) runs on the client. Nothing calls ``compute`` on
the data itself: ``fit`` reads only sums and the rows drawn for the start.

Whatever scheduler is active runs the graph: dask's threads by default, or a
``distributed.Client`` if one was created. With the threaded scheduler each
thread runs its block on one BLAS thread (as ``skem._core._parallel`` does in
memory); a distributed worker has its own setting (``distributed`` starts
worker processes with one BLAS thread).
"""

from contextlib import nullcontext
from functools import partial
from uuid import uuid4

import cloudpickle
import dask
import dask.array as da
import numpy as np
from sklearn.utils.validation import _assert_all_finite, _check_feature_names, _check_n_features

from ._blocks import add_terms, map_in_memory, reduce_in_memory
from ._checks import check_magnitude, check_rows_observed, check_weight_values, empty_rows_message
from ._parallel import single_blas_thread


def _call(function, block, weights):
    return function(block, weights)


def _add(first, second):
    return add_terms(add_terms(None, first), second)


def _compute(*results):
    """Compute dask objects; with dask's threads, one BLAS thread per block.

    (The scheduler is None when none was set: dask's threads, the default of
    arrays and delayed objects.)
    """
    if dask.base.get_scheduler() in (None, dask.threaded.get):
        with single_blas_thread():
            return dask.compute(*results)
    return dask.compute(*results)


def reduce_blocks(function, X, sample_weight):
    """``sum(function(block, weight_block))`` over the row blocks of ``X``.

    The function (with the estimator it holds) enters the graph once, as one
    key every task depends on, so a cluster ships it to each worker once per
    pass rather than once per block.
    """
    blocks = X.to_delayed().ravel()
    weights = [None] * len(blocks) if sample_weight is None else sample_weight.to_delayed().ravel()
    sizes = X.chunks[0]
    shared = dask.delayed(function, name=f"skem-block-function-{uuid4().hex}", pure=False)
    parts = [
        dask.delayed(_call, pure=True)(shared, block, weight)
        for block, weight, size in zip(blocks, weights, sizes)
        if size > 0
    ]
    if not parts:  # (fit refuses fewer than two rows before any pass)
        raise ValueError("X has no rows.")
    while len(parts) > 1:  # a tree of pairwise sums, so no node waits on all blocks
        paired = [dask.delayed(_add, pure=True)(a, b) for a, b in zip(parts[::2], parts[1::2])]
        parts = paired + ([parts[-1]] if len(parts) % 2 else [])
    # fresh float64 arrays: what a cluster sends back can be read-only or
    # unaligned buffers, which some LAPACK wrappers refuse
    return add_terms(None, _compute(parts[0])[0])


def map_blocks(function, X):
    """``function`` applied to each row block of ``X``, as a lazy dask array.

    The function, and the estimator it holds, are copied now, so the result
    is that of the model as it is at this call, whatever happens to the
    estimator before the result is computed (as for a numpy array). The shape
    of its result (one value per row, or a row of values per row) is read off
    a call on one row of zeros.
    """
    function = cloudpickle.loads(cloudpickle.dumps(function))  # a snapshot
    probe = function(np.zeros((1, X.shape[1]), dtype=X.dtype))

    def apply(block):
        if block.shape[0] == 0:  # (a filtered array can have empty blocks)
            return np.empty((0, *probe.shape[1:]), dtype=probe.dtype)
        return function(block)

    if probe.ndim == 1:
        return X.map_blocks(apply, drop_axis=1, dtype=probe.dtype, meta=np.empty(0, probe.dtype))
    return X.map_blocks(
        apply,
        chunks=(X.chunks[0], (probe.shape[1],)),
        dtype=probe.dtype,
        meta=np.empty((0, 0), probe.dtype),
    )


def _as_float_array(estimator, X, known_rows=True):
    """A 2-d float dask array with one block of columns, checked without reading it.

    A fit needs the number of rows of each block (``known_rows``); predictions
    map over the blocks and do not.
    """
    name = type(estimator).__name__
    if X.ndim != 2:
        raise ValueError(
            f"Expected a 2-dimensional dask array, got {X.ndim} dimensions (shape {X.shape})."
        )
    if (known_rows and any(np.isnan(size) for size in X.chunks[0])) or np.isnan(X.shape[1]):
        raise ValueError(
            f"{name} needs the number of rows of each block of X, which dask does not "
            "know for this array (its chunks are unknown); call X.compute_chunk_sizes() "
            "first."
        )
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{name} needs numeric data; X is a dask array of dtype {X.dtype}.")
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    if X.shape[1] == 0:
        raise ValueError(
            f"0 feature(s) (shape={X.shape}) while a minimum of 1 is required by {name}."
        )
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})  # the models read whole rows
    return X


def _check_block(block, allow_nan, name):
    """The in-memory checks of X, on one block (raised from the worker)."""
    _assert_all_finite(block, allow_nan=allow_nan, input_name="X", estimator_name=name)
    check_magnitude(block)


def validate_fit_data(estimator, X, sample_weight):
    """The dask twin of ``BaseEM._validate_fit_data``: same checks, same messages.

    One pass over the blocks checks the data (finite, or NaN where the model
    takes missing values; magnitude) and the weights (finite, non-negative);
    the weights are then scaled by their global maximum and mean, as in
    memory (to rounding: the mean is summed in another order). Returns the float
    array and the normalised weights (a dask array with the blocks of X, or
    None).
    """
    name = type(estimator).__name__
    X = _as_float_array(estimator, X)
    n_samples = X.shape[0]
    if n_samples < 2:
        raise ValueError(
            f"Found array with {n_samples} sample(s) (shape={X.shape}) while a minimum "
            f"of 2 is required by {name}."
        )
    weights = _as_weight_array(sample_weight, X)
    allow_nan = estimator._allow_nan

    def check(block, block_weights):
        _check_block(block, allow_nan, name)
        if block_weights is not None:
            check_weight_values(block_weights)
        return 0.0

    _check_n_features(estimator, X, reset=True)
    _check_feature_names(estimator, X, reset=True)
    reduce_blocks(check, X, weights)
    if weights is None:
        return X, None
    # the weights alone from here (no pass over X): scaled by their largest
    # (so their sum stays finite), then to mean one, as in memory
    largest = float(_compute(weights.max())[0])
    if largest == 0:
        raise ValueError("sample_weight is zero everywhere: at least one weight must be positive.")
    scaled = weights / largest
    mean = float(_compute(scaled.sum())[0]) / n_samples
    return X, scaled / mean


def _as_weight_array(sample_weight, X):
    """``sample_weight`` as a float64 dask array with the row blocks of X (or None)."""
    if sample_weight is None:
        return None
    if not isinstance(sample_weight, da.Array):
        weights = np.asarray(sample_weight)
        if weights.dtype.kind not in "biuf":
            raise ValueError(
                f"sample_weight must be numeric, got an array of dtype {weights.dtype}."
            )
        if weights.ndim == 0:
            weights = np.full(X.shape[0], float(weights))
        if weights.shape != (X.shape[0],):
            raise ValueError(f"sample_weight must have shape ({X.shape[0]},), got {weights.shape}.")
        sample_weight = da.from_array(weights, chunks=(X.chunks[0],) if weights.ndim == 1 else -1)
    if sample_weight.dtype.kind not in "biuf":
        raise ValueError(
            f"sample_weight must be numeric, got an array of dtype {sample_weight.dtype}."
        )
    if sample_weight.shape != (X.shape[0],):
        raise ValueError(
            f"sample_weight must have shape ({X.shape[0]},), got {sample_weight.shape}."
        )
    return sample_weight.astype(np.float64).rechunk((X.chunks[0],))


def validate_predict_data(estimator, X):
    """A float dask array checked like ``BaseEM._validate_predict_data``, lazily per block."""
    name = type(estimator).__name__
    X = _as_float_array(estimator, X, known_rows=False)
    _check_n_features(estimator, X, reset=False)
    _check_feature_names(estimator, X, reset=False)
    allow_nan = estimator._allow_nan

    def check(block):
        _assert_all_finite(block, allow_nan=allow_nan, input_name="X", estimator_name=name)
        return block

    return X.map_blocks(check, dtype=X.dtype)


def take_rows(X, sample_weight, indices):
    """Rows ``indices`` of X and their weights, in that order, as numpy arrays."""
    rows, weights = X[indices], None if sample_weight is None else sample_weight[indices]
    rows, weights = _compute(rows, weights)
    return np.array(rows), None if weights is None else np.array(weights)  # (writeable)


def weighted_mean(values, sample_weight):
    """The (weighted) mean of a dask array of per-row values, as a float."""
    if sample_weight is None:
        return float(_compute(values.mean())[0])
    weights = _as_weight_array(sample_weight, values[:, None])

    def checked(block_weights):
        check_weight_values(block_weights)  # the in-memory messages
        return block_weights

    weights = weights.map_blocks(checked, dtype=weights.dtype)
    largest = float(_compute(weights.max())[0])
    if not largest > 0:
        raise ValueError("sample_weight is zero everywhere: at least one weight must be positive.")
    weights = weights / largest  # (sums of weights near the float limit stay finite)
    total, weight = _compute((values * weights).sum(), weights.sum())
    return float(total / weight)


class DaskArrays:
    """The route of dask arrays (``skem._core._routes`` names the operations).

    Every block function runs on the blocks of rows of the dask array, each
    in blocks of ``block_rows`` rows as in memory; sums are added in a tree.
    """

    in_memory = False
    start_on_sample = True
    names_empty_rows = False

    def validate_fit(self, estimator, X, sample_weight, reset=True):
        return validate_fit_data(estimator, X, sample_weight)

    def validate_predict(self, estimator, X):
        return validate_predict_data(estimator, X)

    def reduce(self, function, X, sample_weight, block_rows, within=None):
        # ``within`` pins the model's terms for the pass, here: dask's threads
        # share the estimator and only read them (a distributed worker gets
        # a pickled copy without them and derives its own)
        def per_block(block, weights):
            return reduce_in_memory(function, block, weights, block_rows)

        with nullcontext() if within is None else within():
            return reduce_blocks(per_block, X, sample_weight)

    def map(self, function, X, block_rows, within=None):
        def per_block(block):
            if within is None:
                return map_in_memory(function, block, block_rows)
            with within():
                return map_in_memory(function, block, block_rows)

        return map_blocks(per_block, X.rechunk({1: -1}))

    def take_rows(self, X, sample_weight, indices=None):
        if indices is None:
            indices = np.arange(X.shape[0])
        return take_rows(X, sample_weight, indices)

    def mean(self, values, sample_weight):
        return weighted_mean(values, sample_weight)

    def reject_empty_rows(self, X, count=None, block=None):
        # the rows' places in X are not known where they were found: counted
        if block is not None:
            check_rows_observed(block, block=True)
        raise ValueError(empty_rows_message(count))

    def incomplete_row_share(self, X):
        # (it sizes chunks in memory; no pass over a cluster's data is spent on it)
        return 0.0

    def check_rows(self, check, X):
        # each block checked when it is computed: nothing is read now
        return X.map_blocks(partial(check, block=True), dtype=X.dtype)

    def require_memory(self, estimator, method):
        name = type(estimator).__name__
        if not estimator._fits_on_blocks and method in ("fit", "partial_fit"):  # (the VAE)
            raise ValueError(
                f"{name}.{method} does not train on dask arrays: it takes minibatch "
                "gradient steps on data in memory (skem's EM models train on dask arrays). "
                "Fit it on a sample brought into memory, for example "
                "fit(X[:100_000].compute()), or stream the blocks through partial_fit: "
                "for block in X.blocks: model.partial_fit(block.compute())."
            )
        hints = {
            "partial_fit": "call fit(X) (exact EM on the cluster), or partial_fit on each "
            "block: for block in X.blocks: model.partial_fit(block.compute()).",
            "impute(sample_posterior=True)": "impute each block: "
            "[model.impute(block.compute(), sample_posterior=True, random_state=seed + i) "
            "for i, block in enumerate(X.blocks)].",
        }
        raise ValueError(
            f"{name}.{method} takes arrays in memory; for a dask array, "
            + hints.get(method, "compute it first (X.compute()), or a sample of its rows.")
        )


DASK = DaskArrays()
