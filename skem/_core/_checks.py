"""Checks of the data every model shares: magnitude, infinity, weights, empty rows."""

import warnings

import numpy as np
from sklearn import get_config
from sklearn.utils.validation import validate_data

from ._blocks import data_block_rows, row_slices

#: Largest magnitude of training data by dtype: the models sum squares of the
#: data, which overflow float64 near 1e150 (1e100 leaves room for sums of 1e10
#: rows); float32 parameters hold variances only up to about 3e38.
MAX_ABS_VALUE = {np.dtype(np.float64): 1e100, np.dtype(np.float32): 1e18}


def check_magnitude(X):
    """Refuse data whose squares would overflow, naming the scale and the remedy."""
    limit = MAX_ABS_VALUE[X.dtype]
    if not X.size:
        return
    with warnings.catch_warnings():  # an all-NaN X is refused elsewhere
        warnings.simplefilter("ignore", RuntimeWarning)
        largest = max(float(np.nanmax(X)), -float(np.nanmin(X)))  # no |X| copy
    if largest > limit:
        precision = (
            "float32, whose variances overflow beyond 3e38 (convert X to float64, or rescale it)"
            if X.dtype == np.float32
            else "float64, whose sums of squares overflow near 1e150"
        )
        raise ValueError(
            f"X has values of magnitude up to {largest:.3g}; skem fits {X.dtype} data up "
            f"to {limit:.0e}, as X is {precision}. Divide X by a constant c (every "
            "log-density then shifts by n_features * log(c)) or standardise it "
            "(sklearn's StandardScaler)."
        )


def check_fit_rows(estimator, X, reset=True):
    """X checked for a fit (``reset``) or a continued one: float, finite (NaN
    where the model takes missing values), not too large. Sets the estimator's
    ``n_features_in_`` when ``reset``."""
    X = validate_data(
        estimator,
        X,
        dtype=[np.float64, np.float32],
        ensure_min_samples=2 if reset else 1,
        ensure_all_finite=not estimator._allow_nan,  # NaN: checked block by block
        reset=reset,
    )
    if estimator._allow_nan:
        check_no_infinity(X)
    check_magnitude(X)
    return X


def check_predict_rows(estimator, X):
    """X checked for a prediction of a fitted ``estimator``: float, the fitted
    number of features, finite (NaN where the model takes missing values)."""
    X = validate_data(
        estimator,
        X,
        dtype=[np.float64, np.float32],
        reset=False,
        ensure_all_finite=not estimator._allow_nan,  # NaN: checked block by block
    )
    if estimator._allow_nan:
        check_no_infinity(X)
    return X


def may_have_nan(X):
    """False only if X has no NaN: NaN propagates through the sum (so can inf - inf
    of values past the float range, a false alarm the caller's exact check settles)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isnan(X.sum(dtype=np.float64)))


def check_no_infinity(X):
    """scikit-learn's finiteness check with NaN allowed, a block of rows at a time.

    scikit-learn's own check makes an n x d mask of X when X has NaN (one
    byte a cell, the size of a memory-mapped file's rows); a block's sum is
    finite unless the block holds NaN, inf or sums past the float range, and
    only then are its cells looked at.
    """
    for rows in row_slices(X.shape[0], data_block_rows(X)):
        block = X[rows]
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(block.sum(dtype=np.float64)):
                continue
        if np.isinf(block).any():
            raise ValueError(f"Input X contains infinity or a value too large for {X.dtype!r}.")


def check_sample_weight(sample_weight, n_samples):
    """Validate ``sample_weight``: None or finite, non-negative, shape (n_samples,).

    Returns None or a float64 array with a positive sum.
    """
    if sample_weight is None:
        return None
    weights = np.asarray(sample_weight)
    if weights.dtype.kind not in "biuf":
        raise ValueError(f"sample_weight must be numeric, got an array of dtype {weights.dtype}.")
    weights = weights.astype(np.float64, copy=True)
    if weights.ndim == 0:
        weights = np.full(n_samples, float(weights))
    if weights.shape != (n_samples,):
        raise ValueError(f"sample_weight must have shape ({n_samples},), got {weights.shape}.")
    check_weight_values(weights)
    if not np.any(weights > 0):
        raise ValueError("sample_weight is zero everywhere: at least one weight must be positive.")
    # Only relative weights matter; mean one keeps the models' small absolute
    # guards (such as the floor on a component's total responsibility)
    # negligible. Dividing by the largest first keeps the sum finite for
    # weights near the float limit.
    weights /= weights.max()
    return weights / weights.mean()


def weighted_row_mean(values, sample_weight):
    """The (weighted) mean of per-row values in memory, as a float."""
    weights = check_sample_weight(sample_weight, values.shape[0])
    return float(np.average(values, weights=weights))


def check_weight_values(weights):
    """Raise ValueError unless every weight is finite and non-negative."""
    if not np.all(np.isfinite(weights)):
        raise ValueError("sample_weight must be finite (no NaN or inf).")
    if np.any(weights < 0):
        raise ValueError("sample_weight must be non-negative.")


def check_rows_observed(X, block=False):
    """Raise ValueError naming the rows of X (in memory) that are entirely NaN.

    For a ``block`` of a larger array, whose place in it is not known, the
    message counts the rows instead.
    """
    rows = np.flatnonzero(np.isnan(X).all(axis=1))
    if rows.size and block:
        raise ValueError(empty_rows_message(rows.size))
    if rows.size:
        raise ValueError(
            f"Rows {rows[:10].tolist()} of X are entirely NaN (missing); "
            "every row needs at least one observed value."
        )


def empty_rows_message(count):
    """The error for rows with no observed value, counted (for a dask array)."""
    rows = "1 row of X is" if count == 1 else f"{count} rows of X are"
    return f"{rows} entirely NaN (missing); every row needs at least one observed value."


#: Array libraries whose arrays scikit-learn's array API dispatch passes on unconverted.
ARRAY_LIBRARIES = {"torch", "cupy", "cupyx", "jax", "jaxlib", "array_api_strict", "mlx"}


def check_not_dispatched(X, estimator):
    """A clear ValueError for another library's array while scikit-learn's
    ``array_api_dispatch`` is on, for an estimator that computes on numpy only.

    (skem's EM models take such arrays through ``skem._core._namespaces``.)
    With the dispatch on, scikit-learn's validation passes a torch, cupy or
    array-api-strict array through unconverted and fails on numpy's dtypes
    with a TypeError that does not say why; without it, X is converted to numpy.
    """
    if not get_config().get("array_api_dispatch", False) or isinstance(X, np.ndarray):
        return
    library = type(X).__module__.split(".")[0]
    if library not in ARRAY_LIBRARIES and not hasattr(X, "__array_namespace__"):
        return
    raise ValueError(
        f"X is a {library} array and scikit-learn's array_api_dispatch is on: "
        f"{type(estimator).__name__} computes on numpy arrays only (skem's EM models "
        "take such arrays). Pass numpy data (for example X.cpu().numpy() for torch), "
        "or turn the dispatch off (sklearn.set_config(array_api_dispatch=False)), "
        "which converts X to numpy."
    )
