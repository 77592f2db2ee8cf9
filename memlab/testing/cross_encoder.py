"""A real cross-encoder built offline, for tests and for users without network access.

``minilm_cross_encoder`` puts a one-logit classification head (seeded) on the bundled
all-MiniLM-L6-v2 encoder, optionally trains it for one pass over (question, text,
label) pairs, and saves it as a folder that ``sentence_transformers.CrossEncoder`` (and
so the ``cross_encoder`` strategy) loads. ``evidence_pairs`` makes such pairs from a
dataset's probes: each evidence turn is a positive, random other turns of the same
conversation are negatives. Deterministic for a seed on one thread count.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from pathlib import Path

from memlab.data.schema import Conversation
from memlab.eval.train_reranker import Pair


def evidence_pairs(conversations: Iterable[Conversation], negatives: int = 1,
                   seed: int = 0) -> list[Pair]:
    """(question, turn text, label) pairs: evidence turns 1.0, ``negatives`` random
    non-evidence turns of the same conversation per evidence turn 0.0."""
    rng = random.Random(seed)
    pairs: list[Pair] = []
    for conversation in conversations:
        turns = {t.id: f"{t.speaker}: {t.text}" for t in conversation.turns()}
        ids = sorted(turns)
        for probe in conversation.probes:
            evidence = [i for i in probe.evidence_turn_ids if i in turns]
            for turn_id in evidence:
                pairs.append((probe.question, turns[turn_id], 1.0))
                others = [i for i in rng.sample(ids, negatives + len(evidence))
                          if i not in evidence][:negatives]
                pairs += [(probe.question, turns[i], 0.0) for i in others]
    return pairs


def minilm_cross_encoder(folder: str | Path, pairs: Sequence[Pair] = (), *,
                         batch_size: int = 16, learning_rate: float = 5e-5,
                         max_length: int = 128, seed: int = 0) -> Path:
    """Save a MiniLM cross-encoder (trained one pass over ``pairs`` if any) in ``folder``."""
    from memlab.eval.train_reranker import train_cross_encoder

    return train_cross_encoder(folder, pairs, epochs=1, batch_size=batch_size,
                               learning_rate=learning_rate, max_length=max_length, seed=seed)
