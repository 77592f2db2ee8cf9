"""Planted rankings over a real dataset: for scoring tests and the metrics benchmark.

Per probe, ``size`` pseudo-random one-turn units of its conversation with the probe's
evidence turns planted near the top (evidence i lands at rank ~3i + U(0, 9)), so every
metric sees realistic hits and misses. Deterministic for a seed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from memlab.chunkers.base import MemoryUnit
from memlab.data.schema import Dataset, Probe
from memlab.retrieval.base import Hit

if TYPE_CHECKING:
    from memlab.metrics.retrieval import CorpusIndex, Coverage


@dataclass(frozen=True)
class PlantedRanking:
    """One probe, its ranked units, every unit of its conversation, turn -> session."""

    probe: Probe
    ranked: list[MemoryUnit]
    corpus: list[MemoryUnit]
    turn_sessions: dict[str, str]


def planted_rankings(dataset: Dataset, size: int = 50, seed: int = 0) -> list[PlantedRanking]:
    rng = random.Random(seed)
    out = []
    for conv in dataset:
        units = [MemoryUnit(t.id, t.text, "turn", (t.id,), t.session_id, t.at)
                 for t in conv.turns()]
        by_id = {u.id: u for u in units}
        turn_sessions = {t.id: t.session_id for t in conv.turns()}
        for probe in conv.probes:
            ranked = rng.sample(units, size)
            for i, turn in enumerate(probe.evidence_turn_ids):
                ranked[min(3 * i + rng.randint(0, 9), size - 1)] = by_id[turn]
            out.append(PlantedRanking(probe, ranked, units, turn_sessions))
    return out


@dataclass(frozen=True)
class IndexedRanking:
    """A planted ranking as the harness scores it: coverages, the corpus index, each
    ranked unit's corpus position (None when a unit is ranked twice) and token counts."""

    item: PlantedRanking
    ranked: list[Coverage]
    corpus: CorpusIndex
    positions: list[int] | None
    tokens: list[int]


def indexed_rankings(work: Sequence[PlantedRanking]) -> list[IndexedRanking]:
    """Each ranking's coverages and corpus positions, the index built once per corpus."""
    from memlab.metrics.budget import text_tokens
    from memlab.metrics.retrieval import CorpusIndex, coverage

    built: dict[int, tuple[CorpusIndex, dict[str, int], list[Coverage]]] = {}
    out = []
    for item in work:
        if id(item.corpus) not in built:
            covers = [coverage(u, item.turn_sessions) for u in item.corpus]
            built[id(item.corpus)] = (CorpusIndex(covers),
                                      {u.id: n for n, u in enumerate(item.corpus)}, covers)
        corpus, position, covers = built[id(item.corpus)]
        positions = [position[u.id] for u in item.ranked]
        unique = len(set(positions)) == len(positions)
        out.append(IndexedRanking(item, [covers[n] for n in positions], corpus,
                                  positions if unique else None,
                                  [text_tokens(u.text) for u in item.ranked]))
    return out


class FixedRanking:
    """A base strategy returning fixed units in a fixed order (the visible, indexed ones):
    lets wrapper tests choose the base ranking exactly."""

    def __init__(self, order: Sequence[str]) -> None:
        self.order = list(order)
        self.units: dict[str, MemoryUnit] = {}

    def params(self) -> dict[str, Any]:
        return {"order": self.order}

    def index(self, units: Sequence[MemoryUnit]) -> None:
        self.units.update({u.id: u for u in units})

    def search(self, query: str, k: int | None, as_of: datetime | None = None, *,
               probe: Probe | None = None) -> list[Hit]:
        hits = [Hit(self.units[i], 1.0 / (n + 1)) for n, i in enumerate(self.order)
                if i in self.units and (as_of is None or self.units[i].at <= as_of)]
        return hits if k is None else hits[:k]


def window_replay_items(conversation: Any, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """A LoCoMo conversation replayed with window units, ``spec`` as the retrieval strategy,
    k 10 and depth 100, without MLflow: the items the exact-recall tests read."""
    from memlab.eval.config import load_config
    from memlab.eval.replay import replay_conversation

    config = load_config({"name": "t", "dataset": {"name": "locomo"},
                          "chunker": {"name": "window"}, "retrieval": spec, "k": 10,
                          "depth": 100, "tracking": {"mlflow": False}})
    return replay_conversation(config, conversation, conversation.probes).items


def assert_exact_budget_recall(conversation: Any, spec: dict[str, Any],
                               expected: float) -> None:
    """The strategy's summed ``turn.budget_evidence_recall@1000`` over the conversation's
    150 scored probes is ``expected``; a second replay gives the same hits and scores; no
    hit was said after its question was asked."""
    items = window_replay_items(conversation, spec)
    metric = "turn.budget_evidence_recall@1000"
    values = [r["metrics"][metric] for r in items if r["metrics"].get(metric) is not None]
    assert not [r["error"] for r in items if r.get("error")]
    assert len(values) == 150
    assert math.isclose(sum(values), expected, rel_tol=0.0, abs_tol=1e-9), sum(values)
    again = window_replay_items(conversation, spec)  # deterministic: same hits, same scores
    assert [(r["retrieved"], r["metrics"]) for r in again] == [
        (r["retrieved"], r["metrics"]) for r in items]
    for row in items:  # nothing retrieved was said after the question was asked
        assert all(hit["at"] <= row["asked_at"] for hit in row["retrieved"])
