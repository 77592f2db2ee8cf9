"""Speaker prior: a question about one speaker prefers what that speaker said.

A question *names* a speaker (:mod:`memlab.retrieval.speakers`: a speaker's name or its
first word, or one of its ``aliases``; ``{user: [I, me, my]}`` makes first-person
questions name the user, ``{assistant: [you, your]}`` second-person ones the assistant).
When it names exactly one, the base's best ``candidates`` hits are re-scored: a unit none
of whose ``Speaker: text`` lines is by that speaker keeps ``weight`` of its score
(``score * weight``; a negative score, possible for cosine, is divided by it instead, so
it too moves down), and the hits are ordered again (ties keep the base's order). Units
with the speaker's lines, and units whose speakers are unknown, keep their scores (see
:func:`unit_speakers`: only a turn's first line names its speaker); a
question naming no speaker, or several, gets the base's ranking. ``weight: 1`` is the
base unchanged.

Nothing here knows a dataset: the speakers are read from the lines indexed. What it rests
on is that personal questions ("which concerts did I go to?") are answered by what the
person said, not by what others said around it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from memlab.chunkers.base import MemoryUnit
from memlab.data.schema import Probe
from memlab.retrieval.base import Hit
from memlab.retrieval.ranking import select_top
from memlab.retrieval.speakers import SpeakerNames, check_aliases, line_speaker
from memlab.retrieval.wrap import CANDIDATES, BaseSpec, Wrapper
from memlab.spec import Component


def unit_speakers(unit: MemoryUnit) -> frozenset[str]:
    """Who said the unit's turns, from their ``Speaker: text`` lines: a one-turn unit's
    first line, or every line of a unit with one line per turn. Empty when unknown (a
    unit of several turns whose texts run over several lines, a unit with no prefix):
    a line inside a turn's text ("Note: ...", "1. **Events**: ...") is not a speaker."""
    lines = unit.text.split("\n")
    if len(unit.source_turn_ids) == 1:
        lines = lines[:1]
    elif len(lines) != len(unit.source_turn_ids):
        return frozenset()
    return frozenset(s for s in map(line_speaker, lines) if s)


class SpeakerPriorStrategy(Wrapper, Component):
    """A base ranking where units by other speakers than the one a question names keep
    ``weight`` of their score."""

    nested: ClassVar[Mapping[str, str]] = {"base": "retrieval"}
    bounds: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "candidates": CANDIDATES, "weight": {"low": 0, "high": 1, "low_open": True}}

    def __init__(
        self,
        k: int | None = 10,
        threshold: float | None = None,
        base: BaseSpec = "hybrid",
        weight: float = 0.8,
        aliases: Mapping[str, Sequence[str]] | None = None,
        candidates: int = 100,
    ) -> None:
        self.k = k
        self.threshold = threshold
        self.base = base
        self.weight = weight
        self.aliases = aliases
        self.candidates = candidates

    def check_params(self) -> None:
        self.check_bounds("speaker_prior")
        check_aliases("speaker_prior", self.aliases)

    @cached_property
    def speakers(self) -> SpeakerNames:
        """The speakers of the indexed lines, to find the one a question names."""
        self.check_params()
        return SpeakerNames(self.aliases)

    @cached_property
    def said_by(self) -> dict[str, frozenset[str]]:
        """Unit id -> the speakers of its lines (empty: no ``Speaker:`` prefix)."""
        return {}

    def index(self, units: Sequence[MemoryUnit], vectors: np.ndarray | None = None) -> None:
        super().index(units, vectors)
        for unit in units:
            found = unit_speakers(unit)
            self.said_by[unit.id] = found
            self.speakers.add(sorted(found))

    def search(self, query: str, k: int | None = None, as_of: datetime | None = None, *,
               probe: Probe | None = None) -> list[Hit]:
        limit, hits = self.candidates_for(query, k, as_of, probe, self.candidates)
        named = self.speakers.named(query)
        scores = np.asarray([h.score for h in hits], dtype=np.float64)
        if len(named) == 1 and self.weight < 1:
            other = np.asarray([bool(self.said_by.get(h.unit.id)) and
                                named[0] not in self.said_by[h.unit.id] for h in hits])
            scores = np.where(other, np.where(scores >= 0, scores * self.weight,
                                              scores / self.weight), scores)
        picked = select_top(scores, np.arange(len(hits)), limit, self.threshold)
        values = scores.tolist()
        return [Hit(hits[i].unit, values[i]) for i in picked.tolist()]
