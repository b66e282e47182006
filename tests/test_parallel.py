"""Chunked work on all cores: the process-wide pool and forked children."""

import multiprocessing
import os

import numpy as np
import pytest
from numpy.testing import assert_allclose

from skem import EMGaussianMixture
from skem._core import _blocks, _parallel
from skem._core._parallel import (
    SMALL_BLAS_WORK,
    SMALL_START_WORK,
    fit_blas_threads,
    start_threads,
)

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


@pytest.mark.parametrize("api", ["blas", "openmp"])
def test_small_fits_run_on_one_thread_and_large_ones_keep_their_threads(api):
    # BLAS for the whole fit, OpenMP for the k-means start, of the libraries skem's
    # controller knows: those loaded when it was made (scikit-learn's OpenMP among
    # them; not one that torch, imported later, brings)
    with _parallel.single_blas_thread():
        pass

    def threads():
        known = _parallel._controller.info()
        return [info["num_threads"] for info in known if info["user_api"] == api]

    def limit(n_samples):
        if api == "blas":
            return fit_blas_threads(n_samples, 64)
        return start_threads(n_samples, 64, 5)

    largest = SMALL_BLAS_WORK // 64**2 if api == "blas" else SMALL_START_WORK // (64 * 5)
    np.ones((2, 2)) @ np.ones((2, 2))  # (threadpoolctl may list BLAS after its first use)
    before = threads()
    with limit(1347):  # dequantised digits
        assert all(n == 1 for n in threads())
    assert threads() == before
    with limit(largest + 1):
        assert threads() == before


def test_a_small_fit_runs_on_one_blas_thread_and_restores_the_setting_after_an_error():
    with _parallel.single_blas_thread():  # (the controller, and the libraries it knows)
        pass

    def blas_threads():
        known = _parallel._controller.info()
        return [info["num_threads"] for info in known if info["user_api"] == "blas"]

    seen = []

    class Recording(EMGaussianMixture):
        def _m_step(self, statistics):
            seen.append(blas_threads())
            super()._m_step(statistics)

    class Failing(EMGaussianMixture):
        def _m_step(self, statistics):
            raise RuntimeError("in the M-step")

    X = np.random.RandomState(0).randn(300, 4)
    np.ones((2, 2)) @ np.ones((2, 2))  # (threadpoolctl may list BLAS after its first use)
    before = blas_threads()
    Recording(2, max_iter=3, random_state=0).fit(X)
    assert seen and all(set(threads) == {1} for threads in seen)
    assert blas_threads() == before
    with pytest.raises(RuntimeError, match="in the M-step"):
        Failing(2, random_state=0).fit(X)
    assert blas_threads() == before
