"""The turns behind indexed units, so wrappers can re-package hits turn by turn.

Units made of whole turns (kinds ``turn``, ``window``, ``session``: one ``Speaker: text``
line per source turn, the chunkers' convention) are *decomposable*: each of their lines is
one turn. :class:`TurnCatalog` records, per turn, its session, its position in that
session (the order in which indexed units first showed it — chunkers emit units in turn
order), its line and when it became known: the earliest ``at`` among the units holding it
(a unit's ``at`` is its newest turn's, so a turn is never shown before a unit that
contains it is visible). Other units (facts, summaries) are kept whole.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING

from memlab.chunkers.base import MemoryUnit
from memlab.store.codec import at_micros

if TYPE_CHECKING:
    from memlab.data.schema import Probe
    from memlab.retrieval.base import Hit, Retriever
    from memlab.retrieval.wrap import BaseSpec

#: Unit kinds whose text is one line per source turn.
TURN_KINDS = ("turn", "window", "session")


def turn_lines(unit: MemoryUnit) -> list[str] | None:
    """The unit's per-turn lines, or None if it is not made of whole turns."""
    if unit.kind not in TURN_KINDS:
        return None
    lines = unit.text.split("\n")
    return lines if len(lines) == len(unit.source_turn_ids) else None


@dataclass
class TurnCatalog:
    """Turns of the indexed units: session order, line, time known; rebuilt lazily."""

    units: dict[str, MemoryUnit] = field(default_factory=dict)
    sessions: dict[str, list[str]] = field(default_factory=dict)
    where: dict[str, tuple[str, int]] = field(default_factory=dict)
    line: dict[str, str] = field(default_factory=dict)
    known: dict[str, int] = field(default_factory=dict)
    known_at: dict[str, datetime] = field(default_factory=dict)
    exact: dict[tuple[str, ...], MemoryUnit] = field(default_factory=dict)
    split: set[str] = field(default_factory=set)  # ids of indexed decomposable units
    fresh: bool = True

    def add(self, units: Sequence[MemoryUnit]) -> None:
        for unit in units:
            if self.units.get(unit.id) != unit:
                self.units[unit.id] = unit
                self.fresh = False

    def refresh(self) -> None:
        if self.fresh:
            return
        self.sessions, self.where, self.line, self.exact = {}, {}, {}, {}
        self.known, self.known_at, self.split = {}, {}, set()
        for unit in self.units.values():
            lines = turn_lines(unit)
            if lines is None:
                continue
            self.split.add(unit.id)
            self.exact.setdefault(unit.source_turn_ids, unit)
            order = self.sessions.setdefault(unit.session_id, [])
            moment = at_micros(unit.at)
            for tid, text in zip(unit.source_turn_ids, lines, strict=True):
                if tid not in self.where:
                    self.where[tid] = (unit.session_id, len(order))
                    order.append(tid)
                    self.line[tid] = text
                if moment < self.known.get(tid, moment + 1):
                    self.known[tid], self.known_at[tid] = moment, unit.at
        self.fresh = True

    def decomposable(self, unit: MemoryUnit) -> bool:
        """Whether ``unit`` is made of whole turns of this catalog (indexed ones are
        looked up, not split again)."""
        if unit.id in self.split and self.units[unit.id] is unit:
            return True
        return turn_lines(unit) is not None and unit.source_turn_ids[0] in self.where

    def visible(self, tid: str, as_of_us: int | None) -> bool:
        return as_of_us is None or self.known[tid] <= as_of_us


class FineIndex(ABC):
    """A strategy over pieces of the indexed units (single turns, sentences), fed as units
    are indexed; ``holders`` maps a piece id to the indexed units holding it. Subclasses
    say how units are cut (``add``) and how hits and units map to piece ids."""

    def __init__(self, spec: BaseSpec) -> None:
        self.spec = spec
        self.holders: dict[str, list[MemoryUnit]] = {}

    @cached_property
    def strategy(self) -> Retriever:
        from memlab.retrieval.wrap import build_base

        return build_base(self.spec)

    @abstractmethod
    def add(self, units: Sequence[MemoryUnit]) -> None:
        """Index the pieces of ``units`` not indexed yet."""

    def prepare(self) -> None:
        from memlab.retrieval.wrap import prepare_index

        prepare_index(self.strategy)

    def search(self, query: str, n: int, as_of: datetime | None, probe: Probe | None
               ) -> list[Hit]:
        """The best ``n`` pieces visible at ``as_of``."""
        return self.strategy.search(query, n, as_of, probe=probe)

    @abstractmethod
    def key(self, hit: Hit) -> str:
        """The piece id of a hit of :meth:`search`."""

    @abstractmethod
    def keys(self, unit: MemoryUnit) -> tuple[str, ...]:
        """The piece ids of a unit."""


class TurnIndex(FineIndex):
    """Single turns of decomposable units: how ``multigrain`` and ``budget``'s ``focus``
    score turns one by one. Each turn is a ``turn`` unit (``{session}/turn/{turn id}``,
    its catalog line, dated when it became known), indexed once."""

    def __init__(self, spec: BaseSpec, catalog: TurnCatalog) -> None:
        super().__init__(spec)
        self.catalog = catalog

    def add(self, units: Sequence[MemoryUnit]) -> None:
        """Index the new turns of ``units`` (the catalog must already hold them)."""
        from memlab.retrieval.wrap import index_base

        fresh: list[MemoryUnit] = []
        for unit in units:
            if turn_lines(unit) is None:
                continue
            for tid in unit.source_turn_ids:
                held = self.holders.setdefault(tid, [])
                if not held:
                    fresh.append(self.unit(tid))
                if unit not in held:
                    held.append(unit)
        if fresh:
            index_base(self.strategy, fresh)

    def unit(self, tid: str) -> MemoryUnit:
        session = self.catalog.where[tid][0]
        return MemoryUnit(f"{session}/turn/{tid}", self.catalog.line[tid], "turn", (tid,),
                          session, self.catalog.known_at[tid])

    def key(self, hit: Hit) -> str:
        """The turn id of a hit of :meth:`search`."""
        return hit.unit.source_turn_ids[0]

    def keys(self, unit: MemoryUnit) -> tuple[str, ...]:
        """The turn ids of a unit."""
        return unit.source_turn_ids
