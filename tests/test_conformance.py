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
from pathlib import Path
from typing import Any

import pytest

from memlab.data import load_dataset
from memlab.spec import build, resolve
from memlab.testing.conformance import CHECKS, check_component

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
    if kind == "template":
        resolved = resolve(kind, spec)
        assert resolve(kind, resolved) == resolved  # idempotent
        _check_template(name, resolved)
        return
    call = not ((kind, name) == ("embedder", "ollama")  # no server here
                or (kind == "llm" and name != "mock"))  # real backends: their own tests
    if (kind, name) == ("store", "pgvector"):  # checked on a real server
        spec["params"] = {"dsn": request.getfixturevalue("postgres").dsn,
                          "table": "conformance"}
    if (kind, name) == ("retrieval", "cross_encoder"):  # offline: a real MiniLM on disk
        spec["params"] = {"model": str(request.getfixturevalue("local_cross_encoder"))}
    passed = check_component(kind, spec, conversation=conversation, workdir=tmp_path,
                             call=call)
    assert passed[:2] == ["spec", "params"] and (len(passed) > 2 or not call)


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
        "agent": ROOT / "tests" / "data" / "agent" / "export.json",  # the live agent wrote it
        "memlab": save_native(load_dataset("synthetic"), tmp_path / "native.json"),
    }
    spec = {"name": name, "params": {} if paths[name] is None else {"path": str(paths[name])}}
    resolved = resolve("dataset", spec)
    assert resolve("dataset", resolved) == resolved
    dataset = build("dataset", resolved)
    assert len(dataset.conversations) > 0


def test_every_listed_kind_has_a_check() -> None:
    kinds = {kind for kind, _ in LISTED}
    assert kinds <= set(CHECKS) | {"dataset", "template"}, kinds
