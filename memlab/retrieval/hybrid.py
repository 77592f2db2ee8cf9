"""Hybrid retrieval: fuse the BM25 and dense rankings of the same query.

Each part returns its best ``candidates`` visible units; the union is re-scored:

- ``fusion: "rrf"`` — reciprocal-rank fusion, ``sum over lists of 1 / (rrf_k + rank)``
  with rank counted from 1 and ``rrf_k = 60`` (Cormack et al. 2009). Scores are at most
  ``2 / (rrf_k + 1)`` (about 0.0328), so a ``threshold`` is on that scale.
- ``fusion: "weighted"`` — each list's scores min-max normalised to [0, 1] (a list whose
  scores are all equal normalises to 1), then ``alpha * dense + (1 - alpha) * bm25``; a
  unit missing from a list gets 0 from it. Scores and ``threshold`` lie in [0, 1].
  ``norm: "zscore"`` divides by each list's standard deviation instead of its range
  (a z-score shifted so the list's lowest is 0, as a missing unit), so one outlying top
  score does not squash the rest of its list; scores are then >= 0, unbounded.

Ties are broken by unit order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from memlab.chunkers.base import MemoryUnit
from memlab.data.schema import Probe
from memlab.errors import ConfigError, check_choice
from memlab.retrieval.base import Hit
from memlab.retrieval.bm25 import Bm25Strategy
from memlab.retrieval.dense import DenseStrategy
from memlab.retrieval.ranking import DEFAULT_K, UnitTable, resolve_k, select_top
from memlab.retrieval.wrap import CANDIDATES, RRF_K, WEIGHT
from memlab.spec import Component

FUSIONS = ("rrf", "weighted")
NORMS = ("minmax", "zscore")


def rrf_scores(rankings: Sequence[Sequence[str]], rrf_k: int = 60) -> dict[str, float]:
    """Reciprocal-rank fusion of best-first id lists."""
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, uid in enumerate(ranking, start=1):
            fused[uid] = fused.get(uid, 0.0) + 1.0 / (rrf_k + rank)
    return fused


def weighted_scores(
    scored: Sequence[Sequence[tuple[str, float]]], weights: Sequence[float],
    norm: str = "minmax",
) -> dict[str, float]:
    """Weighted sum of normalised score lists (missing ids count 0): each list minus its
    minimum, over its range (``minmax``) or its standard deviation (``zscore``)."""
    fused: dict[str, float] = {}
    for pairs, weight in zip(scored, weights, strict=True):
        if not pairs:
            continue
        normed = normalised(np.asarray([s for _, s in pairs], dtype=np.float64), norm)
        for (uid, _), value in zip(pairs, normed, strict=True):
            fused[uid] = fused.get(uid, 0.0) + weight * float(value)
    return fused


def normalised(values: np.ndarray, norm: str = "minmax") -> np.ndarray:
    """A non-empty score list minus its minimum, over its range (``minmax``) or standard
    deviation (``zscore``); all ones when the scores are all equal."""
    low = values.min()
    span = values.std() if norm == "zscore" else values.max() - low
    return np.ones_like(values) if span == 0 else (values - low) / span


class HybridStrategy(Component):
    """BM25 + dense, fused by reciprocal rank (rrf) or min-max weighted sum."""

    nested: ClassVar[Mapping[str, str]] = {"bm25": "retrieval:bm25", "dense": "retrieval:dense"}
    bounds: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "rrf_k": RRF_K, "alpha": WEIGHT, "candidates": CANDIDATES}

    def __init__(
        self,
        k: int | None = DEFAULT_K,
        threshold: float | None = None,
        fusion: str = "rrf",
        rrf_k: int = 60,
        alpha: float = 0.5,
        candidates: int = 50,
        norm: str = "minmax",
        bm25: Mapping[str, Any] | Bm25Strategy | None = None,
        dense: Mapping[str, Any] | DenseStrategy | None = None,
    ) -> None:
        self.k = k
        self.threshold = threshold
        self.fusion = fusion
        self.rrf_k = rrf_k
        self.alpha = alpha
        self.candidates = candidates
        self.norm = norm
        self.bm25 = bm25
        self.dense = dense
        self._aligned = False
        self._aligned_at: tuple[int, ...] | None = None

    def check_params(self) -> None:
        """Raise a ConfigError for a number out of range or an unknown fusion or norm
        (config validation runs it)."""
        self.check_bounds("hybrid")
        check_choice("hybrid fusion", self.fusion, FUSIONS)
        check_choice("hybrid norm", self.norm, NORMS)

    @cached_property
    def parts(self) -> tuple[Bm25Strategy, DenseStrategy]:
        """The BM25 and dense strategies: built from the ``bm25``/``dense`` params, or the
        instances given there (so several strategies can share one big index)."""
        self.check_params()
        try:
            bm25 = self.bm25 if isinstance(self.bm25, Bm25Strategy) else Bm25Strategy(
                **dict(self.bm25 or {}))
            dense = self.dense if isinstance(self.dense, DenseStrategy) else DenseStrategy(
                **dict(self.dense or {}))
        except TypeError as exc:
            raise ConfigError(f"hybrid: bad bm25/dense parameters: {exc}") from None
        return bm25, dense

    @cached_property
    def table(self) -> UnitTable:
        return UnitTable()

    def index(self, units: Sequence[MemoryUnit], vectors: np.ndarray | None = None) -> None:
        bm25, dense = self.parts
        self.table.add(units)
        bm25.index(units)
        dense.index(units, vectors)

    def prepare_index(self) -> None:
        """Build both parts' search indexes now (see ``wrap.prepare_index``)."""
        for part in self.parts:
            part.prepare_index()

    def warm_queries(self, queries: Sequence[str]) -> bool:
        """Embed the dense part's queries ahead (see ``wrap.warm_queries``)."""
        return self.parts[1].warm_queries(queries)

    def search(
        self,
        query: str,
        k: int | None = None,
        as_of: datetime | None = None,
        *,
        probe: Probe | None = None,
    ) -> list[Hit]:
        limit = resolve_k(k, self.k)
        if limit == 0:
            return []
        pool = self.candidates if limit is None else max(self.candidates, limit)
        if self._parts_aligned():
            return self._search_rows(query, pool, limit, as_of)
        rows = self.table.rows
        lists = [_ranked_ids(part, query, pool, as_of, rows) for part in self.parts]
        if self.fusion == "rrf":
            fused = rrf_scores([ids for ids, _ in lists], self.rrf_k)
        else:
            pairs = [list(zip(ids, scores, strict=True)) for ids, scores in lists]
            fused = weighted_scores(pairs, [1.0 - self.alpha, self.alpha], self.norm)
        scores = np.fromiter(fused.values(), dtype=np.float64, count=len(fused))
        keys = np.fromiter((rows[i] for i in fused), dtype=np.int64, count=len(fused))
        picked = select_top(scores, keys, limit, self.threshold)
        units = self.table.units
        return [Hit(units[key], score) for key, score in
                zip(keys[picked].tolist(), scores[picked].tolist(), strict=True)]

    def _parts_aligned(self) -> bool:
        """Whether both parts hold exactly this strategy's units, in its time-sorted
        order (the usual case; parts shared with another strategy may hold them in
        another order)."""
        self.table.refresh()
        versions = (self.table.version, *(p.table.version for p in self.parts))
        if self._aligned_at != versions:
            mine = self.table.sorted_units
            self._aligned = all(_same_units(part.table, mine) for part in self.parts)
            self._aligned_at = versions
        return self._aligned

    def _search_rows(self, query: str, pool: int, limit: int | None,
                     as_of: datetime | None) -> list[Hit]:
        """:meth:`search` on rows of the shared time-sorted view: the same fusion, with
        the same floating-point sums in the same order, without id lookups."""
        lists = [part.ranked(query, resolve_k(pool, part.k), as_of) for part in self.parts]
        size = max((int(rows.max()) + 1 for rows, _ in lists if len(rows)), default=0)
        fused = np.zeros(size, dtype=np.float64)
        member = np.zeros(size, dtype=bool)
        if self.fusion == "rrf":
            for rows, _ in lists:
                fused[rows] += 1.0 / (self.rrf_k + np.arange(1, len(rows) + 1, dtype=np.float64))
                member[rows] = True
        else:
            for (rows, part_scores), weight in zip(lists, [1.0 - self.alpha, self.alpha],
                                                   strict=True):
                if not len(rows):
                    continue
                fused[rows] += weight * normalised(part_scores.astype(np.float64), self.norm)
                member[rows] = True
        cand = np.flatnonzero(member)
        scores = fused[cand]
        keys = self.table.order[cand]
        picked = select_top(scores, keys, limit, self.threshold)
        units = self.table.units
        return [Hit(units[key], score) for key, score in
                zip(keys[picked].tolist(), scores[picked].tolist(), strict=True)]


def _same_units(table: UnitTable, units: list[MemoryUnit]) -> bool:
    table.refresh()
    theirs = table.sorted_units
    return len(theirs) == len(units) and all(a is b for a, b in zip(theirs, units, strict=True))


def _ranked_ids(part: Bm25Strategy | DenseStrategy, query: str, k: int | None,
                as_of: datetime | None, known: Mapping[str, int]
                ) -> tuple[list[str], list[float]]:
    """A part's best-first unit ids and scores (its ``search`` without building Hits),
    keeping only units in ``known``: a part shared with other strategies may also hold
    units this hybrid never indexed."""
    rows, scores = part.ranked(query, resolve_k(k, part.k), as_of)
    units = part.table.sorted_units
    pairs = [(units[r].id, score) for r, score in zip(rows.tolist(), scores.tolist(),
                                                       strict=True) if units[r].id in known]
    return [i for i, _ in pairs], [score for _, score in pairs]
