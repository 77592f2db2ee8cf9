"""Fine-tune the sentence embedder a case's dense retrieval reads, on the conversations it
does not score.

``python -m memlab.eval train-embedder CONFIG --only LABEL`` takes one case of CONFIG
whose probes are one part of a split (``dataset.probes.split``) and whose retrieval names
a ``sentence-transformers`` embedder by a local folder that is to hold the trained model
(``embedder: {name: sentence-transformers, params: {model: runs/embedders/NAME}}``, at
any depth: the dense part of a hybrid, the sentences of a multigrain, ...). It trains on
the *other* part of the split, so no probe the case scores is seen in training:

- each conversation of that part is replayed into the case's memory with the case's own
  retrieval, every trained embedder replaced by the bundled all-MiniLM-L6-v2 the training
  starts from; for each probe with evidence turns, each unit that holds an evidence turn
  is a positive, and the ``negatives`` best-ranked units among the ``top_n`` hits that
  hold none and lie in no evidence session are its hard negatives (what the first stage
  ranks too high); with ``mine_with`` a model train-embedder wrote earlier on the same
  part mines instead of the bundled one (ANCE-style: the negatives the fine-tuned first
  stage still ranks too high; the model must have been trained on this part, so it has
  seen no probe the case scores);
- the bundled MiniLM is trained ``epochs`` passes with the multiple-negatives ranking
  loss (a question's positive against its hard negatives and every other text in the
  batch; cosine scaled by ``scale``; AdamW, seeded; a batch never holds one question
  twice, so a question's other positives are never its negatives) and saved as a
  sentence-transformers folder with ``memlab-embedder.json`` beside it: the case, the
  split, the conversations and examples trained on, the settings, the seconds, memlab's
  git commit.

The folder's weights digest is part of the embedder's model id, so vectors cached under
an earlier training are never reused. Deterministic for a seed on one thread count.
"""

from __future__ import annotations

import copy
import json
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memlab.errors import ConfigError
from memlab.eval.checkpoint import Checkpoint, training_key

MANIFEST = "memlab-embedder.json"
EMBEDDER = "sentence-transformers"


@dataclass(frozen=True)
class Triplet:
    """A question, one text that answers it and its hard negatives (maybe none)."""

    question: str
    positive: str
    negatives: tuple[str, ...]


def _embedders(node: Any, key: str | None = None) -> Iterator[dict[str, Any]]:
    """Every ``sentence-transformers`` embedder spec (as a dict) anywhere in ``node``, the
    parts of an ``ensemble`` embedder (``embedders: [...]``) included."""
    if isinstance(node, dict):
        if key in ("embedder", "embedders") and node.get("name") == EMBEDDER:
            yield node
        for name, value in node.items():
            yield from _embedders(value, name)
    elif isinstance(node, list):
        for value in node:
            yield from _embedders(value, key)


def trained_folders(spec: Any) -> list[str]:
    """The ``model`` of each ``sentence-transformers`` embedder anywhere in a retrieval spec
    that is not the bundled MiniLM (a folder train-embedder may write), in order."""
    from memlab.embed.sentence_transformer import SentenceTransformerEmbedder

    found: list[str] = []
    for node in _embedders(spec):
        model = (node.get("params") or {}).get("model")
        if isinstance(model, str) and not SentenceTransformerEmbedder(model).bundled \
                and model not in found:
            found.append(model)
    return found


def with_embedder(spec: Any, folder: str, model: str) -> Any:
    """``spec`` (deep-copied) with every embedder that loads ``folder`` loading ``model``."""
    spec = copy.deepcopy(spec)
    for node in _embedders(spec):
        params = node.get("params")
        if isinstance(params, dict) and params.get("model") == folder:
            params["model"] = model
    return spec


def triplets(examples: Sequence[Any], negatives: int) -> list[Triplet]:
    """One triplet per (probe, positive); a probe's hard negatives are dealt out in turn
    so that its positives see different ones."""
    out = []
    for example in examples:
        pool = list(example.negatives)
        for i, positive in enumerate(example.positives):
            chosen = tuple(pool[(i * negatives + j) % len(pool)]
                           for j in range(min(negatives, len(pool)))) if pool else ()
            out.append(Triplet(example.question, positive, chosen))
    return out


def batches(items: Sequence[Triplet], size: int, rng: random.Random) -> list[list[Triplet]]:
    """``items`` shuffled into batches of at most ``size`` with no question twice."""
    pending = list(items)
    rng.shuffle(pending)
    out = []
    while pending:
        batch: list[Triplet] = []
        seen: set[str] = set()
        rest = []
        for item in pending:
            if len(batch) < size and item.question not in seen:
                batch.append(item)
                seen.add(item.question)
            else:
                rest.append(item)
        out.append(batch)
        pending = rest
    return out


def schedule(items: Sequence[Triplet], batch_size: int, epochs: int,
             seed: int) -> list[list[Triplet]]:
    """Every batch of ``epochs`` passes over ``items``, in training order (each pass
    shuffled anew by one seeded generator), so the count a progress bar shows is exact."""
    rng = random.Random(seed)
    return [batch for _ in range(epochs) for batch in batches(items, batch_size, rng)]


def train_sentence_embedder(folder: str | Path, items: Sequence[Triplet], *, epochs: int = 1,
                            batch_size: int = 16, learning_rate: float = 2e-5,
                            scale: float = 20.0, seed: int = 0, mini_batch: int | None = None,
                            on_batch: Callable[[], object] | None = None,
                            checkpoint_every: int = 10) -> Path:
    """Save in ``folder`` the bundled MiniLM trained ``epochs`` passes over ``items`` with
    the multiple-negatives ranking loss (none: the bundled model unchanged).

    ``mini_batch`` (texts) caches gradients (GradCache, Gao et al. 2021): the batch's
    vectors are computed without a graph, the loss's gradient with respect to them taken,
    then each ``mini_batch`` texts are encoded again with a graph (the same dropout masks)
    and given their share of it. The step is the one the whole batch would take, in memory
    that grows with ``mini_batch`` instead of with the batch's questions x (1 + negatives)
    texts; it costs a second forward pass. Dropout draws its masks per mini-batch, so a
    seed gives other weights than without it.

    Every ``checkpoint_every`` batches the weights, the optimizer's state and the random
    state are written to ``folder/memlab-checkpoint.pt``; a training of the same items and
    settings started again (after a kill) goes on from there and ends with the weights an
    uninterrupted one gives."""
    import torch
    from sentence_transformers import SentenceTransformer

    from memlab.embed.sentence_transformer import bundled_model_dir

    _check_mini_batch(mini_batch)
    out = Path(folder)
    checkpoint = Checkpoint(out, training_key(
        [[i.question, i.positive, list(i.negatives)] for i in items],
        epochs, batch_size, learning_rate, scale, seed, mini_batch),
        checkpoint_every, "train-embedder")
    torch.manual_seed(seed)
    model = SentenceTransformer(str(bundled_model_dir()), device="cpu")
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    done = checkpoint.resume(model, optimizer)
    model.train()
    for n, batch in enumerate(schedule(items, batch_size, epochs, seed), start=1):
        if n > done:  # else trained before the restart
            optimizer.zero_grad()
            if mini_batch is None:
                batch_loss(model, batch, scale).backward()
            else:
                cached_step(model, batch, scale, mini_batch)
            optimizer.step()
            checkpoint.after(n, model, optimizer)
        if on_batch is not None:
            on_batch()
    model.eval()
    model.save(str(out))
    checkpoint.remove()
    return out


def _check_mini_batch(mini_batch: int | None) -> None:
    if mini_batch is not None and mini_batch < 1:
        raise ConfigError(f"train-embedder: the mini-batch must be >= 1 text, got {mini_batch}")


def _miner(folder: str, model: str, case: Any, trained_on: Any) -> str:
    """``folder`` checked as a model to mine hard negatives with: written by train-embedder,
    not the folder being trained, trained on the very part of the very dataset the case
    trains on (so it has seen no probe the case scores)."""
    path = Path(folder).expanduser() / MANIFEST
    if Path(folder).expanduser().resolve() == Path(model).expanduser().resolve():
        raise ConfigError(f"--mine-with {folder}: that is the folder being trained; mine "
                          "with a model trained before, into another folder")
    if not path.is_file():
        raise ConfigError(f"--mine-with {folder}: no {MANIFEST} there; mine with a model "
                          "train-embedder wrote (its manifest tells what it was trained on)")
    try:
        manifest = json.loads(path.read_text())
        seen, dataset = manifest["trained_on"], manifest["dataset"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a train-embedder manifest ({exc!r} reading "
                          "trained_on / dataset)") from exc
    ours = {**trained_on.model_dump(), "name": case.dataset.name,
            "params": json.loads(json.dumps(case.dataset.params, default=str))}
    theirs = {**{key: seen.get(key) for key in trained_on.model_dump()},
              "name": dataset.get("name"), "params": dataset.get("params")}
    differ = [key for key in ours if ours[key] != theirs[key]]
    if differ:
        detail = ", ".join(f"{key}: {theirs[key]!r} != {ours[key]!r}" for key in differ)
        raise ConfigError(
            f"{path}: trained_on/dataset differ from the part {case.name} trains on in "
            f"{', '.join(differ)} ({detail}); a model that saw other probes could leak the "
            "ones the case scores")
    return str(folder)


def _columns(batch: Sequence[Triplet]) -> tuple[list[str], list[str]]:
    """A batch's questions, and the texts they are scored against: every positive (the
    i-th question's at i), then every hard negative."""
    return ([t.question for t in batch],
            [t.positive for t in batch] + [n for t in batch for n in t.negatives])


def _encode(model: Any, texts: list[str]) -> Any:
    """Unit vectors of ``texts`` under ``model``, with a graph when grad is enabled."""
    import torch

    # sentence-transformers 6 renamed tokenize to preprocess (tokenize still works, warns)
    prepare = getattr(model, "preprocess", None) or model.tokenize
    vectors = model(prepare(texts))["sentence_embedding"]
    return torch.nn.functional.normalize(vectors, dim=-1)


def _ranking_loss(questions: Any, texts: Any, scale: float) -> Any:
    """Multiple-negatives ranking loss: question i against every text, its positive at i."""
    import torch

    scores = questions @ texts.T * scale
    return torch.nn.functional.cross_entropy(scores, torch.arange(len(questions)))


def batch_loss(model: Any, batch: Sequence[Triplet], scale: float = 20.0) -> Any:
    """The batch's loss, with a graph through every text of the batch."""
    questions, texts = _columns(batch)
    return _ranking_loss(_encode(model, questions), _encode(model, texts), scale)


def cached_step(model: Any, batch: Sequence[Triplet], scale: float, mini_batch: int) -> Any:
    """Add the batch's gradient to ``model``'s parameters ``mini_batch`` texts at a time
    (what ``batch_loss(...).backward()`` adds, with the graph of one mini-batch at a time);
    returns the loss, without a graph."""
    import torch

    columns = _columns(batch)
    chunks = [[texts[i:i + mini_batch] for i in range(0, len(texts), mini_batch)]
              for texts in columns]
    states: list[list[Any]] = [[], []]
    vectors = []
    with torch.no_grad():
        for column, parts in enumerate(chunks):
            encoded = []
            for part in parts:
                states[column].append(torch.get_rng_state())
                encoded.append(_encode(model, part))
            vectors.append(torch.cat(encoded).requires_grad_())
    loss = _ranking_loss(vectors[0], vectors[1], scale)
    loss.backward()
    for column, parts in enumerate(chunks):
        cached = vectors[column].grad
        assert cached is not None  # the loss reads every vector
        grads = cached.split([len(part) for part in parts])
        for part, state, grad in zip(parts, states[column], grads, strict=True):
            with torch.random.fork_rng(devices=[]):
                torch.set_rng_state(state)  # the same dropout masks as the first pass
                _encode(model, part).backward(grad)
    return loss.detach()


def train_embedder(config: str | Path, label: str | None = None, *,
                   overrides: Sequence[str] = (), model: str | None = None,
                   top_n: int = 40, negatives: int = 3, epochs: int = 1, batch_size: int = 16,
                   learning_rate: float = 2e-5, seed: int = 0, mini_batch: int | None = None,
                   mine_with: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Train the case's embedder on the part of its split it does not score; returns the
    manifest written beside the model."""
    from tqdm.auto import tqdm

    from memlab.embed.sentence_transformer import BUNDLED_MODEL
    from memlab.eval.train_reranker import (
        mine_examples,
        reranker_case,
        training_part,
        write_manifest,
    )

    if top_n < 1 or negatives < 0 or epochs < 1 or batch_size < 2:
        raise ConfigError("train-embedder: top_n and epochs must be >= 1, negatives >= 0 "
                          "and the batch size >= 2 (the other questions' texts are negatives)")
    _check_mini_batch(mini_batch)  # before the mining, not after it
    case = reranker_case(config, label, overrides)
    retrieval = case.memory.params.get("retrieval")
    retrieval = retrieval.model_dump() if hasattr(retrieval, "model_dump") else retrieval
    folders = trained_folders(retrieval)
    if model is not None and model not in folders:
        raise ConfigError(f"{case.name}: no sentence-transformers embedder of its retrieval "
                          f"loads {model!r} (it names: {', '.join(folders) or 'none'})")
    if model is None:
        if len(folders) != 1:
            raise ConfigError(
                f"{case.name}: train-embedder trains the sentence-transformers embedder whose "
                "`model` is a local folder (embedder: {name: sentence-transformers, params: "
                "{model: runs/embedders/NAME}}); its retrieval names "
                f"{len(folders)} ({', '.join(folders) or 'none'}): choose one with --model")
        model = folders[0]
    trained_on, conversations = training_part(case, "train-embedder")
    started = time.perf_counter()
    miner = BUNDLED_MODEL if mine_with is None else _miner(mine_with, model, case, trained_on)
    mining = with_embedder(retrieval, model, miner)
    mined = mine_examples(case, mining, conversations, top_n, negatives, progress)
    items = triplets(mined.examples, negatives)
    if not items:
        raise ConfigError(f"{case.name}: {trained_on.describe()} has no probe "
                          "with evidence turns to train on")
    mined_seconds = time.perf_counter() - started
    folder = Path(model).expanduser()
    steps = len(schedule(items, batch_size, epochs, seed))
    with tqdm(total=steps, desc="training", unit="batch", disable=not progress) as bar:
        train_sentence_embedder(folder, items, epochs=epochs, batch_size=batch_size,
                                learning_rate=learning_rate, seed=seed, mini_batch=mini_batch,
                                on_batch=lambda: bar.update(1))
    return write_manifest(
        folder / MANIFEST, config, case, trained_on, mined.conversations, len(mined.examples),
        mined_seconds, time.perf_counter() - started - mined_seconds,
        triplets=len(items), hard_negatives=sum(len(t.negatives) for t in items),
        settings={"top_n": top_n, "negatives": negatives, "epochs": epochs,
                  "batch_size": batch_size, "learning_rate": learning_rate, "seed": seed,
                  "mini_batch": mini_batch,
                  "loss": "multiple-negatives ranking, scale 20", "start": BUNDLED_MODEL,
                  "mined_with": mining})
