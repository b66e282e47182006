"""Chunks of rows processed on all cores: threads over chunks, one BLAS thread each.

The E-step of every EM model is a loop over chunks of rows whose results are
summed. On a few cores, splitting the rows between threads that each run
single-threaded BLAS beats one multi-threaded BLAS call per chunk: the
products of one chunk are too small for BLAS to split well, and the
elementwise numpy work between them is single-threaded. This is the scheme
of scikit-learn's KMeans (OpenMP threads over chunks, BLAS limited to one
thread inside). The number of threads follows scikit-learn's
(``OMP_NUM_THREADS``, the CPU affinity); results come back in chunk order,
so sums do not depend on it. Only the main thread fans out: a call from
another thread (a threaded ``GridSearchCV``) runs its chunks in that thread.
"""

import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext

from threadpoolctl import ThreadpoolController, threadpool_limits

try:
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads
except ImportError:  # pragma: no cover - a private helper of scikit-learn

    def _openmp_effective_n_threads():
        return max(1, len(os.sched_getaffinity(0)))


_lock = threading.Lock()
_controller = None
_executor = None
_forked = False  # True in a child forked from a process that imported skem


def _in_main_thread():
    return threading.current_thread() is threading.main_thread()


def single_blas_thread():
    """BLAS (numpy's and scipy's) limited to one thread while the block runs.

    Only the main thread sets the limit: threadpoolctl lets one thread control
    OpenBLAS's process-wide setting, and a limit set and lifted by threads
    that come and go (a threaded GridSearchCV) could be left in place. In
    another thread this does nothing; there, skem adds no threads of its own
    (``map_chunks``), as the caller is already parallel.
    """
    return _one_thread("blas")


def _one_thread(user_api):
    """``user_api`` ('blas' or 'openmp') on one thread, set from the main thread only.

    The limit reaches the libraries loaded when skem first limited threads
    (scanning them takes milliseconds, so it is done once): numpy's, scipy's
    and scikit-learn's, which skem imports, not one loaded later (torch's).
    """
    global _controller
    if not _in_main_thread():
        return nullcontext()
    with _lock:
        if _controller is None:
            _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api=user_api)


def n_threads():
    """Threads for chunked work (scikit-learn's count: OMP_NUM_THREADS, affinity)."""
    return max(1, _openmp_effective_n_threads())


def _forget_pool_in_child():
    """In a forked child, drop the parent's pool and lock: their threads did not follow.

    A fork copies only the forking thread; the inherited executor would queue
    work for threads that do not exist (the child's first fit never returns),
    and a lock held by another thread at the fork would never be released.
    """
    global _lock, _executor, _controller, _forked
    _lock = threading.Lock()
    _executor = None
    _controller = None
    _forked = True


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_pool_in_child)


#: Multiply-adds (n_samples * n_features**2, a d x d scatter of all rows) up
#: to which a fit on data in memory runs on one BLAS thread
#: (``fit_blas_threads``). Measured on 2 shared cores: numpy's syrk of
#: 1347 x 64 (dequantised digits, 5.5e6) took 0.2 ms on one thread and 0.2 to
#: 10 ms on two; 1700 x 200 (6.8e7) 4.4 ms on one and 16 to 58 ms on two;
#: eigh of 5 64 x 64 matrices 2 ms and 2 to 13 ms.
SMALL_BLAS_WORK = 2**25

#: Multiply-adds of one k-means pass (n_samples * n_features * n_clusters) up
#: to which a k-means start runs on one OpenMP thread (``start_threads``).
#: Dequantised digits (1347 x 64, 5 clusters, 4.3e5): scikit-learn's KMeans
#: took 3 ms on two threads of an idle machine, and 0.2 to 0.4 s on two
#: threads and 8 ms on one while another process kept the 2 cores busy.
SMALL_START_WORK = 2**22


def fit_blas_threads(n_samples, n_features):
    """One BLAS thread for a fit whose products are small (``SMALL_BLAS_WORK``).

    Their threads cost more than they save there (many times more on a busy
    machine): the E-step of data this small is one chunk, run on the calling
    thread with BLAS's own threads otherwise. Larger fits keep them.
    """
    if n_samples * n_features**2 > SMALL_BLAS_WORK:
        return nullcontext()
    return single_blas_thread()


def start_threads(n_samples, n_features, n_clusters):
    """One OpenMP thread for a small k-means start (``SMALL_START_WORK``).

    Its threads meet at a barrier every pass, and a busy machine that
    deschedules one keeps the other waiting. Only the main thread sets the
    limit (as ``single_blas_thread``); a larger start keeps its threads.
    """
    if n_samples * n_features * n_clusters > SMALL_START_WORK:
        return nullcontext()
    return _one_thread("openmp")


@contextmanager
def fork_safe_openmp():
    """OpenMP (scikit-learn's KMeans) on one thread in a forked child, else unchanged.

    GNU OpenMP's thread team does not survive a fork: a child whose parent
    ran a parallel region waits forever in its first one. One thread never
    starts the team.
    """
    if not _forked:
        yield
        return
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def _thread_pool():
    """One pool for the process, created on first use and never shut down."""
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=n_threads(), thread_name_prefix="skem")
        return _executor


def map_chunks(function, chunks):
    """``function(chunk)`` for each chunk, in order, on all cores.

    ``function`` must not modify shared state. At most two chunks per thread
    are in flight, so memory stays bounded by a few chunks' working sets.
    """
    chunks = list(chunks)
    workers = min(n_threads(), len(chunks))
    if workers <= 1 or not _in_main_thread():
        # one chunk, or a caller that is itself a thread of a parallel loop
        # (a threaded GridSearchCV, or skem's own pool): no threads on top
        yield from map(function, chunks)
        return
    pool = _thread_pool()
    pending = deque()
    with single_blas_thread():
        try:
            for chunk in chunks:
                pending.append(pool.submit(function, chunk))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:  # after an error: drop what has not started
                future.cancel()
