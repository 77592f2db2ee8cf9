"""LLM reranking: the base strategy's best ``top_n`` units re-ordered by an LLM's relevance.

Pointwise: each (question, unit) pair is rendered with the ``rerank_yesno`` template and
the model's probability of answering "yes" is the unit's relevance. With the embedded
llama.cpp backend that probability is read from the logits of the first answer token
(softmax over the "yes"/"Yes"/"no"/"No" tokens; one token generated, the prompt prefix
reused from llama.cpp's KV cache). Backends without logits (Ollama, OpenAI-compatible,
the mock) fall back to their generated answer: 1.0 if it starts with "yes", else 0.0.
Every probability is cached on disk (``$MEMLAB_CACHE_DIR/rerank.sqlite``), keyed by the
model's identity, the template and the exact messages, with the call's token counts, so a
rerun costs no LLM call; ``records`` keeps one row per pair scored (prompt/completion
tokens, seconds, cache hit, error) and ``take_calls`` hands them to the harness, which
puts a probe's calls in its item (``search_llm``, ``tokens.search``).

Scores: the reranked units ``1 + P(yes)`` (in [1, 2]), the rest of the base ranking
``1 / (1 + rank)`` below them, so hits stay best-first. Ties keep base order.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Mapping
from datetime import datetime
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from memlab.cache import cache_root
from memlab.data.schema import Probe
from memlab.errors import check_number
from memlab.llm.calls import CallRecords
from memlab.retrieval.base import Hit
from memlab.retrieval.ranking import select_top
from memlab.retrieval.wrap import BaseSpec, Wrapper
from memlab.spec import Component


class LlmRerankStrategy(CallRecords, Wrapper, Component):
    """A base ranking whose best ``top_n`` are re-ordered by an LLM's P(yes)."""

    nested: ClassVar[Mapping[str, str]] = {"base": "retrieval", "llm": "llm"}

    def __init__(
        self,
        k: int | None = 10,
        threshold: float | None = None,
        base: BaseSpec = "hybrid",
        top_n: int = 20,
        llm: Any = None,
        template: str = "rerank_yesno",
        cache: bool = True,
    ) -> None:
        self.k = k
        self.threshold = threshold
        self.base = base
        self.top_n = top_n
        self.llm = llm
        self.template = template
        self.cache = cache
        self.records: list[dict[str, Any]] = []  # one per pair scored: tokens, seconds

    def check_params(self) -> None:
        """Raise a ConfigError for top_n below 1 or an unknown template (config validation
        runs it)."""
        from memlab.prompts import check_template

        check_number("llm_rerank: top_n", self.top_n, low=1, integer=True)
        check_template("llm_rerank: template", self.template)

    @cached_property
    def model(self) -> Any:
        from memlab.chunkers.llm_support import resolve_llm

        return resolve_llm(self.llm, "llm_rerank")

    def search(self, query: str, k: int | None = None, as_of: datetime | None = None, *,
               probe: Probe | None = None) -> list[Hit]:
        limit, hits = self.candidates_for(query, k, as_of, probe, self.top_n)
        scores = np.asarray([1.0 + self.relevance(query, h.unit.text) if i < self.top_n
                             else 1.0 / (1 + i) for i, h in enumerate(hits)])
        picked = select_top(scores, np.arange(len(hits)), limit, self.threshold)
        values = scores.tolist()
        return [Hit(hits[i].unit, values[i]) for i in picked.tolist()]

    def relevance(self, question: str, text: str) -> float:
        """P(yes) that ``text`` helps answer ``question`` (cached)."""
        from memlab.prompts import get_template

        messages = get_template(self.template).render(question=question, memory=text).messages
        key = self._key(messages)
        start = time.perf_counter()
        stored = self._store.get(key) if self.cache else None
        cached = stored is not None
        if stored is None:
            stored = yes_probability(self.model, messages)
            if self.cache:
                self._store.put(key, stored)
        p, prompt_tokens, completion_tokens = stored
        self.records.append({"prompt_tokens": prompt_tokens,
                             "completion_tokens": completion_tokens, "cached": cached,
                             "seconds": time.perf_counter() - start, "error": None})
        return p

    def take_calls(self) -> list[dict[str, Any]]:
        """The pairs scored since the last take, then the base's calls."""
        return CallRecords.take_calls(self) + Wrapper.take_calls(self)

    def _key(self, messages: list[dict[str, str]]) -> str:
        identity = getattr(self.model, "cache_identity", None)
        who = identity() if callable(identity) else {"params": self.model.params()}
        material = json.dumps([who, self.template, messages], sort_keys=True, default=str)
        return hashlib.sha256(material.encode()).hexdigest()

    @cached_property
    def _store(self) -> _Scores:
        return _Scores()


#: A pair's score: P(yes), prompt tokens, completion tokens.
Scored = tuple[float, int, int]


def yes_probability(model: Any, messages: list[dict[str, str]]) -> Scored:
    """P(yes) of the first answer token (llama.cpp), else 1/0 from the generated text;
    with the call's prompt and completion token counts."""
    session = getattr(model, "session", None)  # llama.cpp: the logits themselves
    if not callable(session):
        done = model.generate(messages, max_tokens=2, temperature=0.0)
        p = 1.0 if done.text.strip().lower().startswith("yes") else 0.0
        return p, int(done.prompt_tokens or 0), int(done.completion_tokens or 0)
    from llama_cpp import LogitsProcessorList

    seen: list[np.ndarray] = []

    def grab(input_ids: Any, scores: Any) -> Any:
        if not seen:
            seen.append(np.array(scores, dtype=np.float64))
        return scores

    with session() as (llama, _, _):  # (the model's lock and the CPU turn held)
        out = llama.create_chat_completion(messages=messages, max_tokens=1, temperature=0.0,
                                           logits_processor=LogitsProcessorList([grab]))
        ids = {word: llama.tokenize(word.encode(), add_bos=False, special=False)[0]
               for word in ("yes", "Yes", "no", "No")}
    logits = seen[0]
    picked = np.asarray([logits[ids[w]] for w in ("yes", "Yes", "no", "No")])
    odds = np.exp(picked - picked.max())
    usage = out.get("usage") or {}
    return (float(odds[:2].sum() / odds.sum()), int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0))


class _Scores:
    """An on-disk key -> (probability, tokens) table (sqlite), read and written per call;
    tables written before tokens were kept gain the columns (their rows count 0 tokens)."""

    def __init__(self) -> None:
        path = cache_root() / "rerank.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, check_same_thread=False)
        with self.db:
            self.db.execute("CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, p REAL)")
            columns = {row[1] for row in self.db.execute("PRAGMA table_info(scores)")}
            for column in ("prompt_tokens", "completion_tokens"):
                if column not in columns:
                    self.db.execute(f"ALTER TABLE scores ADD COLUMN {column} INTEGER")

    def get(self, key: str) -> Scored | None:
        row = self.db.execute("SELECT p, prompt_tokens, completion_tokens FROM scores "
                              "WHERE key = ?", (key,)).fetchone()
        return None if row is None else (float(row[0]), int(row[1] or 0), int(row[2] or 0))

    def put(self, key: str, value: Scored) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO scores (key, p, prompt_tokens, "
                            "completion_tokens) VALUES (?, ?, ?, ?)", (key, *value))
