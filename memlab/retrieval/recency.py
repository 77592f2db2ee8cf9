"""Recency: re-weight a base strategy's scores by exponential time decay.

``score = max(base_score, 0) * 0.5 ** (age / half_life)``, where ``age`` is how long
before ``as_of`` the unit was written (before the newest indexed unit when ``as_of`` is
None). A unit ``half_life_days`` old keeps half its relevance; a negative base score
(possible for cosine) counts as 0. The base's best ``candidates`` are re-ranked, so a
``threshold`` is on the base's scale times the decay (cosine for the default ``dense``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from memlab.chunkers.base import MemoryUnit
from memlab.data.schema import Probe
from memlab.retrieval.base import Hit, Retriever
from memlab.retrieval.ranking import DEFAULT_K, UnitTable, resolve_k, select_top
from memlab.retrieval.wrap import CANDIDATES
from memlab.spec import Component
from memlab.store.codec import at_micros

_DAY_US = 86_400 * 1_000_000


def decay(age_days: np.ndarray, half_life_days: float) -> np.ndarray:
    """Exponential decay factor: 1 at age 0, 0.5 at one half-life."""
    return np.power(0.5, np.asarray(age_days, dtype=np.float64) / half_life_days)


class RecencyStrategy(Component):
    """A base strategy's scores times exponential time decay (half-life in days)."""

    nested: ClassVar[Mapping[str, str]] = {"base": "retrieval"}
    bounds: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "half_life_days": {"low": 0, "low_open": True}, "candidates": CANDIDATES}

    def __init__(
        self,
        k: int | None = DEFAULT_K,
        threshold: float | None = None,
        base: str | Mapping[str, Any] | Retriever = "dense",
        half_life_days: float = 30.0,
        candidates: int = 50,
    ) -> None:
        self.k = k
        self.threshold = threshold
        self.base = base
        self.half_life_days = half_life_days
        self.candidates = candidates

    def check_params(self) -> None:
        """Raise a ConfigError for a half-life that is not positive or no candidates."""
        self.check_bounds("recency")

    @cached_property
    def base_strategy(self) -> Retriever:
        from memlab.retrieval import build_strategy

        self.check_params()
        if isinstance(self.base, str | Mapping):
            return build_strategy(self.base)
        return self.base

    @cached_property
    def table(self) -> UnitTable:
        return UnitTable()

    def index(self, units: Sequence[MemoryUnit], vectors: np.ndarray | None = None) -> None:
        self.table.add(units)
        index: Any = self.base_strategy.index
        if vectors is None:
            index(units)
        else:
            index(units, vectors)

    def search(
        self,
        query: str,
        k: int | None = None,
        as_of: datetime | None = None,
        *,
        probe: Probe | None = None,
    ) -> list[Hit]:
        limit = resolve_k(k, self.k)
        now = as_of if as_of is not None else self.table.newest()
        if limit == 0 or now is None:
            return []
        pool = self.candidates if limit is None else max(self.candidates, limit)
        hits = self.base_strategy.search(query, pool, as_of, probe=probe)
        if not hits:
            return []
        now_us = at_micros(now)
        ages = np.asarray([now_us - at_micros(h.unit.at) for h in hits]) / _DAY_US
        base = np.maximum(np.asarray([h.score for h in hits], dtype=np.float64), 0.0)
        scores = base * decay(ages, self.half_life_days)
        keys = np.asarray([self.table.rows[h.unit.id] for h in hits], dtype=np.int64)
        picked = select_top(scores, keys, limit, self.threshold)
        values = scores.tolist()
        return [Hit(hits[i].unit, values[i]) for i in picked.tolist()]
