"""What memlab puts into MLflow 3's GenAI homes, checked without a server: which probes
get traces, run names and tags, dataset naming, the tracking.traces setting."""

from __future__ import annotations

from typing import Any

import pytest

from memlab.errors import ConfigError
from memlab.eval.config import load_config
from memlab.eval.mlflow_datasets import dataset_name, dataset_path
from memlab.eval.mlflow_runs import judge_agreement_tags, run_name, run_tags
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
    with pytest.raises(ConfigError, match="traces"):
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


def test_run_tags_name_memory_reader_judge_and_its_agreement() -> None:
    config = _config(answer={"llm": {"name": "mock", "params": {"model": "m"}}},
                     judge={"llm": {"name": "mock"}, "template": "judge_locomo"})
    items = [{"llm": {"model": "reader"}, "judge_record": {"model": "judge-model"}}]
    tags = run_tags(config, items, {"judge_check": {"agreement": 0.975, "kappa": 0.95}})
    assert tags["memlab.memory"] == "flat"
    assert tags["memlab.reader"] == "reader"
    assert tags["memlab.judge"] == "judge-model (judge_locomo)"
    assert tags["memlab.judge_agreement"] == "0.975"
    assert tags["memlab.judge_kappa"] == "0.950"
    assert tags["memlab.config"] == "sw[retrieval=bm25]"
    assert judge_agreement_tags({"judge_agreement": 0.5}) == {"memlab.judge_agreement": "0.500"}
    assert judge_agreement_tags({}) == {}


def test_dataset_is_named_with_its_probe_selection_and_found_on_disk() -> None:
    config = _config()
    assert dataset_name("locomo", config) == "locomo[sample=100,seed=0,stratify=category]"
    whole = {"dataset": {"name": "synthetic", "probes": {"seed": 0, "stratify": "category"}}}
    assert dataset_name("synthetic-small", whole) == "synthetic-small"
    path = dataset_path(whole)
    assert path is not None and path.name == "synthetic-small.jsonl" and path.is_file()
