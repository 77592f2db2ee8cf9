"""Hierarchical retrieval: rank sessions first, then units inside the best sessions.

Evidence clusters in sessions (LongMemEval scores sessions; LoCoMo's multi-hop questions
join turns of a few sessions). From the base strategy's best ``candidates`` units, each
session scores the reciprocal ranks of its units among the first ``session_depth`` (a
long session should not win by many weak matches) (``aggregate: sum`` rewards sessions
hit many times, ``max`` only the best hit): ``session = agg over its units of
1 / (rrf_k + rank)``. Each unit then scores ``1 / (rrf_k + rank) + session_weight *
session``, so ``session_weight: 0`` is the base ranking and a large weight lists the best
session's units first, then the next session's. With ``top_sessions`` set, only units of
the best ``top_sessions`` sessions are returned (the others are dropped), which is the
strict sessions-then-units reading. Scores are on the rrf scale (a unit's own part is at
most ``1 / (rrf_k + 1)``); ties are broken by base rank.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

import numpy as np

from memlab.data.schema import Probe
from memlab.errors import check_choice
from memlab.retrieval.base import Hit
from memlab.retrieval.ranking import select_top
from memlab.retrieval.wrap import CANDIDATES, RRF_K, BaseSpec, Wrapper
from memlab.spec import Component

AGGREGATES = ("sum", "max")


def session_scores(hits: Sequence[Hit], rrf_k: int, aggregate: str) -> dict[str, float]:
    """Each session's aggregated reciprocal rank over the ranked ``hits``."""
    scores: dict[str, float] = {}
    for rank, hit in enumerate(hits, start=1):
        part = 1.0 / (rrf_k + rank)
        old = scores.get(hit.unit.session_id, 0.0)
        scores[hit.unit.session_id] = old + part if aggregate == "sum" else max(old, part)
    return scores


class HierarchicalStrategy(Wrapper, Component):
    """Sessions scored from their units' ranks, then units boosted by their session."""

    nested: ClassVar[Mapping[str, str]] = {"base": "retrieval"}
    bounds: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "candidates": CANDIDATES, "session_weight": {"low": 0},
        "top_sessions": {"low": 1, "integer": True, "optional": True},
        "session_depth": {"low": 1, "integer": True}, "rrf_k": RRF_K}

    def __init__(
        self,
        k: int | None = 10,
        threshold: float | None = None,
        base: BaseSpec = "hybrid",
        candidates: int = 100,
        aggregate: str = "max",
        session_weight: float = 1.0,
        top_sessions: int | None = None,
        session_depth: int = 20,
        rrf_k: int = 60,
    ) -> None:
        self.k = k
        self.threshold = threshold
        self.base = base
        self.candidates = candidates
        self.aggregate = aggregate
        self.session_weight = session_weight
        self.top_sessions = top_sessions
        self.session_depth = session_depth
        self.rrf_k = rrf_k

    def check_params(self) -> None:
        self.check_bounds("hierarchical")
        check_choice("hierarchical aggregate", self.aggregate, AGGREGATES)

    def search(self, query: str, k: int | None = None, as_of: datetime | None = None, *,
               probe: Probe | None = None) -> list[Hit]:
        limit, hits = self.candidates_for(query, k, as_of, probe, self.candidates)
        if not hits:
            return []
        sessions = session_scores(hits[: self.session_depth], self.rrf_k, self.aggregate)
        mask = None
        if self.top_sessions is not None:
            best = sorted(sessions, key=lambda s: -sessions[s])[: self.top_sessions]
            mask = np.asarray([h.unit.session_id in best for h in hits])
        scores = np.asarray([1.0 / (self.rrf_k + rank) + self.session_weight
                             * sessions.get(h.unit.session_id, 0.0)
                             for rank, h in enumerate(hits, start=1)])
        picked = select_top(scores, np.arange(len(hits)), limit, self.threshold, mask)
        values = scores.tolist()
        return [Hit(hits[i].unit, values[i]) for i in picked.tolist()]
