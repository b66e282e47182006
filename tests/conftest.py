"""Fixtures shared by the tests, including those scikit-learn's own tests expect."""

import numpy as np
import pytest


@pytest.fixture(params=[np.float64, np.float32], ids=["float64", "float32"])
def global_dtype(request):
    """Both float dtypes (scikit-learn's tests run float32 only on request)."""
    return request.param


@pytest.fixture(params=[0, 42])
def global_random_seed(request):
    """Seeds for scikit-learn's seed-parametrised tests."""
    return request.param
