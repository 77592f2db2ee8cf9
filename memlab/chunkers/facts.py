"""LLM memory extraction with OMI's rules: a few durable facts per session.

Rules (seeds/omi-memory-extraction-qa.md): a session whose transcript is under
``min_chars`` characters is skipped without a call; the model is asked (template
``extract_facts``) for at most ``max_memories`` facts - preferences, schedules,
relationships, events, health, habits; no generic statements, small talk, temporary
information or facts already known - each with a category (OMI's ``interesting`` /
``system``) and the turns it comes from. The prompt numbers the turns 1..n; the model
may answer with those numbers or with real turn ids. The answer is then checked here:
empty facts are dropped, near-duplicates of facts already known (word-set Jaccard >=
``similarity``) are dropped, turn references not in the session are dropped and
counted, facts not grounded in the session are dropped (below), and at most
``max_memories`` facts are kept, in the model's order.

Grounding: a small model copies the prompt's worked example into its answer (measured
on LoCoMo with Qwen2.5-0.5B: 19 of 115 proposed facts were the example's "<name>'s
sister Lea works at the bakery"). A fact is kept only when at least ``grounding`` of its
content words (3+ letters, not stop words) occur in the session - its turns, speakers,
image captions and date - where a word matches on its first 5 letters ("attended" ~
"attending"). 0.5 dropped 16 of the 19 copies and none of the 96 other facts there;
``grounding: 0`` turns the check off. Grounding alone lets a copy through when the
session shares most of its words ("Gina starts a new job at the bakery on Monday" in a
session about Gina's new job: measured on LoCoMo conv-30 with the 0.5B), so a fact with
two or more words of the prompt's example answer that the session never says is dropped
as ``copied_example`` (the example is read from the rendered prompt, after "Example
answer:"; a template without one is not checked).

"Already known" means the facts this chunker extracted from earlier sessions of the
same conversation: pass the Conversation as ``context`` (sessions before this one in
``context.sessions`` count as earlier; its ``id`` keys the per-instance store). The
latest ``memory_context`` of them are shown to the model as "Previous memories"; all of
them are used for deduplication. Without a context, only duplicates within the session
are caught. Re-splitting a session gives the same result for the same model answer.

A fact whose turn ids are all invalid or missing is kept with every turn of the session
as its source (``metadata["unsourced"] = True``) when ``unsourced="session"``, or
dropped when ``unsourced="drop"``. A failed call or an unparseable answer yields no
units and a record in ``records`` with the error; it never raises.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from memlab.chunkers.base import MemoryUnit
from memlab.chunkers.common import make_unit, require
from memlab.chunkers.llm_support import LLM_BOUNDS, LLMChunkerMixin, too_short, transcript
from memlab.data.schema import Conversation, Session, Turn
from memlab.prompts import extract_json, list_schema, turn_numbers
from memlab.spec import Component

_CONTENT_KEYS = ("content", "memory", "fact", "text")
_ID_KEYS = ("turn_ids", "source_turn_ids", "turns", "turn_id", "ids", "source")
_LIST_KEYS = ("memories", "facts", "items")
_COUNTS = ("empty", "duplicate", "ungrounded", "copied_example", "dropped_turn_ids",
           "unsourced_dropped", "over_cap", "unsourced", "bad_category")
#: How many words of the prompt's example answer, none of them in the session, make a
#: fact a copy of the example.
_COPIED = 2
_STOP_WORDS = frozenset((
    "the", "and", "for", "with", "from", "that", "this", "was", "were", "are", "has", "have",
    "had", "her", "his", "their", "its", "she", "they", "them", "him", "who", "what", "when",
    "where", "which", "about", "into", "after", "before", "than", "then", "also", "not",
    "but", "very", "just", "will", "would", "can", "could", "been", "being", "our", "your",
    "you", "new",
))
_STEM = 5


@dataclass(frozen=True)
class _Fact:
    content: str
    category: str
    turns: tuple[Turn, ...]
    dropped_ids: tuple[str, ...]
    unsourced: bool
    category_given: str | None


class FactsChunker(LLMChunkerMixin, Component):
    """Facts extracted by an LLM with OMI's rules, each keeping its source turn ids."""

    nested: ClassVar[Mapping[str, str]] = {"llm": "llm"}
    bounds: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        **LLM_BOUNDS, "max_memories": {"low": 1, "integer": True},
        "similarity": {"low": 0, "low_open": True, "high": 1},
        "grounding": {"low": 0, "high": 1}, "memory_context": {"low": 0, "integer": True}}

    name = "facts"

    def __init__(
        self,
        llm: Any = None,
        max_memories: int = 4,
        min_chars: int = 25,
        categories: Sequence[str] = ("interesting", "system"),
        similarity: float = 0.8,
        grounding: float = 0.5,
        memory_context: int = 50,
        unsourced: str = "session",
        template: str = "extract_facts",
        template_dirs: Sequence[str] = (),
        max_tokens: int = 512,
        structured: bool = False,
    ) -> None:
        self.llm = llm
        self.max_memories = max_memories
        self.min_chars = min_chars
        self.categories = categories
        self.similarity = similarity
        self.grounding = grounding
        self.memory_context = memory_context
        self.unsourced = unsourced
        self.template = template
        self.template_dirs = template_dirs
        self.max_tokens = max_tokens
        self.structured = structured
        self.records: list[dict[str, Any]] = []
        self._known: dict[str | None, dict[str, list[str]]] = {}

    def split(self, session: Session, context: Conversation | None = None) -> list[MemoryUnit]:
        self.check_params()
        self._known.setdefault(_key(context), {})[session.id] = []  # until extracted below
        if not session.turns:
            return []
        if too_short(session, self.min_chars):
            self._record(session, context, None, None, outcome="skipped", units=0,
                         reason=f"transcript under {self.min_chars} characters")
            return []
        known = self._previous(session, context)
        shown = known[-self.memory_context :] if self.memory_context else []
        rendered = self._template().render(
            turns=transcript(session), existing_memories=shown,
            session_date=session.started_at, max_memories=self.max_memories,
            categories=list(self.categories))
        completion = self._generate(rendered)
        if completion.error is not None:
            self._record(session, context, rendered, completion, outcome="error", units=0,
                         error=f"llm error: {completion.error}")
            return []
        items = proposed_items(extract_json(completion.text))
        if items is None:
            self._record(session, context, rendered, completion, outcome="error", units=0,
                         error=f"unparseable answer: {completion.text[:300]!r}")
            return []
        facts, counts = self._select(items, session, known, _example_stems(rendered))
        self._known.setdefault(_key(context), {})[session.id] = [f.content for f in facts]
        meta = {**rendered.record(), "model": completion.model}
        units = [self._unit(session, n, fact, meta) for n, fact in enumerate(facts)]
        self._record(session, context, rendered, completion, outcome="ok", units=len(units),
                     proposed=len(items), **counts)
        return units

    def _generate(self, rendered: Any) -> Any:
        """The model's answer; with ``structured``, held to :meth:`schema`."""
        extra = {"json_schema": self.schema()} if self.structured else {}
        return self._model().generate(rendered.messages, max_tokens=self.max_tokens, **extra)

    def schema(self) -> dict[str, Any]:
        """The JSON schema of an answer (``structured``): at most ``max_memories`` memories,
        each a sentence, one of ``categories`` and the numbers of its turns."""
        return list_schema("memories", {"content": {"type": "string"},
                                        "category": {"enum": list(self.categories)},
                                        "turn_ids": turn_numbers(8)}, self.max_memories)

    def check_params(self) -> None:
        """Raise a ConfigError for an invalid parameter (config validation runs it)."""
        self.check_bounds(f"chunker '{self.name}'")
        require(bool(self.categories) and not isinstance(self.categories, str)
                and all(isinstance(c, str) and c for c in self.categories), self.name,
                f"categories must be a non-empty list of names, got {self.categories!r}")
        require(self.unsourced in ("session", "drop"), self.name,
                f"unsourced must be 'session' or 'drop', got {self.unsourced!r}")
        self.check_prompt()

    def _previous(self, session: Session, context: Conversation | None) -> list[str]:
        """Facts extracted earlier from sessions before ``session`` in the conversation."""
        if context is None:
            return []
        store = self._known.get(_key(context), {})
        facts: list[str] = []
        for earlier in context.sessions:
            if earlier.id == session.id:
                break
            facts.extend(store.get(earlier.id, ()))
        return facts

    def _select(self, items: list[Any], session: Session, known: list[str],
                example: frozenset[str] = frozenset()) -> tuple[list[_Fact], dict[str, int]]:
        counts: Counter[str] = Counter(dict.fromkeys(_COUNTS, 0))
        seen = [word_set(k) for k in known]
        vocabulary = session_vocabulary(session)
        leaked = example - vocabulary
        facts: list[_Fact] = []
        for item in items:
            content, category, raw_ids = _fields(item)
            if not content:
                counts["empty"] += 1
                continue
            if any(jaccard(word_set(content), s) >= self.similarity for s in seen):
                counts["duplicate"] += 1
                continue
            if grounded_share(content, vocabulary) < self.grounding:
                counts["ungrounded"] += 1
                continue
            if self.grounding and len(stems(content) & leaked) >= _COPIED:
                counts["copied_example"] += 1
                continue
            fact = self._fact(content, category, raw_ids, session)
            counts["dropped_turn_ids"] += len(fact.dropped_ids)
            if fact.unsourced and self.unsourced == "drop":
                counts["unsourced_dropped"] += 1
                continue
            if len(facts) >= self.max_memories:
                counts["over_cap"] += 1
                continue
            counts["unsourced"] += int(fact.unsourced)
            counts["bad_category"] += int(fact.category_given is not None)
            facts.append(fact)
            seen.append(word_set(content))
        return facts, dict(counts)

    def _fact(self, content: str, category: Any, raw_ids: list[str], session: Session) -> _Fact:
        resolved = {raw: resolve_turn(raw, session) for raw in raw_ids}
        valid = list({t.id: t for t in resolved.values() if t is not None}.values())
        dropped = tuple(raw for raw, turn in resolved.items() if turn is None)
        label = category.strip().lower() if isinstance(category, str) else ""
        ok = label in self.categories
        return _Fact(
            content=content, category=label if ok else self.categories[0],
            turns=tuple(sorted(valid, key=session.turns.index)) or session.turns,
            dropped_ids=dropped, unsourced=not valid,
            category_given=None if ok else str(category),
        )

    def _unit(self, session: Session, n: int, fact: _Fact, meta: dict[str, Any]) -> MemoryUnit:
        metadata = {"category": fact.category, "dropped_turn_ids": list(fact.dropped_ids),
                    "unsourced": fact.unsourced, **meta}
        if fact.category_given is not None:
            metadata["category_given"] = fact.category_given
        return make_unit(session, self.name, n, fact.turns, kind="fact", text=fact.content,
                         metadata=metadata)


def resolve_turn(raw: str, session: Session) -> Turn | None:
    """The turn a model's reference points at: a 1-based position as the prompt shows
    (``3``, ``"3"``, ``"#3"``), else a turn id (``"D1:3"``); None if neither."""
    number = raw.lstrip("#")
    if number.isdigit():
        n = int(number)
        return session.turns[n - 1] if 1 <= n <= len(session.turns) else None
    return next((t for t in session.turns if t.id == raw), None)


def _example_stems(rendered: Any) -> frozenset[str]:
    """The stems of the facts in the prompt's example answer (after "Example answer:" in
    a system message), or none."""
    for message in rendered.messages:
        _, marker, tail = message["content"].partition("Example answer:")
        if marker and message["role"] == "system":
            items = proposed_items(extract_json(tail)) or []
            return frozenset().union(*(stems(_fields(i)[0]) for i in items))
    return frozenset()


def _key(context: Conversation | None) -> str | None:
    return context.id if context is not None else None


def proposed_items(data: Any, list_keys: Sequence[str] = _LIST_KEYS,
                   item_keys: Sequence[str] = _CONTENT_KEYS) -> list[Any] | None:
    """The list of proposals in a parsed answer (a list, a list under one of
    ``list_keys``, or one proposal with a text under one of ``item_keys``), or None."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for key in list_keys:
            if isinstance(data.get(key), list):
                return data[key]
        if any(isinstance(data.get(k), str) for k in item_keys):
            return [data]
    return None


def _fields(item: Any) -> tuple[str, Any, list[str]]:
    """(content, category, turn ids) of one proposed fact, however the model wrote it."""
    if isinstance(item, str):
        return " ".join(item.split()), None, []
    if not isinstance(item, dict):
        return "", None, []
    content = next((item[k] for k in _CONTENT_KEYS if isinstance(item.get(k), str)), "")
    raw: Any = next((item[k] for k in _ID_KEYS if item.get(k) not in (None, "", [])), [])
    return " ".join(content.split()), item.get("category"), turn_refs(raw)


def turn_refs(raw: Any) -> list[str]:
    """A model's turn references as strings, from a list, a number or "1, 3"."""
    values = raw if isinstance(raw, list) else [raw]
    out: list[str] = []
    for value in values:
        parts = (p.strip().strip("[]()").strip() for p in str(value).split(","))
        out.extend(p for p in parts if p)
    return out


def content_words(text: str) -> list[str]:
    """Words of 3+ letters that are not stop words, case-folded."""
    return [w for w in re.findall(r"[^\W_]+", text.casefold())
            if len(w) >= 3 and w not in _STOP_WORDS]


def session_vocabulary(session: Session) -> frozenset[str]:
    """Word stems (first ``_STEM`` letters) of everything the model saw of the session."""
    date = session.started_at
    parts = [f"{date:%A %B %Y} {date.day}"]
    parts += [f"{t.speaker} {t.full_text}" for t in session.turns]
    return stems(" ".join(parts))


def stems(text: str) -> frozenset[str]:
    """The stems (first ``_STEM`` letters) of ``text``'s content words."""
    return frozenset(w[:_STEM] for w in content_words(text))


def grounded_share(content: str, vocabulary: frozenset[str]) -> float:
    """The share of ``content``'s content words whose stem occurs in ``vocabulary``."""
    words = content_words(content)
    if not words:
        return 1.0
    return sum(w[:_STEM] in vocabulary for w in words) / len(words)


def word_set(text: str) -> frozenset[str]:
    """Every word of ``text``, case-folded (for near-duplicate checks)."""
    return frozenset(re.findall(r"\w+", text.casefold()))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """Word-set Jaccard similarity (1.0 for two empty sets)."""
    return len(a & b) / len(a | b) if a or b else 1.0
