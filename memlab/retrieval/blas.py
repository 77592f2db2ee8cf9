"""Exact dense scoring on one BLAS thread.

OpenBLAS splits a matrix-vector product over every core once it has 9,216 elements
(``2304 * GEMM_MULTITHREAD_THRESHOLD``). On a loaded machine the second thread's share then
waits for a time slice: a 10k x 384 float32 product took 28 ms p50 on OpenBLAS's 2 threads
and 0.63 ms on one (README, "Why search is slow under load"). A search scores one query, so
one thread is all it needs; :func:`matvec` limits BLAS to one thread around the product.

Each thread computes whole output elements with the same kernel either way, so the scores
are bit-identical to numpy's default path (``tests/test_blas.py`` checks the ranks). The
limit is process-wide (BLAS has no per-call setting): it is taken when the first of
concurrent products starts and lifted when the last ends, so overlapping searches never
restore a stale setting. The controller is found once and reused (a fresh
``threadpool_limits`` rescans the loaded libraries: milliseconds, not microseconds).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

#: Below this many matrix elements OpenBLAS runs a product on one thread anyway.
SINGLE_THREAD_BELOW = 9216

_lock = threading.Lock()
_active = 0
_saved: list[tuple[Any, int]] = []  # (library, its thread count before the limit)
_libraries: list[Any] | None = None


def matvec(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """``matrix @ vector`` (float32), computed on one BLAS thread."""
    vector = np.asarray(vector, dtype=np.float32)
    if matrix.size < SINGLE_THREAD_BELOW:
        return matrix @ vector
    with one_blas_thread():
        return matrix @ vector


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Limit the loaded BLAS libraries to one thread while any caller is inside."""
    global _active
    with _lock:
        if _active == 0:
            for library in _blas_libraries():
                _saved.append((library, library.get_num_threads()))
                library.set_num_threads(1)
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                while _saved:
                    library, threads = _saved.pop()
                    library.set_num_threads(threads)


def _blas_libraries() -> list[Any]:
    """threadpoolctl's controllers of numpy's BLAS (the one ``matrix @ vector`` runs on),
    found once; every loaded BLAS when none lies in numpy's package (a system numpy).

    Only numpy's is limited: a BLAS loaded later by another package (torch's, scipy's) is
    not the one these products use, and a list found once would not hold it anyway.
    (Each library is set directly: ``ThreadpoolController.limit`` re-reads every library's
    full description per call, ~0.2 ms on a loaded machine.)
    """
    global _libraries
    if _libraries is None:
        from threadpoolctl import ThreadpoolController

        loaded = list(ThreadpoolController().select(user_api="blas").lib_controllers)
        numpys = [lib for lib in loaded if is_numpy_blas(lib.filepath)]
        _libraries = numpys or loaded
    return _libraries


def is_numpy_blas(filepath: str | None) -> bool:
    """Whether a shared library is the BLAS bundled in numpy's wheel (``numpy.libs/``)."""
    return bool(filepath) and Path(str(filepath)).parent.name.startswith("numpy")
