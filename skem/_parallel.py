"""Chunks of rows processed on all cores: threads over chunks, one BLAS thread each.

The E-step of every EM model is a loop over chunks of rows whose results are
summed. On a few cores, splitting the rows between threads that each run
single-threaded BLAS beats one multi-threaded BLAS call per chunk: the
products of one chunk are too small for BLAS to split well, and the
elementwise numpy work between them is single-threaded. This is the scheme
of scikit-learn's KMeans (OpenMP threads over chunks, BLAS limited to one
thread inside). The number of threads follows scikit-learn's
(``OMP_NUM_THREADS``, the CPU affinity); results come back in chunk order,
so sums do not depend on it.
"""

from collections import deque
from concurrent.futures import ThreadPoolExecutor

from threadpoolctl import ThreadpoolController

try:
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads
except ImportError:  # pragma: no cover - a private helper of scikit-learn
    import os

    def _openmp_effective_n_threads():
        return max(1, len(os.sched_getaffinity(0)))


_controller = None
_executor = None


def single_blas_thread():
    """Context manager limiting BLAS (numpy's and scipy's) to one thread."""
    global _controller
    if _controller is None:  # scanning the loaded libraries takes milliseconds
        _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")


def n_threads():
    """Threads for chunked work (scikit-learn's count: OMP_NUM_THREADS, affinity)."""
    return max(1, _openmp_effective_n_threads())


def _thread_pool(size):
    global _executor
    if _executor is None or _executor._max_workers != size:
        if _executor is not None:
            _executor.shutdown(wait=False)
        _executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="skem")
    return _executor


def map_chunks(function, chunks):
    """``function(chunk)`` for each chunk, in order, on all cores.

    ``function`` must not modify shared state. At most two chunks per thread
    are in flight, so memory stays bounded by a few chunks' working sets.
    """
    chunks = list(chunks)
    workers = min(n_threads(), len(chunks))
    if workers <= 1:
        yield from map(function, chunks)
        return
    pool = _thread_pool(workers)
    pending = deque()
    with single_blas_thread():
        for chunk in chunks:
            pending.append(pool.submit(function, chunk))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
