"""Retrieval strategies: index memory units, answer ``search(query, k, as_of)``.

Every strategy takes ``k`` (hits returned when the caller passes ``k=None``) and
``threshold`` (minimum score, on the strategy's own scale — see each module and the table
below), never returns a unit dated after ``as_of`` (filtered *before* taking the top k),
and breaks score ties by unit order.

=============  ===========================================  ==========================
name           score                                        threshold 0.5 means
=============  ===========================================  ==========================
bm25           raw BM25 (>= 0, unbounded)                   a weak keyword match
dense          cosine similarity [-1, 1]                    the Letta seed's cut-off
hybrid         rrf: sum 1/(60+rank) (<= 0.033);             rrf: nothing passes;
               weighted: [0, 1] (zscore: >= 0, unbounded)   weighted: half-way
recency        base score x 0.5 ** (age / half-life)        decayed cosine >= 0.5
mmr            cosine of each picked unit                   as dense
full_context   1.0 for every unit                           no effect (only > 1 cuts)
none           (no hits)                                    —
oracle         1.0 for every evidence unit                  no effect (only > 1 cuts)
budget         its best hit's base score (packing order)    base's scale, on spans
hierarchical   1/(rrf_k+rank) + w x session rrf             rrf: nothing passes
time_aware     1/(rrf_k+rank) (+ time_weight in the span)   rrf: nothing passes
keys           the base's score on the key                  as the base
llm_rerank     1 + P(yes) for the top_n, 1/(1+rank) after   1.5: P(yes) >= 0.5
multigrain     (1-w) x base' + w x best turn' (min-max)     half-way on both
cross_encoder  1 + sigmoid(logit) for the top_n, as above   1.5: sigmoid >= 0.5
query_rewrite  sum w/(rrf_k+rank) over question + rewrites  rrf: nothing passes
prf            (1-w) x base' + w x feedback cos' (min-max)  half-way on both
=============  ===========================================  ==========================

``budget``, ``hierarchical``, ``time_aware``, ``keys``, ``llm_rerank``, ``multigrain``,
``cross_encoder``, ``query_rewrite`` and ``prf`` wrap a ``base`` strategy (any
spec, nested wrappers included): ``{name: budget, params: {base: {name: time_aware,
params: {base: bm25}}}}``. ``budget`` is the one strategy whose hits may be new units
(spans of indexed turns).
"""

from __future__ import annotations

from typing import Any

from memlab.registry import Registry
from memlab.retrieval.base import Hit, Retriever

registry: Registry[Retriever] = Registry("retrieval strategy")
registry.register("bm25", "memlab.retrieval.bm25:Bm25Strategy")
registry.register("dense", "memlab.retrieval.dense:DenseStrategy")
registry.register("hybrid", "memlab.retrieval.hybrid:HybridStrategy")
registry.register("recency", "memlab.retrieval.recency:RecencyStrategy")
registry.register("mmr", "memlab.retrieval.mmr:MmrStrategy")
registry.register("full_context", "memlab.retrieval.full_context:FullContextStrategy")
registry.register("none", "memlab.retrieval.none:NoneStrategy")
registry.register("oracle", "memlab.retrieval.oracle:OracleStrategy")
registry.register("budget", "memlab.retrieval.budget:BudgetStrategy")
registry.register("hierarchical", "memlab.retrieval.hierarchical:HierarchicalStrategy")
registry.register("time_aware", "memlab.retrieval.time_aware:TimeAwareStrategy")
registry.register("keys", "memlab.retrieval.keys:KeyStrategy")
registry.register("llm_rerank", "memlab.retrieval.rerank:LlmRerankStrategy")
registry.register("multigrain", "memlab.retrieval.multigrain:MultiGrainStrategy")
registry.register("cross_encoder", "memlab.retrieval.cross_encoder:CrossEncoderStrategy")
registry.register("query_rewrite", "memlab.retrieval.query_rewrite:QueryRewriteStrategy")
registry.register("prf", "memlab.retrieval.feedback:FeedbackStrategy")
registry.register("speaker_prior", "memlab.retrieval.speaker_prior:SpeakerPriorStrategy")


def build_strategy(spec: Any) -> Retriever:
    """A strategy from its registry name, a ``{name, params}`` spec or an instance."""
    from memlab.spec import build

    strategy: Retriever = build("retrieval", spec)
    return strategy


__all__ = ["Hit", "Retriever", "build_strategy", "registry"]
