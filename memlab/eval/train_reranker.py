"""Train the cross-encoder a ``cross_encoder`` case reads, on the conversations it does not score.

``python -m memlab.eval train-reranker CONFIG --only LABEL`` takes one case of CONFIG
whose retrieval is ``cross_encoder`` and whose probes are one part of a split
(``dataset.probes.split: {part: test, seed: 0, dev_fraction: 0.5}``), and trains on the
*other* part, so no probe the case scores was seen in training:

- each conversation of that part is ingested into the case's memory with the reranker's
  ``base`` as its retrieval; for each of its probes with evidence turns, every unit that
  holds an evidence turn is a positive, and the base's best ``negatives`` units among its
  ``top_n`` that hold none and lie in no evidence session are negatives (hard negatives:
  what the reranker has to push down);
- each unit is shown as the case shows it (``passage``, ``max_words``, ``embedder``), so
  training and scoring read the same text;
- a one-logit head on the bundled all-MiniLM-L6-v2 encoder is trained ``epochs`` passes
  (binary cross-entropy, AdamW, seeded) and saved where the case's ``model`` points, with
  ``memlab-reranker.json`` beside it: the case, the split, the conversations and pairs
  trained on, the settings, the seconds, memlab's git commit.

Deterministic for a seed on one thread count. Its cost is printed and kept in the manifest.
A killed training started again with the same command goes on from its last checkpoint
(``memlab-checkpoint.pt`` in the output folder, every 10 batches; see
:mod:`memlab.eval.checkpoint`).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memlab.errors import ConfigError
from memlab.eval.checkpoint import Checkpoint, training_key

#: A training pair: question, text, label (1.0 relevant, 0.0 not).
Pair = tuple[str, str, float]
MANIFEST = "memlab-reranker.json"


@dataclass
class TrainingSet:
    """Pairs mined from one part of a split, and what they came from."""

    pairs: list[Pair] = field(default_factory=list)
    conversations: list[str] = field(default_factory=list)
    probes: int = 0

    def count(self, label: float) -> int:
        return sum(1 for _, _, y in self.pairs if y == label)


@dataclass(frozen=True)
class Example:
    """One probe's question, the texts of the units holding its evidence turns, and the
    base's best-ranked units that hold none and lie in no evidence session."""

    question: str
    positives: list[str]
    negatives: list[str]


@dataclass
class Mined:
    """Examples mined from some conversations (those with a probe with evidence turns)."""

    examples: list[Example] = field(default_factory=list)
    conversations: list[str] = field(default_factory=list)


def reranker_case(config: str | Path, label: str | None,
                  overrides: Sequence[str] = ()) -> Any:
    """The grid case to train for (the only one when ``label`` is None)."""
    from memlab.eval.config import expand_grid
    from memlab.eval.sweep import select_variants, variant_label

    variants = expand_grid(config, list(overrides))
    if label is not None:
        named = select_variants(variants, [label])
        if len(named) > 1:
            raise ConfigError(f"--only {label}: names {len(named)} grid cases; name one "
                              f"({', '.join(variant_label(v.name) for v in named)})")
        return named[0]
    if len(variants) != 1:
        raise ConfigError(f"{config}: {len(variants)} grid cases; name one with --only "
                          f"({', '.join(variant_label(v.name) for v in variants)})")
    return variants[0]


def training_part(case: Any, command: str) -> tuple[Any, list[Any]]:
    """The part of the case's probe split it does not score, and that part's conversations
    (ConfigError when the case has no split)."""
    split = case.dataset.probes.split
    if split is None:
        raise ConfigError(f"{case.name}: dataset.probes.split is not set; {command} "
                          "trains on the part of a split the case does not score (e.g. "
                          "dataset.probes.split: {part: test, seed: 0, dev_fraction: 0.5})")
    spec = case.dataset
    dataset = spec.load()
    trained_on = split.other()
    chosen = set(trained_on.select([c.id for c in dataset]))
    return trained_on, [c for c in dataset if c.id in chosen]


def reranker_params(case: Any) -> dict[str, Any]:
    """The case's ``cross_encoder`` parameters, defaults filled in (ConfigError if its
    retrieval is something else)."""
    from memlab.components import registry

    spec = case.memory.params.get("retrieval")
    name = spec.get("name") if isinstance(spec, dict) else getattr(spec, "name", spec)
    if name != "cross_encoder":
        raise ConfigError(f"{case.name}: retrieval is {name!r}; train-reranker trains the "
                          "model of a cross_encoder retrieval")
    given = spec.get("params") if isinstance(spec, dict) else getattr(spec, "params", None)
    params = {p.name: p.default for p in registry("retrieval").params("cross_encoder")}
    params.update(given or {})
    return params


def mine_examples(case: Any, retrieval: Any, conversations: Sequence[Any], top_n: int,
                  negatives: int, progress: bool = True) -> Mined:
    """Each probe with evidence turns of ``conversations``, replayed into the case's memory
    with ``retrieval``: its positives and its ``negatives`` hardest negatives among the
    ``top_n`` hits (see the module doc)."""
    from tqdm.auto import tqdm

    from memlab.eval.replay import loaded_memory

    mining = case.model_copy(deep=True)
    mining.memory.params["retrieval"] = retrieval
    out = Mined()
    bar = tqdm(conversations, desc="mining pairs", unit="conv", disable=not progress)
    for conversation in bar:
        probes = [p for p in conversation.probes if p.evidence_turn_ids]
        if not probes:
            continue
        out.conversations.append(conversation.id)
        memory = loaded_memory(mining, conversation, [p.question for p in probes])
        units = list(memory.units())
        for probe in probes:
            evidence = set(probe.evidence_turn_ids)
            sessions = set(probe.evidence_session_ids)
            positive = [u.text for u in units if evidence & set(u.source_turn_ids)]
            hits = memory.search(probe.question, top_n, probe.asked_at, probe=probe)
            negative = [h.unit.text for h in hits
                        if not evidence & set(h.unit.source_turn_ids)
                        and h.unit.session_id not in sessions][:negatives]
            out.examples.append(Example(probe.question, positive, negative))
        close = getattr(memory, "close", None)
        if callable(close):
            close()
    return out


def mine_pairs(case: Any, params: dict[str, Any], conversations: Sequence[Any],
               negatives: int, progress: bool = True) -> TrainingSet:
    """Positive and hard-negative pairs from ``conversations`` (see the module doc), each
    text shown as the case shows it (``passage``)."""
    from memlab.retrieval.cross_encoder import passages_for

    mined = mine_examples(case, params["base"], conversations, int(params["top_n"]),
                          negatives, progress)
    out = TrainingSet(conversations=mined.conversations, probes=len(mined.examples))
    for example in mined.examples:
        shown = passages_for(params, example.question, example.positives + example.negatives)
        split = len(example.positives)
        out.pairs += [(example.question, text, 1.0) for text in shown[:split]]
        out.pairs += [(example.question, text, 0.0) for text in shown[split:]]
    return out


def train_cross_encoder(folder: str | Path, pairs: Sequence[Pair], *, epochs: int = 1,
                        batch_size: int = 16, learning_rate: float = 5e-5,
                        max_length: int = 128, seed: int = 0,
                        on_batch: Callable[[], object] | None = None,
                        checkpoint_every: int = 10) -> Path:
    """Save in ``folder`` a one-logit MiniLM cross-encoder trained ``epochs`` shuffled
    passes over ``pairs`` (none: the untrained, seeded head).

    Every ``checkpoint_every`` batches the weights, the optimizer's state and the random
    state are written to ``folder/memlab-checkpoint.pt``; the same training started again
    (after a kill) goes on from there and ends with the weights an uninterrupted one
    gives."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from memlab.embed.sentence_transformer import bundled_model_dir

    out = Path(folder)
    checkpoint = Checkpoint(out, training_key(
        [list(pair) for pair in pairs], epochs, batch_size, learning_rate, max_length, seed),
        checkpoint_every, "train-reranker")
    torch.manual_seed(seed)
    source = bundled_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=1, local_files_only=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    done = checkpoint.resume(model, optimizer)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    for n, batch in enumerate(pair_batches(pairs, epochs, batch_size, seed), start=1):
        if n > done:  # else trained before the restart
            inputs = tokenizer([q for q, _, _ in batch], [t for _, t, _ in batch],
                               padding=True, truncation=True, max_length=max_length,
                               return_tensors="pt")
            labels = torch.tensor([y for _, _, y in batch], dtype=torch.float32)
            loss = loss_fn(model(**inputs).logits.squeeze(-1), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            checkpoint.after(n, model, optimizer)
        if on_batch is not None:
            on_batch()
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    checkpoint.remove()
    return out


def pair_batches(pairs: Sequence[Pair], epochs: int, batch_size: int,
                 seed: int) -> list[list[Pair]]:
    """Every batch of ``epochs`` passes over ``pairs``, in training order (each pass
    shuffled anew by one seeded generator)."""
    rng = random.Random(seed)
    out: list[list[Pair]] = []
    for _ in range(epochs if pairs else 0):
        order = list(pairs)
        rng.shuffle(order)
        out += [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    return out


def train_reranker(config: str | Path, label: str | None = None, *,
                   overrides: Sequence[str] = (), out: str | Path | None = None,
                   negatives: int = 10, epochs: int = 1, batch_size: int = 16,
                   learning_rate: float = 5e-5, seed: int = 0,
                   progress: bool = True) -> dict[str, Any]:
    """Train the case's reranker on the part of its split it does not score; returns the
    manifest written beside the model."""
    from tqdm.auto import tqdm

    case = reranker_case(config, label, overrides)
    params = reranker_params(case)
    if negatives < 1 or epochs < 1 or batch_size < 1:
        raise ConfigError("train-reranker: negatives, epochs and batch size must be >= 1")
    folder = Path(out if out is not None else params["model"]).expanduser()
    trained_on, conversations = training_part(case, "train-reranker")
    started = time.perf_counter()
    mined = mine_pairs(case, params, conversations, negatives, progress)
    if not mined.pairs:
        raise ConfigError(f"{case.name}: {trained_on.describe()} has no probe "
                          "with evidence turns to train on")
    mined_seconds = time.perf_counter() - started
    steps = epochs * -(-len(mined.pairs) // batch_size)
    with tqdm(total=steps, desc="training", unit="batch", disable=not progress) as bar:
        train_cross_encoder(folder, mined.pairs, epochs=epochs, batch_size=batch_size,
                            learning_rate=learning_rate, max_length=int(params["max_length"]),
                            seed=seed, on_batch=lambda: bar.update(1))
    return write_manifest(
        folder / MANIFEST, config, case, trained_on, mined.conversations, mined.probes,
        mined_seconds, time.perf_counter() - started - mined_seconds,
        pairs={"positive": mined.count(1.0), "negative": mined.count(0.0)},
        settings={"negatives": negatives, "epochs": epochs, "batch_size": batch_size,
                  "learning_rate": learning_rate, "seed": seed,
                  "max_length": params["max_length"], "passage": params["passage"],
                  "max_words": params["max_words"], "top_n": params["top_n"],
                  "base": params["base"]})


def write_manifest(path: Path, config: str | Path, case: Any, trained_on: Any,
                   conversations: list[str], probes: int, mining: float, training: float,
                   **details: Any) -> dict[str, Any]:
    """Write (and return) the JSON manifest beside a trained model: the case, the part it
    was trained on and the part it scores, ``details``, the seconds, memlab's commit."""
    from memlab.eval.environment import git_state

    manifest = {
        "config": str(config), "case": case.name,
        "dataset": {"name": case.dataset.name, "params": case.dataset.params},
        "trained_on": {**trained_on.model_dump(), "conversations": len(conversations),
                       "probes": probes},
        "scored_on": trained_on.other().model_dump(),
        **details,
        "seconds": {"mining": round(mining, 1), "training": round(training, 1)},
        "model": str(path.parent),
        "memlab_commit": git_state()["commit"],
        "conversation_ids": conversations,
    }
    path.write_text(json.dumps(manifest, indent=1, default=str) + "\n")
    return manifest
