"""A memory-mapped array fits without being copied into memory, and like the array itself."""

import tracemalloc

import numpy as np
import pytest
from numpy.testing import assert_allclose

import skem._core._parallel
from skem import EMGaussianMixture, MixtureOfPPCA, ProbabilisticPCA


def two_cluster_file(path, n_rows, block_rows, seed, missing_rate=0.0):
    """A float64 .npy file of two clusters of 50 columns, written a block at a time,
    with ``missing_rate`` of its cells NaN; opened memory-mapped."""
    rng = np.random.RandomState(seed)
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(n_rows, 50))
    for start in range(0, len(X), block_rows):
        block = rng.randn(block_rows, 50)
        block[: block_rows // 2] += 3.0
        if missing_rate:
            block[rng.uniform(size=block.shape) < missing_rate] = np.nan
        X[start : start + block_rows] = block
    X.flush()
    del X
    return np.load(path, mmap_mode="r")


def peak_of_fit(model, X):
    """The peak of numpy's allocations (tracemalloc) while a clone of ``model`` fits X."""
    tracemalloc.start()
    try:
        type(model)(**model.get_params()).fit(X)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def mapped(tmp_path_factory):
    """A 64 MB float64 file (160k x 50), many times the 8 MB chunk of the E-step."""
    return two_cluster_file(tmp_path_factory.mktemp("memmap") / "X.npy", 160_000, 40_000, 0)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize(
    "model",
    [
        EMGaussianMixture(2, covariance_type="full", init_size=2000, max_iter=3, random_state=0),
        EMGaussianMixture(2, covariance_type="diag", init_size=2000, max_iter=3, random_state=0),
        ProbabilisticPCA(5),
        ProbabilisticPCA(5, solver="em", max_iter=3, random_state=0),
        MixtureOfPPCA(2, n_latent=3, init_size=2000, max_iter=3, random_state=0),
    ],
    ids=lambda model: repr(model)[:40],
)
def test_a_memory_mapped_file_is_fitted_without_a_copy(mapped, model, monkeypatch):
    """numpy reports its allocations to tracemalloc. The E-step's chunks take a
    fixed working set (tens of MB, with two chunks in flight per thread), so the
    test is that the peak does not grow with the rows: the whole file against
    half of it (a copy would add 32 MB). The chunks run one at a time here, so
    the peak does not depend on how the threads happen to overlap. The fit is
    that of the array in memory.
    """
    monkeypatch.setattr(skem._core._parallel, "n_threads", lambda: 1)

    growth = peak_of_fit(model, mapped) - peak_of_fit(model, mapped[: len(mapped) // 2])
    assert growth < 0.1 * mapped.nbytes
    fitted = type(model)(**model.get_params()).fit(mapped)
    in_memory = type(model)(**model.get_params()).fit(np.array(mapped))
    assert_allclose(fitted.lower_bounds_, in_memory.lower_bounds_, rtol=1e-12)


@pytest.fixture(scope="module")
def mapped_with_nan(tmp_path_factory):
    """A 24 MB file (60k x 50) with 2% of its cells missing (NaN)."""
    path = tmp_path_factory.mktemp("memmap_nan") / "X.npy"
    return two_cluster_file(path, 60_000, 20_000, 1, missing_rate=0.02)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize(
    "model",
    [
        EMGaussianMixture(2, covariance_type="full", init_size=2000, max_iter=1, random_state=0),
        ProbabilisticPCA(5, solver="em", max_iter=1, random_state=0),
        MixtureOfPPCA(2, n_latent=3, init_size=2000, max_iter=1, random_state=0),
    ],
    ids=lambda model: repr(model)[:40],
)
def test_a_memory_mapped_file_with_nan_is_fitted_without_a_mask_of_it(
    mapped_with_nan, model, monkeypatch
):
    """With NaN, no pass makes an n x d mask (one byte a cell: 1.5 MB between the
    two sizes here): the validation's finiteness check and the count of rows
    with NaN go block by block. The peak grows by well under that mask."""
    monkeypatch.setattr(skem._core._parallel, "n_threads", lambda: 1)

    full, half = mapped_with_nan, mapped_with_nan[: len(mapped_with_nan) // 2]
    growth = peak_of_fit(model, full) - peak_of_fit(model, half)
    assert growth < 0.25 * (full.size - half.size)  # a quarter of the mask's bytes
