"""One conformance suite over every registered component of every kind.

Every name ``python -m memlab.eval ls --json`` lists is built from its resolved spec
(every default filled in), its ``params()`` round-trip to that spec, resolving is
idempotent, and the checks its kind has are run on real inputs: chunkers split a real
session, embedders give unit vectors, stores keep and return units, strategies and
memories never show a unit from after ``as_of`` and give the same hits twice, LLM
backends and scorers answer, templates render, dataset loaders load a real file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memlab.data import load_dataset
from memlab.spec import build, resolve

ROOT = Path(__file__).resolve().parents[1]

#: Specs for names that need a parameter to run here (no network, no real model call).
_MOCK = {"name": "mock", "params": {"default": "Title: Plans\nOverview: They made plans."}}
SPECS: dict[tuple[str, str], dict[str, Any]] = {
    ("chunker", "facts"): {"llm": _MOCK},
    ("chunker", "summary"): {"llm": _MOCK},
    ("memory", "tiered"): {"llm": _MOCK, "retrieval": {"name": "dense",
                                                       "params": {"embedder": "hash"}}},
    ("memory", "extracted"): {"llm": _MOCK, "embedder": "hash", "decide": "rule"},
    ("embedder", "ollama"): {"host": "http://127.0.0.1:9"},
    ("embedder", "ensemble"): {"embedders": ["hash", {"name": "hash", "params": {"dim": 64}}]},
    ("retrieval", "query_rewrite"): {"llm": _MOCK},
}


def _listed() -> list[tuple[str, str]]:
    out = subprocess.run([sys.executable, "-m", "memlab.eval", "ls", "--json"], cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=300,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"}).stdout
    return sorted((row["kind"], row["name"]) for row in json.loads(out))


LISTED = _listed()


@pytest.fixture(scope="module")
def conversation() -> Any:
    return load_dataset("synthetic").conversations[0]


@pytest.mark.parametrize(("kind", "name"), LISTED, ids=[f"{k}:{n}" for k, n in LISTED])
def test_component_conforms(kind: str, name: str, conversation: Any, tmp_path: Path,
                            request: pytest.FixtureRequest,
                            monkeypatch: pytest.MonkeyPatch, locomo_path: Path,
                            longmemeval_path: Path) -> None:
    monkeypatch.setenv("MEMLAB_CACHE_DIR", str(tmp_path / "cache"))
    spec = {"name": name, "params": SPECS.get((kind, name), {})}
    if kind == "dataset":
        _check_dataset(name, locomo_path, longmemeval_path, tmp_path)
        return
    resolved = resolve(kind, spec)
    assert resolve(kind, resolved) == resolved  # idempotent
    if kind == "template":
        _check_template(name, resolved)
        return
    component = build(kind, resolved)
    again = resolve(kind, component)
    assert again["params"] == resolved["params"]  # params() round-trips
    if (kind, name) == ("store", "pgvector"):  # the store built is checked on a real server
        component = build(kind, {"name": name, "params": {
            **resolved["params"], "dsn": request.getfixturevalue("postgres").dsn,
            "table": "conformance"}})
    if (kind, name) == ("retrieval", "cross_encoder"):  # offline: a real MiniLM on disk
        component = build(kind, {"name": name, "params": {
            **resolved["params"], "model": str(request.getfixturevalue("local_cross_encoder"))}})
    CHECKS[kind](component, conversation, tmp_path)


def _check_chunker(chunker: Any, conversation: Any, _: Path) -> None:
    session = conversation.sessions[0]
    units = chunker.split(session, conversation)
    turn_ids = {t.id for t in session.turns}
    for unit in units:
        assert set(unit.source_turn_ids) <= turn_ids | {session.id}
        assert unit.session_id == session.id and unit.text


def _check_embedder(embedder: Any, *_: Any) -> None:
    if type(embedder).__name__ == "OllamaEmbedder":
        assert embedder.params()["host"] == "http://127.0.0.1:9"  # no server here
        return
    vectors = embedder.encode(["I keep bees.", "My sister lives in Lyon."])
    assert vectors.shape[0] == 2 and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def _check_store(store: Any, conversation: Any, tmp_path: Path) -> None:
    from memlab.chunkers.turn import TurnChunker

    if type(store).__name__ == "SqliteStore":
        store = build("store", {"name": "sqlite", "params": {"path": str(tmp_path / "s.db")}})
    units = TurnChunker().split(conversation.sessions[0])
    store.add(units)
    assert [u.id for u in store.get([units[0].id])] == [units[0].id]
    assert store.count() == len(units)
    store.close()


def _visible_hits(searcher: Any, conversation: Any, *, memory: bool) -> None:
    probe = conversation.probes[0]
    cut = conversation.sessions[len(conversation.sessions) // 2].started_at
    as_of = cut - timedelta(seconds=1)
    first = searcher.search(probe.question, 10, as_of, probe=probe)
    second = searcher.search(probe.question, 10, as_of, probe=probe)
    assert [(h.unit.id, h.score) for h in first] == [(h.unit.id, h.score) for h in second]
    assert all(h.unit.at <= as_of for h in first), "a unit from after as_of was shown"


def _check_retrieval(strategy: Any, conversation: Any, _: Path) -> None:
    from memlab.chunkers.turn import TurnChunker

    chunker = TurnChunker()
    strategy.index([u for s in conversation.sessions for u in chunker.split(s, conversation)])
    _visible_hits(strategy, conversation, memory=False)


def _check_memory(memory: Any, conversation: Any, _: Path) -> None:
    stored = [u for session in conversation.sessions for u in memory.ingest(session,
                                                                            conversation)]
    assert {u.id for u in stored} <= {u.id for u in memory.units()} or stored
    if type(memory).__name__ != "ExtractedMemory":  # the mock extracts no grounded fact
        assert memory.units()
    _visible_hits(memory, conversation, memory=True)


def _check_llm(llm: Any, *_: Any) -> None:
    if type(llm).__name__ != "MockLLM":
        assert llm.params() and callable(llm.generate)  # real backends: their own tests
        return
    completion = llm.generate([{"role": "user", "content": "hi"}])
    assert completion.error is None and completion.text


def _check_scorer(scorer: Any, *_: Any) -> None:
    from memlab.data.schema import Probe  # noqa: F401  (scorers take an optional probe)

    value = scorer.score("a blue car", "a blue car")
    assert value is None or 0.0 <= value <= 1.0


def _check_template(name: str, resolved: dict[str, Any]) -> None:
    from memlab.prompts import get_template

    template = get_template(name)
    assert resolved["identity"]["version"] == template.version
    assert len(resolved["identity"]["sha256"]) == 64


def _check_dataset(name: str, locomo: Path, longmemeval: Path, tmp_path: Path) -> None:
    from memlab.data.loaders.native import save_native

    paths: dict[str, Any] = {
        "locomo": locomo, "longmemeval": longmemeval, "synthetic": None,
        "omi": ROOT / "tests" / "data" / "omi" / "transcripts.json",
        "memlab": save_native(load_dataset("synthetic"), tmp_path / "native.json"),
    }
    spec = {"name": name, "params": {} if paths[name] is None else {"path": str(paths[name])}}
    resolved = resolve("dataset", spec)
    assert resolve("dataset", resolved) == resolved
    dataset = build("dataset", resolved)
    assert len(dataset.conversations) > 0


CHECKS = {"chunker": _check_chunker, "embedder": _check_embedder, "store": _check_store,
          "retrieval": _check_retrieval, "memory": _check_memory, "llm": _check_llm,
          "scorer": _check_scorer}


def test_every_listed_kind_has_a_check() -> None:
    kinds = {kind for kind, _ in LISTED}
    assert kinds <= set(CHECKS) | {"dataset", "template"}, kinds
