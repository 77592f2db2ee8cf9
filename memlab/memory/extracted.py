"""``extracted``: OMI / mem0-style memory - a few facts per session, kept up to date.

After each session the ``facts`` chunker (OMI's rules, at most ``max_memories``) proposes
candidate facts, each with its source turn ids. Each candidate is compared with the
current memories by embedding cosine and folded in by a :class:`~memlab.memory.decisions.
Decider`: ADD a new memory, UPDATE one (its new text replaces the stale one), DELETE one,
or NONE (already known). Nothing is overwritten in place: a memory is a chain of
*versions* (units ``mem3/v1``, ``mem3/v2`` ...), each valid from its ``at`` until the time
the next version or a deletion closed it (``metadata["valid_to"]``). ``search(as_of=t)``
only returns versions valid at ``t``, so a probe asked before an update still finds the
old value, and one asked after finds the new one. An updated version keeps the source
turn ids of the version it replaces plus the new fact's, so recall is scored against
all the evidence of a knowledge update.

``structured: true`` holds both LLM steps to a JSON schema (the backend's ``json_schema``:
llama.cpp's grammar, Ollama's ``format``, OpenAI-style ``response_format``): the facts
chunker's list of memories and each decision's event, memory number and text. It changes
the calls' cache keys, not the prompts.

Memories, their vectors and validity live in one store (``memory`` in the harness,
``sqlite`` per user for the live agent) and are reloaded from it on first use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

import numpy as np

from memlab.chunkers.base import MemoryUnit
from memlab.data.schema import Conversation, Probe, Session
from memlab.llm.calls import CallRecords
from memlab.memory import support
from memlab.memory.base import ComponentSpec
from memlab.memory.decisions import MODES, Decider, Decision
from memlab.retrieval.base import Hit
from memlab.spec import Component


class ExtractedMemory(CallRecords, Component):
    """LLM-extracted facts with ADD / UPDATE / DELETE / NONE and versioned validity."""

    nested: ClassVar[Mapping[str, str]] = {"llm": "llm", "embedder": "embedder",
                                           "retrieval": "retrieval", "store": "store"}
    #: numeric parameters' bounds (checked by config validation and check_params)
    bounds: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "max_memories": {"low": 1, "integer": True},
        "min_chars": {"low": 0, "integer": True},
        "similar_threshold": {"low": -1, "high": 1},
        "same_threshold": {"low": -1, "high": 1},
        "candidates": {"low": 1, "integer": True},
        "extract_max_tokens": {"low": 1, "integer": True},
        "decide_max_tokens": {"low": 1, "integer": True},
    }

    name = "extracted"

    def __init__(self, llm: Any = None, llm_cache: str = "readwrite", max_memories: int = 4,
                 min_chars: int = 25, embedder: Any = "sentence-transformers",
                 retrieval: ComponentSpec | None = None, decide: str = "llm",
                 similar_threshold: float = 0.6, same_threshold: float = 0.95,
                 candidates: int = 3, store: ComponentSpec = "memory",
                 extract_max_tokens: int = 384, decide_max_tokens: int = 96,
                 structured: bool = False, template_dirs: Sequence[str] = ()) -> None:
        self.llm = llm
        self.llm_cache = llm_cache
        self.max_memories = max_memories
        self.min_chars = min_chars
        self.embedder = embedder
        self.retrieval = retrieval
        self.decide = decide
        self.similar_threshold = similar_threshold
        self.same_threshold = same_threshold
        self.candidates = candidates
        self.store = store
        self.extract_max_tokens = extract_max_tokens
        self.decide_max_tokens = decide_max_tokens
        self.structured = structured
        self.template_dirs = template_dirs
        self.records: list[dict[str, Any]] = []
        self._state: _Versions | None = None
        self._llm: Any = None
        self._chunker: Any = None
        self._decisions: Decider | None = None

    # ------------------------------------------------------------------ Memory protocol

    def ingest(self, session: Session, conversation: Conversation | None = None
               ) -> list[MemoryUnit]:
        """Extract this session's facts and fold each into memory; the versions written."""
        chunker = self._extractor()
        facts = chunker.split(session)
        self.records.extend(chunker.take_calls())
        made: list[MemoryUnit] = []
        for fact in facts:
            made += self.integrate(fact.text, fact.source_turn_ids, fact.at,
                                   session_id=session.id,
                                   category=str(fact.metadata.get("category", "")))
        return made

    def search(self, query: str, k: int, as_of: datetime | None = None, *,
               probe: Probe | None = None) -> list[Hit]:
        """The best ``k`` memory versions valid at ``as_of`` (None: the current ones)."""
        state = self._ready()
        as_of = support.utc(as_of)
        if k <= 0 or not state.units:
            return []
        hits = state.retriever().search(query, k + state.closed, as_of)
        out = []
        for hit in hits:
            unit = state.units[hit.unit.id]
            if _valid(unit, as_of):
                out.append(Hit(unit, hit.score))
        return out[:k]

    def units(self) -> Sequence[MemoryUnit]:
        return tuple(self._ready().units.values())

    # ------------------------------------------------------------------ updates

    def integrate(self, text: str, source_turn_ids: Sequence[str], at: datetime, *,
                  session_id: str = "", category: str = "") -> list[MemoryUnit]:
        """Fold one fact into memory; the versions it wrote (none for NONE)."""
        state = self._ready()
        at = support.utc(at) or support.now()
        vector = state.embed(text)
        decision = self._decider().decide(text, at, state.similar(vector, self.candidates))
        written = state.apply(decision, text, vector, tuple(source_turn_ids), at,
                              session_id=session_id or "memory", category=category)
        self.records.append({
            "event": decision.event, "by": decision.by, "fact": text,
            "similarity": decision.similarity, "at": at.isoformat(),
            "target": decision.target.id if decision.target is not None else None,
            "written": [u.id for u in written], **decision.record})
        return written

    def remember(self, text: str, memory_type: str = "archival", at: datetime | None = None,
                 *, speaker: str = "user", source_id: str = "") -> MemoryUnit:
        """Add a fact by hand (the live agent's ``add_memory``) through the same decisions."""
        at = support.utc(at) or support.now()
        source = source_id or f"note/{len(self._ready().units) + 1}"
        written = self.integrate(text, (source,), at, session_id=source,
                                 category=memory_type)
        if written:
            return written[-1]
        current = self._ready().similar(self._ready().embed(text), 1)
        return current[0][0] if current else MemoryUnit(source, text, "fact", (source,),
                                                        source, at)

    def close(self) -> None:
        if self._state is not None:
            self._state.store.close()

    # ------------------------------------------------------------------ internals

    def check_params(self) -> None:
        """Raise a ConfigError for a value out of range or an unknown choice (config
        validation runs it; nothing is built)."""
        support.check_values(self, {"decide": MODES, "llm_cache": support.CACHE_MODES})
        support.require(self.similar_threshold <= self.same_threshold, self.name,
                        f"similar_threshold ({self.similar_threshold}) must not exceed "
                        f"same_threshold ({self.same_threshold})")

    def _ready(self) -> _Versions:
        if self._state is None:
            self.check_params()
            retrieval = self.retrieval or {"name": "dense", "params": {
                "embedder": self.embedder}}
            self._state = _Versions(self.embedder, retrieval, self.store)
        return self._state

    def _model(self) -> Any:
        if self._llm is None:
            self._llm = support.build_llm(self.llm, self.llm_cache)
        return self._llm

    def _extractor(self) -> Any:
        from memlab.chunkers.facts import FactsChunker

        if self._chunker is None:
            self._chunker = FactsChunker(llm=self._model(), max_memories=self.max_memories,
                                         min_chars=self.min_chars, memory_context=0,
                                         max_tokens=self.extract_max_tokens,
                                         structured=self.structured,
                                         template_dirs=self.template_dirs)
        return self._chunker

    def _decider(self) -> Decider:
        if self._decisions is None:
            llm = self._model() if self.decide == "llm" else None
            self._decisions = Decider(llm, self.decide, self.similar_threshold,
                                    self.same_threshold, template_dirs=self.template_dirs,
                                    max_tokens=self.decide_max_tokens,
                                    structured=self.structured)
        return self._decisions


class _Versions:
    """Every memory version with its vector, mirrored to the store; a lazy retriever."""

    def __init__(self, embedder: Any, retrieval: ComponentSpec, store: ComponentSpec) -> None:
        from memlab.embed import build_embedder
        from memlab.embed.cache import maybe_cached

        self.encoder = maybe_cached(build_embedder(embedder))
        self.retrieval = retrieval
        self.store = support.open_store(store)
        self.units: dict[str, MemoryUnit] = {}
        self.vectors: dict[str, np.ndarray] = {}
        self.pending: dict[str, MemoryUnit] = {}
        self._retriever: Any = None
        stored = self.store.all()
        if stored:
            for unit, vector in zip(stored, self.store.vectors(), strict=True):
                self._keep(unit, vector)

    @property
    def closed(self) -> int:
        return sum(u.metadata.get("valid_to") is not None for u in self.units.values())

    def embed(self, text: str) -> np.ndarray:
        return np.asarray(self.encoder.encode([text])[0], dtype=np.float32)

    def similar(self, vector: np.ndarray, n: int) -> list[tuple[MemoryUnit, float]]:
        """The ``n`` current versions most similar to ``vector``, best first."""
        current = [u for u in self.units.values() if u.metadata.get("valid_to") is None]
        if not current:
            return []
        scores = np.stack([self.vectors[u.id] for u in current]) @ vector
        order = sorted(range(len(current)), key=lambda i: (-scores[i], i))[:n]
        return [(current[i], float(scores[i])) for i in order]

    def apply(self, decision: Decision, fact: str, vector: np.ndarray,
              sources: tuple[str, ...], at: datetime, *, session_id: str,
              category: str) -> list[MemoryUnit]:
        """Write what ``decision`` says about ``fact`` (whose embedding is ``vector``)."""
        target = decision.target
        if decision.event == "ADD":
            number = 1 + len({u.metadata["memory_id"] for u in self.units.values()})
            return [self._new(f"mem{number}", 1, decision.text, sources, at, session_id,
                              "ADD", category, vector)]
        assert target is not None, "UPDATE/DELETE/NONE act on a memory"
        if decision.event == "NONE":
            return []
        at = max(at, target.at)  # a version never ends before it began
        closed = support.with_meta(target, valid_to=at, closed_by=decision.event)
        self._put([closed], [self.vectors[target.id]])
        if decision.event == "DELETE":
            return [closed]
        text_vector = vector if decision.text == fact else self.embed(decision.text)
        meta = target.metadata
        return [closed, self._new(
            str(meta["memory_id"]), int(meta["version"]) + 1, decision.text,
            support.merged_ids(target.source_turn_ids, sources), at, session_id, "UPDATE",
            category or str(meta.get("category", "")), text_vector)]

    def _new(self, memory_id: str, version: int, text: str, sources: tuple[str, ...],
             at: datetime, session_id: str, event: str, category: str,
             vector: np.ndarray) -> MemoryUnit:
        unit = MemoryUnit(
            id=f"{memory_id}/v{version}", text=text, kind="fact", source_turn_ids=sources,
            session_id=session_id, at=at,
            metadata={"tier": "archival", "memory_id": memory_id, "version": version,
                      "valid_to": None, "event": event, "category": category})
        self._put([unit], [vector])
        return unit

    def _put(self, units: list[MemoryUnit], vectors: list[np.ndarray]) -> None:
        self.store.add(units, np.stack(vectors))
        for unit, vector in zip(units, vectors, strict=True):
            self._keep(unit, vector)

    def _keep(self, unit: MemoryUnit, vector: np.ndarray) -> None:
        self.units[unit.id] = unit
        self.vectors[unit.id] = np.asarray(vector, dtype=np.float32)
        self.pending[unit.id] = unit

    def retriever(self) -> Any:
        self._retriever = support.indexed(self._retriever, self.retrieval, self.pending)
        return self._retriever


def _valid(unit: MemoryUnit, as_of: datetime | None) -> bool:
    """Known at ``as_of`` and not yet replaced or deleted then."""
    valid_to = unit.metadata.get("valid_to")
    if as_of is None:
        return valid_to is None
    return unit.at <= as_of and (valid_to is None or valid_to > as_of)
