"""Consolidation for ``tiered``: turns that left recall memory become archival summaries.

When the recall buffer outgrows its token budget, the turns pushed out of it (and not yet
consolidated) are grouped by session and each group is summarised by the ``summary``
chunker (OMI's title + overview, template ``session_summary``) into one archival unit
whose sources are *all* the group's turns; the ``facts`` chunker (OMI's rules) proposes
a few persistent facts from the same turns for the core block. A summary is dated by its
latest turn: it says nothing that was not known then, so a probe asked later may see it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from memlab.chunkers.base import MemoryUnit
from memlab.data.schema import Role, Session, Turn
from memlab.memory.core import CoreLine


@dataclass
class Consolidated:
    """What consolidating one group produced."""

    session_id: str
    turn_ids: tuple[str, ...]
    summary: MemoryUnit | None
    core_lines: list[CoreLine]
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """False when a model call failed (the group stays unconsolidated, to retry later);
        an answer that could not be read is recorded but not retried (it would repeat)."""
        return not any(str(r.get("error") or "").startswith("llm error") for r in self.records)


def as_turn(unit: MemoryUnit) -> Turn:
    """The dataset turn a recall unit was made from (kept in its metadata)."""
    meta = unit.metadata
    return Turn(id=str(meta["turn_id"]), session_id=unit.session_id,
                speaker=str(meta["speaker"]), role=Role(meta["role"]),
                text=str(meta["turn_text"]), at=unit.at)


def as_session(group: Sequence[MemoryUnit]) -> Session:
    """A session holding only ``group``'s turns, for the chunkers."""
    first = group[0]
    started: datetime = first.metadata.get("session_started_at") or first.at
    return Session(id=first.session_id, started_at=started,
                   turns=tuple(as_turn(u) for u in group))


def groups(units: Sequence[MemoryUnit]) -> list[list[MemoryUnit]]:
    """Consecutive runs of ``units`` that share a session."""
    out: list[list[MemoryUnit]] = []
    for unit in units:
        if out and out[-1][-1].session_id == unit.session_id:
            out[-1].append(unit)
        else:
            out.append([unit])
    return out


class Consolidator:
    """Summary + core facts for one group of evicted turns (chunkers built on first use)."""

    def __init__(self, llm: Any, core_facts: int, summary_max_tokens: int,
                 facts_max_tokens: int, template_dirs: Sequence[str] = ()) -> None:
        self.llm = llm
        self.core_facts = core_facts
        self.summary_max_tokens = summary_max_tokens
        self.facts_max_tokens = facts_max_tokens
        self.template_dirs = template_dirs
        self._summary: Any = None
        self._facts: Any = None

    def run(self, group: Sequence[MemoryUnit], number: int) -> Consolidated:
        """Consolidate ``group``; ``number`` counts earlier consolidations of its session."""
        session = as_session(group)
        summary, records = self._summarise(session, number)
        lines: list[CoreLine] = []
        if self.core_facts > 0:
            lines, more = self._core_lines(session)
            records += more
        return Consolidated(session.id, tuple(t.id for t in session.turns), summary, lines,
                            records)

    def _summarise(self, session: Session, number: int
                   ) -> tuple[MemoryUnit | None, list[dict[str, Any]]]:
        from memlab.chunkers.summary import SummaryChunker

        if self._summary is None:
            self._summary = SummaryChunker(llm=self.llm, max_tokens=self.summary_max_tokens,
                                           template_dirs=self.template_dirs)
        units = self._summary.split(session)
        records = self._summary.take_calls()
        if not units:
            return None, records
        unit = units[0]
        unit = replace(unit, id=f"{session.id}/consolidated/{number}",
                       metadata={**unit.metadata, "tier": "archival",
                                 "consolidated_turns": len(session.turns)})
        return unit, records

    def _core_lines(self, session: Session) -> tuple[list[CoreLine], list[dict[str, Any]]]:
        from memlab.chunkers.facts import FactsChunker

        if self._facts is None:
            self._facts = FactsChunker(llm=self.llm, max_memories=self.core_facts,
                                       memory_context=0, max_tokens=self.facts_max_tokens,
                                       template_dirs=self.template_dirs)
        facts = self._facts.split(session)
        lines = [CoreLine(f.text, f.source_turn_ids, f.at) for f in facts]
        return lines, self._facts.take_calls()
