"""Where the data are: one adapter per kind of array, one interface for every model.

A model never asks what its X is. It asks ``route_of(X)`` for the route's
operations, all written in terms of one block function with additive results
(``skem._core._blocks``):

- ``reduce``: the sum of ``function(block, weights)`` over blocks of rows
  (every pass of a fit: moments, E-step, closed forms);
- ``map``: ``function(block)`` stacked over blocks of rows (predictions);
- ``validate_fit`` / ``validate_predict``: the checks of the data, with the
  same messages on every route, before any work;
- ``take_rows``: some rows as numpy arrays, on the caller (a start, a small fit);
- ``mean``: the (weighted) mean of per-row values, as a float;
- ``reject_empty_rows`` and ``require_memory``: the route's own messages.

Three routes exist: arrays in memory (numpy arrays and memory-mapped files,
whose blocks run on the local cores, ``InMemory``), dask arrays (the same
block functions on each block where it lives, summed in a tree;
``skem._core._dask``, imported only when a dask array is met), and arrays on
an accelerator (``skem._core._device``: a model's device twins of its block
functions run there, every other pass reads its blocks on the host). Arrays
of other libraries reach a model through the array-API boundary
(``skem._core._namespaces``), which hands the host's route numpy views of
arrays in host memory. Another kind of array is one more adapter with these
methods, and ``route_of`` learning to recognise it; no model changes.
"""

from contextlib import nullcontext
from math import log

import numpy as np

from ._blocks import (
    data_block_rows,
    map_in_memory,
    reduce_in_memory,
    row_weights,
)
from ._checks import (
    check_fit_rows,
    check_not_dispatched,
    check_predict_rows,
    check_rows_observed,
    check_sample_weight,
    may_have_nan,
    weighted_row_mean,
)
from ._namespaces import is_foreign


class InMemory:
    """numpy arrays and memory-mapped files: blocks of rows on the local cores."""

    #: Whether the rows can be indexed and read here (a route whose data stay
    #: elsewhere has only the block operations).
    in_memory = True

    #: Whether a start reads a sample of the rows rather than all of them (a
    #: route whose rows are far away: ``init_size`` defaults to a sample).
    start_on_sample = False

    def validate_fit(self, estimator, X, sample_weight, reset=True):
        """``(X, weights)`` checked for a fit: float, finite (NaN where the model
        takes missing values), not too large; weights scaled to mean one."""
        check_not_dispatched(X, estimator)
        X = check_fit_rows(estimator, X, reset)
        return X, check_sample_weight(sample_weight, X.shape[0])

    def validate_predict(self, estimator, X):
        """X checked for a prediction of a fitted ``estimator``."""
        check_not_dispatched(X, estimator)
        return check_predict_rows(estimator, X)

    def reduce(self, function, X, sample_weight, block_rows, within=nullcontext):
        """The sum of ``function(block, weights)`` over blocks of ``block_rows`` rows.

        The blocks run on all cores and are added in block order. ``within``
        is a context entered once around the pass (a model pins the terms of
        its parameters there). ``function`` must not modify the estimator.
        """
        with within():
            return reduce_in_memory(function, X, sample_weight, block_rows)

    def map(self, function, X, block_rows, within=nullcontext):
        """``function(block)`` over blocks of ``block_rows`` rows, stacked."""
        with within():
            return map_in_memory(function, X, block_rows)

    def take_rows(self, X, sample_weight, indices=None):
        """Rows ``indices`` of X (all if None) and their weights, as numpy arrays."""
        if indices is None:
            return X, sample_weight
        return X[indices], None if sample_weight is None else sample_weight[indices]

    def mean(self, values, sample_weight):
        """The (weighted) mean of per-row values, as a float."""
        return weighted_row_mean(values, sample_weight)

    #: Whether ``check_rows_observed`` names the rows of X (a cluster's route
    #: counts them as it meets them instead).
    names_empty_rows = True

    def check_rows_observed(self, X):
        """ValueError naming the rows of X with no observed value, if any."""
        if may_have_nan(X):
            check_rows_observed(X)

    def reject_empty_rows(self, X, count=None, block=None):
        """Raise the error naming the rows of X with no observed value.

        ``block``: the block of X being processed, where the rows were found.
        """
        check_rows_observed(X)

    def check_rows(self, check, X):
        """``check(X, block=False)``: a per-row check of X that returns X (or raises)."""
        return check(X)

    def require_memory(self, estimator, method):
        """Nothing: every method runs on data in memory (elsewhere, the route's
        ValueError says what to do instead)."""

    def incomplete_row_share(self, X):
        """The share of the rows of X with a missing value, counted block by block."""

        def count(block, weights):
            if not may_have_nan(block):
                return 0.0
            return float(np.count_nonzero(np.isnan(block).any(axis=1)))

        return self.reduce(count, X, None, data_block_rows(X)) / max(1, X.shape[0])


IN_MEMORY = InMemory()


def route_of(X):
    """The route of ``X``: dask arrays go through ``skem._core._dask``, arrays on an
    accelerator through ``skem._core._device``, the rest in memory.

    (A dask array is told without importing dask.)
    """
    if type(X).__module__.startswith("dask.array") and hasattr(X, "chunks"):
        from ._dask import DASK

        return DASK
    if is_foreign(X):  # (the array-API boundary left it on its device)
        from ._device import ON_DEVICE

        return ON_DEVICE
    return IN_MEMORY


def observed_column_sums(block, weights):
    """``(weighted sum, weight)`` of the observed values of each column of a block
    (NaN skipped): a block function for ``reduce_rows``."""
    weights = row_weights(weights, block.shape[0])
    if not may_have_nan(block):
        return weights @ block.astype(np.float64, copy=False), np.full(
            block.shape[1], weights.sum()
        )
    observed = ~np.isnan(block)
    return weights @ np.where(observed, block, 0.0), weights @ observed


def weighted_moments(X, sample_weight, block_rows=None):
    """Weighted mean and variance of each column, ignoring NaN entries.

    Two passes of ``reduce_rows`` (the mean, then the squares about it), so no
    temporary of the size of ``X`` is made (nor a float64 copy of float32
    data), and a dask array is read block by block on its cluster.
    """

    def squares(block, weights):
        weights = row_weights(weights, block.shape[0])
        centered = np.subtract(block, mean, dtype=np.float64)
        np.square(centered, out=centered)
        np.copyto(centered, 0.0, where=np.isnan(centered))
        return weights @ centered

    if block_rows is None:
        block_rows = data_block_rows(X)
    total, column_weight = reduce_rows(observed_column_sums, X, sample_weight, block_rows)
    mean = total / column_weight
    return mean, reduce_rows(squares, X, sample_weight, block_rows) / column_weight


def reduce_rows(function, X, sample_weight, block_rows):
    """The sum of ``function(X_block, weight_block)`` over blocks of rows, where X lives.

    The one loop over the data of every pass a model makes (moments, the
    E-step, the closed forms): see ``Route.reduce``.
    """
    return route_of(X).reduce(function, X, sample_weight, block_rows)


def check_missing(X, sample_weight):
    """Whether X has missing values (NaN); raise ValueError if a row or column has none observed.

    One pass over the data (``reduce_rows``), so a dask array is checked on its
    cluster. Every row needs an observed value, and every column one in a row
    of positive weight.
    """

    def counts(block, weights):
        n_features = block.shape[1]
        if not may_have_nan(block):
            weight = block.shape[0] if weights is None else weights.sum()
            return 0.0, 0.0, np.full(n_features, float(weight))
        observed = ~np.isnan(block)
        empty_rows = np.count_nonzero(~observed.any(axis=1))
        return (
            float(observed.size - np.count_nonzero(observed)),
            float(empty_rows),
            (row_weights(weights, block.shape[0]) @ observed),
        )

    n_missing, n_empty_rows, column_weight = reduce_rows(
        counts, X, sample_weight, data_block_rows(X)
    )
    if n_empty_rows:
        route_of(X).reject_empty_rows(X, int(n_empty_rows))
    columns = np.flatnonzero(column_weight == 0)
    if columns.size:
        raise ValueError(
            f"Columns {columns[:10].tolist()} of X are entirely NaN (missing), or observed "
            "only in rows of zero sample_weight; every feature needs an observed value of "
            "positive weight."
        )
    return n_missing > 0


def log_total_weight(X, sample_weight):
    """The log of the total weight of the rows of X as given (of the row count unweighted).

    In logs, so that weights near the float limit keep their ratios.
    """
    if sample_weight is None:
        return log(X.shape[0])
    if route_of(sample_weight).in_memory:
        sample_weight = np.asarray(sample_weight, dtype=np.float64)
    largest = float(sample_weight.max())
    if largest <= 0:
        return -np.inf
    return log(X.shape[0]) + log(float((sample_weight / largest).mean())) + log(largest)


def take_rows(X, sample_weight, indices=None):
    """Rows ``indices`` of X (all if None) and their weights, as numpy arrays here."""
    return route_of(X).take_rows(X, sample_weight, indices)
