"""What memlab puts into MLflow 3's GenAI homes, checked without a server: which probes
get traces, run names and tags, dataset naming, the tracking.traces setting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from memlab.errors import ConfigError
from memlab.eval.config import load_config
from memlab.eval.mlflow_datasets import dataset_name, dataset_path
from memlab.eval.mlflow_runs import pareto_view, run_name, run_tags, summary_tags, ui_path
from memlab.eval.mlflow_traces import check_policy, traced_items


def _items(n: int) -> list[dict[str, Any]]:
    return [{"probe_id": f"c{i % 3}:q{i}", "conversation_id": f"c{i % 3}"} for i in range(n)]


def test_traces_auto_follow_whether_the_run_answered() -> None:
    items = _items(40)
    assert traced_items("auto", items, answered=True) == items
    assert traced_items("auto", items, answered=False) == []
    assert traced_items("on", items, answered=False) == items
    assert traced_items("off", items, answered=True) == []


def test_trace_sample_is_the_same_probes_in_every_configuration() -> None:
    items = _items(40)
    first = traced_items("sample 7", items, answered=False)
    assert len(first) == 7
    assert first == [row for row in items if row in first]  # run order kept
    shuffled = list(reversed(items))
    assert {r["probe_id"] for r in traced_items("sample 7", shuffled, answered=True)} == {
        r["probe_id"] for r in first}
    assert traced_items("sample 100", items, answered=True) == items


def test_tracking_traces_setting_is_checked_where_it_is_written() -> None:
    base = {"name": "t", "dataset": {"name": "synthetic"}}
    assert load_config({**base, "tracking": {"traces": False}}).tracking.traces == "off"  # YAML off
    assert load_config({**base, "tracking": {"traces": "sample 20"}}).tracking.traces == \
        "sample 20"
    assert load_config(base).tracking.traces == "auto"
    with pytest.raises(ConfigError, match=r"tracking\.traces: expected auto, on, off or "
                       r"'sample N' \(N probes per run\), got 'some'"):
        load_config({**base, "tracking": {"traces": "some"}})
    with pytest.raises(ConfigError, match="sample N"):
        check_policy("sample")


def _config(**extra: Any) -> dict[str, Any]:
    return {"name": "sw[retrieval=bm25]", "k": 5,
            "dataset": {"name": "locomo", "path": None,
                        "probes": {"sample": 100, "stratify": "category", "seed": 0,
                                   "limit": None}},
            "memory": {"name": "flat", "params": {"chunker": {"name": "turn"},
                                                  "retrieval": {"name": "bm25"}}},
            **extra}


def test_runs_are_named_after_what_they_compare() -> None:
    assert run_name(_config(), []) == "turn / bm25 / retrieval only"
    answered = _config(answer={"llm": {"name": "llamacpp", "params": {}}})
    items = [{"llm": {"model": "qwen2.5-coder-0.5b"}}]
    assert run_name(answered, items) == "turn / bm25 k5 / qwen2.5-coder-0.5b"
    tiered = _config(memory={"name": "tiered", "params": {"retrieval": {"name": "hybrid"}}})
    assert run_name(tiered, []) == "tiered: - / hybrid / retrieval only"
    wrapped = _config()
    wrapped["memory"]["params"]["retrieval"] = {"name": "budget", "params": {"base": {
        "name": "time_aware", "params": {"base": {"name": "multigrain", "params": {
            "base": "hybrid"}}}}}}
    assert run_name(wrapped, []) == "turn / budget(time_aware(multigrain(hybrid))) / " \
        "retrieval only"


def test_run_tags_name_memory_reader_judge_and_its_agreement() -> None:
    config = _config(answer={"llm": {"name": "mock", "params": {"model": "m"}}},
                     judge={"llm": {"name": "mock"}, "template": "judge_locomo"})
    items = [{"llm": {"model": "reader"}, "judge_record": {"model": "judge-model"}}]
    tags = run_tags(config, items, {"judge_check": {"agreement": 0.975, "kappa": 0.95,
                                                    "ok": True}})
    assert tags["memlab.memory"] == "flat"
    assert tags["memlab.reader"] == "reader"
    assert tags["memlab.judge"] == "judge-model (judge_locomo)"
    assert tags["memlab.judge_agreement"] == "0.975"
    assert tags["memlab.judge_kappa"] == "0.950"
    assert tags["memlab.config"] == "sw[retrieval=bm25]"
    assert tags["memlab.judge_agreement_ok"] == "True"
    assert summary_tags({}) == {}


def test_summary_tags_link_a_derived_run_and_flag_an_unmeasured_judge() -> None:
    summary = {"source_run": "/runs/a", "derived_by": "rejudge",
               "judge_check": {"agreement": 0.5, "kappa": None, "ok": False}}
    assert summary_tags(summary) == {"memlab.source_run": "/runs/a",
                                     "memlab.derived_by": "rejudge",
                                     "memlab.judge_agreement": "0.500",
                                     "memlab.judge_agreement_ok": "False"}


def test_dataset_is_named_with_its_probe_selection_and_found_on_disk() -> None:
    config = _config()
    assert dataset_name("locomo", config) == "locomo[sample=100,seed=0,stratify=category]"
    whole = {"dataset": {"name": "synthetic", "probes": {"seed": 0, "stratify": "category"}}}
    assert dataset_name("synthetic-small", whole) == "synthetic-small"
    path = dataset_path(whole)
    assert path is not None and path.name == "synthetic-small.jsonl" and path.is_file()


def test_traces_keep_the_measured_phase_times_and_errors(tmp_path: Path) -> None:
    """Written after the fact through MLflow's public tracing API, a probe's spans sit at
    the times the run measured, end to end, and a failed probe's trace is an error."""
    import mlflow

    from memlab.eval.mlflow_traces import log_traces

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("traces")
    run_id = client.create_run(experiment).info.run_id
    latency = {"search": 0.25, "prompt": 0.5, "generate": 2.0, "score": 0.125}
    rows = [{"probe_id": f"c0:q{i}", "conversation_id": "c0", "category": "single-hop",
             "question": f"q{i}?", "answer": "blue", "latency_seconds": latency,
             "tokens": {"prompt": 40, "completion": 3}, "llm": {"model": "m"},
             "metrics": {"exact_match": 1.0}, "error": "timeout" if i else None}
            for i in range(2)]
    end = 1_800_000_000 * 10**9
    ids = log_traces(client, rows, _config(), experiment_id=experiment, run_id=run_id,
                     end_time_ns=end)
    assert len(client.search_traces(locations=[experiment], run_id=run_id)) == 2
    first, second = (client.get_trace(trace_id) for trace_id in ids)
    spans = {span.name: span for span in first.data.spans}
    start = end - 2 * int(2.875 * 10**9)
    assert spans["probe"].start_time_ns == spans["search"].start_time_ns == start
    assert spans["search"].end_time_ns == spans["prompt"].start_time_ns == start + 250_000_000
    assert spans["generate"].end_time_ns - spans["generate"].start_time_ns == 2 * 10**9
    assert spans["probe"].end_time_ns == spans["score"].end_time_ns == start + 2_875_000_000
    assert first.info.token_usage == {"input_tokens": 40, "output_tokens": 3,
                                      "total_tokens": 43}
    assert first.info.trace_metadata["mlflow.trace.session"] == "c0"
    assert first.info.tags["correct"] == "true" and first.info.state.value == "OK"
    assert second.info.state.value == "ERROR"
    assert second.data.spans[0].status.description == "timeout"
    assert second.data.spans[0].start_time_ns == start + 2_875_000_000


def _probe_rows(n: int) -> list[dict]:
    latency = {"search": 0.01, "prompt": 0.01, "generate": 0.5, "judge": 0.2, "score": 0.01}
    return [{"probe_id": f"c{i // 20}:q{i}", "conversation_id": f"c{i // 20}",
             "category": "single-hop", "question": f"q{i}?", "answer": "blue",
             "latency_seconds": latency, "tokens": {"prompt": 40, "completion": 3},
             "llm": {"model": "m"}, "metrics": {"exact_match": 1.0}, "error": None}
            for i in range(n)]


def test_every_trace_keeps_its_spans_on_sqlite(tmp_path: Path) -> None:
    """MLflow's parallel async workers can drop a trace's spans on SQLite (a log_spans
    racing its start_trace); memlab logs through one worker there and checks each trace."""
    import sqlite3

    import mlflow

    from memlab.eval.mlflow_traces import log_traces

    db = tmp_path / "mlflow.db"
    mlflow.set_tracking_uri(f"sqlite:///{db}")
    client = mlflow.MlflowClient(f"sqlite:///{db}")
    experiment = client.create_experiment("many")
    run_id = client.create_run(experiment).info.run_id
    ids = log_traces(client, _probe_rows(60), _config(), experiment_id=experiment,
                     run_id=run_id, end_time_ns=1_800_000_000 * 10**9)
    with sqlite3.connect(db) as con:
        spans = dict(con.execute("SELECT trace_id, COUNT(*) FROM spans GROUP BY trace_id"))
    assert {trace_id: spans.get(trace_id) for trace_id in ids} == dict.fromkeys(ids, 6)


def test_a_trace_that_lost_its_spans_is_logged_again(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    from memlab.eval import mlflow_traces

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("lost")
    run_id = client.create_run(experiment).info.run_id
    checked: list[str] = []
    real = mlflow_traces._has_spans

    def first_lost(client: object, trace_id: str) -> bool:  # the first trace, once
        checked.append(trace_id)
        return len(checked) != 1 and real(client, trace_id)

    monkeypatch.setattr(mlflow_traces, "_has_spans", first_lost)
    ids = mlflow_traces.log_traces(client, _probe_rows(3), _config(),
                                   experiment_id=experiment, run_id=run_id,
                                   end_time_ns=1_800_000_000 * 10**9)
    assert checked[0] not in ids and ids[0] == checked[3]  # the first, logged anew
    linked = client.search_traces(locations=[experiment], run_id=run_id)
    assert sorted(t.info.trace_id for t in linked) == sorted(ids)
    again = client.get_trace(ids[0])
    assert again.info.request_metadata["mlflow.trace.session"] == "c0"

    monkeypatch.setattr(mlflow_traces, "_has_spans", lambda client, trace_id: False)
    with pytest.warns(RuntimeWarning, match=r"lost the spans of 2 trace\(s\) twice"):
        mlflow_traces.log_traces(client, _probe_rows(2), _config(), experiment_id=experiment,
                                 run_id=run_id, end_time_ns=1_800_000_000 * 10**9)


def test_ui_path_opens_the_runs_table_with_the_pareto_view_until_there_are_traces() -> None:
    view = json.loads(pareto_view("locomo_f1", "tokens.prompt.mean"))
    state = json.loads(view["state"])
    [chart] = state["compareRunCharts"]
    assert (chart["type"], chart["xaxis"]["key"], chart["yaxis"]["key"]) == (
        "SCATTER", "tokens.prompt.mean", "locomo_f1")
    assert state["runsHiddenMode"] == "SHOW_ALL" and view["name"].startswith("memlab: ")
    tags = {"mlflow.experimentKind": "custom_model_development",
            "mlflow.sharedViewState.memlab-pareto-locomo-f1": json.dumps(view)}
    assert ui_path("7", tags) == ("/experiments/7/runs?workflowType=machine_learning"
                                  "&viewStateShareKey=memlab-pareto-locomo-f1"
                                  "&compareRunsMode=CHART")
    assert ui_path("7", {**tags, "mlflow.experimentKind": "genai_development"}) == \
        "/experiments/7/overview?workflowType=genai"
