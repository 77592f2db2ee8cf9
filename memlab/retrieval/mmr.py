"""Maximal marginal relevance: relevant *and* mutually different units.

From the dense strategy's best ``candidates``, units are picked greedily by
``lambda_mult * cos(query, u) - (1 - lambda_mult) * max cos(u, already picked)``
(Carbonell & Goldstein 1998; ``lambda_mult`` as in LangChain: 1 is plain dense ranking,
0 is maximal diversity). Hits come in pick order; their ``score`` is the plain cosine
relevance, so the ``threshold`` (applied before picking) means what it means for
``dense``. Ties are broken by unit order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from memlab.chunkers.base import MemoryUnit
from memlab.data.schema import Probe
from memlab.embed.base import EmbedderSpec
from memlab.errors import check_choice, check_number
from memlab.retrieval.base import Hit
from memlab.retrieval.dense import INDEXES, DenseStrategy
from memlab.retrieval.ranking import DEFAULT_K, resolve_k
from memlab.spec import Component


def mmr_pick(relevance: np.ndarray, similarity: np.ndarray, keys: np.ndarray,
             k: int, lambda_mult: float) -> list[int]:
    """Greedy MMR order over candidates (indices into ``relevance``).

    Each step picks the free candidate of highest ``lambda_mult * relevance -
    (1 - lambda_mult) * penalty`` (ties: lowest key), where ``penalty`` is its highest
    similarity to an already picked one; arithmetic stays in the inputs' dtype.
    Candidates are visited in key order, so ``argmax`` (first maximum) breaks ties.
    """
    n = min(k, len(relevance))
    if n <= 0:
        return []
    order = np.argsort(keys, kind="stable")
    gain = lambda_mult * np.asarray(relevance)[order]
    sims = np.asarray(similarity)[np.ix_(order, order)]
    choice = int(gain.argmax())  # nothing picked yet: no penalty
    picked = [choice]
    penalty = sims[choice].copy()
    value = np.empty(len(gain), dtype=np.result_type(gain, penalty))
    blocked = np.zeros(len(gain), dtype=value.dtype)  # -inf once picked
    blocked[choice] = -np.inf
    for _ in range(n - 1):
        np.multiply(1.0 - lambda_mult, penalty, out=value)
        np.subtract(gain, value, out=value)
        value += blocked
        choice = int(value.argmax())
        picked.append(choice)
        blocked[choice] = -np.inf
        np.maximum(penalty, sims[choice], out=penalty)
    return order[picked].tolist()


class MmrStrategy(Component):
    """Dense candidates re-ordered by maximal marginal relevance (lambda_mult)."""

    nested: ClassVar[Mapping[str, str]] = {"embedder": "embedder"}
    param_attrs: ClassVar[Mapping[str, str]] = {"index": "index_kind"}

    def __init__(
        self,
        k: int | None = DEFAULT_K,
        threshold: float | None = None,
        lambda_mult: float = 0.5,
        candidates: int = 20,
        embedder: EmbedderSpec = "sentence-transformers",
        cache: bool | str = True,
        index: str = "exact",
        index_params: Mapping[str, Any] | None = None,
    ) -> None:
        self.k = k
        self.threshold = threshold
        self.lambda_mult = lambda_mult
        self.candidates = candidates
        self.embedder = embedder
        self.cache = cache
        self.index_kind = index
        self.index_params = index_params

    def check_params(self) -> None:
        """Raise a ConfigError for lambda_mult outside [0, 1], candidates below 1 or an
        unknown index kind (config validation runs it)."""
        check_number("mmr: lambda_mult", self.lambda_mult, low=0, high=1)
        check_number("mmr: candidates", self.candidates, low=1, integer=True)
        check_choice("dense index", self.index_kind, INDEXES)

    @cached_property
    def dense(self) -> DenseStrategy:
        self.check_params()
        return DenseStrategy(k=None, threshold=self.threshold, embedder=self.embedder,
                             cache=self.cache, index=self.index_kind,
                             index_params=self.index_params)

    def index(self, units: Sequence[MemoryUnit], vectors: np.ndarray | None = None) -> None:
        self.dense.index(units, vectors)

    def search(
        self,
        query: str,
        k: int | None = None,
        as_of: datetime | None = None,
        *,
        probe: Probe | None = None,
    ) -> list[Hit]:
        limit = resolve_k(k, self.k)
        pool = self.candidates if limit is None else max(self.candidates, limit)
        rows, relevance = self.dense.ranked(query, pool, as_of)
        if limit == 0 or not len(rows):
            return []
        vectors = self.dense.vectors_of(rows)
        keys = self.dense.table.order[rows]
        order = mmr_pick(relevance, vectors @ vectors.T, keys,
                         len(rows) if limit is None else limit, self.lambda_mult)
        units = self.dense.table.sorted_units
        picked_rows, scores = rows.tolist(), relevance.tolist()
        return [Hit(units[picked_rows[i]], scores[i]) for i in order]
