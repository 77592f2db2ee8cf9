"""``tiered``: Letta/MemGPT-style memory - core block, recall buffer, archival store.

- **core**: a few persistent facts, always first in what ``search`` returns (the prompt
  always has it); editable (:meth:`TieredMemory.remember` with ``"core"``) and versioned
  (:mod:`memlab.memory.core`); a line nearly repeating one there replaces it
  (``core_repeat: replace``, an update) or is dropped (``skip``).
- **recall**: every turn, in time order. The newest turns that fit ``recall_tokens``
  Qwen tokens are the in-context buffer, returned last by ``search`` in time order.
- **archival**: the store's searchable part - every turn (``archive_turns``, as the
  Letta seed saves each exchange to recall *and* archival), explicit notes, and the
  summaries consolidation writes when turns leave the buffer
  (:mod:`memlab.memory.consolidation`). Searched per message by ``retrieval``: at most
  ``top_k`` hits scoring at least ``relevance_threshold`` on the strategy's own scale
  (3 and 0.5 as in the seed's ``letta_config.json``; 0.5 is a cosine for ``dense``).

Memory is updated after every ingested session (a dataset session, or one exchange of
the live agent). Everything lives in one store (``memory`` in the harness, ``sqlite``
with a namespace per user for the live agent) and is reloaded from it on first use.
Time-faithful: every unit carries dataset time, and ``search(as_of=t)`` builds the core
version, the buffer and the archival hits from what was known at ``t``. Summaries and
core lines keep all their source turn ids, so retrieval is scored against evidence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, ClassVar

from memlab.chunkers.base import MemoryUnit
from memlab.chunkers.common import make_unit
from memlab.data.schema import Conversation, Probe, Role, Session, Turn
from memlab.llm.calls import CallRecords
from memlab.memory import support
from memlab.memory.base import ComponentSpec
from memlab.memory.consolidation import Consolidated, Consolidator, groups
from memlab.memory.core import REPEATS, CoreChange, CoreLine
from memlab.memory.tiers import TierState
from memlab.retrieval.base import Hit
from memlab.spec import Component

MEMORY_TYPES = ("core", "recall", "archival")


@dataclass
class TieredContext:
    """What one message is given: core version, retrieved archival hits, recent turns."""

    core: Hit | None
    retrieved: list[Hit]
    recent: list[Hit]

    def hits(self) -> list[Hit]:
        return ([self.core] if self.core else []) + self.retrieved + self.recent


class TieredMemory(CallRecords, Component):
    """Core block + recall buffer + archival store with per-message retrieval."""

    nested: ClassVar[Mapping[str, str]] = {"retrieval": "retrieval", "llm": "llm", "store": "store"}
    #: numeric parameters' bounds (checked by config validation and check_params)
    bounds: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "top_k": {"low": 0, "integer": True, "optional": True},
        "relevance_threshold": {"optional": True},
        "recall_tokens": {"low": 0, "integer": True},
        "core_tokens": {"low": 0, "integer": True},
        "core_facts": {"low": 0, "integer": True},
        "consolidate_min_tokens": {"low": 0, "integer": True},
        "summary_max_tokens": {"low": 1, "integer": True},
        "facts_max_tokens": {"low": 1, "integer": True},
    }

    name = "tiered"

    def __init__(self, retrieval: ComponentSpec = "dense", top_k: int | None = 3,
                 relevance_threshold: float | None = 0.5, recall_tokens: int = 1000,
                 core_tokens: int = 200, core_facts: int = 2, auto_consolidate: bool = True,
                 consolidate_min_tokens: int = 0, consolidate_by: str = "session",
                 archive_turns: bool = True, llm: Any = None, llm_cache: str = "readwrite",
                 store: ComponentSpec = "memory", summary_max_tokens: int = 192,
                 facts_max_tokens: int = 256, template_dirs: Sequence[str] = (),
                 date_summaries: str = "latest_turn", core_repeat: str = "replace") -> None:
        self.retrieval = retrieval
        self.top_k = top_k
        self.relevance_threshold = relevance_threshold
        self.recall_tokens = recall_tokens
        self.core_tokens = core_tokens
        self.core_facts = core_facts
        self.auto_consolidate = auto_consolidate
        self.consolidate_min_tokens = consolidate_min_tokens
        self.consolidate_by = consolidate_by
        self.archive_turns = archive_turns
        self.llm = llm
        self.llm_cache = llm_cache
        self.store = store
        self.summary_max_tokens = summary_max_tokens
        self.facts_max_tokens = facts_max_tokens
        self.template_dirs = template_dirs
        self.date_summaries = date_summaries
        self.core_repeat = core_repeat
        self.records: list[dict[str, Any]] = []
        self._state: TierState | None = None

    # ------------------------------------------------------------------ Memory protocol

    def ingest(self, session: Session, conversation: Conversation | None = None
               ) -> list[MemoryUnit]:
        """Save the session's turns (recall + archival), then consolidate what left recall."""
        state = self._ready()
        units = [_turn_unit(session, n, turn) for n, turn in enumerate(session.turns)]
        state.put(units, archival=self.archive_turns)
        if self.auto_consolidate and units:
            units += self.consolidate(as_of=max(u.at for u in units),
                                      min_tokens=self.consolidate_min_tokens)
        return units

    def search(self, query: str, k: int, as_of: datetime | None = None, *,
               probe: Probe | None = None) -> list[Hit]:
        """Core block, then up to ``top_k`` retrieved hits, then the recall buffer; <= k."""
        return self.context(query, as_of, k).hits()[:k]

    def units(self) -> Sequence[MemoryUnit]:
        state = self._ready()
        return tuple(state.turns + state.archival_only + state.core.versions)

    # ------------------------------------------------------------------ tiers

    def context(self, query: str, as_of: datetime | None = None,
                k: int | None = None) -> TieredContext:
        """The three tiers as a message at ``as_of`` sees them."""
        state = self._ready()
        as_of = support.utc(as_of)
        core = state.core.at(as_of)
        recent = self.recall_buffer(as_of)
        return TieredContext(core=Hit(core, 1.0) if core is not None and core.text else None,
                             retrieved=self._retrieve(query, as_of, self._want(k),
                                                      {u.id for u in recent}),
                             recent=[Hit(u, 0.0) for u in recent])

    def recall_buffer(self, as_of: datetime | None = None) -> list[MemoryUnit]:
        """The newest turns known at ``as_of`` that fit ``recall_tokens``, oldest first."""
        state = self._ready()
        kept: list[MemoryUnit] = []
        used = 0
        for unit in reversed([u for u in state.turns if support.visible(u, as_of)]):
            used += state.tokens(unit)
            if used > self.recall_tokens:
                break
            kept.append(unit)
        return kept[::-1]

    def find(self, query: str, k: int, as_of: datetime | None = None) -> list[Hit]:
        """Up to ``k`` archival hits above the threshold (the live agent's memory search)."""
        return self._retrieve(query, support.utc(as_of), k, set())

    def _want(self, k: int | None) -> int | None:
        return self.top_k if self.top_k is not None else k

    def _retrieve(self, query: str, as_of: datetime | None, want: int | None,
                  shown: set[str]) -> list[Hit]:
        if not want or not query.strip():
            return []
        hits = self._ready().retriever().search(query, want + len(shown), as_of)
        threshold = self.relevance_threshold
        kept = [h for h in hits if h.unit.id not in shown
                and (threshold is None or h.score >= threshold)]
        return kept[:want]

    # ------------------------------------------------------------------ updates

    def consolidate(self, as_of: datetime | None = None, min_tokens: int = 0
                    ) -> list[MemoryUnit]:
        """Summarise turns that left the recall buffer into archival; update the core block.

        Nothing happens until the evicted, unconsolidated turns reach ``min_tokens``, so a
        live chat summarises several exchanges at once instead of each one. Turns are
        summarised per session (``consolidate_by="session"``, the harness's sessions) or
        all together (``"batch"``, for the live agent, whose sessions are exchanges).

        A summary is dated by its group's latest turn (``date_summaries: latest_turn``), or
        at ``as_of``, when consolidation ran (``consolidation``: a live memory's summary
        then is its newest unit, so a dense HNSW index grows by appending it instead of
        being rebuilt; it becomes visible no earlier than with ``latest_turn``).
        """
        state = self._ready()
        kept = {u.id for u in self.recall_buffer(as_of)}
        evicted = [u for u in state.turns if u.id not in kept and support.visible(u, as_of)
                   and not u.metadata.get("consolidated")]
        if not evicted or state.tokens.total(evicted) < min_tokens:
            return []
        made: list[MemoryUnit] = []
        for group in groups(evicted) if self.consolidate_by == "session" else [evicted]:
            result = self._consolidator().run(group, state.consolidations(group[0].session_id))
            self.records.extend(result.records)
            made += self._apply(result, group, as_of)
        return made

    def _apply(self, result: Consolidated, group: list[MemoryUnit],
               as_of: datetime | None) -> list[MemoryUnit]:
        state = self._ready()
        if not result.ok:
            return []
        made: list[MemoryUnit] = []
        if result.summary is not None:
            summary = result.summary
            at, dated = support.utc(as_of), support.utc(summary.at)
            if self.date_summaries == "consolidation" and at and dated and at > dated:
                summary = replace(summary, at=at if summary.at.tzinfo else at.replace(tzinfo=None))
            state.put([summary], archival=True)
            made.append(summary)
        version = state.core.add(result.core_lines)
        if version is not None:
            state.put([version], archival=False)
            made.append(version)
        state.put([support.with_meta(u, consolidated=True) for u in group],
                  archival=self.archive_turns)
        return made

    def remember(self, text: str, memory_type: str = "archival", at: datetime | None = None,
                 *, speaker: str = "user", source_id: str = "") -> MemoryUnit:
        """Add ``text`` to one tier by hand (the live agent's ``add_memory``)."""
        state = self._ready()
        at = support.utc(at) or support.now()
        source = source_id or f"note/{state.size() + 1}"
        if memory_type == "core":
            version = state.core.add([CoreLine(text, (source,), at)])
            unit = version or state.core.at()
            assert unit is not None
            state.put([unit], archival=False)
            return unit
        if memory_type == "recall":
            turn = Turn(id=source, session_id=source, speaker=speaker, role=Role.USER,
                        text=text, at=at)
            unit = _turn_unit(Session(id=source, started_at=at, turns=(turn,)), 0, turn)
            state.put([unit], archival=self.archive_turns)
            return unit
        if memory_type != "archival":
            raise ValueError(f"memory_type must be one of {', '.join(MEMORY_TYPES)}, "
                             f"got {memory_type!r}")
        unit = MemoryUnit(id=source, text=text, kind="note", source_turn_ids=(source,),
                          session_id=source, at=at, metadata={"tier": "archival"})
        state.put([unit], archival=True)
        return unit

    @property
    def core_change(self) -> CoreChange:
        """What the last change to the core block did (replaced, skipped, evicted lines)."""
        return self._ready().core.change

    def forget(self, unit_id: str) -> list[str]:
        """Delete a memory by id (any core version id clears the core block: every
        version); the ids deleted, none if there is no such memory."""
        state = self._ready()
        cores = [v.id for v in state.core.versions]
        ids = cores if unit_id in cores else [unit_id] if state.holds(unit_id) else []
        if ids:
            state.store.delete(ids)
            state.drop(ids)
        return ids

    def close(self) -> None:
        if self._state is not None:
            self._state.store.close()

    # ------------------------------------------------------------------ internals

    def check_params(self) -> None:
        """Raise a ConfigError for a value out of range or an unknown choice (config
        validation runs it; nothing is built)."""
        support.check_values(self, {
            "consolidate_by": ("session", "batch"),
            "date_summaries": ("latest_turn", "consolidation"),
            "core_repeat": REPEATS,
            "llm_cache": support.CACHE_MODES})

    def _ready(self) -> TierState:
        if self._state is None:
            self.check_params()
            self._state = TierState(self.retrieval, self.store, self.core_tokens,
                                    self.core_repeat)
        return self._state

    def _consolidator(self) -> Consolidator:
        state = self._ready()
        if state.consolidator is None:
            state.consolidator = Consolidator(
                support.build_llm(self.llm, self.llm_cache), self.core_facts,
                self.summary_max_tokens, self.facts_max_tokens, self.template_dirs)
        return state.consolidator


def _turn_unit(session: Session, n: int, turn: Turn) -> MemoryUnit:
    """One recall turn; the turn itself is kept in metadata for consolidation."""
    unit = make_unit(session, "turn", n, [turn], kind="turn")
    return support.with_meta(unit, tier="recall", turn_id=turn.id, speaker=turn.speaker,
                             role=str(turn.role), turn_text=turn.full_text,
                             session_started_at=session.started_at, consolidated=False)
