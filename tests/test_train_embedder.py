"""``train-embedder``: MiniLM fine-tuned on one part of a probe split (its evidence units
against the first stage's hard negatives) and loaded by a case scored on the other part —
the spec plumbing, the batches, end to end with the real MiniLM, and exact recall on
LoCoMo."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from memlab.data import load_dataset
from memlab.errors import ConfigError
from memlab.eval.config import ProbeSplit, load_config
from memlab.eval.train_embedder import (
    MANIFEST,
    Triplet,
    batches,
    trained_folders,
    triplets,
    with_embedder,
)
from memlab.eval.train_reranker import Example

TUNED = {"name": "sentence-transformers", "params": {"model": "runs/embedders/x"}}
NESTED = {"name": "time_aware", "params": {"base": {"name": "multigrain", "params": {
    "base": {"name": "hybrid", "params": {"dense": {"embedder": TUNED}}},
    "turns": {"name": "dense", "params": {"embedder": TUNED}}}}}}


def test_trained_folders_finds_non_bundled_embedders_at_any_depth() -> None:
    assert trained_folders(NESTED) == ["runs/embedders/x"]
    bundled = {"name": "dense", "params": {"embedder": {
        "name": "sentence-transformers", "params": {"model": "all-MiniLM-L6-v2"}}}}
    assert trained_folders(bundled) == [] and trained_folders({"name": "bm25"}) == []
    other = {"name": "sentence-transformers", "params": {"model": "runs/embedders/y"}}
    ensemble = {"name": "dense", "params": {"embedder": {"name": "ensemble", "params": {
        "embedders": [TUNED, other, "hash"]}}}}
    assert trained_folders(ensemble) == ["runs/embedders/x", "runs/embedders/y"]


def test_with_embedder_swaps_every_copy_and_leaves_the_spec_alone() -> None:
    swapped = with_embedder(NESTED, "runs/embedders/x", "all-MiniLM-L6-v2")
    assert trained_folders(swapped) == []
    assert trained_folders(NESTED) == ["runs/embedders/x"]  # a copy was changed
    assert json.dumps(swapped).count("all-MiniLM-L6-v2") == 2


def test_triplets_deal_each_probes_negatives_out_in_turn() -> None:
    examples = [Example("q1", ["p1", "p2"], ["n1", "n2", "n3"]), Example("q2", ["p3"], [])]
    assert triplets(examples, 2) == [Triplet("q1", "p1", ("n1", "n2")),
                                     Triplet("q1", "p2", ("n3", "n1")),
                                     Triplet("q2", "p3", ())]
    assert triplets(examples, 0)[0].negatives == ()


def test_batches_never_hold_a_question_twice_and_keep_every_triplet() -> None:
    import random

    items = [Triplet(f"q{i % 3}", f"p{i}", ()) for i in range(10)]
    out = batches(items, 4, random.Random(0))
    assert sorted(t.positive for b in out for t in b) == sorted(t.positive for t in items)
    for batch in out:
        assert len(batch) <= 4 and len({t.question for t in batch}) == len(batch)


def tiny_config(tmp_path: Path, retrieval: dict | None = None) -> Path:
    config = tmp_path / "embed.yaml"
    model = str(tmp_path / "model")
    config.write_text(yaml.safe_dump({
        "name": "tiny-embed",
        "dataset": {"name": "synthetic", "probes": {"split": {"part": "test", "seed": 0}}},
        "chunker": {"name": "turn"}, "tracking": {"mlflow": False}, "k": 5,
        "retrieval": retrieval or {"name": "hybrid", "params": {"dense": {"embedder": {
            "name": "sentence-transformers", "params": {"model": model}}}}}}))
    return config


def test_train_embedder_needs_one_trainable_embedder_and_a_split(tmp_path: Path) -> None:
    from memlab.eval.train_embedder import train_embedder

    with pytest.raises(ConfigError, match="names 0"):
        train_embedder(tiny_config(tmp_path, {"name": "bm25"}), progress=False)
    with pytest.raises(ConfigError, match="no sentence-transformers embedder"):
        train_embedder(tiny_config(tmp_path), model="elsewhere", progress=False)
    with pytest.raises(ConfigError, match="mini-batch must be >= 1"):  # before any mining
        train_embedder(tiny_config(tmp_path), mini_batch=0, progress=False)
    data = yaml.safe_load(tiny_config(tmp_path).read_text())
    del data["dataset"]["probes"]
    (tmp_path / "embed.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"dataset\.probes\.split is not set"):
        train_embedder(tmp_path / "embed.yaml", progress=False)


def test_mine_with_must_be_a_model_trained_on_the_same_part(tmp_path: Path) -> None:
    from memlab.eval.train_embedder import train_embedder

    config = tiny_config(tmp_path)
    miner = tmp_path / "miner"
    with pytest.raises(ConfigError, match="that is the folder being trained"):
        train_embedder(config, mine_with=str(tmp_path / "model"), progress=False)
    with pytest.raises(ConfigError, match=f"no {MANIFEST} there"):
        train_embedder(config, mine_with=str(miner), progress=False)
    miner.mkdir()
    (miner / MANIFEST).write_text("{}")
    with pytest.raises(ConfigError, match="not a train-embedder manifest"):
        train_embedder(config, mine_with=str(miner), progress=False)
    manifest = {"dataset": {"name": "synthetic", "params": {}},
                "trained_on": {"part": "test", "dev_fraction": 0.5, "seed": 0, "dev": None}}
    (miner / MANIFEST).write_text(json.dumps(manifest))
    # trained on the part the case scores: it has seen the case's probes
    with pytest.raises(ConfigError, match=r"differ .* in part \(part: 'test' != 'dev'\)"):
        train_embedder(config, mine_with=str(miner), progress=False)
    manifest["trained_on"]["part"] = "dev"
    manifest["dataset"]["name"] = "locomo"
    (miner / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="in name"):
        train_embedder(config, mine_with=str(miner), progress=False)


def test_train_embedder_trains_on_the_other_part_and_the_case_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real MiniLM, real training (a few batches), then the case scored with the model."""
    # the trained model's vectors are of no use after the test: keep them out of the cache
    monkeypatch.setenv("MEMLAB_CACHE_DIR", str(tmp_path / "cache"))
    from memlab.embed.sentence_transformer import SentenceTransformerEmbedder
    from memlab.eval.cli import main
    from memlab.eval.run import evaluate

    config = tiny_config(tmp_path)
    assert main(["train-embedder", str(config), "--negatives", "1", "--quiet"]) == 0
    manifest = json.loads((tmp_path / "model" / MANIFEST).read_text())
    dataset = load_dataset("synthetic")
    scored = ProbeSplit(part="test", seed=0).select([c.id for c in dataset])
    assert manifest["trained_on"]["part"] == "dev" and manifest["scored_on"]["part"] == "test"
    assert manifest["conversation_ids"] and not set(manifest["conversation_ids"]) & set(scored)
    assert manifest["triplets"] > 0 and manifest["hard_negatives"] > 0
    tuned = SentenceTransformerEmbedder(str(tmp_path / "model"))
    bundled = SentenceTransformerEmbedder()
    assert tuned.model_id != bundled.model_id  # new weights: never the bundled cache
    text = ["user: my dog is called Rex"]
    assert float(tuned.encode(text)[0] @ bundled.encode(text)[0]) < 0.99999
    result = evaluate(config, out=tmp_path / "run", track=False)
    items = [json.loads(line) for line in (result.run_dir / "items.jsonl").open()]
    assert items and {r["conversation_id"] for r in items} == set(scored)
    assert not [r["error"] for r in items if r["error"]]
    for row in items:  # nothing retrieved was said after the question
        assert all(hit["at"] <= row["asked_at"] for hit in row["retrieved"])
    again = evaluate(config, out=tmp_path / "again", track=False)
    rerun = [json.loads(line) for line in (again.run_dir / "items.jsonl").open()]
    for row in items + rerun:
        del row["latency_seconds"]
    assert rerun == items  # same model, same cache: the same items
    # ANCE-style: a second model whose hard negatives the first one mined
    shutil.copytree(tmp_path / "model", tmp_path / "miner")
    assert main(["train-embedder", str(config), "--negatives", "1", "--quiet",
                 "--mine-with", str(tmp_path / "miner")]) == 0
    second = json.loads((tmp_path / "model" / MANIFEST).read_text())
    assert trained_folders(second["settings"]["mined_with"]) == [str(tmp_path / "miner")]
    assert second["hard_negatives"] > 0
    assert second["conversation_ids"] == manifest["conversation_ids"]


#: Sums over conv-30's first 10 probes with evidence (adversarial ones left out) of
#: turn.evidence_recall@5 and turn.recall_any@10: dense retrieval over turns with the
#: bundled MiniLM, and with MiniLM fine-tuned by train-embedder's mining and training on
#: conv-26 (another conversation; seed 0, 2 hard negatives).
#: conv-26 alone moves MiniLM a long way on a conversation it never saw.
TUNED_EXPECTED = {"bundled": (3.0, 6.0), "tuned": (6.333333333333334, 8.0)}


@pytest.mark.slow
def test_tuned_embedder_exact_recall_on_locomo_conv_30(
        tmp_path: Path, locomo_dataset: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMLAB_CACHE_DIR", str(tmp_path / "cache"))
    from memlab.embed.sentence_transformer import BUNDLED_MODEL
    from memlab.eval.replay import replay_conversation
    from memlab.eval.train_reranker import mine_examples

    folder = str(tmp_path / "model")
    spec = {"name": "dense", "params": {"embedder": {"name": "sentence-transformers",
                                                     "params": {"model": folder}}}}
    case = load_config({"name": "t", "dataset": {"name": "locomo"}, "chunker": {"name": "turn"},
                        "retrieval": spec, "k": 10, "depth": 100, "tracking": {"mlflow": False}})
    conversations = {c.id: c for c in locomo_dataset.conversations}  # type: ignore[attr-defined]
    from memlab.eval.train_embedder import train_sentence_embedder

    mined = mine_examples(case, with_embedder(spec, folder, BUNDLED_MODEL),
                          [conversations["conv-26"]], top_n=20, negatives=2, progress=False)
    assert mined.conversations == ["conv-26"] and mined.examples
    train_sentence_embedder(folder, triplets(mined.examples, 2), seed=0)
    conversation = conversations["conv-30"]
    probes = [p for p in conversation.probes
              if p.evidence_turn_ids and p.category != "adversarial"][:10]
    measured = {}
    for label, retrieval in (("bundled", {"name": "dense"}), ("tuned", spec)):
        config = case.model_copy(deep=True)
        config.memory.params["retrieval"] = retrieval
        items = replay_conversation(config, conversation, probes).items
        assert not [r["error"] for r in items if r.get("error")]
        assert len(items) == 10
        measured[label] = tuple(sum(r["metrics"][m] for r in items) for m in (
            "turn.evidence_recall@5", "turn.recall_any@10"))
    assert measured == {k: pytest.approx(v, abs=1e-9) for k, v in TUNED_EXPECTED.items()}, \
        measured


def test_a_folder_trained_again_in_one_process_is_a_new_model(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A notebook trains, scores, trains again into the same folder and scores again: the
    second scoring must read the new weights (digest, ONNX export, torch model, vectors)."""
    from memlab.embed.sentence_transformer import SentenceTransformerEmbedder
    from memlab.eval.train_embedder import train_sentence_embedder

    monkeypatch.setenv("MEMLAB_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "model"
    items = [Triplet(f"what pet does user {i} have?", f"user {i}: I have a {pet}", ())
             for i, pet in enumerate(("cat", "dog", "parrot", "horse"))]
    text = ["user: my dog is called Rex"]
    seen = []
    for seed in (0, 1):
        train_sentence_embedder(folder, items, batch_size=4, learning_rate=1e-3, seed=seed)
        for backend in ("onnx", "torch"):
            embedder = SentenceTransformerEmbedder(str(folder), backend=backend)
            seen.append((backend, embedder.model_id, embedder.encode(text)[0]))
    (_, onnx_0, v0), (_, torch_0, t0), (_, onnx_1, v1), (_, torch_1, t1) = seen
    assert onnx_0 != onnx_1 and torch_0 != torch_1
    assert float(v0 @ v1) < 0.99999 and float(t0 @ t1) < 0.99999
    assert float(v1 @ t1) > 0.9999  # ONNX and torch read the same new weights


def test_cached_gradients_are_the_whole_batch_s_gradients() -> None:
    """Gradient caching adds, one mini-batch of texts at a time, the gradient the whole
    batch's graph gives (dropout off, so both passes see the same network)."""
    import torch
    from sentence_transformers import SentenceTransformer

    from memlab.embed.sentence_transformer import bundled_model_dir
    from memlab.eval.train_embedder import batch_loss, cached_step

    batch = [Triplet(f"what pet does user {i} have?", f"user {i}: I have a {pet}",
                     (f"user {i}: I like {food}", "assistant: pets are nice"))
             for i, (pet, food) in enumerate((("cat", "pizza"), ("dog", "rice"),
                                              ("parrot", "soup")))]
    model = SentenceTransformer(str(bundled_model_dir()), device="cpu")
    model.eval()
    grads = []
    for mini_batch in (None, 2, 5):
        model.zero_grad()
        if mini_batch is None:
            loss = batch_loss(model, batch)
            loss.backward()
        else:
            loss = cached_step(model, batch, 20.0, mini_batch)
        grads.append((float(loss.detach()), [p.grad.clone() for p in model.parameters()
                                             if p.grad is not None]))
    # with dropout on, a mini-batch as large as each column draws the whole batch's masks
    # and the second pass must replay them
    model.train()
    for mini_batch in (None, 100):
        torch.manual_seed(7)
        model.zero_grad()
        if mini_batch is None:
            batch_loss(model, batch).backward()
        else:
            cached_step(model, batch, 20.0, mini_batch)
        grads.append((None, [p.grad.clone() for p in model.parameters()
                             if p.grad is not None]))
    (whole, expected), *cached, (_, dropout_whole), (_, dropout_cached) = grads
    assert whole > 0 and len(expected) > 50
    for loss, got in cached:
        assert loss == pytest.approx(whole, rel=1e-5)
        assert len(got) == len(expected)
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    for a, b in zip(dropout_cached, dropout_whole, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert not all(torch.allclose(a, b) for a, b in zip(dropout_whole, expected, strict=True))


def test_train_embedder_with_a_mini_batch_trains_and_records_it(tmp_path: Path) -> None:
    from memlab.eval.train_embedder import train_sentence_embedder

    items = [Triplet(f"what pet does user {i} have?", f"user {i}: I have a {pet}",
                     ("assistant: pets are nice",))
             for i, pet in enumerate(("cat", "dog", "parrot", "horse"))]
    folder = train_sentence_embedder(tmp_path / "model", items, batch_size=4,
                                     learning_rate=1e-3, mini_batch=3)
    assert (folder / "config.json").is_file()
    with pytest.raises(ConfigError, match="mini-batch must be >= 1"):
        train_sentence_embedder(tmp_path / "other", items, mini_batch=0)


def test_a_killed_training_resumes_from_its_checkpoint_to_the_same_weights(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        interrupt_after: Callable[[int], Callable[[], None]]) -> None:
    """Dropout on, AdamW state, two epochs: stopped after batch 2 of 4 and started again,
    the training ends with the weights an uninterrupted one gives, and its checkpoint is
    gone once the model is saved."""
    import torch
    from sentence_transformers import SentenceTransformer

    from memlab.eval.checkpoint import CHECKPOINT
    from memlab.eval.train_embedder import train_sentence_embedder

    items = [Triplet(f"what pet does user {i} have?", f"user {i}: I have a {pet}",
                     ("assistant: pets are nice",))
             for i, pet in enumerate(("cat", "dog", "parrot", "horse"))]
    settings: dict[str, Any] = {"epochs": 2, "batch_size": 2, "learning_rate": 1e-3,
                                "checkpoint_every": 1}
    whole = train_sentence_embedder(tmp_path / "whole", items, **settings)

    with pytest.raises(KeyboardInterrupt):
        train_sentence_embedder(tmp_path / "resumed", items, on_batch=interrupt_after(2),
                                **settings)
    assert (tmp_path / "resumed" / CHECKPOINT).is_file()
    seen: list[int] = []
    resumed = train_sentence_embedder(tmp_path / "resumed", items,
                                      on_batch=lambda: seen.append(1), **settings)
    assert len(seen) == 4 and not (resumed / CHECKPOINT).exists()
    assert f"resuming {tmp_path / 'resumed'} after batch 2" in capsys.readouterr().err
    a = SentenceTransformer(str(whole), device="cpu").state_dict()
    b = SentenceTransformer(str(resumed), device="cpu").state_dict()
    for name, tensor in a.items():
        torch.testing.assert_close(b[name], tensor, rtol=0, atol=1e-6)
    fresh = train_sentence_embedder(tmp_path / "fresh", items, **{**settings, "epochs": 1})
    c = SentenceTransformer(str(fresh), device="cpu").state_dict()
    assert not all(torch.equal(c[n], t) for n, t in a.items())  # the test can fail
