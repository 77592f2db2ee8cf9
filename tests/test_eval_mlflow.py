"""Runs logged to a real ``mlflow server`` on 127.0.0.1 and read back through the client
(the server and client fixtures are in conftest.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from memlab.eval.run import evaluate


@pytest.mark.slow
def test_run_is_logged_to_a_real_tracking_server(served: Any, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from memlab.eval import tracking

    config = {"name": "served", "dataset": {"name": "synthetic"},
              "retrieval": {"name": "bm25"}, "tracking": {"experiment": "memlab-test"}}
    monkeypatch.setattr(tracking, "BATCH_PARAMS", 10)  # params in several log_batch calls
    result = evaluate(config, out=tmp_path / "run", progress=False)
    assert result.mlflow_run_id

    client = served
    run = client.get_run(result.mlflow_run_id)
    assert client.get_experiment(run.info.experiment_id).name == "memlab-test"
    params = run.data.params
    assert params["memory.params.retrieval.name"] == "bm25"
    assert params["dataset.name"] == "synthetic"
    # every resolved default is a param, nested components included
    bm25 = "memory.params.retrieval.params."
    assert {params[bm25 + key] for key in ("k1", "b", "method", "stopwords", "stemmer")} == {
        "1.5", "0.75", "lucene", "en", "snowball"}
    summary = result.summary["metrics"]["turn.recall_any@5"]
    assert run.data.metrics["turn.recall_any_at_5"] == pytest.approx(summary["all"]["mean"])
    assert run.data.metrics["turn.recall_any_at_5.knowledge-update"] == pytest.approx(
        summary["knowledge-update"]["mean"])
    assert run.data.metrics["probes"] == 48
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert top == {"plots", "run", "tables"}
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {"plots/category_bars.png", "plots/latency.png", "plots/pareto.png"}
    files = {a.path for a in client.list_artifacts(run.info.run_id, "run")}
    assert (tmp_path / "run" / ".lock").exists() and "run/.lock" not in files
    assert {"run/metrics.json", "run/items.jsonl", "run/config.resolved.yaml"} <= files
    local = client.download_artifacts(run.info.run_id, "run/metrics.json", str(tmp_path))
    assert Path(local).read_text() == (tmp_path / "run" / "metrics.json").read_text()

    # logged already: `log` says so instead of a duplicate; --again mirrors it once more,
    # from the run directory alone, as after a tracking-server outage
    log = [sys.executable, "-m", "memlab.eval", "log", str(tmp_path / "run")]
    out = subprocess.run(log, capture_output=True, text=True, timeout=300, check=True).stdout
    assert out.strip().endswith(f"already logged as MLflow run {run.info.run_id} (--again "
                                "logs it once more)")
    out = subprocess.run([*log, "--again"], capture_output=True, text=True, timeout=300,
                         check=True).stdout
    again = client.get_run(out.strip().rsplit(" ", 1)[-1])
    assert again.info.run_id != run.info.run_id
    assert again.info.experiment_id == run.info.experiment_id
    assert again.data.params == run.data.params
    assert again.data.metrics == run.data.metrics
    resolved = tracking.run_params(tracking.RunRecord.open(tmp_path / "run").config)
    assert len(run.data.params) == len(resolved) > 30  # every batch arrived


ANSWERED = {"name": "answered", "dataset": {"name": "synthetic"}, "retrieval": {"name": "bm25"},
            "k": 5, "tracking": {"experiment": "memlab-genai-test"},
            "answer": {"llm": {"name": "mock", "params": {"responses": ["blue", "2"]}},
                       "template": {"name": "answer_short"}},
            "judge": {"llm": {"name": "mock", "params": {"responses": ["yes", "no"]}}}}


@pytest.mark.slow
def test_answered_run_has_a_trace_per_probe_its_prompts_and_its_dataset(
        served: Any, tmp_path: Path) -> None:
    import hashlib

    import mlflow

    from memlab.data.paths import SYNTHETIC_DEFAULT
    from memlab.eval import mlflow_datasets, mlflow_prompts
    from memlab.eval.tracking import log_run
    from memlab.prompts import get_template

    result = evaluate(ANSWERED, out=tmp_path / "run", progress=False)
    client = served
    run = client.get_run(result.mlflow_run_id)
    experiment_id = run.info.experiment_id
    assert run.info.run_name == "turn / bm25 k5 / mock"
    assert run.data.tags["memlab.judge"] == "mock (judge_longmemeval)"

    # one trace per probe, linked to the run, with the probe's phases as spans
    traces = client.search_traces(locations=[experiment_id], run_id=run.info.run_id,
                                  max_results=100)
    items = {row["probe_id"]: row for row in result.items()}
    assert len(traces) == 48
    by_probe = {t.info.tags["probe_id"]: t for t in traces}
    assert set(by_probe) == set(items)
    for probe_id, trace in by_probe.items():
        row = items[probe_id]
        spans = {s.name: s for s in trace.data.spans}
        assert sorted(spans) == ["generate", "judge", "probe", "prompt", "score", "search"]
        assert spans["search"].span_type == "RETRIEVER"
        assert [d["id"] for d in spans["search"].outputs] == [h["id"] for h in row["retrieved"]]
        assert spans["generate"].span_type == "LLM"
        assert spans["generate"].attributes["mlflow.chat.tokenUsage"]["input_tokens"] == \
            row["tokens"]["prompt"]
        assert trace.info.token_usage["output_tokens"] == row["tokens"]["completion"]
        assert spans["prompt"].attributes["memlab.prompt_sha256"] == row["llm"]["prompt_sha256"]
        assert spans["probe"].inputs == {"question": row["question"]}
        assert spans["probe"].outputs == {"answer": row["answer"]}
        assert trace.info.tags["conversation"] == row["conversation_id"]
        assert trace.info.tags["category"] == row["category"]
        assert trace.info.tags["correct"] == str(row["metrics"]["judge"] == 1.0).lower()
        assert trace.info.trace_metadata["mlflow.trace.session"] == row["conversation_id"]
        took = (spans["score"].end_time_ns - spans["search"].start_time_ns) / 1e9
        assert took == pytest.approx(sum(row["latency_seconds"].values()), abs=1e-5)

    # the templates it rendered, registered once per file content, linked to the run
    linked = {p["name"] for p in json.loads(run.data.tags["mlflow.linkedPrompts"])}
    assert linked == {"memlab.answer_short", "memlab.judge_longmemeval"}
    template = get_template("answer_short")
    versions = client.search_prompt_versions("memlab.answer_short")
    assert len(versions) == 1
    assert versions[0].tags["memlab.sha256"] == hashlib.sha256(
        template.path.read_bytes()).hexdigest()
    assert versions[0].template == template.path.read_text()
    assert f",{experiment_id}," in client.get_prompt("memlab.answer_short").tags[
        "_mlflow_experiment_ids"]

    # the dataset: a run input naming the file, and the experiment's evaluation dataset
    [entry] = run.inputs.dataset_inputs
    sha = hashlib.sha256(SYNTHETIC_DEFAULT.read_bytes()).hexdigest()
    assert (entry.dataset.name, entry.dataset.digest) == ("synthetic-small", sha[:16])
    tags = {t.key: t.value for t in entry.tags}
    assert tags["memlab.file_sha256"] == sha and tags["mlflow.data.context"] == "eval"
    assert json.loads(entry.dataset.source)["uri"] == str(SYNTHETIC_DEFAULT)
    mlflow.set_tracking_uri(client.tracking_uri)
    [dataset] = mlflow.genai.datasets.search_datasets(experiment_ids=[experiment_id])
    assert dataset.name == "synthetic-small" and len(dataset.to_df()) == 48
    assert client.get_experiment(experiment_id).tags["mlflow.experimentKind"] == \
        "genai_development"

    # mirrored again with a trace sample: no new prompt version, no second dataset (as
    # from a new process: what this one remembers is forgotten)
    mlflow_prompts._SEEN.clear()
    mlflow_datasets._SEEN.clear()
    again = log_run(tmp_path / "run", traces="sample 5", uri=client.tracking_uri)
    assert len(client.search_traces(locations=[experiment_id], run_id=again)) == 5
    assert len(client.search_prompt_versions("memlab.answer_short")) == 1
    assert len(mlflow.genai.datasets.search_datasets(experiment_ids=[experiment_id])) == 1


@pytest.mark.slow
def test_sweep_logs_every_variant_from_the_background_logger(served: Any,
                                                             tmp_path: Path) -> None:
    import json

    from memlab.eval.sweep import sweep

    config = {"name": "swept", "dataset": {"name": "synthetic"},
              "tracking": {"experiment": "memlab-sweep-test"},
              "grid": {"retrieval.name": ["bm25", "recency", "none"]}}
    table = sweep(config, out=tmp_path / "runs", progress=False)
    assert len(table) == 3

    client = served
    experiment = client.get_experiment_by_name("memlab-sweep-test")
    everything = client.search_runs([experiment.experiment_id])
    parents = [r for r in everything if "memlab.sweep_id" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.run_name == "swept (sweep)"
    assert parents[0].info.status == "FINISHED"
    runs = [r for r in everything if r not in parents]
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parents[0].info.run_id}
    assert sorted(r.info.run_name for r in runs) == [
        "turn / bm25 / retrieval only", "turn / none / retrieval only",
        "turn / recency(dense) / retrieval only"]  # its default base, resolved
    assert sorted(r.data.params["memory.params.retrieval.name"] for r in runs) == [
        "bm25", "none", "recency"]
    # the parent shows the sweep's dataset; a retrieval sweep writes no traces by default
    assert [d.dataset.name for d in parents[0].inputs.dataset_inputs] == ["synthetic-small"]
    assert client.search_traces(locations=[experiment.experiment_id]) == []
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    for run in runs:
        run_dir = Path(run.data.tags["memlab.run_dir"])
        summary = json.loads((run_dir / "metrics.json").read_text())
        assert run.data.metrics["turn.recall_any_at_5"] == pytest.approx(
            summary["metrics"]["turn.recall_any@5"]["all"]["mean"])
        assert run.info.status == "FINISHED"
    last = next(r for r in runs if r.data.params["memory.params.retrieval.name"] == "none")
    plots = {a.path for a in client.list_artifacts(last.info.run_id, "plots")}
    assert "plots/pareto.png" in plots  # drawn once, on the last variant, over all three
    parent_plots = {a.path for a in client.list_artifacts(parents[0].info.run_id, "plots")}
    assert parent_plots == {"plots/pareto.png"}


def test_background_logger_names_the_runs_it_could_not_log(tmp_path: Path) -> None:
    from memlab.errors import MemlabError
    from memlab.eval.tracking import BackgroundLogger

    with BackgroundLogger() as logger:  # not a finished run directory: nothing to mirror
        logger.submit(tmp_path / "run-a", pareto=False)
        with pytest.raises(MemlabError, match=r"1 of 1 runs were not logged.*run-a"):
            logger.wait()


def test_background_logger_runs_this_memlab_not_one_in_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sweep started from inside another checkout: its logger must not import that
    checkout's memlab (`python -m` puts the working directory first on the path)."""
    from memlab.errors import MemlabError
    from memlab.eval.tracking import BackgroundLogger

    shadow = tmp_path / "other-checkout" / "memlab"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('the shadow memlab')\n")
    monkeypatch.chdir(shadow.parent)
    with BackgroundLogger() as logger:
        logger.submit("run-b", pareto=False)  # relative: sent as an absolute path
        with pytest.raises(MemlabError) as info:
            logger.wait()
    message = str(info.value)
    assert "is not a finished run directory" in message, message
    assert str(shadow.parent / "run-b") in message and "shadow" not in message.split(":")[-1]


@pytest.mark.slow
def test_repeats_are_children_of_one_parent_holding_the_spread(served: Any,
                                                                tmp_path: Path) -> None:
    from memlab.data import load_dataset
    from memlab.eval.repeat import evaluate_repeats

    conversation = load_dataset("synthetic").conversations[0]
    config = {"name": "repeated", "dataset": {"name": "synthetic", "probes": {
                  "conversations": [conversation.id]}},
              "retrieval": {"name": "bm25"}, "scorers": ["exact_match"],
              "cache": {"llm": "off"},
              "answer": {"llm": {"name": "mock", "params": {
                  "responses": [p.answer for p in conversation.probes]}}}}
    result = evaluate_repeats(config, 2, out=tmp_path / "rep", progress=False)
    client = served
    # the default experiment is named after the loaded dataset (synthetic-small), for the
    # parent as for its runs (the parent once went to the loader's name, memlab-synthetic)
    assert client.get_experiment_by_name("memlab-synthetic") is None
    experiment = client.get_experiment_by_name("memlab-synthetic-small")
    everything = client.search_runs([experiment.experiment_id])
    [parent] = [r for r in everything if r.info.run_name == "repeated (repeats)"]
    assert "memlab.sweep_id" in parent.data.tags and parent.info.status == "FINISHED"
    children = sorted((r for r in everything
                       if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id),
                      key=lambda r: r.info.run_name)
    assert len(children) == 2
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    assert sorted(r.data.params["answer.llm.params.seed"] for r in children) == ["0", "1"]
    spread = result.spread["exact_match"]
    assert parent.data.metrics["exact_match.mean"] == pytest.approx(spread["mean"])
    assert parent.data.metrics["exact_match.sd"] == pytest.approx(spread["sd"])
    assert spread["sd"] > 0
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"repeats.json"}
