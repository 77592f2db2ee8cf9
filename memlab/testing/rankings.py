"""Planted rankings over a real dataset: for scoring tests and the metrics benchmark.

Per probe, ``size`` pseudo-random one-turn units of its conversation with the probe's
evidence turns planted near the top (evidence i lands at rank ~3i + U(0, 9)), so every
metric sees realistic hits and misses. Deterministic for a seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from memlab.chunkers.base import MemoryUnit
from memlab.data.schema import Dataset, Probe


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
