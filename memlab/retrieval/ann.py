"""Approximate nearest-neighbour search with faiss-cpu, for large dense memories.

``kind: "ivf"`` (default) is an inverted-file index (IVF-Flat, inner product): k-means
cells, then exact scoring inside the ``nprobe`` nearest cells. Its build is cheap (a
k-means on a sample, seeded) and its results are deterministic. ``kind: "hnsw"`` is an
HNSW graph: faster queries at high recall, but a slow build — single-threaded by default
(``threads: 1``), because faiss's parallel HNSW construction is not reproducible and
memlab's results must be; more threads build faster with slightly different graphs.

Vectors are added in time order, so units visible at ``as_of`` are the id range
``[0, visible)`` and faiss filters with an ``IDSelectorRange`` *during* the search. An
HNSW search walks filtered-out nodes too but keeps only visible ones, so with a fraction
``f`` of the units visible it widens its beam to ``ef_search / f`` (at most
``max_ef_search``); the caller falls back to exact search over the visible prefix when
an index returns fewer than ``k`` rows. (faiss HNSW was measured against usearch before
it was chosen: see the README's search benchmark; hnswlib ships no wheel for this Python.)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from memlab.errors import ConfigError

KINDS = ("ivf", "hnsw")


class FaissIndex:
    """An IVF-Flat or HNSW inner-product index over time-sorted unit vectors."""

    def __init__(
        self,
        kind: str = "ivf",
        nlist: int | None = None,
        nprobe: int = 64,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 256,
        max_ef_search: int = 2048,
        exact_below: int = 10_000,
        seed: int = 1234,
        threads: int = 1,
    ) -> None:
        if kind not in KINDS:
            raise ConfigError(f"faiss index kind {kind!r} is not known; valid: {', '.join(KINDS)}")
        self.kind = kind
        self.nlist = nlist
        self.nprobe = nprobe
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.max_ef_search = max_ef_search
        self.exact_below = exact_below
        self.seed = seed
        self.threads = threads
        self._index: Any = None
        self._size = 0

    def params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def build(self, matrix: np.ndarray) -> None:
        """Index ``matrix`` (rows in time order, unit length) from scratch."""
        faiss = _faiss()
        index: Any
        n, dim = matrix.shape
        data = np.ascontiguousarray(matrix, dtype=np.float32)
        if self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = self.ef_construction
        else:
            nlist = self.nlist or max(1, min(round(math.sqrt(n)), n // 39))
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist,
                                       faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = self.seed
            index.cp.niter = 20
            index.cp.max_points_per_centroid = 64  # train on <= 64 points per cell
            index.train(data)
        threads = faiss.omp_get_max_threads()
        if self.kind == "hnsw":
            faiss.omp_set_num_threads(self.threads)  # 1: a reproducible graph
        try:
            index.add(data)
        finally:
            faiss.omp_set_num_threads(threads)
        self._index, self._size = index, n

    def search(self, query: np.ndarray, k: int, visible: int) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top ``k`` among rows ``[0, visible)``: (rows, inner products)."""
        faiss = _faiss()
        params: Any

        selector = faiss.IDSelectorRange(0, visible) if visible < self._size else None
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=self.beam(k, visible), sel=selector)
        else:
            params = faiss.SearchParametersIVF(nprobe=self.nprobe, sel=selector)
        q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        scores, rows = self._index.search(q, k, params=params)
        found = rows[0] >= 0
        return rows[0][found].astype(np.int64), scores[0][found]


    def beam(self, k: int, visible: int) -> int:
        """HNSW ``efSearch`` for a query that may see ``visible`` of the indexed rows."""
        widened = math.ceil(self.ef_search * self._size / max(1, visible))
        return max(k, min(widened, max(self.ef_search, self.max_ef_search)))


def _faiss() -> Any:
    """The faiss module, imported on first use (its type stubs lag its Python API)."""
    import faiss

    return faiss
