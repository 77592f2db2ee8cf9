"""``python -m memlab.eval ls``: every registered component, with parameters and defaults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from memlab.components import describe, registry
from memlab.errors import UnknownComponentError

ROOT = Path(__file__).resolve().parents[1]

EXPECTED = {
    "dataset": {"locomo", "longmemeval", "memlab", "omi", "synthetic"},
    "chunker": {"turn", "window", "session", "token_window", "time_gap", "facts", "summary"},
    "embedder": {"sentence-transformers", "st", "ollama", "hash"},
    "store": {"memory", "pgvector", "sqlite"},
    "retrieval": {"bm25", "dense", "hybrid", "recency", "mmr", "full_context", "none",
                  "oracle", "budget", "hierarchical", "time_aware", "keys", "llm_rerank"},
    "template": {"answer_short", "answer_reasoning", "extract_facts", "extract_keys",
                 "rerank_yesno", "session_summary",
                 "judge_longmemeval", "judge_locomo"},
    "llm": {"llamacpp", "ollama", "openai", "mock"},
    "memory": {"flat", "tiered", "extracted"},
    "scorer": {"locomo_f1", "exact_match", "token_f1_set", "bleu1", "abstention"},
}


def test_ls_json_lists_every_component_with_parameters() -> None:
    out = subprocess.run([sys.executable, "-m", "memlab.eval", "ls", "--json"], cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=300,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"}).stdout
    rows = json.loads(out)
    listed: dict[str, set[str]] = {}
    for row in rows:
        listed.setdefault(row["kind"], set()).add(row["name"])
        assert isinstance(row["params"], list)
    for kind, names in EXPECTED.items():
        assert names <= listed[kind], (kind, names - listed[kind])
    window = next(r for r in rows if r["kind"] == "chunker" and r["name"] == "window")
    assert [(p["name"], p["default"]) for p in window["params"]] == [("size", 4), ("stride", 2)]
    bm25 = next(r for r in rows if r["kind"] == "retrieval" and r["name"] == "bm25")
    assert {"k", "threshold"} <= {p["name"] for p in bm25["params"]}


def test_ls_of_one_kind_and_unknown_kind() -> None:
    assert {r["name"] for r in describe(["store"])} == EXPECTED["store"]
    with pytest.raises(UnknownComponentError,
                       match=r"unknown component kind 'chunkr' \(did you mean 'chunker'\?\)"):
        registry("chunkr")
