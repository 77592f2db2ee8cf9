"""Exact dense scoring on one BLAS thread ranks exactly as numpy's default path, and the
one-thread limit is lifted only when the last concurrent product ends."""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_info

from memlab.embed import normalize_rows
from memlab.retrieval.blas import SINGLE_THREAD_BELOW, is_numpy_blas, matvec, one_blas_thread
from memlab.retrieval.ranking import select_top


def blas_threads() -> list[int]:
    """Thread counts of numpy's BLAS (another package's, loaded by an earlier test, is not
    the one numpy's products run on, and memlab leaves it alone)."""
    blas = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
    numpys = [lib for lib in blas if is_numpy_blas(lib["filepath"])]
    return [lib["num_threads"] for lib in numpys or blas]


def test_one_thread_scores_rank_like_the_default_product() -> None:
    rng = np.random.default_rng(7)
    centres = normalize_rows(rng.standard_normal((50, 384)))
    vectors = normalize_rows(centres[rng.integers(0, 50, 20_000)]
                             + 0.03 * rng.standard_normal((20_000, 384))).astype(np.float32)
    queries = normalize_rows(centres[:20] + 0.03 * rng.standard_normal((20, 384)))
    for rows in (10, SINGLE_THREAD_BELOW // 384 + 1, 20_000):  # below and above the cut
        keys = np.arange(rows)
        for query in queries.astype(np.float32):
            default = vectors[:rows] @ query
            single = matvec(vectors[:rows], query)
            assert single.dtype == np.float32
            np.testing.assert_allclose(single, default, rtol=0, atol=1e-6)
            np.testing.assert_array_equal(select_top(single, keys, 50),
                                          select_top(default, keys, 50))


def test_the_limit_holds_until_the_last_product_ends() -> None:
    before = blas_threads()
    assert before  # numpy's BLAS is visible to threadpoolctl
    with one_blas_thread():
        assert set(blas_threads()) == {1}
        with one_blas_thread():  # another search overlapping the first
            assert set(blas_threads()) == {1}
        assert set(blas_threads()) == {1}
    assert blas_threads() == before
