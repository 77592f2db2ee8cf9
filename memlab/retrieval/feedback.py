"""Pseudo-relevance feedback: the base's best units say what else to look for.

A question names one thing ("How many model kits have I worked on?"); the units that
answer it first also name the things beside it (the Spitfire, the weathering, the hobby
store), and the other units about them may not share a word with the question. Rocchio's
feedback (Rocchio 1971; for dense retrieval, Li et al. 2021's vector PRF) moves the query
towards the centroid of the first results. Here, from the base strategy's best
``candidates`` units, the best ``depth`` are the feedback set, and each candidate scores

    score = (1 - weight) * base' + weight * cos(unit, centroid of the feedback units)'

where ``'`` is min-max normalisation over the candidates (as in ``multigrain``), so
``weight: 0`` is the base ranking. With ``feedback: sessions`` the feedback set is the best
unit of each of the first ``depth`` sessions instead: a question about two things (the
trip to Europe *or* the road trip) keeps both in the centroid, where the best units alone
may all tell of the first. The cosine is the dot product of the unit's vector
with the mean of the feedback vectors (``embedder``, unit-length vectors through the
persistent cache: units the embedder already saw cost a cache read). Only the base's
candidates are re-scored: feedback re-orders what the base found, it adds nothing the
base did not see, so ``as_of`` holds as it holds for the base. Ties: base rank.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from memlab.chunkers.base import MemoryUnit
from memlab.data.schema import Probe
from memlab.embed.base import EmbedderSpec
from memlab.errors import check_choice
from memlab.retrieval.base import Hit
from memlab.retrieval.dense import DenseStrategy
from memlab.retrieval.hybrid import normalised
from memlab.retrieval.ranking import select_top
from memlab.retrieval.wrap import CANDIDATES, WEIGHT, BaseSpec, Wrapper
from memlab.spec import Component

FEEDBACK = ("units", "sessions")


class FeedbackStrategy(Wrapper, Component):
    """A base ranking re-scored by similarity to its own best units (Rocchio PRF)."""

    nested: ClassVar[Mapping[str, str]] = {"base": "retrieval", "embedder": "embedder"}
    bounds: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "candidates": CANDIDATES, "depth": {"low": 1, "integer": True}, "weight": WEIGHT}

    def __init__(
        self,
        k: int | None = 10,
        threshold: float | None = None,
        base: BaseSpec = "hybrid",
        embedder: EmbedderSpec = "sentence-transformers",
        cache: bool | str = True,
        candidates: int = 100,
        depth: int = 3,
        weight: float = 0.2,
        feedback: str = "units",
    ) -> None:
        self.k = k
        self.threshold = threshold
        self.base = base
        self.embedder = embedder
        self.cache = cache
        self.candidates = candidates
        self.depth = depth
        self.weight = weight
        self.feedback = feedback

    def check_params(self) -> None:
        self.check_bounds("prf")
        check_choice("prf: feedback", self.feedback, FEEDBACK)

    @cached_property
    def vectors(self) -> DenseStrategy:
        """The units' vectors (a dense index never searched, only read)."""
        return DenseStrategy(k=None, embedder=self.embedder, cache=self.cache)

    def index(self, units: Sequence[MemoryUnit], vectors: np.ndarray | None = None) -> None:
        super().index(units, vectors)
        self.vectors.index(units)  # its own embedder: the given vectors may be another's

    def search(self, query: str, k: int | None = None, as_of: datetime | None = None, *,
               probe: Probe | None = None) -> list[Hit]:
        limit, hits = self.candidates_for(query, k, as_of, probe, self.candidates)
        if not hits:
            return []
        matrix = self.vectors.unit_vectors([h.unit for h in hits])
        centroid = matrix[self._feedback_rows(hits)].mean(axis=0)
        similarity = normalised((matrix @ centroid).astype(np.float64))
        base = normalised(np.asarray([h.score for h in hits], dtype=np.float64))
        scores = (1.0 - self.weight) * base + self.weight * similarity
        picked = select_top(scores, np.arange(len(hits)), limit, self.threshold)
        values = scores.tolist()
        return [Hit(hits[i].unit, values[i]) for i in picked.tolist()]

    def _feedback_rows(self, hits: list[Hit]) -> list[int]:
        """The feedback set: the first ``depth`` hits, or the first hit of each of the first
        ``depth`` sessions."""
        if self.feedback == "units":
            return list(range(min(self.depth, len(hits))))
        first: dict[str, int] = {}
        for row, hit in enumerate(hits):
            first.setdefault(hit.unit.session_id, row)
            if len(first) == self.depth:
                break
        return list(first.values())
