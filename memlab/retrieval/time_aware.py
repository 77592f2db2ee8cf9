"""Time-aware retrieval: favour units from the time a question refers to, and the newest
of near-duplicates (knowledge updates).

LongMemEval (§5.4) filters sessions by the time range a question names and gains 7-11
points of temporal recall; its 8B model hallucinated ranges, so this strategy reads the
range with a date parser (:mod:`memlab.retrieval.timeref`) relative to the probe's
``asked_at`` (``as_of`` when no probe is given). From the base strategy's best
``candidates``, each unit scores ``1 / (rrf_k + rank)`` plus ``time_weight`` if its ``at``
lies in a referred span widened by ``slack_days`` on both sides (``mode: boost``), or
units outside every span are dropped (``mode: filter``; a question naming no time keeps
the base ranking either way). Spans end at ``asked_at`` and the base never sees past
``as_of``, so nothing later leaks in.

With ``update_similarity`` set, units whose word sets overlap at least that much
(Jaccard) among the best ``update_window`` hits are a group of near-duplicates — the
same fact restated, perhaps changed — and the group's best ranks go to its newest units
first (the current value of a knowledge update comes before the stale one).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

import numpy as np

from memlab.chunkers.base import MemoryUnit
from memlab.data.schema import Probe
from memlab.errors import check_choice
from memlab.retrieval.base import Hit
from memlab.retrieval.ranking import select_top
from memlab.retrieval.timeref import TimeSpan, time_spans, warm_up
from memlab.retrieval.wrap import CANDIDATES, RRF_K, BaseSpec, Wrapper
from memlab.spec import Component

MODES = ("boost", "filter")
_WORD = re.compile(r"\w+")


class TimeAwareStrategy(Wrapper, Component):
    """A base ranking boosted (or filtered) to the time the question names."""

    nested: ClassVar[Mapping[str, str]] = {"base": "retrieval"}
    bounds: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "candidates": CANDIDATES, "time_weight": {"low": 0}, "slack_days": {"low": 0},
        "update_similarity": {"low": -1, "high": 1, "optional": True},
        "update_window": {"low": 1, "integer": True}, "rrf_k": RRF_K}

    def __init__(
        self,
        k: int | None = 10,
        threshold: float | None = None,
        base: BaseSpec = "hybrid",
        candidates: int = 100,
        mode: str = "boost",
        time_weight: float = 0.05,
        slack_days: float = 1.0,
        update_similarity: float | None = None,
        update_window: int = 20,
        rrf_k: int = 60,
    ) -> None:
        self.k = k
        self.threshold = threshold
        self.base = base
        self.candidates = candidates
        self.mode = mode
        self.time_weight = time_weight
        self.slack_days = slack_days
        self.update_similarity = update_similarity
        self.update_window = update_window
        self.rrf_k = rrf_k

    def check_params(self) -> None:
        self.check_bounds("time_aware")
        check_choice("time_aware mode", self.mode, MODES)

    def index(self, units: Sequence[MemoryUnit], vectors: np.ndarray | None = None) -> None:
        """Index the base, and load the date parser now rather than at the first search."""
        super().index(units, vectors)
        warm_up()

    def search(self, query: str, k: int | None = None, as_of: datetime | None = None, *,
               probe: Probe | None = None) -> list[Hit]:
        limit, hits = self.candidates_for(query, k, as_of, probe, self.candidates)
        if self.update_similarity is not None:
            hits = newest_first(hits, self.update_similarity, self.update_window)
        asked = probe.asked_at if probe is not None else as_of
        if asked is not None and as_of is not None:
            asked = min(asked, as_of)
        inside = self._inside(hits, time_spans(query, asked))
        scores = np.asarray([1.0 / (self.rrf_k + r) for r in range(1, len(hits) + 1)])
        mask = None
        if inside is not None and self.mode == "boost":
            scores = scores + self.time_weight * inside
        elif inside is not None:
            mask = inside
        picked = select_top(scores, np.arange(len(hits)), limit, self.threshold, mask)
        values = scores.tolist()
        return [Hit(hits[i].unit, values[i]) for i in picked.tolist()]

    def _inside(self, hits: list[Hit], spans: tuple[TimeSpan, ...]) -> np.ndarray | None:
        """Which hits lie in a (widened) referred span; None if the question names none."""
        if not spans:
            return None
        slack = timedelta(days=self.slack_days)
        return np.asarray([any(s.start - slack <= h.unit.at < s.end + slack for s in spans)
                           for h in hits])


def newest_first(hits: list[Hit], similarity: float, window: int) -> list[Hit]:
    """``hits`` with each group of near-duplicates among the first ``window`` re-ordered
    newest first on the ranks the group held."""
    head = hits[:window]
    words = [set(_WORD.findall(h.unit.text.lower())) for h in head]
    group = list(range(len(head)))
    for i in range(len(head)):
        for j in range(i):
            union = len(words[i] | words[j])
            if union and len(words[i] & words[j]) / union >= similarity:
                group[i] = group[j]
                break
    out = list(head)
    for g in set(group):
        ranks = [i for i in range(len(head)) if group[i] == g]
        if len(ranks) > 1:
            newest = sorted(ranks, key=lambda i: (-head[i].unit.at.timestamp(), i))
            for slot, i in zip(ranks, newest, strict=True):
                out[slot] = head[i]
    return out + hits[window:]
