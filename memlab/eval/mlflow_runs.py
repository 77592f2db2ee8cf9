"""How memlab's runs are organised in MLflow: names, tags, sweep parents, experiment kind.

A run is named after what it compares, ``chunker / strategy / reader``
(``turn / hybrid k10 / qwen2.5-coder-0.5b``; ``retrieval only`` without a reader; the
memory architecture in front when it is not ``flat``), and tagged with the memory
architecture, chunker, strategy, reader model, judge and the judge's measured agreement
when ``metrics.json`` holds it. A sweep is one parent run with a child per
configuration. The experiment's kind (``mlflow.experimentKind``) is set so the UI opens
on what the experiment holds: MLflow's GenAI views once it has traces, the runs table
while it has none (a retrieval sweep), instead of an empty GenAI overview.
"""

from __future__ import annotations

from typing import Any

KIND_TAG = "mlflow.experimentKind"
GENAI, CLASSIC = "genai_development", "custom_model_development"

#: Sweep parents made in this process: (uri, experiment id, sweep id) -> run id.
_PARENTS: dict[tuple[str, str, str], str] = {}
#: Experiment kinds set in this process: (uri, experiment id) -> kind.
_KINDS: dict[tuple[str, str], str] = {}


def components(config: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, str]:
    """Memory architecture, chunker, strategy, reader model and judge of a run."""
    memory = config.get("memory") or {}
    params = memory.get("params") or {}
    out = {"memory": str(memory.get("name") or "flat"),
           "chunker": str((params.get("chunker") or {}).get("name") or "-"),
           "strategy": str((params.get("retrieval") or {}).get("name") or "-"),
           "reader": _model(config.get("answer"), items, "llm")}
    if config.get("judge"):
        judge = config["judge"]
        out["judge"] = f"{_model(judge, items, 'judge_record')} ({judge.get('template')})"
    return out


def run_name(config: dict[str, Any], items: list[dict[str, Any]]) -> str:
    """``chunker / strategy / reader``, e.g. ``turn / bm25 k5 / mock``."""
    parts = components(config, items)
    strategy = parts["strategy"]
    if config.get("answer") is not None and config.get("k") is not None:
        strategy += f" k{config['k']}"
    reader = parts["reader"] if config.get("answer") is not None else "retrieval only"
    name = f"{parts['chunker']} / {strategy} / {reader}"
    return name if parts["memory"] == "flat" else f"{parts['memory']}: {name}"


def run_tags(config: dict[str, Any], items: list[dict[str, Any]],
             summary: dict[str, Any]) -> dict[str, str]:
    tags = {f"memlab.{key}": value for key, value in components(config, items).items()}
    tags["memlab.config"] = str(config.get("name"))
    if config.get("description"):
        tags["mlflow.note.content"] = str(config["description"])
    tags.update(judge_agreement_tags(summary))
    return tags


def judge_agreement_tags(summary: dict[str, Any]) -> dict[str, str]:
    """The judge's measured agreement (and kappa) when ``metrics.json`` records them
    (``judge_check`` / ``judge_agreement``: a number or a mapping)."""
    for key in ("judge_check", "judge_agreement"):
        value = summary.get(key)
        if isinstance(value, int | float):
            return {"memlab.judge_agreement": f"{value:.3f}"}
        if isinstance(value, dict):
            return {f"memlab.judge_{field}": f"{float(value[field]):.3f}"
                    for field in ("agreement", "kappa")
                    if isinstance(value.get(field), int | float)}
    return {}


def sweep_parent(client: Any, experiment_id: str, sweep: str, config_name: str) -> str:
    """The parent run of sweep ``sweep`` (made on its first child, found again by the
    ``memlab.sweep_id`` tag); children carry ``mlflow.parentRunId``."""
    key = (str(client.tracking_uri), experiment_id, sweep)
    if key not in _PARENTS:
        found = client.search_runs([experiment_id],
                                   filter_string=f"tags.`memlab.sweep_id` = '{sweep}'",
                                   max_results=1)
        name = config_name.split("[", 1)[0]
        _PARENTS[key] = str(found[0].info.run_id if found else client.create_run(
            experiment_id, run_name=f"{name} (sweep)",
            tags={"memlab.sweep_id": sweep, "memlab.sweep": name}).info.run_id)
    return _PARENTS[key]


def group_parent(tracking: Any, dataset: str, group: str, run_name: str,
                 role: str) -> tuple[Any, str]:
    """(client, run id) of the parent run of a group of runs (a tune, a scaling curve),
    made before its first child and found again by its ``memlab.sweep_id`` tag, so the
    children the sweep logger mirrors with ``sweep=group`` hang under it. ``tracking``
    is the config's :class:`memlab.eval.config.TrackingSpec`."""
    from memlab.eval.tracking import _client, _experiment_id, tracking_uri

    uri = tracking_uri(tracking.tracking_uri)
    client = _client(uri)
    experiment = _experiment_id(client, tracking.experiment or f"memlab-{dataset}", uri)
    found = client.search_runs([experiment], max_results=1,
                               filter_string=f"tags.`memlab.sweep_id` = '{group}'")
    if found:
        return client, str(found[0].info.run_id)
    name = run_name.split(" (", 1)[0]
    run = client.create_run(experiment, run_name=run_name,
                            tags={"memlab.sweep_id": group, "memlab.sweep": name,
                                  f"memlab.{role}.role": "parent"})
    return client, str(run.info.run_id)


def set_experiment_kind(client: Any, experiment_id: str, traced: bool) -> None:
    """GenAI once the experiment has traces; the classic runs view until then."""
    key = (str(client.tracking_uri), experiment_id)
    if _KINDS.get(key) == GENAI or (_KINDS.get(key) == CLASSIC and not traced):
        return
    current = client.get_experiment(experiment_id).tags.get(KIND_TAG)
    kind = GENAI if traced or current == GENAI else CLASSIC
    if current != kind:
        client.set_experiment_tag(experiment_id, KIND_TAG, kind)
    _KINDS[key] = kind


def _model(spec: dict[str, Any] | None, items: list[dict[str, Any]], field: str) -> str:
    """The model an LLM component used: as the items recorded it, else as configured."""
    if not spec:
        return "none"
    for row in items:
        model = (row.get(field) or {}).get("model")
        if model:
            return str(model)
    llm = spec.get("llm") or {}
    params = llm.get("params") or {}
    return str(params.get("model") or params.get("model_name") or llm.get("name"))
