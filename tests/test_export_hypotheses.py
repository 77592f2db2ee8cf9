"""``python -m memlab.eval export``: a run's answers in LongMemEval's hypothesis format, the
JSON lines its own ``src/evaluation/evaluate_qa.py`` reads (``question_id``, ``hypothesis``),
from a real run over real LongMemEval questions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from memlab.eval.cli import main
from memlab.eval.run import evaluate


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMLAB_CACHE_DIR", str(tmp_path / "cache"))


def _config(**extra: Any) -> dict[str, Any]:
    return {"name": "lme-export", "tracking": {"mlflow": False}, "retrieval": {"name": "bm25"},
            "dataset": {"name": "longmemeval", "probes": {"sample": 4, "seed": 0}}, **extra}


def test_export_writes_one_hypothesis_per_answered_question(
        tmp_path: Path, longmemeval_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mock = {"name": "mock", "params": {"responses": ["The answer is 42."]}}
    run = evaluate(_config(answer={"llm": mock}), out=tmp_path / "run", progress=False)
    out = tmp_path / "hyp.jsonl"
    assert main(["export", str(run.run_dir), "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines == [{"question_id": row["probe_id"], "hypothesis": "The answer is 42."}
                     for row in run.items()]
    official = {q["question_id"] for q in json.loads(longmemeval_path.read_text())}
    assert len(lines) == 4 and {line["question_id"] for line in lines} <= official
    printed = capsys.readouterr().out
    assert f"wrote {out}: 4 hypotheses" in printed and "evaluate_qa.py gpt-4o" in printed
    assert main(["export", str(run.run_dir), "--out", str(out)]) == 2  # exists
    assert "exists; pass --force" in capsys.readouterr().err


def test_a_run_without_answers_has_nothing_to_export(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = evaluate(_config(), out=tmp_path / "run", progress=False)
    assert main(["export", str(run.run_dir), "--out", str(tmp_path / "h.jsonl")]) == 2
    assert "no answered probe to export" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "h.jsonl")]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_a_failed_answer_is_an_empty_hypothesis_not_left_out(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mock = {"name": "mock", "params": {"responses": ["Yes.", ""]}}  # "" is a failed call
    run = evaluate(_config(answer={"llm": mock}, fail_on_error=1.0), out=tmp_path / "run",
                   progress=False)
    failed = {row["probe_id"] for row in run.items() if row.get("error")}
    assert 0 < len(failed) < 4
    out = tmp_path / "hyp.jsonl"
    assert main(["export", str(run.run_dir), "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 4  # every question: the judge's accuracy is over all of them
    assert {line["question_id"] for line in lines if line["hypothesis"] == ""} == failed
    assert f"({len(failed)} of them empty" in capsys.readouterr().out


def test_a_run_on_another_dataset_is_exported_without_the_official_judge_command(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mock = {"name": "mock", "params": {"responses": ["Paris."]}}
    config = {**_config(answer={"llm": mock}),
              "dataset": {"name": "synthetic", "probes": {"limit": 3}}}
    run = evaluate(config, out=tmp_path / "run", progress=False)
    assert main(["export", str(run.run_dir), "--out", str(tmp_path / "h.jsonl")]) == 0
    printed = capsys.readouterr().out
    assert "the run's dataset is 'synthetic-small', not LongMemEval" in printed
    assert "gpt-4o" not in printed
