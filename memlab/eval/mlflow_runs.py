"""How memlab's runs are organised in MLflow: names, tags, sweep parents, experiment kind.

A run is named after what it compares, ``chunker / strategy / reader``
(``turn / hybrid k10 / qwen2.5-coder-0.5b``; ``retrieval only`` without a reader; the
memory architecture in front when it is not ``flat``), and tagged with the memory
architecture, chunker, strategy, reader model, judge and the judge's measured agreement
when ``metrics.json`` holds it. A sweep is one parent run with a child per
configuration.

Where the UI opens. The experiment's kind (``mlflow.experimentKind``) is set to what the
experiment holds (``genai_development`` once it has traces, ``custom_model_development``
before), which is what MLflow's API and UIs before the workflow switch (3.9) read. MLflow
3.17's UI does not: its kind hook returns the *workflow type* whenever the
``workflowType`` switch is on, and that flag is hard-coded on, so the landing tab of
``#/experiments/<id>`` depends only on the ``workflowType`` URL parameter, else the
browser's ``localStorage["mlflow.workflowType_v1"]``, else ``genai`` (GenAI overview on a
database store, Traces on a file store); ``machine_learning`` opens the runs table.
memlab therefore prints the link that opens the right view (:func:`ui_path`).

A saved chart view. MLflow 3.17 keeps the runs page's named views server-side, as
experiment tags ``mlflow.sharedViewState.<id>`` (a JSON envelope ``{name, createdAt,
updatedAt, state}`` whose ``state`` is the JSON of the search facets and UI state, charts
included), listed in the runs page's *Views* menu and opened by
``?viewStateShareKey=<id>``. memlab saves one per headline metric: a scatter of tokens per
probe against that metric (the Pareto view), the runs sorted by it, all runs shown.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

KIND_TAG = "mlflow.experimentKind"
GENAI, CLASSIC = "genai_development", "custom_model_development"
VIEW_TAG = "mlflow.sharedViewState."

#: Sweep parents made in this process: (uri, experiment id, sweep id) -> run id.
_PARENTS: dict[tuple[str, str, str], str] = {}
#: Experiment kinds set in this process: (uri, experiment id) -> kind.
_KINDS: dict[tuple[str, str], str] = {}
#: Chart views saved (or found) in this process: (uri, experiment id, view id).
_VIEWS: set[tuple[str, str, str]] = set()


def components(config: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, str]:
    """Memory architecture, chunker, strategy, reader model and judge of a run."""
    memory = config.get("memory") or {}
    params = memory.get("params") or {}
    out = {"memory": str(memory.get("name") or "flat"),
           "chunker": str((params.get("chunker") or {}).get("name") or "-"),
           "strategy": strategy_chain(params.get("retrieval")),
           "reader": _model(config.get("answer"), items, "llm")}
    if config.get("judge"):
        judge = config["judge"]
        out["judge"] = f"{_model(judge, items, 'judge_record')} ({judge.get('template')})"
    return out


def strategy_chain(spec: Any) -> str:
    """A retrieval and the strategies it wraps (its ``base``), e.g.
    ``budget(time_aware(multigrain(hybrid)))``; ``-`` for none."""
    if isinstance(spec, str):
        return spec
    if not isinstance(spec, dict) or not spec.get("name"):
        return "-"
    base = (spec.get("params") or {}).get("base")
    inner = strategy_chain(base) if base else ""
    return f"{spec['name']}({inner})" if inner and inner != "-" else str(spec["name"])


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
    tags.update(summary_tags(summary))
    return tags


def summary_tags(summary: dict[str, Any]) -> dict[str, str]:
    """Tags from ``metrics.json``: the judge's measured agreement and kappa and whether
    they pass the threshold (``judge_check``), and for a re-judged or re-scored run its
    source run and how it was derived."""
    tags = {f"memlab.{key}": str(summary[key]) for key in ("source_run", "derived_by")
            if summary.get(key)}
    check = summary.get("judge_check")
    if isinstance(check, dict) and check:
        tags.update({f"memlab.judge_{field}": f"{float(check[field]):.3f}"
                     for field in ("agreement", "kappa")
                     if isinstance(check.get(field), int | float)})
        tags["memlab.judge_agreement_ok"] = str(bool(check.get("ok")))
    return tags


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
    from memlab.eval.tracking import ensure_experiment, mlflow_client, tracking_uri

    uri = tracking_uri(tracking.tracking_uri)
    client = mlflow_client(uri)
    experiment = ensure_experiment(client, tracking.experiment or f"memlab-{dataset}", uri)
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
    """``genai_development`` once the experiment has traces, ``custom_model_development``
    until then (read by MLflow's API and its UIs before the workflow switch, not 3.17's;
    see the module docstring)."""
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


def save_pareto_view(client: Any, experiment_id: str, metrics: dict[str, float],
                     headlines: tuple[str, ...]) -> str | None:
    """Save the experiment's Pareto chart view for the first of ``headlines`` the run
    has among ``metrics`` (once: a view the user changed is kept); returns its id."""
    headline = next((m for m in headlines if m in metrics), None)
    if headline is None:
        return None
    view = "memlab-pareto-" + "".join(c if c.isalnum() else "-" for c in headline)
    key = (str(client.tracking_uri), experiment_id, view)
    if key not in _VIEWS:
        if VIEW_TAG + view not in client.get_experiment(experiment_id).tags:
            cost = "tokens.prompt.mean" if "tokens.prompt.mean" in metrics else \
                "tokens.memory.mean"
            client.set_experiment_tag(experiment_id, VIEW_TAG + view,
                                      pareto_view(headline, cost))
        _VIEWS.add(key)
    return view


def pareto_view(headline: str, cost: str) -> str:
    """The saved-view envelope: ``headline`` against ``cost`` for every run."""
    section = "memlab-pareto"
    chart = {"uuid": "memlab-pareto-scatter", "type": "SCATTER", "runsCountToCompare": 100,
             "metricSectionId": section, "deleted": False, "isGenerated": False,
             "xaxis": {"key": cost, "type": "METRIC"},
             "yaxis": {"key": headline, "type": "METRIC"}}
    state = {"orderByKey": f"metrics.`{headline}`", "orderByAsc": False,
             "compareRunCharts": [chart],
             "compareRunSections": [{"uuid": section, "name": "memlab: Pareto",
                                     "display": True, "isReordered": False,
                                     "deleted": False, "isGenerated": False}],
             "runsHiddenMode": "SHOW_ALL", "isAccordionReordered": True}
    now = int(time.time() * 1000)
    return json.dumps({"name": f"memlab: {headline} vs {cost.split('.')[1]} tokens",
                       "createdAt": now, "updatedAt": now, "state": json.dumps(state)})


def ui_path(experiment_id: str, tags: dict[str, str]) -> str:
    """The UI page (after ``#``) that shows the experiment's results: the GenAI overview
    once it has traces, else the runs table in the *Model training* workflow, opened on
    memlab's Pareto chart view when there is one."""
    base = f"/experiments/{experiment_id}"
    if tags.get(KIND_TAG) == GENAI:
        return f"{base}/overview?workflowType=genai"
    views = sorted(k.removeprefix(VIEW_TAG) for k in tags if k.startswith(VIEW_TAG + "memlab-"))
    view = f"&viewStateShareKey={views[0]}&compareRunsMode=CHART" if views else ""
    return f"{base}/runs?workflowType=machine_learning{view}"


class GroupMirror:
    """MLflow for a group of runs (a scaling curve, repeats): a parent ``<name> (<role>)``
    made before the first child, every run mirrored as its child by a background logger,
    and on :meth:`finish` the group's own artifacts and metrics on the parent."""

    def __init__(self, config: Any, dataset: str, track: bool | None, role: str) -> None:
        self.config, self.dataset, self.role = config, dataset, role
        self.enabled = config.tracking.mlflow if track is None else track
        self.group = uuid.uuid4().hex
        self.logger: Any = None
        self.client: Any = None
        self.parent: str | None = None

    def __enter__(self) -> GroupMirror:
        if self.enabled:
            from memlab.eval.tracking import BackgroundLogger

            name = self.config.name.split("[", 1)[0]
            self.client, self.parent = group_parent(self.config.tracking, self.dataset,
                                                    self.group, f"{name} ({self.role})",
                                                    self.role)
            self.logger = BackgroundLogger()
            self.logger.sweep = self.group
        return self

    def submit(self, run_dir: Any) -> None:
        if self.logger is not None:
            self.logger.submit(run_dir, pareto=False)

    def __exit__(self, *exc: object) -> None:
        if self.logger is not None:
            self.logger.wait()

    def finish(self, artifacts: Sequence[Any] = (), metrics: dict[str, float] | None = None
               ) -> None:
        """Log ``artifacts`` (paths) and ``metrics`` on the parent and close it."""
        if self.parent is None:
            return
        for path in artifacts:
            self.client.log_artifact(self.parent, str(path))
        for key, value in (metrics or {}).items():
            self.client.log_metric(self.parent, key, value)
        self.client.set_terminated(self.parent)
