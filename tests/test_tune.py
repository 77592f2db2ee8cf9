"""``tune``: the search space, the dev/test split, the study on disk, MLflow, LoCoMo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from memlab.data.schema import Dataset
from memlab.errors import ConfigError
from memlab.eval.tune import tune
from memlab.eval.tune_space import dimensions, parse_tune, split_conversations
from memlab.metrics.stats import unpaired_difference

ROOT = Path(__file__).resolve().parents[1]
SYNTH_DEV = ["synth-00", "synth-02"]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMLAB_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def _config(**tune_fields: Any) -> dict[str, Any]:
    spec = {"metric": "turn.budget_evidence_recall@1000", "trials": 3, "seed": 0,
            "dev": SYNTH_DEV,
            "space": {"chunker.params.size": [2, 4], "retrieval.params.k1": {
                "low": 0.5, "high": 2.0}}}
    spec.update(tune_fields)
    return {"name": "t-tune", "dataset": {"name": "synthetic"}, "chunker": {"name": "window"},
            "retrieval": {"name": "bm25"}, "tracking": {"mlflow": False}, "tune": spec}


def test_space_entries_become_optuna_dimensions() -> None:
    dims = dimensions({"a.b": [1, 2], "c": {"low": 1, "high": 8},
                       "d": {"low": 0.01, "high": 1.0, "log": True},
                       "e": {"choices": [{"name": "bm25"}, "hybrid"]}}, "x.yaml")
    assert [(d.key, d.kind) for d in dims] == [
        ("a.b", "categorical"), ("c", "int"), ("d", "float"), ("e", "categorical")]
    assert dims[3].config_value('{"name": "bm25"}') == {"name": "bm25"}
    assert dims[2].spec["log"] is True


@pytest.mark.parametrize(("space", "message"), [
    ({}, "tune.space is empty"),
    ({"k": []}, "tune.space.k: the list of choices is empty"),
    ({"k": {"low": 3, "high": 1}}, "tune.space.k: low (3) must be below high (1)"),
    ({"k": {"low": 1}}, "tune.space.k: a range needs both low and high"),
    ({"k": {"low": 0, "high": 1, "log": True}}, "tune.space.k: a log range needs low > 0"),
    ({"k": {"low": 1, "high": 2, "spread": 3}}, "tune.space.k: unknown range field"),
    ({"k": "bm25"}, "tune.space.k: expected a list of choices or a range"),
    ({"k": {"low": "a", "high": 2}}, "tune.space.k.low: expected a number"),
    ({"dataset.params.clamp_asked_at": [True]}, "tune.space.dataset.params.clamp_asked_at: "
                                                "cannot tune the dataset"),
])
def test_bad_space_declarations_name_their_yaml_path(space: dict[str, Any],
                                                     message: str) -> None:
    with pytest.raises(ConfigError, match=r"x.yaml: " + message.replace("(", r"\(")
                       .replace(")", r"\)")):
        dimensions(space, "x.yaml")


def test_a_space_key_the_config_rejects_is_named(tmp_path: Path) -> None:
    config = _config(space={"retrieval.params.k_one": [1.0, 2.0]})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=r"(?s)bad.yaml: tune.space.retrieval.params.k_one: "
                       r"setting it to 1.0 gives an invalid config.*k_one"):
        tune(path, out=tmp_path / "out")


def test_validate_checks_a_tune_config_without_running_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from memlab.eval.cli import main

    assert main(["validate", str(ROOT / "experiments" / "locomo-tune.yaml")]) == 0
    assert capsys.readouterr().out.startswith("ok: locomo-tune (locomo, tune: ")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_config(space={"retrieval.params.k_one": [1.0, 2.0]})))
    assert main(["validate", str(path)]) != 0
    assert "tune.space.retrieval.params.k_one" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_tune_section_errors_name_their_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tune.direction"):
        parse_tune({"space": {"a": [1]}, "dev": ["x"], "direction": "up"}, "x.yaml")
    with pytest.raises(ConfigError, match=r"name the dev conversations"):
        parse_tune({"space": {"a": [1]}}, "x.yaml")
    with pytest.raises(ConfigError, match=r"either dev/test conversation lists or a split"):
        parse_tune({"space": {"a": [1]}, "dev": ["x"], "split": {}}, "x.yaml")
    with pytest.raises(ConfigError, match=r"no tune section"):
        tune({k: v for k, v in _config().items() if k != "tune"}, out=tmp_path)


def test_splits_are_disjoint_and_checked() -> None:
    known = [f"c{i}" for i in range(10)]
    spec = parse_tune({"space": {"a": [1]}, "split": {"dev_fraction": 0.3, "seed": 1}}, "x")
    dev, test = split_conversations(spec, known, "x")
    assert len(dev) == 3 and len(test) == 7 and not set(dev) & set(test)
    assert sorted(dev + test) == sorted(known)
    assert split_conversations(spec, known, "x") == (dev, test)  # the seed fixes it
    spec = parse_tune({"space": {"a": [1]}, "dev": ["c1"], "test": ["c1", "c2"]}, "x")
    with pytest.raises(ConfigError, match=r"tune.test: c1 also in tune.dev"):
        split_conversations(spec, known, "x")
    spec = parse_tune({"space": {"a": [1]}, "dev": ["c1", "nope"]}, "x")
    with pytest.raises(ConfigError, match=r"tune.dev: no conversation.*nope"):
        split_conversations(spec, known, "x")


def test_unpaired_difference_is_deterministic_and_brackets_the_difference() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.random(200), rng.random(150) + 0.1
    first = unpaired_difference(a, b, seed=4)
    assert first == unpaired_difference(a, b, seed=4)
    assert first["mean_diff"] == pytest.approx(b.mean() - a.mean())
    assert first["ci_low"] < first["mean_diff"] < first["ci_high"]
    assert (first["n_a"], first["n_b"]) == (200, 150)
    same = unpaired_difference([0.5] * 5, [0.5] * 7)
    assert same["ci_low"] == same["ci_high"] == same["mean_diff"] == 0.0


def test_tune_scores_only_dev_then_test_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "tune"
    result = tune(_config(), out=out, progress=False)
    data = json.loads((out / "tune.json").read_text())
    assert data["dev_conversations"] == SYNTH_DEV
    assert data["test_conversations"] == ["synth-01", "synth-03"]
    done = [t for t in data["trials"] if t["state"] == "COMPLETE"]
    assert len(done) == 3
    for trial in done:  # every trial saw the dev conversations only
        rows = _rows(Path(trial["run_dir"]))
        assert {r["conversation_id"] for r in rows} == set(SYNTH_DEV)
    assert {r["conversation_id"] for r in _rows(Path(data["test"]["run_dir"]))} == {
        "synth-01", "synth-03"}
    assert result.best_params["chunker.params.size"] in (2, 4)
    assert result.dev["mean"] == max(t["value"] for t in done)
    assert result.difference["mean_diff"] == pytest.approx(
        result.test["mean"] - result.dev["mean"])
    assert (out / "history.png").stat().st_size > 0
    again = tune(_config(), out=out, trials=4, progress=False)  # resumes: one more trial
    numbers = [t["number"] for t in again.trials if t["state"] == "COMPLETE"]
    assert numbers == [0, 1, 2, 3]
    assert [t["params"] for t in again.trials[:3]] == [t["params"] for t in done]


def test_a_changed_config_does_not_resume_a_study(tmp_path: Path) -> None:
    tune(_config(trials=1), out=tmp_path, progress=False)
    with pytest.raises(ConfigError, match=r"holds a tune of a different config"):
        tune(_config(trials=1, metric="turn.recall_any@5"), out=tmp_path, progress=False)


def test_an_unknown_metric_is_named_before_any_trial_runs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tune.metric 'turn.recal_any@5' is not a metric "
                       r"this config scores; did you mean 'turn.recall_any@5'"):
        tune(_config(metric="turn.recal_any@5"), out=tmp_path, progress=False)
    assert not list(tmp_path.iterdir())  # nothing ran
    config = tmp_path.parent / f"{tmp_path.name}-c.yaml"
    config.write_text(yaml.safe_dump(_config(metric="f1")))
    done = subprocess.run([sys.executable, "-m", "memlab.eval", "validate", str(config)],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "tune.metric 'f1' is not a metric" in done.stderr


@pytest.mark.slow  # a real MLflow store and its background logger process
def test_mlflow_gets_a_parent_with_trials_and_final_runs(tmp_path: Path) -> None:
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = _config(trials=2)
    config["tracking"] = {"mlflow": True, "tracking_uri": uri, "experiment": "t-tune"}
    result = tune(config, out=tmp_path / "tune", progress=False)
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("t-tune").experiment_id
    runs = client.search_runs([experiment])
    parent = result.mlflow["parent_run_id"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent]
    roles = sorted(r.data.tags["memlab.tune.role"] for r in children)
    assert roles == ["dev", "test", "trial", "trial"]
    logged = client.get_run(parent).data
    assert logged.metrics["dev"] == pytest.approx(result.dev["mean"])
    assert logged.metrics["test_minus_dev"] == pytest.approx(result.difference["mean_diff"])
    assert logged.params["best.chunker.params.size"] == str(
        result.best_params["chunker.params.size"])


def _rows(run_dir: Path) -> list[dict[str, Any]]:
    from memlab.eval.items import read_items

    return read_items(run_dir / "items.jsonl")


@pytest.mark.slow
def test_tune_on_locomo_tests_on_the_other_five_conversations(
        tmp_path: Path, locomo_dataset: Dataset) -> None:
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = yaml.safe_load((ROOT / "experiments" / "locomo-tune.yaml").read_text())
    config["tune"]["trials"] = 2
    config["tune"]["space"] = {"retrieval.params.base.params.base.params.k1": {
        "low": 0.8, "high": 2.0}}
    config["tracking"] = {"mlflow": True, "tracking_uri": uri}
    result = tune(config, out=tmp_path / "tune", progress=False)
    dev, test = result.dev_conversations, result.test_conversations
    assert dev == ["conv-26", "conv-30", "conv-41", "conv-42", "conv-43"]
    assert not set(dev) & set(test) and len(test) == 5
    assert set(dev) | set(test) == {c.id for c in locomo_dataset}
    expected = {p.id for c in locomo_dataset if c.id in test for p in c.probes}
    assert {r["probe_id"] for r in _rows(Path(result.test["run_dir"]))} == expected
    assert result.test["probes"] == len(expected)
    for trial in result.trials:
        assert {r["conversation_id"] for r in _rows(Path(trial["run_dir"]))} == set(dev)
    assert 0.5 < result.dev["mean"] < 1 and 0.5 < result.test["mean"] < 1
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("memlab-locomo").experiment_id
    children = client.search_runs(
        [experiment], filter_string=f"tags.mlflow.parentRunId = '{result.mlflow['parent_run_id']}'")
    assert sorted(r.data.tags["memlab.tune.role"] for r in children) == [
        "dev", "test", "trial", "trial"]
