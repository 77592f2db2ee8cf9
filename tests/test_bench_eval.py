"""``python -m memlab.bench eval --sweep``: a whole sweep timed cold and warm (figures are
printed, never asserted: speed is measured in benchmarks, not in tests)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from memlab.bench.__main__ import main


def test_sweep_bench_times_a_real_sweep_cold_then_warm(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text("name: tiny\ndataset: {name: synthetic}\n"
                      "grid:\n  retrieval.name: [bm25, none]\n")
    monkeypatch.setenv("MEMLAB_CACHE_DIR", str(tmp_path / "untouched"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'untouched.db'}")
    assert main(["eval", "--sweep", str(config)]) == 0
    out = capsys.readouterr().out
    values = dict(re.findall(r"^(\S.*?)  +(\S+)$", out, re.MULTILINE))
    assert values["runs in the sweep"] == "2" and values["probes, all runs"] == "96"
    cold = float(values["sweep, cold caches (s)"])
    warm = float(values["sweep, warm caches (s)"])
    assert cold > 0 and warm > 0
    ratio = float(values["speed-up warm vs cold"].rstrip("x"))  # from unrounded times
    low, high = (cold - 0.05) / (warm + 0.05), (cold + 0.05) / max(warm - 0.05, 1e-9)
    assert low - 0.05 <= ratio <= high + 0.05
    # the bench uses its own temporary cache and MLflow store, never the caller's
    assert not (tmp_path / "untouched").exists() and not (tmp_path / "untouched.db").exists()


def test_sweep_bench_times_the_warm_pass_alone_without_mlflow(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text("name: tiny\ndataset: {name: synthetic}\n"
                      "grid:\n  retrieval.name: [bm25, none]\n")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'untouched.db'}")
    monkeypatch.setenv("MEMLAB_CACHE_DIR", "restored-after-the-test")
    cache = tmp_path / "cache"
    assert main(["eval", "--sweep", str(config), "--no-mlflow", "--cache", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "no MLflow" in out and "cold" not in out
    values = dict(re.findall(r"^(\S.*?)  +(\S+)$", out, re.MULTILINE))
    assert values["runs in the sweep"] == "2" and float(values["sweep, warm caches (s)"]) > 0
    assert os.environ["MEMLAB_CACHE_DIR"] == str(cache)  # the given cache, not a new one
    assert not (tmp_path / "untouched.db").exists()


def test_probes_bench_times_every_search_of_each_case(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    config = tmp_path / "tiny.yaml"
    config.write_text("name: tiny\ndataset: {name: synthetic}\nchunker: {name: window}\n"
                      "grid:\n  cases:\n    - {label: bm25, retrieval: {name: bm25}}\n"
                      "    - label: budget-time\n      retrieval: {name: budget, params: "
                      "{speaker_from: 1, base: {name: time_aware, params: {base: bm25}}}}\n")
    monkeypatch.setenv("MEMLAB_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "rows.json"
    assert main(["probes", str(config), "--only", "budget-time", "--only", "bm25",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    written = json.loads(out.read_text())
    rows = written["rows"]
    assert all(written["reference_ms"][k] > 0 for k in ("before", "after"))
    assert re.search(r"^machine reference .*: \d+\.\d+ before the cases$", printed,
                     re.MULTILINE)
    assert [r["case"] for r in rows] == ["budget-time", "bm25"]  # --only's order
    for row in rows:
        assert row["probes"] == 48  # every probe of the synthetic set, searched once
        for kind in ("cpu_ms", "wall_ms"):
            stats = row[kind]
            assert 0 < stats["p50"] <= stats["p95"] <= stats["max"]
        assert re.search(rf"^{row['case']} +48 ", printed, re.MULTILINE)
    assert main(["probes", str(config), "--conversations", "1", "--only", "bm25"]) == 0
    assert re.search(r"^bm25 +(\d+) ", capsys.readouterr().out, re.MULTILINE)[1] == "12"
    # --repeat: each probe searched 3 times, timed by its median (still one time a probe)
    assert main(["probes", str(config), "--only", "budget-time", "--repeat", "3",
                 "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["probes"] == 48 and row["repeat"] == 3
