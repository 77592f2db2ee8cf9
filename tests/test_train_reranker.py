"""A cross-encoder trained on one part of a split and scored on the other: the probe split
(``dataset.probes.split``), what the model reads (``passage: sentences``), how its order
meets the base's (``fuse``), and ``train-reranker`` end to end with the real MiniLM."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from memlab.data import load_dataset
from memlab.errors import ConfigError
from memlab.eval.config import ProbeSplit, load_config, random_split
from memlab.eval.select import select_probes
from memlab.retrieval.cross_encoder import best_sentences, rrf_fuse, session_fuse

# ------------------------------------------------------------------ the probe split


def test_split_parts_are_disjoint_cover_everything_and_match_tune() -> None:
    from memlab.eval.tune_space import SplitRule, TuneSpec, split_conversations

    known = [f"c{i}" for i in range(11)]
    dev = ProbeSplit(part="dev", seed=3).select(known)
    test = ProbeSplit(part="test", seed=3).select(known)
    assert not set(dev) & set(test) and sorted(dev + test) == sorted(known)
    assert len(dev) == round(11 * 0.5)
    assert dev == [c for c in known if c in dev]  # dataset order kept
    spec = TuneSpec(split=SplitRule(seed=3), space={"k": [1, 2]}, metric="m")
    assert (dev, test) == split_conversations(spec, known, "here") == random_split(known, 0.5, 3)
    assert ProbeSplit(part="dev", seed=3).other() == ProbeSplit(part="test", seed=3)
    assert ProbeSplit(part="test", seed=4).select(known) != test  # the seed matters


def test_a_named_dev_part_splits_by_name() -> None:
    known = [f"c{i}" for i in range(5)]
    named = ProbeSplit(part="dev", dev=["c3", "c1"])
    assert named.select(known) == ["c1", "c3"]
    assert named.other().select(known) == ["c0", "c2", "c4"]
    with pytest.raises(ConfigError, match=r"split\.dev: c9 not in the dataset"):
        ProbeSplit(part="test", dev=["c1", "c9"]).select(known)


def test_folds_partition_the_conversations_and_each_dev_part_is_the_other_folds() -> None:
    known = [f"c{i}" for i in range(11)]
    tests = [ProbeSplit(part="test", folds=3, fold=f, seed=2).select(known) for f in (1, 2, 3)]
    assert sorted(c for t in tests for c in t) == sorted(known)  # each in one fold
    assert [len(t) for t in tests] == [4, 4, 3]
    assert all(t == [c for c in known if c in t] for t in tests)  # dataset order kept
    for f, test in enumerate(tests, start=1):
        part = ProbeSplit(part="test", folds=3, fold=f, seed=2)
        assert part.other().select(known) == [c for c in known if c not in test]
        assert part.other().describe() == f"the folds other than {f} of 3 (seed 2)"
    assert ProbeSplit(part="test", folds=3, fold=1, seed=3).select(known) != tests[0]
    # a resolved config's dump (dev_fraction's default, dev None) loads again
    dumped = ProbeSplit(part="test", folds=3, fold=2).model_dump()
    assert ProbeSplit(**dumped).select(known) == ProbeSplit(part="test", folds=3,
                                                            fold=2).select(known)


@pytest.mark.parametrize("given, message", [
    ({"folds": 3}, "folds and fold go together"),
    ({"fold": 1}, "folds and fold go together"),
    ({"folds": 3, "fold": 4}, "fold 4 of 3"),
    ({"folds": 1, "fold": 1}, "greater than or equal to 2"),
    ({"folds": 3, "fold": 1, "dev_fraction": 0.3}, "dev_fraction cannot be used with folds"),
    ({"folds": 3, "fold": 1, "dev": ["c1"]}, "dev cannot be used with folds"),
])
def test_bad_folds_are_config_errors(given: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config({"name": "t", "dataset": {"name": "synthetic", "probes": {
            "split": {"part": "test", **given}}}, "tracking": {"mlflow": False}})


def test_more_folds_than_conversations_is_an_error() -> None:
    with pytest.raises(ConfigError, match="5 folds of 3 conversations"):
        ProbeSplit(part="test", folds=5, fold=1).select(["a", "b", "c"])


def test_select_probes_keeps_only_the_split_part() -> None:
    dataset = load_dataset("synthetic")
    ids = [c.id for c in dataset]
    for part in ("dev", "test"):
        config = load_config({"name": "t", "dataset": {"name": "synthetic", "probes": {
            "split": {"part": part, "seed": 0}}}, "tracking": {"mlflow": False}})
        chosen = {c.id for c, _ in select_probes(dataset, config.dataset.probes)}
        assert chosen == set(ProbeSplit(part=part, seed=0).select(ids))
    with pytest.raises(ConfigError, match="part"):
        load_config({"name": "t", "dataset": {"name": "synthetic", "probes": {
            "split": {"part": "train"}}}})


def test_tune_refuses_a_config_that_already_picks_a_split(tmp_path: Path) -> None:
    from memlab.eval.tune import tune

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "name": "t", "dataset": {"name": "synthetic", "probes": {"split": {"part": "dev"}}},
        "retrieval": {"name": "bm25"}, "tracking": {"mlflow": False},
        "tune": {"metric": "turn.recall_any@5", "split": {"seed": 0},
                 "space": {"retrieval.params.k1": [1.2, 1.5]}}}))
    with pytest.raises(ConfigError, match=r"dataset\.probes\.split is set"):
        tune(config, out=tmp_path / "out", track=False, progress=False)


# ------------------------------------------------------------------ passages and fusion


class WordCounter:
    """An embedder whose vector counts the words ``cat``, ``dog`` and ``bird``."""

    words = ("cat", "dog", "bird")

    def model_id(self) -> str:
        return "word-counter"

    def params(self) -> dict[str, str]:
        return {}

    def encode(self, texts: list[str]) -> np.ndarray:
        rows = np.asarray([[t.lower().split().count(w) + 0.01 for w in self.words]
                           for t in texts], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_best_sentences_keeps_short_texts_and_picks_the_closest_sentences_in_order() -> None:
    short = "user: my cat sleeps all day"
    assert best_sentences(short, "cat", WordCounter(), 10) == short
    text = ("user: I saw a bird today. The dog barked at the mailman. Then my cat hid.\n"
            "assistant: A cat often hides. Birds sing early in spring. Dogs bark.")
    # the question is about cats: the two cat sentences (4 + 4 words), in text order, each
    # after its own speaker; the third-best would pass 9 words
    assert best_sentences(text, "where is the cat", WordCounter(), 9) == (
        "user: Then my cat hid.\nassistant: A cat often hides.")
    # a first sentence longer than the budget is still shown
    assert best_sentences(text, "dog", WordCounter(), 2) == "user: The dog barked at the mailman."


def test_rrf_fuse_adds_base_and_model_reciprocal_ranks() -> None:
    fused = rrf_fuse(np.asarray([0.1, 0.9, 0.5]), weight=2.0, rrf_k=1)
    # base ranks 1, 2, 3; model ranks 3, 1, 2
    assert fused.tolist() == pytest.approx([1 / 2 + 2 / 4, 1 / 3 + 2 / 2, 1 / 4 + 2 / 3])


def test_session_fuse_lists_units_session_by_session() -> None:
    sessions = ["a", "b", "a", "c", "b"]
    relevance = np.asarray([0.2, 0.1, 0.3, 0.9, 0.8])
    order, scores = session_fuse(sessions, relevance, weight=1.0, rrf_k=0)
    # sessions in base order a, b, c; best model scores a 0.3, b 0.8, c 0.9 -> model ranks
    # a 3, b 2, c 1; fused a 1 + 1/3, b 1/2 + 1/2, c 1/3 + 1
    assert order == [0, 2, 3, 1, 4]
    assert scores[0] == pytest.approx(4 / 3) and scores[2] == pytest.approx(4 / 3)
    assert all(x > y for x, y in itertools.pairwise(scores))  # best first, no tie


def test_cross_encoder_rejects_unknown_passage_and_fusion() -> None:
    from memlab.retrieval import build_strategy

    for params, field in (({"passage": "summary"}, "passage"), ({"fuse": "max"}, "fuse")):
        strategy = build_strategy({"name": "cross_encoder", "params": {"base": "bm25",
                                                                        **params}})
        with pytest.raises(ConfigError, match=field):
            strategy.check_params()
    with pytest.raises(ConfigError, match=r"params\.max_words: retrieval 'cross_encoder': "
                                          "max_words must be an integer >= 1, got 0"):
        build_strategy({"name": "cross_encoder", "params": {"base": "bm25", "max_words": 0}})


# ------------------------------------------------------------------ train-reranker


def tiny_config(tmp_path: Path, **params: object) -> Path:
    config = tmp_path / "rerank.yaml"
    config.write_text(yaml.safe_dump({
        "name": "tiny-rerank",
        "dataset": {"name": "synthetic", "probes": {"split": {"part": "test", "seed": 0}}},
        "chunker": {"name": "turn"}, "tracking": {"mlflow": False},
        "retrieval": {"name": "cross_encoder", "params": {
            "base": "bm25", "top_n": 8, "passage": "sentences", "max_words": 12,
            "max_length": 64, "fuse": "session_rrf", "model": str(tmp_path / "model"),
            **params}}}))
    return config


def test_train_reranker_needs_a_cross_encoder_case_with_a_split(tmp_path: Path) -> None:
    from memlab.eval.train_reranker import train_reranker

    config = tmp_path / "bm25.yaml"
    config.write_text(yaml.safe_dump({"name": "t", "dataset": {"name": "synthetic"},
                                      "retrieval": {"name": "bm25"}}))
    with pytest.raises(ConfigError, match="retrieval is 'bm25'"):
        train_reranker(config, progress=False)
    data = yaml.safe_load(tiny_config(tmp_path).read_text())
    del data["dataset"]["probes"]
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"dataset\.probes\.split is not set"):
        train_reranker(config, progress=False)


def test_train_reranker_trains_on_the_other_part_and_the_case_runs(tmp_path: Path) -> None:
    """Real MiniLM, real training (a few batches), then the case scored with the model."""
    from memlab.eval.cli import main
    from memlab.eval.run import evaluate
    from memlab.eval.train_reranker import MANIFEST

    config = tiny_config(tmp_path)
    assert main(["train-reranker", str(config), "--negatives", "2", "--quiet"]) == 0
    manifest = json.loads((tmp_path / "model" / MANIFEST).read_text())
    dataset = load_dataset("synthetic")
    scored = ProbeSplit(part="test", seed=0).select([c.id for c in dataset])
    assert manifest["trained_on"]["part"] == "dev" and manifest["scored_on"]["part"] == "test"
    assert manifest["conversation_ids"] and not set(manifest["conversation_ids"]) & set(scored)
    assert manifest["pairs"]["positive"] > 0 and manifest["pairs"]["negative"] > 0
    trained = manifest["trained_on"]["probes"]
    assert trained == sum(1 for c in dataset if c.id in manifest["conversation_ids"]
                          for p in c.probes if p.evidence_turn_ids)
    result = evaluate(config, out=tmp_path / "run", track=False)
    items = [json.loads(line) for line in (result.run_dir / "items.jsonl").open()]
    assert items and {r["conversation_id"] for r in items} == set(scored)
    assert not [r["error"] for r in items if r["error"]]
    for row in items:  # nothing retrieved was said after the question
        assert all(hit["at"] <= row["asked_at"] for hit in row["retrieved"])


# ------------------------------------------------------------------ real data: LoCoMo

#: Sums over conv-30's first 10 probes with evidence of turn.evidence_recall@5 and
#: turn.budget_evidence_recall@1000: BM25 over turns, and its top 20 re-ordered (fuse:
#: rrf) by a MiniLM cross-encoder trained by train-reranker's mining on conv-26 (another
#: conversation; seed 0). 1,000 tokens hold all 20 short turns, so only @5 can move.
TRAINED_EXPECTED = {"bm25": (5.666666666666666, 6.916666666666666),
                    "reranked": (6.166666666666666, 6.916666666666666)}


@pytest.mark.slow
def test_trained_reranker_exact_recall_on_locomo_conv_30(tmp_path: Path,
                                                         locomo_dataset: object) -> None:
    from memlab.eval.replay import replay_conversation
    from memlab.eval.train_reranker import mine_pairs, reranker_params, train_cross_encoder

    spec = {"name": "cross_encoder", "params": {
        "base": "bm25", "top_n": 20, "passage": "sentences", "max_words": 60,
        "max_length": 128, "fuse": "rrf", "model": str(tmp_path / "model")}}
    case = load_config({"name": "t", "dataset": {"name": "locomo"}, "chunker": {"name": "turn"},
                        "retrieval": spec, "k": 10, "depth": 100, "tracking": {"mlflow": False}})
    conversations = {c.id: c for c in locomo_dataset.conversations}  # type: ignore[attr-defined]
    params = reranker_params(case)
    mined = mine_pairs(case, params, [conversations["conv-26"]], negatives=2, progress=False)
    assert mined.conversations == ["conv-26"] and mined.count(1.0) and mined.count(0.0)
    train_cross_encoder(tmp_path / "model", mined.pairs, max_length=128, seed=0)
    conversation = conversations["conv-30"]
    probes = [p for p in conversation.probes
              if p.evidence_turn_ids and p.category != "adversarial"][:10]
    measured = {}
    for label, retrieval in (("bm25", {"name": "bm25"}), ("reranked", spec)):
        config = case.model_copy(deep=True)
        config.memory.params["retrieval"] = retrieval
        items = replay_conversation(config, conversation, probes).items
        assert not [r["error"] for r in items if r.get("error")]
        assert len(items) == 10
        measured[label] = tuple(sum(r["metrics"][m] for r in items) for m in (
            "turn.evidence_recall@5", "turn.budget_evidence_recall@1000"))
    assert measured == {k: pytest.approx(v, abs=1e-9) for k, v in TRAINED_EXPECTED.items()}, \
        measured


def test_a_killed_reranker_training_resumes_from_its_checkpoint_to_the_same_weights(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        interrupt_after: Callable[[int], Callable[[], None]]) -> None:
    """Dropout on, AdamW state, two shuffled epochs: stopped after batch 3 of 4 and started
    again, the cross-encoder ends with the weights an uninterrupted training gives."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from memlab.eval.checkpoint import CHECKPOINT
    from memlab.eval.train_reranker import pair_batches, train_cross_encoder

    pairs = [(f"what pet does user {i} have?", f"user {i}: I have a {pet}", float(i % 2))
             for i, pet in enumerate(("cat", "dog", "parrot", "horse"))]
    settings: dict[str, Any] = {"epochs": 2, "batch_size": 2, "learning_rate": 1e-3,
                                "max_length": 32, "checkpoint_every": 1}
    assert [len(b) for b in pair_batches(pairs, 2, 2, 0)] == [2, 2, 2, 2]
    whole = train_cross_encoder(tmp_path / "whole", pairs, **settings)

    with pytest.raises(KeyboardInterrupt):
        train_cross_encoder(tmp_path / "resumed", pairs, on_batch=interrupt_after(3), **settings)
    assert (tmp_path / "resumed" / CHECKPOINT).is_file()
    seen: list[int] = []
    resumed = train_cross_encoder(tmp_path / "resumed", pairs,
                                  on_batch=lambda: seen.append(1), **settings)
    assert len(seen) == 4 and not (resumed / CHECKPOINT).exists()
    assert f"resuming {tmp_path / 'resumed'} after batch 3" in capsys.readouterr().err

    def weights(folder: Path) -> dict[str, Any]:
        return dict(AutoModelForSequenceClassification.from_pretrained(
            folder, local_files_only=True).state_dict())

    a, b = weights(whole), weights(resumed)
    for name, tensor in a.items():
        torch.testing.assert_close(b[name], tensor, rtol=0, atol=1e-6)
    other = train_cross_encoder(tmp_path / "other", pairs, **{**settings, "seed": 1})
    c = weights(other)
    assert not all(torch.equal(c[n], t) for n, t in a.items())  # the test can fail


def test_a_checkpoint_of_another_training_or_a_cut_off_one_is_not_resumed(
        tmp_path: Path) -> None:
    import torch

    from memlab.errors import MemlabWarning
    from memlab.eval.checkpoint import Checkpoint, training_key

    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.AdamW(model.parameters())
    first = Checkpoint(tmp_path, training_key([["a"]], 1), 2, "t")
    first.after(1, model, optimizer)
    assert not first.path.exists()  # only every second batch
    first.after(2, model, optimizer)
    assert first.resume(model, optimizer) == 2
    assert Checkpoint(tmp_path, training_key([["a"]], 2), 2, "t").resume(model, optimizer) == 0
    first.path.write_bytes(first.path.read_bytes()[:40])
    with pytest.warns(MemlabWarning, match="unreadable"):
        assert first.resume(model, optimizer) == 0
    with pytest.raises(ConfigError, match="train-reranker: checkpoint_every must be >= 1"):
        Checkpoint(tmp_path, "k", 0, "train-reranker")
