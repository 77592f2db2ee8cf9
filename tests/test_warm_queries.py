"""Questions embedded ahead in batches (``warm_queries``): same vectors, same items,
one model call instead of one per search."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from memlab.data import load_dataset
from memlab.embed.hashing import HashEmbedder
from memlab.eval.run import evaluate
from memlab.memory.flat import FlatMemory
from memlab.testing.embedders import CountingEmbedder


def _memory(model: CountingEmbedder, cache: Path) -> FlatMemory:
    hybrid = {"name": "hybrid", "params": {"dense": {"embedder": model, "cache": str(cache)}}}
    timed = {"name": "time_aware", "params": {"base": hybrid}}
    return FlatMemory(chunker="turn", retrieval={"name": "budget", "params": {"base": timed}})


def test_warming_through_wrappers_embeds_the_questions_once_and_changes_no_hit(
        tmp_path: Path) -> None:
    data = load_dataset("synthetic")
    conversation = data.conversations[0]
    probes = conversation.probes
    runs = {}
    for warm in (False, True):
        model = CountingEmbedder(HashEmbedder())
        memory = _memory(model, tmp_path / f"{warm}.sqlite")
        for session in conversation.sessions:
            memory.ingest(session, conversation)
        memory.prepare()
        before = len(model.calls)
        if warm:
            memory.warm_queries([p.question for p in probes])
            assert len(model.calls) == before + 1  # one batch for every question
            assert sorted(model.calls[-1]) == sorted({p.question for p in probes})
        hits = [[(h.unit.id, h.score) for h in memory.search(p.question, 10, p.asked_at)]
                for p in probes]
        searched = len(model.calls) - before - warm
        runs[warm] = hits
        assert searched == (0 if warm else len({p.question for p in probes}))
    assert runs[True] == runs[False]


def _locomo(limit: int, **extra: Any) -> dict[str, Any]:
    return {"name": "w", "dataset": {"name": "locomo", "probes": {"limit": limit}},
            "chunker": {"name": "turn"}, "retrieval": {"name": "hybrid"},
            "tracking": {"mlflow": False}, **extra}


def _without_timing(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "latency_seconds"}


def test_real_minilm_on_locomo_gives_the_same_items_warmed_or_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MEMLAB_CACHE_DIR", str(tmp_path / "warm-cache"))
    warmed = evaluate(_locomo(40), out=tmp_path / "warm", progress=False, track=False)
    monkeypatch.setenv("MEMLAB_CACHE_DIR", str(tmp_path / "cold-cache"))  # questions uncached
    monkeypatch.setattr(FlatMemory, "warm_queries", property(lambda self: None))
    single = evaluate(_locomo(40), out=tmp_path / "single", progress=False, track=False)
    assert [_without_timing(r) for r in warmed.items()] == \
        [_without_timing(r) for r in single.items()]
    rows = [json.loads(line) for line in (tmp_path / "warm" / "memory.jsonl").open()]
    assert rows and all(row["query_embed_seconds"] > 0 for row in rows)
    assert warmed.summary["latency_seconds"]["query_embed_per_probe"]["n"] == len(rows)


def test_a_memory_that_embeds_no_query_records_no_query_time(tmp_path: Path) -> None:
    config = {"name": "w", "dataset": {"name": "synthetic"}, "retrieval": {"name": "bm25"},
              "tracking": {"mlflow": False}}
    run = evaluate(config, out=tmp_path / "bm25", progress=False, track=False)
    rows = [json.loads(line) for line in (tmp_path / "bm25" / "memory.jsonl").open()]
    assert rows and not any("query_embed_seconds" in row for row in rows)
    assert "query_embed_per_probe" not in run.summary["latency_seconds"]
    assert all(set(row["latency_seconds"]) == {"search", "score"} for row in run.items())
