"""Nested base strategies: the one place wrapper strategies turn a ``base`` into a strategy.

Wrappers (``budget``, ``sessions``, ``timed``, ``keys``) re-rank, filter or re-package the
hits of a *base* strategy given as a registry name, a ``{name, params}`` spec (nested
wrappers included, e.g. ``{name: budget, params: {base: {name: timed, params: {base:
hybrid}}}}``) or an already built instance (so several wrappers can share one index).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

import numpy as np

from memlab.chunkers.base import MemoryUnit
from memlab.retrieval.base import Hit, Retriever
from memlab.retrieval.ranking import resolve_k

#: What a wrapper's ``base`` parameter accepts.
BaseSpec = str | Mapping[str, Any] | Retriever

#: Bounds of the parameters many strategies share (:attr:`memlab.spec.Component.bounds`):
#: how many base hits they re-rank and the reciprocal-rank constant they fuse with.
CANDIDATES = {"low": 1, "integer": True}
RRF_K = {"low": 0}
WEIGHT = {"low": 0, "high": 1}


def build_base(base: BaseSpec) -> Retriever:
    """The base strategy of a wrapper: built from its spec, or the instance given."""
    from memlab.retrieval import build_strategy

    return build_strategy(base)


class Wrapper:
    """Mixin for strategies over a ``base``: hands on the LLM calls the base made while
    indexing (``take_calls``, e.g. keys built by an LLM), so the harness accounts them."""

    base: BaseSpec
    k: int | None

    @cached_property
    def base_strategy(self) -> Retriever:
        """The base, built on first use, after the wrapper's own parameters are checked."""
        self.check_params()
        return build_base(self.base)

    def check_params(self) -> None:
        """Raise a ConfigError for an invalid parameter (wrappers with choices override)."""

    def index(self, units: Sequence[MemoryUnit], vectors: np.ndarray | None = None) -> None:
        index_base(self.base_strategy, units, vectors)

    def candidates_for(self, query: str, k: int | None, as_of: Any, probe: Any,
                       pool: int) -> tuple[int | None, list[Hit]]:
        """``(limit, the base's hits)`` for a search of ``k`` hits (the strategy's ``k``
        when None): at least ``pool`` candidates, none when the limit is 0."""
        limit = resolve_k(k, self.k)
        if limit == 0:
            return 0, []
        size = pool if limit is None else max(pool, limit)
        return limit, self.base_strategy.search(query, size, as_of, probe=probe)

    def prepare_index(self) -> None:
        """Build the base's search indexes now (see :func:`prepare_index`)."""
        prepare_index(self.base_strategy)

    def warm_queries(self, queries: Sequence[str]) -> bool:
        """Embed the base's queries ahead (see :func:`warm_queries`)."""
        return warm_queries(self.base_strategy, queries)

    def take_calls(self) -> list[dict[str, Any]]:
        from memlab.memory.base import Accounted

        base = self.base_strategy
        return base.take_calls() if isinstance(base, Accounted) else []


def prepare_index(strategy: object) -> None:
    """Build ``strategy``'s lazily built search indexes now (BM25's engine, its stemmer),
    if it has any: the harness calls this after indexing, so no search pays for it."""
    prepare = getattr(strategy, "prepare_index", None)
    if callable(prepare):
        prepare()


def warm_queries(strategy: object, queries: Sequence[str]) -> bool:
    """Let ``strategy`` embed ``queries`` now, in batches, into its embedding cache, if it
    embeds queries: a harness that knows its questions up front calls this once per
    conversation, so each search reads its query vector instead of encoding one text at a
    time (MiniLM: ~2 ms a question in a batch against ~4 ms alone here). Only speed
    changes: a query vector is the same whether it was embedded ahead or at its search.
    True when some part of ``strategy`` embeds queries through a cache."""
    warm = getattr(strategy, "warm_queries", None)
    return bool(warm(queries)) if callable(warm) else False


def index_base(base: Retriever, units: Sequence[MemoryUnit],
               vectors: np.ndarray | None = None) -> None:
    """Index ``units`` in ``base``, passing precomputed ``vectors`` only when given."""
    index: Any = base.index
    if vectors is None:
        index(units)
    else:
        index(units, vectors)
