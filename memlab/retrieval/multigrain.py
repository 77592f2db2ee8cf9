"""Multi-granularity fusion: rank windows by a base strategy and by their best turn.

Windows of several turns carry context (a question and its answer, a name and what was
said about it), which keyword matching needs; single turns carry one precise thought,
which a sentence embedder matches best (MiniLM was trained on sentences; a 4-turn window
averages its topics away). This wrapper scores the base's units (``base``, e.g. hybrid
over windows) *and* every turn inside them by a second strategy (``turns``, dense by
default) indexed on the turns themselves, then fuses per unit:

    score = (1 - weight) * base' + weight * max over the unit's turns of turns'

where ``'`` is min-max normalisation over each strategy's best ``candidates`` (0 for a
unit or turn missing from that list). Units holding one of the best turns join the
candidates even if the base missed them. Turns are derived from decomposable units
(:mod:`memlab.retrieval.turns`; others keep their base score only), each dated when the
first unit holding it became known, so ``as_of`` holds for both lists. Ties: base rank,
then unit order.

``grain: sentence`` scores units by their best *sentence* instead
(:mod:`memlab.retrieval.sentences`): for units whose turns are long (LongMemEval's user
turns run to hundreds of words, past what MiniLM reads), a fact said in passing is
matched by its own sentence. ``turns`` is then the strategy over sentences.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cached_property
from itertools import repeat
from typing import Any, ClassVar

import numpy as np

from memlab.chunkers.base import MemoryUnit
from memlab.data.schema import Probe
from memlab.errors import check_choice
from memlab.retrieval.base import Hit
from memlab.retrieval.sentences import SentenceIndex
from memlab.retrieval.turns import FineIndex, TurnCatalog, TurnIndex
from memlab.retrieval.wrap import CANDIDATES, WEIGHT, BaseSpec, Wrapper
from memlab.spec import Component

GRAINS = ("turn", "sentence")


class MultiGrainStrategy(Wrapper, Component):
    """A base ranking of (window) units fused with a turn-level ranking of their turns."""

    nested: ClassVar[Mapping[str, str]] = {"base": "retrieval", "turns": "retrieval"}
    bounds: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "weight": WEIGHT, "candidates": CANDIDATES, "min_words": {"low": 0, "integer": True}}

    def __init__(
        self,
        k: int | None = 10,
        threshold: float | None = None,
        base: BaseSpec = "hybrid",
        turns: BaseSpec = "dense",
        weight: float = 0.5,
        candidates: int = 100,
        grain: str = "turn",
        min_words: int = 3,
    ) -> None:
        self.k = k
        self.threshold = threshold
        self.base = base
        self.turns = turns
        self.weight = weight
        self.candidates = candidates
        self.grain = grain
        self.min_words = min_words

    def check_params(self) -> None:
        self.check_bounds("multigrain")
        check_choice("multigrain: grain", self.grain, GRAINS)

    @cached_property
    def catalog(self) -> TurnCatalog:
        return TurnCatalog()

    @cached_property
    def turn_index(self) -> FineIndex:
        """The second strategy over single turns or sentences (built on first use) and
        the units holding each."""
        if self.grain == "sentence":
            return SentenceIndex(self.turns, self.min_words)
        return TurnIndex(self.turns, self.catalog)

    def index(self, units: Sequence[MemoryUnit], vectors: np.ndarray | None = None) -> None:
        super().index(units, vectors)
        if self.grain == "turn":
            self.catalog.add(units)
            self.catalog.refresh()
        self.turn_index.add(units)

    def prepare_index(self) -> None:
        super().prepare_index()
        self.turn_index.prepare()

    def search(self, query: str, k: int | None = None, as_of: datetime | None = None, *,
               probe: Probe | None = None) -> list[Hit]:
        limit, hits = self.candidates_for(query, k, as_of, probe, self.candidates)
        if limit == 0:
            return []
        fine = self.turn_index
        turns = fine.search(query, self.candidates, as_of, probe)
        base = _normalised([h.score for h in hits])
        keys = [fine.key(hit) for hit in turns]
        best: dict[str, float] = {}
        for key, score in zip(keys, _normalised([h.score for h in turns]), strict=True):
            best.setdefault(key, score)
        order: dict[str, tuple[MemoryUnit, int, float]] = {}
        for rank, (hit, score) in enumerate(zip(hits, base, strict=True)):
            order.setdefault(hit.unit.id, (hit.unit, rank, score))
        holders = fine.holders
        for key in keys:  # units holding a top turn, visible at as_of, join
            for unit in holders.get(key, ()):
                if unit.id not in order and (as_of is None or unit.at <= as_of):
                    order[unit.id] = (unit, len(hits) + len(order), 0.0)
        fused = []  # (-score, rank, unit): ranks are distinct, so units never compare
        keep, weight, zero, keys_of = 1.0 - self.weight, self.weight, repeat(0.0), fine.keys
        for unit, rank, score in order.values():
            top = max(map(best.get, keys_of(unit), zero), default=0.0)
            fused.append((-(keep * score + weight * top), rank, unit))
        fused.sort()
        threshold = self.threshold
        out = [Hit(unit, -negated) for negated, _, unit in fused
               if threshold is None or -negated >= threshold]
        return out if limit is None else out[:limit]


def _normalised(scores: list[float]) -> list[float]:
    """Min-max to [0, 1] (all equal: 1), hybrid's weighted fusion's own normalisation
    (:func:`memlab.retrieval.hybrid.normalised`), in Python floats: the same float64
    arithmetic without numpy's per-call cost on ~100 scores."""
    values = [float(v) for v in scores]  # float64, as numpy would take them
    if not values:
        return []
    low = min(values)
    span = max(values) - low
    if span == 0:
        return [1.0] * len(values)
    return [(v - low) / span for v in values]

