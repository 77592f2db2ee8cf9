"""ADD / UPDATE / DELETE / NONE: how ``extracted`` folds a new fact into its memories.

The new fact is compared (cosine of embeddings) with the current memories. Rules settle
the clear cases without a model call: nothing similar (best cosine below
``similar_threshold``) is an ADD; a near-copy (at least ``same_threshold``) is NONE. In
between, ``mode="llm"`` asks the model with template ``memory_update`` (mem0's update
step, one fact at a time) and ``mode="rule"`` UPDATEs the most similar memory. A model
answer that cannot be read falls back to ADD - storing a fact twice is a smaller harm
than losing it - and the record says so. With ``structured``, the model's reply is held
to :func:`decision_schema` by the backend (``json_schema``): one of the four events, a
memory number or null, and a text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from memlab.chunkers.base import MemoryUnit
from memlab.prompts import extract_json, get_template, record_schema

EVENTS = ("ADD", "UPDATE", "DELETE", "NONE")
MODES = ("llm", "rule")


@dataclass
class Decision:
    """What to do with one fact; ``target`` is the memory version it acts on."""

    event: str
    target: MemoryUnit | None = None
    text: str = ""
    by: str = "rule"
    similarity: float | None = None
    record: dict[str, Any] = field(default_factory=dict)


@dataclass
class Decider:
    """Rules for the clear cases, the LLM (or a rule) for the rest."""

    llm: Any
    mode: str = "llm"
    similar_threshold: float = 0.6
    same_threshold: float = 0.95
    template: str = "memory_update"
    template_dirs: Sequence[str] = ()
    max_tokens: int = 96
    structured: bool = False

    def decide(self, fact: str, at: datetime, similar: Sequence[tuple[MemoryUnit, float]]
               ) -> Decision:
        """``similar``: current memories with their cosine to ``fact``, best first."""
        close = [(u, s) for u, s in similar if s >= self.similar_threshold]
        if not close:
            best = similar[0][1] if similar else None
            return Decision("ADD", text=fact, similarity=best)
        top, score = close[0]
        if score >= self.same_threshold:
            return Decision("NONE", top, fact, similarity=score)
        if self.mode == "rule" or self.llm is None:
            return Decision("UPDATE", top, fact, similarity=score)
        return self._ask(fact, at, close)

    def _ask(self, fact: str, at: datetime, close: Sequence[tuple[MemoryUnit, float]]
             ) -> Decision:
        rendered = get_template(self.template, tuple(self.template_dirs)).render(
            fact=fact, memories=[u for u, _ in close], fact_date=at)
        extra = {"json_schema": decision_schema(len(close))} if self.structured else {}
        completion = self.llm.generate(rendered.messages, max_tokens=self.max_tokens, **extra)
        record: dict[str, Any] = {**rendered.record(), "model": completion.model,
                                  "raw": completion.text, "cached": completion.cached,
                                  "prompt_tokens": completion.prompt_tokens,
                                  "completion_tokens": completion.completion_tokens,
                                  "seconds": completion.seconds, "error": completion.error}
        score = close[0][1]
        if completion.error is not None:
            record["fallback"] = "llm error"
            return Decision("ADD", text=fact, by="fallback", similarity=score, record=record)
        decision = parse_decision(completion.text, [u for u, _ in close], fact)
        if decision is None:
            record["fallback"] = "unreadable answer"
            return Decision("ADD", text=fact, by="fallback", similarity=score, record=record)
        decision.by, decision.record = "llm", record
        decision.similarity = next((s for u, s in close if u is decision.target), score)
        return decision


def decision_schema(shown: int) -> dict[str, Any]:
    """The JSON schema of a decision about a fact shown beside ``shown`` memories: an
    event, the number of the memory it acts on (1..shown) or null, and the new text."""
    return record_schema({"event": {"enum": list(EVENTS)},
                          "id": {"anyOf": [{"type": "integer", "minimum": 1,
                                            "maximum": max(shown, 1)}, {"type": "null"}]},
                          "text": {"type": "string"}})


def parse_decision(text: str, shown: Sequence[MemoryUnit], fact: str) -> Decision | None:
    """The model's ``{"event", "id", "text"}``; an event needing a memory and lacking a
    valid number acts on the most similar one (shown first)."""
    data = extract_json(text)
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]
    if not isinstance(data, dict):
        return None
    event = str(data.get("event") or data.get("action") or "").strip().upper()
    if event not in EVENTS:
        return None
    if event == "ADD":
        return Decision("ADD", text=fact)
    target = _target(data.get("id"), shown)
    new_text = data.get("text")
    body = " ".join(new_text.split()) if isinstance(new_text, str) else ""
    return Decision(event, target, body or fact)


def _target(raw: Any, shown: Sequence[MemoryUnit]) -> MemoryUnit:
    number = str(raw).strip().strip("[]#") if raw is not None else ""
    if number.isdigit() and 1 <= int(number) <= len(shown):
        return shown[int(number) - 1]
    return shown[0]
