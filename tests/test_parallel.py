"""Chunked work on all cores: the process-wide pool and forked children."""

import multiprocessing
import os

import numpy as np
import pytest
from numpy.testing import assert_allclose

from skem import EMGaussianMixture
from skem._core import _blocks, _parallel

pytestmark = pytest.mark.skipif(
    not hasattr(os, "register_at_fork") or _parallel.n_threads() < 2,
    reason="forking and a pool of at least two threads",
)


def _fit_score(init_params):
    X = np.random.RandomState(0).normal(size=(3000, 4))
    model = EMGaussianMixture(3, init_params=init_params, max_iter=5, tol=0, random_state=0)
    return model.fit(X).score(X)


@pytest.mark.parametrize("init_params", ["random", "kmeans"])
def test_fit_in_forked_child_after_parent_fit_returns_the_parents_numbers(init_params, monkeypatch):
    """The parent's pool and OpenMP team do not follow a fork; the child's fit still runs.

    Small chunks make both fits use the thread pool (and the k-means start
    scikit-learn's OpenMP team), which used to leave the child waiting forever.
    """
    monkeypatch.setattr(_blocks, "CHUNK_FLOATS", 2000)
    expected = _fit_score(init_params)
    with multiprocessing.get_context("fork").Pool(1) as pool:
        result = pool.apply_async(_fit_score, (init_params,)).get(timeout=120)
    assert_allclose(result, expected, rtol=1e-12)
