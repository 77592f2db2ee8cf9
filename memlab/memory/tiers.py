"""The tiers of one ``tiered`` memory in RAM, mirrored to its store.

Turns (recall) and summaries / notes (archival-only) are kept by id, the core block by
version; whatever is archival is queued and indexed by the retrieval strategy on the
next search. Reopening a store restores every tier, since each unit records its tier
and whether it is archived in its metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from memlab.chunkers.base import MemoryUnit
from memlab.memory import support
from memlab.memory.base import ComponentSpec
from memlab.memory.consolidation import Consolidator
from memlab.memory.core import CoreBlock


class TierState:
    """The tiers in RAM, mirrored to the store; the archival retriever indexed lazily."""

    def __init__(self, retrieval: ComponentSpec, store: ComponentSpec, core_tokens: int,
                 core_repeat: str = "replace") -> None:
        self.retrieval = retrieval
        self.store = support.open_store(store)
        self.core = CoreBlock(max_tokens=core_tokens, repeat=core_repeat)
        self._turns: dict[str, MemoryUnit] = {}
        self._others: dict[str, MemoryUnit] = {}  # summaries and notes
        self._sorted: list[MemoryUnit] | None = None
        self.pending: dict[str, MemoryUnit] = {}  # archival units not yet indexed
        self.tokens = support.TokenCounter()
        self.consolidator: Consolidator | None = None
        self._retriever: Any = None
        self._load()

    def _load(self) -> None:
        stored = self.store.all()
        self.core.load(stored)
        for unit in stored:
            if unit.kind != "core":
                self._keep(unit, archival=unit.metadata.get("archived", True))

    @property
    def turns(self) -> list[MemoryUnit]:
        """Recall turns in time order (ties keep insertion order)."""
        if self._sorted is None:
            self._sorted = sorted(self._turns.values(), key=lambda u: u.at)
        return self._sorted

    @property
    def archival_only(self) -> list[MemoryUnit]:
        return list(self._others.values())

    def put(self, units: Sequence[MemoryUnit], *, archival: bool) -> None:
        """Store ``units`` (new or replaced) and queue the archival ones for indexing."""
        units = [u if u.kind == "core" else support.with_meta(u, archived=archival)
                 for u in units]
        self.store.add(units)
        for unit in units:
            if unit.kind != "core":
                self._keep(unit, archival)

    def _keep(self, unit: MemoryUnit, archival: bool) -> None:
        if unit.kind == "turn":
            self._turns[unit.id] = unit
            self._sorted = None
        else:
            self._others[unit.id] = unit
        if archival:
            self.pending[unit.id] = unit

    def holds(self, unit_id: str) -> bool:
        return unit_id in self._turns or unit_id in self._others

    def drop(self, ids: Sequence[str]) -> None:
        """Forget ``ids`` (already deleted from the store); the archival index is rebuilt."""
        gone = set(ids)
        for table in (self._turns, self._others):
            for unit_id in gone & table.keys():
                del table[unit_id]
        self._sorted = None
        self.core.versions = [v for v in self.core.versions if v.id not in gone]
        self._retriever = None
        self.pending = {u.id: u for u in (*self._turns.values(), *self._others.values())
                        if u.metadata.get("archived", True)}

    def retriever(self) -> Any:
        self._retriever = support.indexed(self._retriever, self.retrieval, self.pending)
        return self._retriever

    def consolidations(self, session_id: str) -> int:
        return sum(u.kind == "summary" and u.session_id == session_id
                   for u in self._others.values())

    def size(self) -> int:
        return len(self._turns) + len(self._others) + len(self.core.versions)
