"""Dense retrieval: embed units and query, rank by cosine similarity.

Exact search by default: one matrix-vector product over the visible units (vectors are
unit length, so the dot product *is* the cosine). ``index: "faiss"`` adds an approximate
faiss index (see :mod:`memlab.retrieval.ann`) used when more than ``exact_below`` units
are visible; below that, exact search is both faster and exact. The exact product runs on
one BLAS thread (:func:`memlab.retrieval.blas.matvec`: same scores, no waiting for a
second core under load).

When the only change since the index was built is units added after the newest ones (a
live memory's new units), an HNSW index grows by ``append`` instead of being rebuilt; any
other change (a unit dated before indexed ones, a deletion, a re-embedded unit) rebuilds
it. A grown graph can answer slightly differently from one built at once (see
:mod:`memlab.retrieval.ann`); an evaluation indexes each conversation once.

Scores are cosine similarities in [-1, 1]; the Letta seed's relevance_threshold 0.5 is a
``threshold`` on this scale. Embeddings go through the persistent cache (``cache``) so
no text is ever embedded twice; ``index(units, vectors)`` takes precomputed vectors (from
a store) and embeds nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

import numpy as np

from memlab.chunkers.base import MemoryUnit
from memlab.embed.base import Embedder, EmbedderSpec, build_embedder
from memlab.embed.cache import CachedEmbedder, maybe_cached
from memlab.errors import ConfigError, check_choice
from memlab.retrieval.ann import FaissIndex
from memlab.retrieval.blas import matvec
from memlab.retrieval.ranking import DEFAULT_K, GrowingMatrix, select_top
from memlab.retrieval.scored import ScoredStrategy
from memlab.spec import Component

INDEXES = ("exact", "faiss", "faiss-ivf", "faiss-hnsw")


class DenseStrategy(ScoredStrategy, Component):
    """Embedder + cosine similarity; exact by default, optional faiss index."""

    nested: ClassVar[Mapping[str, str]] = {"embedder": "embedder"}
    param_attrs: ClassVar[Mapping[str, str]] = {"index": "index_kind"}

    def __init__(
        self,
        k: int | None = DEFAULT_K,
        threshold: float | None = None,
        embedder: EmbedderSpec = "sentence-transformers",
        cache: bool | str = True,
        index: str = "exact",
        index_params: Mapping[str, Any] | None = None,
    ) -> None:
        self.k = k
        self.threshold = threshold
        self.embedder = embedder
        self.cache = cache
        self.index_kind = index
        self.index_params = index_params
        self._encoder: Embedder | None = None
        self._vectors = GrowingMatrix()
        self._matrix: np.ndarray | None = None
        self._ann: FaissIndex | None = None
        self._ann_order = np.zeros(0, dtype=np.int64)  # table.order when _ann last synced
        self._rewritten = False  # vectors of indexed units changed since then
        self.ann_builds = 0  # full index builds (appends do not count)
        self._warmed: dict[str, np.ndarray] = {}  # the last warm_queries batch, by text

    @property
    def encoder(self) -> Embedder:
        """The (cached) embedder, built on first use."""
        if self._encoder is None:
            self._encoder = maybe_cached(build_embedder(self.embedder), self.cache)
        return self._encoder

    def embed_query(self, query: str) -> np.ndarray:
        warmed = self._warmed.get(query)
        return warmed if warmed is not None else self.encoder.encode([query])[0]

    def warm_queries(self, queries: Sequence[str]) -> bool:
        """Embed ``queries`` in batches into the embedding cache, so ``embed_query`` reads
        them back (a no-op without a cache: nothing would keep the vectors)."""
        if not isinstance(self.encoder, CachedEmbedder):
            return False
        texts = list(dict.fromkeys(queries))
        # The cache sends each distinct text to the model once; the vectors are kept for
        # embed_query (the same float32 values the cache returns) until the next batch.
        vectors = self.encoder.encode(texts) if texts else ()
        self._warmed = dict(zip(texts, vectors, strict=True))
        return True

    def unit_vectors(self, units: Sequence[MemoryUnit]) -> np.ndarray:
        """The vectors of ``units``: indexed ones as indexed (looked up by id, text
        unchanged), any other embedded now through the cache."""
        rows, held = self.table.rows, self.table.units
        known = [r if (r := rows.get(u.id)) is not None and held[r].text == u.text else None
                 for u in units]
        missing = [u.text for u, r in zip(units, known, strict=True) if r is None]
        fresh = iter(self.encoder.encode(missing) if missing else ())
        data = self._vectors.data
        if not units:
            return np.zeros((0, data.shape[1]), dtype=np.float32)
        return np.asarray([data[r] if r is not None else next(fresh) for r in known],
                          dtype=np.float32)

    def vectors_of(self, rows: np.ndarray) -> np.ndarray:
        """Vectors of rows of the time-sorted view."""
        self._prepare()
        assert self._matrix is not None
        return self._matrix[rows]

    def ranked(
        self, query: str, k: int | None, as_of: datetime | None
    ) -> tuple[np.ndarray, np.ndarray]:
        if not len(self.table) or k == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        return self.ranked_vector(self.embed_query(query), k, as_of)

    def ranked_vector(
        self, query: np.ndarray, k: int | None, as_of: datetime | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`ranked` for an already embedded query (search time alone)."""
        self._prepare()
        visible = self.table.visible(as_of)
        if visible == 0 or k == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if self._ann is not None and k is not None and visible > self._ann.exact_below:
            rows, scores = self._ann.search(query, k, visible)
            if len(rows) >= min(k, visible):
                keys = self.table.order[rows]
                picked = select_top(scores, keys, k, self.threshold)
                return rows[picked], scores[picked]
        assert self._matrix is not None
        scores = matvec(self._matrix[:visible], query)
        picked = select_top(scores, self.table.order[:visible], k, self.threshold)
        return picked, scores[picked]

    def _added(
        self,
        units: Sequence[MemoryUnit],
        rows: np.ndarray,
        changed: np.ndarray,
        vectors: np.ndarray | None,
    ) -> None:
        if vectors is None:  # embed only what is new (re-indexing everything is cheap)
            rows = rows[changed]
            texts = [units[int(i)].text for i in np.flatnonzero(changed)]
            vectors = self.encoder.encode(texts) if texts else np.zeros((0, 0), np.float32)
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape[0] != len(rows):
            raise ConfigError(f"dense index: {len(rows)} units but {vectors.shape[0]} vectors")
        if len(rows):
            self._note_rewrites(rows, vectors)
            self._vectors.put(rows, vectors)
            self._matrix = None
        elif not self.table.fresh:
            self._matrix = None

    def _prepare(self) -> None:
        rebuilt = self.table.refresh()
        if self._matrix is not None and not rebuilt:
            return
        n = len(self.table)
        order = None if self.table.in_time_order else self.table.order
        self._matrix = self._vectors.rows(n, order)
        if self._ann is not None and self._only_appended(n):
            if n > self._ann.size:
                self._ann.append(self._matrix[self._ann.size:])
        else:
            self._ann = self._build_ann(self._matrix) if n else None
        self._ann_order = self.table.order
        self._rewritten = False

    def _note_rewrites(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        """Remember whether ``vectors`` replace different vectors of already indexed units."""
        old = rows < len(self._ann_order)
        if self._rewritten or not old.any():
            return
        held = self._vectors.data
        self._rewritten = (held.shape[1] != vectors.shape[1]
                           or not np.array_equal(held[rows[old]], vectors[old]))

    def _only_appended(self, n: int) -> bool:
        """Whether the indexed rows are unchanged and every other row sorts after them."""
        size = self._ann.size if self._ann is not None else 0
        return (self._ann is not None and self._ann.appendable and not self._rewritten
                and n >= size == len(self._ann_order)
                and np.array_equal(self.table.order[:size], self._ann_order))

    def check_params(self) -> None:
        """Raise a ConfigError for an unknown index kind (config validation runs it)."""
        check_choice("dense index", self.index_kind, INDEXES)

    def _build_ann(self, matrix: np.ndarray) -> FaissIndex | None:
        self.check_params()
        if self.index_kind == "exact":
            return None
        params = dict(self.index_params or {})
        if self.index_kind != "faiss":
            params["kind"] = self.index_kind.removeprefix("faiss-")
        try:
            ann = FaissIndex(**params)
        except TypeError as exc:
            raise ConfigError(f"dense index_params: {exc}; valid keys: "
                              f"{', '.join(FaissIndex().params())}") from None
        if len(matrix) > ann.exact_below:
            ann.build(matrix)
            self.ann_builds += 1
        return ann
