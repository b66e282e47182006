"""Blocks of rows: the additive sums every pass over the data is made of.

A pass computes ``function(block, weights)`` on blocks of rows and adds the
results (``add_terms``); the route (``skem._core._routes``) decides where the
blocks are. Nothing here knows a model.
"""

import threading

import numpy as np
from sklearn.utils.random import sample_without_replacement

from ._parallel import map_chunks

#: Floats of working memory per chunk of rows in the E-step (8 MiB in float64).
CHUNK_FLOATS = 2**20


def data_block_rows(X):
    """Rows of X in a block of CHUNK_FLOATS values, for the passes over the data."""
    return max(1, CHUNK_FLOATS // max(1, X.shape[1]))


def fingerprint(value):
    """A key that changes with an array's values, dtype or shape (in place or replaced)."""
    array = np.ascontiguousarray(value)
    return array.dtype.str, array.shape, hash(array.tobytes())


class Lazy:
    """A value computed on first use, once, by whichever thread asks first.

    For terms of fixed parameters that only some data need (rows with NaN).
    """

    def __init__(self, function):
        self._function = function
        self._lock = threading.Lock()
        self._value = None

    def get(self):
        with self._lock:
            if self._value is None:
                self._value = self._function()
            return self._value


def row_weights(sample_weight, n_samples):
    """The weight of every row: ``sample_weight``, or ones when it is None."""
    return np.ones(n_samples) if sample_weight is None else sample_weight


def add_terms(total, part):
    """``total + part`` for the results of a block function, summed in float64.

    Results are numbers, arrays, or tuples and dicts of them (nested).
    """
    if total is None:
        return _as_float64(part)
    if isinstance(total, dict):
        return {name: add_terms(total[name], part[name]) for name in total}
    if isinstance(total, tuple):
        return tuple(add_terms(a, b) for a, b in zip(total, part))
    return total + part


def _as_float64(part):
    if isinstance(part, dict):
        return {name: _as_float64(value) for name, value in part.items()}
    if isinstance(part, tuple):
        return tuple(_as_float64(value) for value in part)
    return np.array(part, dtype=np.float64)


#: For the statistics of the fit loop (the name models and tests use).
add_statistics = add_terms


def row_slices(n_samples, block_rows):
    """Consecutive slices of ``block_rows`` rows covering ``range(n_samples)``."""
    block_rows = max(1, int(block_rows))
    return [
        slice(start, min(start + block_rows, n_samples))
        for start in range(0, n_samples, block_rows)
    ]


def weighted_sum(values, sample_weight):
    """Sum of ``values`` along the first axis, weighted, accumulated in float64."""
    values = np.asarray(values, dtype=np.float64)
    if sample_weight is None:
        return values.sum(axis=0)
    return sample_weight @ values


def sample_rows(n_samples, size, sample_weight, random_state):
    """``size`` distinct rows drawn at random, in order, among those of positive weight.

    Drawn with O(size) memory when unweighted (``RandomState.choice`` without
    replacement permutes all rows: 8 bytes per row); the weights, if any, are
    read whole (to the client, for a dask array). Rows of zero weight would add
    nothing to a start computed from the sample.
    """
    if sample_weight is None:
        return np.sort(sample_without_replacement(n_samples, size, random_state=random_state))
    positive = np.flatnonzero(np.asarray(sample_weight) > 0)
    if size >= positive.size:
        return positive
    drawn = sample_without_replacement(positive.size, size, random_state=random_state)
    return positive[np.sort(drawn)]


def reduce_in_memory(function, X, sample_weight, block_rows):
    """The sum of ``function(X_block, weight_block)`` over blocks of rows of X in memory.

    The blocks hold ``block_rows`` rows and run on all cores
    (``map_chunks``); the sum is taken in block order. ``weight_block`` is
    None when ``sample_weight`` is. ``function`` returns numbers, arrays, or
    tuples and dicts of them; it must not modify the estimator.
    """

    def apply(rows):
        return function(X[rows], None if sample_weight is None else sample_weight[rows])

    total = None
    for part in map_chunks(apply, row_slices(X.shape[0], block_rows)):
        total = add_terms(total, part)
    return total


def map_in_memory(function, X, block_rows):
    """``function(X_block)`` over blocks of rows of X in memory (on all cores), stacked."""
    chunks = row_slices(X.shape[0], block_rows)
    return np.concatenate(list(map_chunks(lambda rows: function(X[rows]), chunks)))
