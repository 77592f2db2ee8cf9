"""Metrics: answer scorers (by name), retrieval and budget recall, statistics.

Answer scorers are registered lazily by name (``registry.build("locomo_f1")``); each has
``score(prediction, gold, probe) -> float | None`` (None: not applicable, counted as
excluded). Retrieval metrics live in :mod:`memlab.metrics.retrieval` and
:mod:`memlab.metrics.budget`, statistics in :mod:`memlab.metrics.stats`, the LLM-judge
seam in :mod:`memlab.metrics.judge`. Every number is reported under the name of the
metric that produced it (``locomo_f1``, ``turn.recall_any@5``,
``turn.budget_recall_any@500``); :func:`mlflow_key` spells such names for MLflow.
"""

from __future__ import annotations

from memlab.metrics.base import Scorer, mlflow_key
from memlab.registry import Registry

#: Answer scorers by name.
registry: Registry[Scorer] = Registry("scorer")
registry.register("locomo_f1", "memlab.metrics.locomo:LocomoF1")
registry.register("exact_match", "memlab.metrics.answer:ExactMatch")
registry.register("token_f1_set", "memlab.metrics.answer:TokenF1Set")
registry.register("bleu1", "memlab.metrics.answer:Bleu1")
registry.register("abstention", "memlab.metrics.answer:Abstention")
registry.register("abstention_decision", "memlab.metrics.answer:AbstentionDecision")

__all__ = ["Scorer", "mlflow_key", "registry"]
