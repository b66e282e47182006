"""The user's initial values of a Gaussian mixture (``weights_init``, ``means_init``,
``precisions_init``) and the priors' shapes: checked, with scikit-learn's messages."""

import numpy as np
from sklearn.utils import check_array

from .._core._covariance import COVARIANCES, precision_shape


def _check_shape(array, shape, name):
    if array.shape != shape:
        raise ValueError(
            f"The parameter '{name}' should have the shape of {shape}, but got {array.shape}"
        )


def _as_float_array(value, name, allow_nd=False):
    return check_array(
        value,
        dtype=[np.float64, np.float32],
        ensure_2d=False,
        allow_nd=allow_nd,
        input_name=name,
    )


def check_weights(weights, n_components):
    """Validate initial mixing weights: shape, range [0, 1] and sum one."""
    weights = _as_float_array(weights, "weights_init")
    _check_shape(weights, (n_components,), "weights")
    if np.any(weights < 0.0) or np.any(weights > 1.0):
        raise ValueError(
            "The parameter 'weights' should be in the range [0, 1], but got "
            f"min value {np.min(weights):.5f}, max value {np.max(weights):.5f}"
        )
    atol = 1e-6 if weights.dtype == np.float32 else 1e-8
    if abs(1.0 - float(np.sum(weights))) > atol:
        raise ValueError(
            "The parameter 'weights' should be normalized, "
            f"but got sum(weights) = {np.sum(weights):.5f}"
        )
    return weights


def check_means(means, n_components, n_features):
    """Validate initial means: shape (n_components, n_features)."""
    means = _as_float_array(means, "means_init")
    _check_shape(means, (n_components, n_features), "means")
    return means


def check_precisions(precisions, covariance_type, n_components, n_features):
    """Validate initial precisions: shape and positive-definiteness."""
    covariance = COVARIANCES[covariance_type]
    shape = precision_shape(covariance, n_components, n_features)
    precisions = _as_float_array(precisions, "precisions_init", allow_nd=len(shape) > 2)
    name = f"{covariance_type} precision"
    _check_shape(precisions, shape, name)
    covariance.from_precisions(np.asarray(precisions, dtype=np.float64), name)  # (checks)
    return precisions
