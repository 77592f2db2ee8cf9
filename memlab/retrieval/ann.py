"""Approximate nearest-neighbour search with faiss-cpu, for large dense memories.

``kind: "ivf"`` (default) is an inverted-file index (inner product): k-means cells, then
scoring of the stored vectors inside the ``nprobe`` nearest cells. Its build is a k-means on a
sample (seeded: deterministic results). ``nlist`` defaults to ``8 * sqrt(n)`` cells (at most
one per 39 rows, faiss's minimum for training) and ``nprobe`` to 32: at 1M rows that scans
0.4 % of them. (The first default, ``sqrt(n)`` cells with ``nprobe`` 64, scanned 6.4 % at
1M: recall@10 0.993 at 9-11 ms; 8,000 cells with ``nprobe`` 32 gave 1.000 at 0.7 ms p50 on
the search benchmark's corpus, 4,000 cells 0.979.) Small indexes need a larger share of
their cells, so a search probes enough cells to scan ``min_scan`` (2,560) rows on average:
at 100k rows (2,528 cells) ``nprobe`` 32 gave recall@10 0.975, 52 gave 0.980 and 64 (what
``min_scan`` gives) 0.987; at 20k rows (512 cells) 32 gave 0.92 and 128 gave 0.98
(``tests/test_ann.py``). A filtered search widens ``nprobe`` by the square root of the
hidden fraction (``widen_power``; the probed cells hold fewer visible rows, but the top 10
of fewer rows is easier to find: recall stayed at or above the unfiltered one at 50 %, 25 %
and 10 % visible), at most to every cell. Rows are added in time order, so each cell's
visible ids are a prefix that faiss finds by bisection: hidden rows cost nothing.
An IVF index stores its vectors as float16 (``storage: fp16``, the default): half the
memory to scan, so a search is faster, and on the search benchmark's 100k corpus it ranked
as float32 does (recall@10 0.987 at ``nprobe`` 64 either way; p50 / p95 0.26 / 0.35 ms
against 0.38 / 0.49 for ``flat``, float32). ``sq8`` (8-bit) scans a quarter but lost
recall there (0.978) and was no faster than float16.
``kind: "hnsw"`` is an HNSW graph: fast queries, but a slow build — single-threaded by
default (``threads: 1``), because faiss's parallel HNSW construction is not reproducible
and memlab's results must be; more threads build faster with slightly different graphs.
(At 1M rows of the search benchmark's corpus its recall@10 stayed at 0.85-0.92.)

Vectors are added in time order, so units visible at ``as_of`` are the id range
``[0, visible)`` and faiss filters with an ``IDSelectorRange`` *during* the search. An
HNSW search walks filtered-out nodes too and counts them in its beam, so a filter that
hides most units would need a beam of ``ef_search / visible fraction``. The HNSW build
therefore keeps a *prefix ladder* (``ladder: true``): the graph is grown in time order and
copied when it holds ``n/2``, ``n/4``, … rows (down to ``ladder_min`` rows), which costs
copying, not building. A filtered search uses the smallest copy that holds every visible
row, so at least half of what it walks is visible and the beam widens by at most 2×
(``max_ef_search`` caps it). The caller searches exactly when few rows are visible
(``exact_below``) and falls back to exact search when an index returns fewer than ``k``.

An HNSW index grows by :meth:`FaissIndex.append` when rows are added after the newest
ones (a live memory's new units): faiss adds them to the main graph, the ladder copies stay
valid prefixes, and a new copy of the main graph is kept whenever it would otherwise grow
past twice the largest copy, so a filtered search still walks at least half visible rows.
(Copies then sit at doubling sizes from the first build, up to twice the rows a one-shot
build's ladder holds.) A graph grown by appends is not the graph a one-shot build of the
same rows gives (faiss inserts each batch's rows highest level first, and the copies fall
at other sizes): its results can differ slightly and it is never cached. ``memlab.eval``
indexes each conversation once and is unaffected. IVF indexes are always rebuilt.

``cache: true`` stores built indexes under ``$MEMLAB_CACHE_DIR/faiss/``, keyed by a digest
of the vectors and the index parameters, so a large index (hours of HNSW build at 1M
rows) is built once. (faiss HNSW was measured against usearch before it was chosen: see
the README's search benchmark; hnswlib ships no wheel for this Python.)
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from memlab.cache import cache_root
from memlab.errors import ConfigError

KINDS = ("ivf", "hnsw")
STORAGES = ("fp16", "flat", "sq8")  # how an IVF index stores vectors: float16, float32, 8-bit
CACHE_VERSION = "v2"  # v2: the ivf defaults changed (nlist, training sample)


class FaissIndex:
    """An IVF-Flat or HNSW inner-product index over time-sorted unit vectors."""

    def __init__(
        self,
        kind: str = "ivf",
        nlist: int | None = None,
        nprobe: int = 32,
        storage: str = "fp16",
        min_scan: int = 2560,
        widen_power: float = 0.5,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 256,
        max_ef_search: int = 2048,
        exact_below: int = 10_000,
        seed: int = 1234,
        threads: int = 1,
        ladder: bool = True,
        ladder_min: int = 4096,
        cache: bool = False,
    ) -> None:
        if kind not in KINDS:
            raise ConfigError(f"faiss index kind {kind!r} is not known; valid: {', '.join(KINDS)}")
        if storage not in STORAGES:
            raise ConfigError(f"faiss ivf storage {storage!r} is not known; "
                              f"valid: {', '.join(STORAGES)}")
        self.kind = kind
        self.nlist = nlist
        self.nprobe = nprobe
        self.storage = storage
        self.min_scan = min_scan
        self.widen_power = widen_power
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.max_ef_search = max_ef_search
        self.exact_below = exact_below
        self.seed = seed
        self.threads = threads
        self.ladder = ladder
        self.ladder_min = ladder_min
        self.cache = cache
        self._indexes: list[tuple[int, Any]] = []  # (rows, index), smallest first
        self._size = 0

    def params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def build(self, matrix: np.ndarray) -> None:
        """Index ``matrix`` (rows in time order, unit length) from scratch."""
        data = np.ascontiguousarray(matrix, dtype=np.float32)
        folder = self._cache_folder(data) if self.cache else None
        if folder is not None and folder.is_dir():
            self._indexes = _load(folder)
        else:
            self._indexes = self._build_hnsw(data) if self.kind == "hnsw" else [
                (len(data), self._build_ivf(data))]
            if folder is not None:
                _save(folder, self._indexes)
        self._size = len(data)

    @property
    def size(self) -> int:
        """Rows indexed (0 until built)."""
        return self._size

    @property
    def appendable(self) -> bool:
        """Whether :meth:`append` can grow this index (a built HNSW graph)."""
        return self.kind == "hnsw" and bool(self._indexes)

    def append(self, data: np.ndarray) -> None:
        """Add ``data`` (rows newer than every indexed row, in time order) to the graph.

        The ladder copies keep the prefixes they hold; the main graph is copied into the
        ladder before it grows past twice the largest copy (or past twice ``ladder_min`` /
        ``exact_below`` when there is none yet).
        """
        if not self.appendable:
            raise ConfigError(f"only a built HNSW index can grow by append (kind {self.kind!r}, "
                              f"{self._size} rows indexed)")
        data = np.ascontiguousarray(data, dtype=np.float32)
        faiss = _faiss()
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(self.threads)
        try:
            done = 0
            while done < len(data):
                size, main = self._indexes[-1]
                stop = len(data)
                if self.ladder:
                    copies = self._indexes[:-1]
                    anchor = copies[-1][0] if copies else max(self.ladder_min, self.exact_below, 1)
                    if size >= 2 * anchor:  # keep a copy of the graph as it is now
                        self._indexes.insert(-1, (size, faiss.clone_index(main)))
                        anchor = size
                    stop = min(stop, done + 2 * anchor - size)
                main.add(data[done:stop])
                self._indexes[-1] = (size + stop - done, main)
                done = stop
        finally:
            faiss.omp_set_num_threads(threads)
        self._size += len(data)

    def ladder_sizes(self, n: int) -> list[int]:
        """Row counts of the HNSW prefix copies kept below ``n`` (ascending)."""
        sizes: list[int] = []
        size = n // 2
        while self.ladder and size >= max(self.ladder_min, self.exact_below, 1):
            sizes.insert(0, size)
            size //= 2
        return sizes

    def _build_hnsw(self, data: np.ndarray) -> list[tuple[int, Any]]:
        faiss = _faiss()
        index = faiss.IndexHNSWFlat(data.shape[1], self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.ef_construction
        out, done = [], 0
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(self.threads)  # 1: a reproducible graph
        try:
            for size in [*self.ladder_sizes(len(data)), len(data)]:
                index.add(data[done:size])  # time order: the graph of the prefix so far
                done = size
                out.append((size, index if size == len(data) else faiss.clone_index(index)))
        finally:
            faiss.omp_set_num_threads(threads)
        return out

    def _build_ivf(self, data: np.ndarray) -> Any:
        faiss = _faiss()
        n, dim = data.shape
        nlist = self.cells(n)
        quantizer = faiss.IndexFlatIP(dim)
        if self.storage == "flat":
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            code = {"fp16": faiss.ScalarQuantizer.QT_fp16,
                    "sq8": faiss.ScalarQuantizer.QT_8bit}[self.storage]
            index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, code,
                                                  faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = self.seed
        index.cp.niter = 20
        index.cp.max_points_per_centroid = 32  # train on <= 32 points per cell
        index.train(data)
        index.add(data)
        return index

    def cells(self, n: int) -> int:
        """IVF cells for ``n`` rows: ``nlist``, else ``8 * sqrt(n)`` (at most ``n / 39``)."""
        return self.nlist or max(1, min(8 * round(math.sqrt(n)), n // 39))

    def search(self, query: np.ndarray, k: int, visible: int) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top ``k`` among rows ``[0, visible)``: (rows, inner products)."""
        faiss = _faiss()
        params: Any
        size, index = self._pick(visible)
        # rows are added in time order, so every IVF cell's ids are sorted: faiss then finds
        # the visible range of a cell by bisection instead of checking each id
        selector = (faiss.IDSelectorRange(0, visible, self.kind == "ivf")
                    if visible < size else None)
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=self.beam(k, visible), sel=selector)
        else:
            params = faiss.SearchParametersIVF(nprobe=self.probes(index, visible), sel=selector)
        q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        scores, rows = index.search(q, k, params=params)
        found = rows[0] >= 0
        return rows[0][found].astype(np.int64), scores[0][found]

    def _pick(self, visible: int) -> tuple[int, Any]:
        """The smallest indexed prefix holding rows ``[0, visible)``."""
        for size, index in self._indexes:
            if size >= visible:
                return size, index
        return self._indexes[-1]

    def probes(self, index: Any, visible: int) -> int:
        """IVF ``nprobe`` for a query that may see ``visible`` of the indexed rows.

        At least ``nprobe`` cells, and enough cells to hold ``min_scan`` rows on average (a
        small index has few rows per cell); then widened by the hidden fraction to the power
        ``widen_power`` (the probed cells hold that few visible rows, but the top ``k`` of
        fewer rows is easier to find: 0.5 kept recall@10 at or above the unfiltered one on
        the search benchmark's corpus; 1 scans as many visible rows as an unfiltered search),
        at most every cell. Hidden rows cost nothing: each cell's visible ids are a prefix.
        """
        base = max(self.nprobe, math.ceil(self.min_scan * index.nlist / max(1, index.ntotal)))
        hidden = index.ntotal / max(1, visible)
        widened = math.ceil(base * hidden ** self.widen_power)
        return max(1, min(widened, index.nlist))

    def beam(self, k: int, visible: int) -> int:
        """HNSW ``efSearch`` for a query that may see ``visible`` of the indexed rows."""
        size = self._pick(visible)[0] if self._indexes else self._size
        widened = math.ceil(self.ef_search * size / max(1, visible))
        return max(k, min(widened, max(self.ef_search, self.max_ef_search)))

    def _cache_folder(self, data: np.ndarray) -> Path:
        digest = hashlib.blake2b(data.tobytes(), digest_size=16)
        digest.update(repr(data.shape).encode())
        keep = {k: v for k, v in self.params().items()
                if k not in ("cache", "nprobe", "min_scan", "widen_power", "ef_search",
                             "max_ef_search")}
        if self.kind == "ivf":  # the resolved cell count: a new default is a new index
            keep["nlist"] = self.cells(len(data))
        digest.update(json.dumps(keep, sort_keys=True).encode())
        return cache_root() / "faiss" / f"{self.kind}-{CACHE_VERSION}-{digest.hexdigest()}"


def _save(folder: Path, indexes: list[tuple[int, Any]]) -> None:
    """Write every prefix index into ``folder`` (atomically: a finished folder or none)."""
    faiss = _faiss()
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for size, index in indexes:
        faiss.write_index(index, str(partial / f"{size:012d}.faiss"))
    partial.rename(folder)


def _load(folder: Path) -> list[tuple[int, Any]]:
    faiss = _faiss()
    files = sorted(folder.glob("*.faiss"))
    return [(int(f.stem), faiss.read_index(str(f))) for f in files]


def _faiss() -> Any:
    """The faiss module, imported on first use (its type stubs lag its Python API)."""
    import faiss

    return faiss
