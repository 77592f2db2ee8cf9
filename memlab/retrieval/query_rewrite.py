"""Query rewriting: the base strategy searched with LLM-written queries, fused with the
original question by reciprocal rank fusion.

``mode``:

- ``multi_query`` — the LLM rewrites the question into ``n_queries`` search queries
  (template ``rewrite_queries``, one per line; RAG-Fusion / multi-query retrieval).
- ``hyde`` — the LLM writes a hypothetical conversation turn that would answer it
  (template ``hypothetical_answer``; HyDE, Gao et al. 2023), searched as one query.

The base is searched with the question and with every rewrite (``candidates`` hits each)
and a unit scores ``sum_q w_q / (rrf_k + rank_q)``, ``w`` = ``original_weight`` for the
question and 1 for each rewrite; ties keep the order units were first seen (the
question's ranking first). The prompt sees only the question and the time it is asked
(``as_of``, the probe's ``asked_at``), never the memory, so nothing later leaks in.

Each rewrite is one LLM call at search time, through memlab's on-disk response cache
(``cache``: ``readwrite``, ``read`` or ``off``), at temperature 0. Every call is
recorded in ``records`` (prompt/completion tokens, seconds, cache hit, error) and handed
to the harness by ``take_calls``, which puts a probe's calls in its item
(``search_llm``, ``tokens.search``). A failed call leaves the question's own ranking.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from memlab.data.schema import Probe
from memlab.errors import check_choice
from memlab.llm.calls import CallRecords
from memlab.retrieval.base import Hit
from memlab.retrieval.ranking import resolve_k, select_top
from memlab.retrieval.wrap import CANDIDATES, RRF_K, BaseSpec, Wrapper
from memlab.spec import Component

#: Each mode and the template it renders unless ``template`` names another.
TEMPLATES = {"multi_query": "rewrite_queries", "hyde": "hypothetical_answer"}
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)]|query\s*\d*\s*:)\s*", re.IGNORECASE)


def query_lines(text: str, question: str, n: int) -> list[str]:
    """Up to ``n`` distinct queries from the LLM's lines (bullets, numbers and quotes
    stripped; the question itself and empty lines dropped)."""
    seen = {question.strip().lower()}
    out: list[str] = []
    for line in text.splitlines():
        query = _BULLET.sub("", line).strip().strip('"').strip()
        if query and query.lower() not in seen:
            seen.add(query.lower())
            out.append(query)
    return out[:n]


def fuse(rankings: Sequence[Sequence[Hit]], weights: Sequence[float], rrf_k: int
         ) -> tuple[list[Hit], np.ndarray]:
    """Reciprocal rank fusion: the units of all rankings (first-seen order) and scores."""
    first: dict[str, Hit] = {}
    scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, hit in enumerate(ranking, start=1):
            first.setdefault(hit.unit.id, hit)
            scores[hit.unit.id] = scores.get(hit.unit.id, 0.0) + weight / (rrf_k + rank)
    return list(first.values()), np.asarray([scores[i] for i in first], dtype=np.float64)


class QueryRewriteStrategy(CallRecords, Wrapper, Component):
    """A base strategy searched with the question and its LLM rewrites, fused by rrf."""

    nested: ClassVar[Mapping[str, str]] = {"base": "retrieval", "llm": "llm"}
    bounds: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "n_queries": {"low": 1, "integer": True}, "max_tokens": {"low": 1, "integer": True},
        "candidates": CANDIDATES, "original_weight": {"low": 0}, "rrf_k": RRF_K}

    def __init__(
        self,
        k: int | None = 10,
        threshold: float | None = None,
        base: BaseSpec = "hybrid",
        mode: str = "multi_query",
        n_queries: int = 3,
        llm: Any = None,
        template: str | None = None,
        max_tokens: int = 96,
        candidates: int = 100,
        original_weight: float = 1.0,
        rrf_k: int = 60,
        cache: str = "readwrite",
    ) -> None:
        self.k = k
        self.threshold = threshold
        self.base = base
        self.mode = mode
        self.n_queries = n_queries
        self.llm = llm
        self.template = template
        self.max_tokens = max_tokens
        self.candidates = candidates
        self.original_weight = original_weight
        self.rrf_k = rrf_k
        self.cache = cache
        self.records: list[dict[str, Any]] = []  # one per LLM call: tokens, seconds, error

    def check_params(self) -> None:
        from memlab.prompts import check_template

        self.check_bounds("query_rewrite")
        check_choice("query_rewrite: mode", self.mode, TEMPLATES)
        if self.template is not None:
            check_template("query_rewrite: template", self.template)

    @cached_property
    def model(self) -> Any:
        from memlab.chunkers.llm_support import resolve_llm
        from memlab.llm.cache import CachedLLM

        return CachedLLM(resolve_llm(self.llm, "query_rewrite"),
                         mode=self.cache)  # type: ignore[arg-type]

    def rewrites(self, question: str, asked_at: datetime | None) -> list[str]:
        """The LLM's queries for ``question`` as asked at ``asked_at`` (one call)."""
        from memlab.prompts import get_template
        from memlab.prompts.parsing import strip_thinking

        name = self.template or TEMPLATES[self.mode]
        n = self.n_queries
        rendered = get_template(name).render(question=question, asked_at=asked_at, n=n)
        completion = self.model.generate(rendered.messages, max_tokens=self.max_tokens,
                                         temperature=0.0)
        self.records.append({"query": question, "template": name,
                             "prompt_tokens": completion.prompt_tokens,
                             "completion_tokens": completion.completion_tokens,
                             "seconds": completion.seconds, "cached": completion.cached,
                             "error": completion.error})
        if not completion.ok:
            return []
        text = strip_thinking(completion.text)
        if self.mode == "hyde":
            return [" ".join(text.split())] if text.strip() else []
        return query_lines(text, question, n)

    def search(self, query: str, k: int | None = None, as_of: datetime | None = None, *,
               probe: Probe | None = None) -> list[Hit]:
        limit = resolve_k(k, self.k)
        if limit == 0:
            return []
        size = self.candidates if limit is None else max(self.candidates, limit)
        base = self.base_strategy
        asked = probe.asked_at if probe is not None and as_of is None else as_of
        queries = [query, *self.rewrites(query, asked)]
        rankings = [base.search(q, size, as_of, probe=probe) for q in queries]
        weights = [self.original_weight] + [1.0] * (len(queries) - 1)
        hits, scores = fuse(rankings, weights, self.rrf_k)
        picked = select_top(scores, np.arange(len(hits)), limit, self.threshold)
        values = scores.tolist()
        return [Hit(hits[i].unit, values[i]) for i in picked.tolist()]

    def take_calls(self) -> list[dict[str, Any]]:
        """The rewriting calls since the last take, then the base's."""
        return CallRecords.take_calls(self) + Wrapper.take_calls(self)
