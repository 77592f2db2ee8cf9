"""``run --repeats N``: the same config run N times with the answer model's seed varied,
each an ordinary run directory, and every metric's spread over them."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from memlab.data import load_dataset
from memlab.errors import ConfigError
from memlab.eval.cli import main
from memlab.eval.repeat import evaluate_repeats


def _config(answers: list[str], **answer: Any) -> dict[str, Any]:
    conversation = load_dataset("synthetic").conversations[0].id
    return {"name": "rep", "dataset": {"name": "synthetic", "probes": {
                "conversations": [conversation]}},
            "retrieval": {"name": "bm25"}, "tracking": {"mlflow": False},
            "cache": {"llm": "off"}, "scorers": ["exact_match"],
            "answer": {"llm": {"name": "mock", "params": {"responses": answers, **answer}}}}


def test_repeats_vary_the_seed_and_report_the_spread(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    probes = load_dataset("synthetic").conversations[0].probes
    gold = [p.answer for p in probes]  # the mock answers them in turn: seed 0 all right
    result = evaluate_repeats(_config(gold), 3, out=tmp_path / "rep", progress=False)
    assert [r.run_dir.name for r in result.runs] == ["seed-0", "seed-1", "seed-2"]
    assert [r.config.answer.llm.params["seed"] for r in result.runs] == [0, 1, 2]
    means = [r.summary["metrics"]["exact_match"]["all"]["mean"] for r in result.runs]
    assert means[0] == 1.0 and means[1] < 1.0
    spread = result.spread["exact_match"]
    assert spread == {"mean": pytest.approx(statistics.fmean(means)),
                      "sd": pytest.approx(statistics.stdev(means)),
                      "min": min(means), "max": max(means), "runs": 3}
    saved = json.loads((tmp_path / "rep" / "repeats.json").read_text())
    assert [r["seed"] for r in saved["runs"]] == [0, 1, 2]
    assert saved["spread"]["exact_match"]["sd"] == pytest.approx(spread["sd"])
    # the CLI resumes the same directory (every run finished: nothing is answered again)
    config = tmp_path / "rep.yaml"
    config.write_text(json.dumps(_config(gold)))
    assert main(["run", str(config), "--repeats", "3", "--out", str(tmp_path / "rep"),
                 "--no-mlflow"]) == 0
    out = capsys.readouterr().out
    assert "rep: 3 runs, answer seeds varied" in out
    assert ["exact_match", f"{spread['mean']:.3f}", f"{spread['sd']:.3f}"] in [
        line.split()[:3] for line in out.splitlines()]


def test_repeats_refuse_what_cannot_vary(tmp_path: Path) -> None:
    retrieval_only = _config(["x"])
    del retrieval_only["answer"]
    with pytest.raises(ConfigError, match="retrieval only - every repeat would give the same"):
        evaluate_repeats(retrieval_only, 2, out=tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match="repeats must be an integer >= 2, got 1"):
        evaluate_repeats(_config(["x"]), 1, out=tmp_path / "b", progress=False)
    greedy = _config(["x"])
    greedy["answer"]["llm"] = {"name": "llamacpp", "params": {"model_path": "/nowhere.gguf"}}
    with pytest.raises(ConfigError, match="no model file"):  # validated before any run
        evaluate_repeats(greedy, 2, out=tmp_path / "c", progress=False)


@pytest.mark.slow
def test_repeats_with_the_embedded_qwen_sampling(tmp_path: Path) -> None:
    """The real 0.5B at temperature 0.9: the seeds reach llama.cpp (answers differ); at
    temperature 0 a note says the spread is 0 by construction."""
    config = {**_config([]), "k": 3}
    config["dataset"]["probes"]["limit"] = 2
    config["answer"] = {"llm": {"name": "llamacpp", "params": {"temperature": 0.9}},
                        "max_answer_tokens": 16}
    result = evaluate_repeats(config, 2, out=tmp_path / "hot", progress=False)
    answers = [[row["answer"] for row in r.items()] for r in result.runs]
    assert len(answers[0]) == len(answers[1]) == 2 and answers[0] != answers[1]
    assert not result.notes
    config["answer"]["llm"]["params"]["temperature"] = 0.0
    config["dataset"]["probes"]["limit"] = 1
    greedy = evaluate_repeats(config, 2, out=tmp_path / "greedy", progress=False)
    first, second = ([row["answer"] for row in r.items()] for r in greedy.runs)
    assert first == second
    assert greedy.notes and "spread is 0 by construction" in greedy.notes[0]
    assert all(s["sd"] == 0 for s in greedy.spread.values())


def test_memlab_repeat_is_the_same_function(tmp_path: Path) -> None:
    import memlab

    result = memlab.repeat(_config(["x", "y"]), 2, out=tmp_path / "r", progress=False)
    assert result.name == "rep" and [r.run_dir.name for r in result.runs] == ["seed-0", "seed-1"]
