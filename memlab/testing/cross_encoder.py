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

#: A training pair: question, text, label (1.0 relevant, 0.0 not).
Pair = tuple[str, str, float]


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
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from memlab.embed.sentence_transformer import bundled_model_dir

    torch.manual_seed(seed)
    source = bundled_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=1, local_files_only=True)
    if pairs:
        _train(model, tokenizer, list(pairs), batch_size, learning_rate, max_length, seed)
    out = Path(folder)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _train(model: object, tokenizer: object, pairs: list[Pair], batch_size: int,
           learning_rate: float, max_length: int, seed: int) -> None:
    """One shuffled pass of binary cross-entropy on the pairs' logits."""
    import torch

    rng = random.Random(seed)
    rng.shuffle(pairs)
    net: torch.nn.Module = model  # type: ignore[assignment]
    optimizer = torch.optim.AdamW(net.parameters(), lr=learning_rate)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    net.train()
    for start in range(0, len(pairs), batch_size):
        batch = pairs[start:start + batch_size]
        inputs = tokenizer([q for q, _, _ in batch], [t for _, t, _ in batch],  # type: ignore[operator]
                           padding=True, truncation=True, max_length=max_length,
                           return_tensors="pt")
        labels = torch.tensor([y for _, _, y in batch], dtype=torch.float32)
        loss = loss_fn(net(**inputs).logits.squeeze(-1), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
