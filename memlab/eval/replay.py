"""Replay one conversation through a memory configuration and score each probe.

For each conversation: a fresh memory; sessions ingested in time order with the
dataset's timestamps; each probe searched with ``as_of = asked_at`` (the memory never
shows what was learned later), answered if the config has an ``answer`` section, and
scored. One item row per probe; a probe that fails records its error instead of scores.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from memlab.chunkers.base import MemoryUnit
from memlab.contracts import check_hits
from memlab.data.schema import Conversation, Probe
from memlab.eval.config import ExperimentConfig
from memlab.eval.timing import PhaseTimer
from memlab.llm.calls import ingest_summary
from memlab.memory.base import Accounted, Memory, Preparable, Trimming
from memlab.metrics.retrieval import KS as RETRIEVAL_KS
from memlab.retrieval.base import Hit
from memlab.tokens import count_tokens

#: Rank cut-offs of the retrieval metrics (those of :mod:`memlab.metrics.retrieval`) and the
#: memory-token budgets.
KS = RETRIEVAL_KS
BUDGETS = (250, 500, 1000, 2000)


@dataclass
class ConversationRun:
    """What replaying one conversation produced."""

    items: list[dict[str, Any]]
    ingest_seconds: float
    units: int
    unit_tokens: int
    model_digests: dict[str, str] = field(default_factory=dict)
    unit_bytes: int = 0
    conversation_id: str = ""
    ingest: dict[str, Any] = field(default_factory=lambda: ingest_summary(()))
    #: seconds spent embedding the probes' questions ahead, in batches (not in search);
    #: None when the memory embeds no query
    query_seconds: float | None = None

    def memory_record(self) -> dict[str, Any]:
        """The conversation's row of ``memory.jsonl``: footprint, ingest time and the LLM
        calls made while ingesting (calls, errors with messages, tokens, seconds)."""
        row = {"conversation_id": self.conversation_id, "probes": len(self.items),
               "units": self.units, "tokens": self.unit_tokens, "bytes": self.unit_bytes,
               "ingest_seconds": round(self.ingest_seconds, 6), "ingest": self.ingest}
        if self.query_seconds is not None:
            row["query_embed_seconds"] = round(self.query_seconds, 6)
        return row


def build_memory(config: ExperimentConfig) -> Memory:
    """A fresh memory for one conversation, as the config describes it."""
    from memlab.spec import build

    memory: Memory = build("memory", config.memory)
    return memory


def loaded_memory(config: ExperimentConfig, conversation: Conversation,
                  questions: Sequence[str]) -> Memory:
    """A fresh memory holding ``conversation``, indexed, with ``questions`` embedded
    ahead where the memory can (outside the harness's timers: benches, training)."""
    memory = build_memory(config)
    for session in conversation.sessions:
        memory.ingest(session, conversation)
    if isinstance(memory, Preparable):
        memory.prepare()
    warm = getattr(memory, "warm_queries", None)
    if callable(warm):
        warm(list(questions))
    return memory


def replay_conversation(config: ExperimentConfig, conversation: Conversation,
                        probes: Sequence[Probe], answerer: Any = None,
                        on_session: Callable[[], object] | None = None) -> ConversationRun:
    """Ingest ``conversation`` and answer ``probes`` (a subset of its probes);
    ``on_session`` is called after each session is ingested (a progress bar)."""
    timer = PhaseTimer()
    memory = build_memory(config)
    calls: list[dict[str, Any]] = []
    with timer("ingest"):
        for session in conversation.sessions:
            memory.ingest(session, conversation)
            if isinstance(memory, Accounted):
                calls += memory.take_calls()
            if on_session is not None:
                on_session()
        if isinstance(memory, Preparable):  # index (embed) now, not at the first probe
            memory.prepare()
            if isinstance(memory, Accounted):  # LLM calls made while indexing (keys)
                calls += memory.take_calls()
    ingest_seconds = timer.take().get("ingest", 0.0)
    warm = getattr(memory, "warm_queries", None)
    query_seconds = None
    if callable(warm):  # embed the questions in batches, not one per search
        with timer("queries"):
            warmed = warm([p.question for p in probes])
        seconds = timer.take()["queries"]  # taken either way: never a probe's phase
        query_seconds = seconds if warmed else None
    units = list(memory.units())
    tokens = _TokenCounter()
    turn_sessions = {t.id: t.session_id for t in conversation.turns()}
    covers = _Coverages(units, turn_sessions, tokens)
    items = []
    trimming = isinstance(memory, Trimming)  # (Protocol checks: once, not per probe)
    accounted = isinstance(memory, Accounted)
    for probe in sorted(probes, key=lambda p: (p.asked_at, p.id)):
        items.append(_probe_item(config, conversation, probe, memory, covers, tokens, timer,
                                 answerer, trimming, accounted))
    digests = answerer.digests() if answerer is not None else {}
    return ConversationRun(items, ingest_seconds, len(units),
                           sum(tokens(u) for u in units), digests,
                           unit_bytes=footprint_bytes(units), conversation_id=conversation.id,
                           ingest=ingest_summary(calls), query_seconds=query_seconds)


def footprint_bytes(units: Sequence[MemoryUnit]) -> int:
    """Bytes of the units as the SQLite store writes them (text columns UTF-8, numbers 8
    bytes each; vectors and search indexes not included)."""
    from memlab.store.codec import unit_row

    total = 0
    for unit in units:
        for value in unit_row(unit):
            total += len(value.encode("utf-8")) if isinstance(value, str) else 8
    return total


def _probe_item(config: ExperimentConfig, conversation: Conversation, probe: Probe,
                memory: Memory, covers: _Coverages, tokens: _TokenCounter,
                timer: PhaseTimer, answerer: Any, trimming: bool,
                accounted: bool) -> dict[str, Any]:
    row = _probe_fields(conversation, probe)
    try:
        depth = max(config.k or 0, config.depth)
        with timer("search"):
            hits = memory.search(probe.question, depth, probe.asked_at, probe=probe)
        calls = memory.take_calls() if accounted else []  # type: ignore[attr-defined]
        check_hits(hits, lambda: _searcher(config), depth, probe.asked_at)
        with timer("score"):
            row["metrics"], row["evidence_ranks"] = _retrieval_metrics(hits, probe, covers,
                                                                       tokens)
        shown = hits[: config.k] if config.k is not None else hits
        row["retrieved"] = [covers.record(h, tokens) for h in shown]
        row["n_retrieved"] = len(hits)
        trim = memory.last_trim if trimming else None  # type: ignore[attr-defined]
        if trim is not None:  # full_context: what was cut
            row["memory_trim"] = memory_trim(trim)
        row["tokens"] = {"memory": sum(tokens(h.unit) for h in shown)}  # answers refine it
        if calls:  # query-time LLM calls (llm_rerank, query_rewrite): the probe's cost
            row["search_llm"] = ingest_summary(calls)
            row["tokens"]["search"] = (row["search_llm"]["prompt_tokens"]
                                       + row["search_llm"]["completion_tokens"])
        if answerer is not None:
            row.update(answerer.answer(conversation, probe, shown, timer))
            row["metrics"].update(row.pop("answer_metrics", {}))
        row["error"] = row.get("error")
    except Exception as exc:  # per-probe errors are data, never a crashed run
        row["error"] = f"{type(exc).__name__}: {exc}"
        row["traceback"] = traceback.format_exc(limit=6)
        row.setdefault("metrics", {})
    row["latency_seconds"] = {k: round(v, 6) for k, v in timer.take().items()}
    if "search_llm" in row:  # inside "search"; apart, so search minus LLM can be read
        row["latency_seconds"]["search_llm"] = row["search_llm"]["seconds"]
    return row


def memory_trim(trim: Any) -> dict[str, Any]:
    """A strategy's trim (units/tokens visible and kept) as item data."""
    return {"visible_units": trim.visible_units, "kept_units": trim.kept_units,
            "visible_tokens": trim.visible_tokens, "kept_tokens": trim.kept_tokens,
            "trimmed": trim.trimmed}


def _probe_fields(conversation: Conversation, probe: Probe) -> dict[str, Any]:
    return {
        "conversation_id": conversation.id,
        "probe_id": probe.id,
        "category": probe.category,
        "category_id": probe.category_id,
        "abstention": probe.abstention,
        "question": probe.question,
        "gold": probe.answer,
        "asked_at": probe.asked_at.isoformat(),
        "evidence_turn_ids": list(probe.evidence_turn_ids),
        "evidence_session_ids": list(probe.evidence_session_ids),
    }


def produced_metrics(config: ExperimentConfig) -> set[str]:
    """Every metric name a run of ``config`` can score: the retrieval and token-budget
    metrics at :data:`KS` / :data:`BUDGETS`, its scorers, and ``judge`` with a judge."""
    from memlab.metrics.budget import metric_names as budget_names
    from memlab.metrics.retrieval import metric_names as ranked_names

    names = {*ranked_names(KS), *budget_names(BUDGETS), *config.scorers}
    return names | {"judge"} if config.judge is not None else names


def _searcher(config: ExperimentConfig) -> str:
    """What searched, for contract errors: ``retrieval 'budget(time_aware(bm25))'``."""
    from memlab.eval.mlflow_runs import strategy_chain

    spec: Any = config.memory.params.get("retrieval")
    if spec is None:
        return f"memory '{config.memory.name}'"
    return f"retrieval '{strategy_chain(getattr(spec, 'model_dump', lambda: spec)())}'"


def _retrieval_metrics(hits: list[Hit], probe: Probe, covers: _Coverages,
                       tokens: _TokenCounter
                       ) -> tuple[dict[str, float | None], dict[str, dict[str, int]]]:
    """The probe's ranked and token-budget metrics, and each evidence item's rank within
    the search depth (``turn``: the first unit covering it; ``session``: its place among
    the distinct sessions of the ranking, LongMemEval's widened k; items no ranked unit
    covers are left out): what ``misses`` reads beyond the stored top k."""
    from memlab.metrics.budget import score_budget
    from memlab.metrics.retrieval import score_retrieval

    ranked_covers, positions, counts = covers.ranked(hits, tokens)
    first: dict[str, dict[str, int]] = {}
    ranked = score_retrieval(ranked_covers, probe, ks=KS, turn_sessions=covers.turn_sessions,
                             corpus=covers.corpus, positions=positions, first_out=first)
    budget = score_budget(ranked_covers, probe, budgets=BUDGETS,
                          turn_sessions=covers.turn_sessions, tokens=counts, first=first)
    ranks = {"turn": {t: r for t, r in (first.get("turn") or {}).items()
                      if t in probe.evidence_turn_ids}}
    wanted = set(probe.evidence_session_ids)
    if wanted:
        order: dict[str, int] = {}
        for cover in ranked_covers:  # distinct sessions in ranked order, as misses counts
            for session in sorted(cover.sessions):
                order.setdefault(session, len(order) + 1)
            if wanted <= order.keys():
                break
        ranks["session"] = {s: order[s] for s in probe.evidence_session_ids if s in order}
    return {**ranked.values, **budget.values}, ranks


class _Coverages:
    """What each unit of a conversation's memory covers (and its position and token
    count), computed once per unit, and the corpus index of them, which sizes the ideal
    DCG and lets a ranking be scored without scanning it."""

    def __init__(self, units: list[MemoryUnit], turn_sessions: dict[str, str],
                 tokens: _TokenCounter) -> None:
        from memlab.metrics.retrieval import CorpusIndex, coverage

        self.turn_sessions = turn_sessions
        self._coverage = coverage
        self._units = units  # keeps the objects alive, so their id() stays theirs
        by_object = {id(u): (coverage(u, turn_sessions), tokens(u)) for u in units}
        self._entries = {key: (cover, n, count)
                         for n, (key, (cover, count)) in enumerate(by_object.items())}
        self.corpus = CorpusIndex(cover for cover, _ in by_object.values())
        self._records: dict[int, dict[str, Any]] = {}

    def __call__(self, unit: MemoryUnit) -> Any:
        entry = self._entries.get(id(unit))
        return entry[0] if entry is not None else self._coverage(unit, self.turn_sessions)

    def ranked(self, hits: Sequence[Hit], tokens: _TokenCounter
               ) -> tuple[list[Any], list[int] | None, list[int]]:
        """Coverages, corpus positions (None if a hit is not in the corpus) and token
        counts of ``hits``."""
        entries = self._entries
        found = [entries.get(id(h.unit)) for h in hits]
        if not found:
            return [], [], []
        if None not in found:
            covers, positions, counts = (list(column) for column in zip(*found, strict=True))
            return covers, positions, counts
        return [self(h.unit) for h in hits], None, [tokens(h.unit) for h in hits]

    def record(self, hit: Hit, tokens: _TokenCounter) -> dict[str, Any]:
        """The items.jsonl record of a shown hit (a unit's fixed fields built once)."""
        key = id(hit.unit)
        fixed = self._records.get(key)
        if fixed is None:
            if key not in self._entries:
                return _hit_record(hit, tokens)
            fixed = self._records[key] = _unit_record(hit.unit, tokens)
        return {**fixed, "score": round(float(hit.score), 6)}


def _hit_record(hit: Hit, tokens: _TokenCounter) -> dict[str, Any]:
    return {**_unit_record(hit.unit, tokens), "score": round(float(hit.score), 6)}


def _unit_record(unit: MemoryUnit, tokens: _TokenCounter) -> dict[str, Any]:
    return {
        "id": unit.id,
        "kind": unit.kind,
        "session_id": unit.session_id,
        "source_turn_ids": list(unit.source_turn_ids),
        "at": unit.at.isoformat(),
        "tokens": tokens(unit),
    }


class _TokenCounter:
    """Exact Qwen token counts of unit texts, counted once per unit."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def __call__(self, unit: MemoryUnit) -> int:
        count = self._counts.get(unit.id)
        if count is None:
            count = self._counts[unit.id] = count_tokens(unit.text)
        return count
