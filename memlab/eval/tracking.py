"""Mirror a finished run directory into MLflow (one experiment per dataset).

Params are the flattened resolved config; metrics are every summary mean (overall and
per category), latency percentiles and token totals; artifacts are the run directory,
an items table (parquet) and plots. Tracking goes to ``$MLFLOW_TRACKING_URI`` when set,
else to a SQLite store inside the project (``mlflow.db``, artifacts in ``mlartifacts/``):
``mlflow ui --backend-store-uri sqlite:///mlflow.db`` from the project root shows it.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from memlab.data.paths import PROJECT_ROOT
from memlab.errors import MemlabError
from memlab.eval.config import flatten
from memlab.eval.summary import error_counts
from memlab.files import read_json, read_yaml
from memlab.metrics.base import mlflow_key

#: The metric the cross-run Pareto plot puts against prompt tokens, first present wins.
PARETO_METRICS = ("judge", "locomo_f1", "turn.budget_evidence_recall@1000")


def tracking_uri(configured: str | None = None) -> str:
    return (configured or os.environ.get("MLFLOW_TRACKING_URI")
            or f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}")


#: MLflow accepts at most this many params (and tags) in one log_batch call.
BATCH_PARAMS = 100


@dataclass(frozen=True)
class RunRecord:
    """A finished run directory as the tracker reads it (nothing held in memory)."""

    run_dir: Path

    @classmethod
    def open(cls, run_dir: str | Path) -> RunRecord:
        path = Path(run_dir)
        for name in ("config.resolved.yaml", "metrics.json", "items.jsonl"):
            if not (path / name).is_file():
                raise MemlabError(f"{path} is not a finished run directory: {name} is missing")
        return cls(path)

    @cached_property
    def config(self) -> dict[str, Any]:
        data = read_yaml(self.run_dir / "config.resolved.yaml")
        return data if isinstance(data, dict) else {}

    @cached_property
    def summary(self) -> dict[str, Any]:
        data: dict[str, Any] = read_json(self.run_dir / "metrics.json", "the run's summary")
        return data

    @cached_property
    def environment(self) -> dict[str, Any]:
        """``environment.json`` ({} for a run directory without one)."""
        path = self.run_dir / "environment.json"
        data: dict[str, Any] = read_json(path, "the run's environment") if path.is_file() else {}
        return data

    @cached_property
    def items(self) -> list[dict[str, Any]]:
        from memlab.eval.items import read_items

        return read_items(self.run_dir / "items.jsonl")

    @property
    def name(self) -> str:
        return str(self.config.get("name") or self.run_dir.name)

    @property
    def dataset(self) -> str:
        return str(self.summary.get("dataset") or (self.config.get("dataset") or {}).get("name"))

    @property
    def tracking(self) -> dict[str, Any]:
        return dict(self.config.get("tracking") or {})


def experiment_name(record: RunRecord) -> str:
    return str(record.tracking.get("experiment") or f"memlab-{record.dataset}")


def mlflow_client(uri: str) -> Any:
    """The MLflow client for ``uri`` (also made mlflow's current tracking URI). A tracking
    server that does not answer its ``/health`` within 10 s is a MemlabError at once
    (MLflow's own retries would wait minutes per run before saying so)."""
    import mlflow

    if uri.startswith(("http://", "https://")):
        _check_server(uri)
    mlflow.set_tracking_uri(uri)
    return _cached_client(uri)


def _check_server(uri: str) -> None:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=10):
            return
    except urllib.error.HTTPError:
        return  # it answers (a proxy or an older server without /health): MLflow decides
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise MemlabError(f"the MLflow tracking server {uri} does not answer ({reason}): "
                          "start it, point MLFLOW_TRACKING_URI (or tracking.tracking_uri) "
                          "elsewhere, or pass --no-mlflow") from None


@lru_cache(maxsize=8)
def _cached_client(uri: str) -> Any:
    """One client per tracking URI and process (building one checks the store's schema,
    which a sweep would otherwise pay for every run)."""
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri)


def ensure_experiment(client: Any, name: str, uri: str) -> str:
    """The id of the experiment ``name``, created if missing (a sqlite store keeps its
    artifacts beside the database file)."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = None
    if uri.startswith("sqlite:///"):  # artifacts beside the database file
        db = Path(uri.removeprefix("sqlite:///")).resolve()
        location = (db.parent / "mlartifacts").as_uri()
    return str(client.create_experiment(name, artifact_location=location))


def log_run(run_dir: str | Path, *, pareto: bool = True, uri: str | None = None,
            sweep: str | None = None, traces: str | None = None) -> str:
    """Mirror the finished run directory ``run_dir`` as a new MLflow run; returns its run
    id. Everything comes from the directory, so a run whose logging failed can be
    mirrored again later (``python -m memlab.eval log RUN_DIR``). With ``pareto``, the
    accuracy-vs-tokens plot over every run of the experiment is drawn onto it (and onto
    its sweep's parent). ``sweep`` names the sweep the run belongs to: its runs become
    children of one parent run; ``traces`` overrides the run's ``tracking.traces``.

    Besides params, metrics and artifacts, the run gets its dataset as an MLflow input,
    the templates it rendered in the Prompt Registry, and one trace per probe as
    ``tracking.traces`` chooses (see :mod:`memlab.eval.mlflow_traces`).
    """
    import mlflow

    from memlab.eval import mlflow_runs
    from memlab.eval.mlflow_traces import check_policy

    record = RunRecord.open(run_dir)
    policy = check_policy(traces or str(record.tracking.get("traces") or "auto"))
    uri = tracking_uri(uri or record.tracking.get("tracking_uri"))
    client = mlflow_client(uri)
    experiment_id = ensure_experiment(client, experiment_name(record), uri)
    parent = None if sweep is None else mlflow_runs.sweep_parent(
        client, experiment_id, sweep, record.name)
    items = record.items
    name = mlflow_runs.run_name(record.config, items)

    with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
        run_id = str(run.info.run_id)
        _log_batch(client, run_id, record, parent)
        prompts = _log_prompts(client, record, run_id, experiment_id)
        _log_dataset(client, [run_id] if parent is None else [run_id, parent],
                     experiment_id, record)
        _log_artifacts(record)
        traced = _log_traces(client, record, experiment_id, run_id, prompts, policy)
    mlflow_runs.set_experiment_kind(client, experiment_id, traced=traced > 0)
    mlflow_runs.save_pareto_view(client, experiment_id, run_metrics(record.summary),
                                 tuple(mlflow_key(m) for m in PARETO_METRICS))
    if pareto:
        _log_pareto(client, experiment_id, run_id)
        if parent is not None:
            _log_pareto(client, experiment_id, parent)
    if parent is not None:
        client.set_terminated(parent)  # ends when its latest child is logged
    return run_id


def logged_as(run_dir: str | Path, uri: str | None = None) -> str | None:
    """The MLflow run that already mirrors ``run_dir`` in its experiment (found by its
    ``memlab.run_dir`` tag), or None."""
    record = RunRecord.open(run_dir)
    uri = tracking_uri(uri or record.tracking.get("tracking_uri"))
    client = mlflow_client(uri)
    experiment = client.get_experiment_by_name(experiment_name(record))
    path = str(record.run_dir.resolve())
    if experiment is None or "'" in path:  # (a quote cannot be searched for: log it)
        return None
    found = client.search_runs([experiment.experiment_id], max_results=1,
                               filter_string=f"tags.`memlab.run_dir` = '{path}'")
    return str(found[0].info.run_id) if found else None


def ui_link(run_dir: str | Path, uri: str | None = None) -> str:
    """Where the MLflow UI shows the experiment of the logged run ``run_dir`` (see
    :func:`memlab.eval.mlflow_runs.ui_path`): on the tracking server, or on ``mlflow
    ui``'s default address for a local store."""
    from memlab.eval.mlflow_runs import ui_path

    record = RunRecord.open(run_dir)
    uri = tracking_uri(uri or record.tracking.get("tracking_uri"))
    experiment = mlflow_client(uri).get_experiment_by_name(experiment_name(record))
    server = uri.rstrip("/") if uri.startswith(("http://", "https://")) else \
        "http://127.0.0.1:5000"
    return f"{server}/#{ui_path(experiment.experiment_id, experiment.tags)}"


def _log_batch(client: Any, run_id: str, record: RunRecord, parent: str | None) -> None:
    """Params, metrics and tags in as few calls as MLflow's batch limit allows."""
    from mlflow.entities import Metric, Param, RunTag

    from memlab.eval.mlflow_runs import run_tags

    now = int(time.time() * 1000)
    tags = {"memlab.run_dir": str(record.run_dir.resolve()),
            "memlab.dataset": record.dataset,
            "memlab.retrieval_only": str(record.config.get("answer") is None),
            **run_tags(record.config, record.items, record.summary)}
    if parent is not None:
        tags["mlflow.parentRunId"] = parent
    params = [Param(k, param_value(v)) for k, v in run_params(record.config).items()]
    metrics = [Metric(k, v, now, 0) for k, v in run_metrics(record.summary).items()]
    for start in range(0, max(len(params), 1), BATCH_PARAMS):  # MLflow's batch limit
        client.log_batch(run_id, params=params[start:start + BATCH_PARAMS],
                         metrics=metrics if start == 0 else [],
                         tags=[RunTag(k, v) for k, v in tags.items()] if start == 0
                         else [])


def _log_prompts(client: Any, record: RunRecord, run_id: str, experiment_id: str
                 ) -> dict[str, Any]:
    from memlab.eval.mlflow_prompts import register_templates

    return register_templates(client, record.config, record.items, run_id, experiment_id)


def _log_dataset(client: Any, run_ids: list[str], experiment_id: str, record: RunRecord
                 ) -> None:
    from memlab.eval.mlflow_datasets import log_dataset

    recorded = ((record.environment.get("dataset") or {}).get("files") or {}).get("path")
    log_dataset(client, run_ids, experiment_id, record.dataset, record.config, record.items,
                recorded=recorded)


def _log_traces(client: Any, record: RunRecord, experiment_id: str, run_id: str,
                prompts: dict[str, Any], policy: str) -> int:
    """One trace per probe ``policy`` selects; returns how many."""
    from memlab.eval.mlflow_traces import log_traces, traced_items

    items = traced_items(policy, record.items,
                         answered=record.config.get("answer") is not None)
    if not items:
        return 0
    end = (record.run_dir / "items.jsonl").stat().st_mtime_ns
    return len(log_traces(client, items, record.config, experiment_id=experiment_id,
                          run_id=run_id, end_time_ns=end, prompts=prompts))


def run_params(config: dict[str, Any]) -> dict[str, Any]:
    """The resolved config flattened to MLflow params (``memory.params.retrieval.name``)."""
    return flatten({k: v for k, v in config.items() if k != "grid"})


def run_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """Summary means (overall and ``<metric>.<category>``), latencies and token totals."""
    out: dict[str, float] = {}
    for name, groups in summary["metrics"].items():
        for group, stats in groups.items():
            if stats["mean"] is None:
                continue
            key = name if group == "all" else f"{name}.{_safe(group)}"
            out[mlflow_key(key)] = float(stats["mean"])
            if group == "all":
                out[mlflow_key(f"{name}.ci_low")] = float(stats["ci_low"])
                out[mlflow_key(f"{name}.ci_high")] = float(stats["ci_high"])
    for phase, lat in summary["latency_seconds"].items():
        for stat in ("p50", "p95", "max"):
            if lat[stat] is not None:
                out[f"latency.{phase}.{stat}_s"] = float(lat[stat])
    for field, tok in summary["tokens"].items():
        out[f"tokens.{field}.total"] = float(tok["total"])
        if tok["mean"] is not None:
            out[f"tokens.{field}.mean"] = float(tok["mean"])
    for role, value in (summary.get("cost_usd") or {}).items():
        if isinstance(value, float | int):
            out[f"cost_usd.{role}"] = float(value)
    footprint = summary.get("footprint") or {}
    for field in ("units", "tokens", "bytes"):
        if footprint.get(field, {}).get("mean") is not None:
            out[f"footprint.{field}.mean"] = float(footprint[field]["mean"])
            out[f"footprint.{field}.total"] = float(footprint[field]["total"])
    check = summary.get("judge_check") or {}
    for key in ("agreement", "kappa", "yes_rate_correct", "yes_rate_wrong"):
        if check.get(key) is not None:
            out[f"judge_check.{key}"] = float(check[key])
    out["probes"] = float(summary["probes"])
    errors = error_counts(summary)
    out["errors"] = float(errors["probes"])
    out["errors.ingest"] = float(errors["ingest"])
    out["errors.judge"] = float(errors["judge"])
    out["cache_hits"] = float(summary["cache_hits"])
    return out


def _log_artifacts(record: RunRecord) -> None:
    import mlflow

    from memlab.eval.frames import items_frame
    from memlab.eval.lock import LOCK_NAME
    from memlab.eval.plots import category_bars, latency_hist

    for path in sorted(record.run_dir.iterdir()):  # not the run's lock file
        if path.is_dir():
            mlflow.log_artifacts(str(path), artifact_path=f"run/{path.name}")
        elif path.name != LOCK_NAME:
            mlflow.log_artifact(str(path), artifact_path="run")
    items = record.items
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        items_frame(items).to_parquet(folder / "items.parquet", index=False)
        category_bars(record.summary, folder / "category_bars.png",
                      f"{record.name}: by category (95% CI)")
        latency_hist(items, folder / "latency.png", f"{record.name}: latency per phase")
        for path in folder.iterdir():
            mlflow.log_artifact(str(path), artifact_path="tables" if path.suffix == ".parquet"
                                else "plots")


def _log_pareto(client: Any, experiment_id: str, run_id: str) -> None:
    """Accuracy vs prompt tokens over every run of the experiment, onto the new run."""
    from memlab.eval.plots import pareto_plot

    runs = client.search_runs([experiment_id], max_results=500)
    for metric in PARETO_METRICS:
        key = mlflow_key(metric)
        points = [(r.info.run_name or r.info.run_id[:8], _cost(r.data.metrics),
                   r.data.metrics[key]) for r in runs if key in r.data.metrics]
        if len(points) >= 1:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "pareto.png"
                labels, tokens, scores = zip(*points, strict=True)
                pareto_plot(labels, tokens, scores, path, metric,
                            f"{metric} vs tokens per probe across runs")
                client.log_artifact(run_id, str(path), artifact_path="plots")
            return


def _cost(metrics: dict[str, float]) -> float:
    """Prompt tokens per probe plus ingest LLM tokens per probe; memory tokens shown for
    retrieval-only runs."""
    return (metrics.get("tokens.prompt.mean", metrics.get("tokens.memory.mean", 0.0))
            + metrics.get("tokens.ingest.mean", 0.0))


def param_value(value: Any) -> str:
    """``value`` as an MLflow param (text cut to MLflow's 6000-character limit)."""
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", name)


class NotLoggedError(MemlabError):
    """Finished runs whose MLflow mirror failed. Nothing is lost: their run directories
    are complete, and ``done`` holds what the call would have returned (a run's
    :class:`~memlab.eval.run.RunResult`, a sweep's report table), so a command can still
    show it before the error."""

    def __init__(self, message: str, done: Any) -> None:
        super().__init__(message)
        self.done = done


class BackgroundLogger:
    """Mirrors finished runs into MLflow from one background process, in submission
    order, while the caller replays the next configuration (a sweep on two cores:
    replay is single-threaded Python, and MLflow's inserts and the plots took a third
    of a warm sweep). The process is ``python -m memlab.eval.log_worker``, fed by a
    thread here, so submitting never blocks. Run directories are complete before a run
    is submitted, so a failed log loses nothing but the mirror; :meth:`wait` says which.
    The runs one logger mirrors are one sweep: children of one MLflow parent run
    (``sweep=False`` logs them as separate runs).
    """

    def __init__(self, *, sweep: bool = True) -> None:
        self.sweep = uuid.uuid4().hex if sweep else None
        self._jobs: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
        self._replies: list[tuple[str, str, str]] = []
        self._thread: threading.Thread | None = None
        self._submitted = 0

    def submit(self, run_dir: str | Path, *, pareto: bool) -> None:
        """Mirror the finished run directory ``run_dir`` (its path is all that is sent)."""
        job = json.dumps({"run_dir": str(Path(run_dir).resolve()), "pareto": pareto,
                          "sweep": self.sweep}) + "\n"
        self._jobs.put((str(run_dir), job.encode("utf-8")))
        self._submitted += 1
        if self._thread is None:
            self._thread = threading.Thread(target=self._feed, name="memlab-mlflow-logger",
                                            daemon=True)
            self._thread.start()

    def wait(self) -> dict[str, str]:
        """Run directory -> MLflow run id of every submitted run, once all are logged."""
        self.close()
        done = {run_dir: answer for run_dir, status, answer in self._replies if status == "ok"}
        failed = [f"{run_dir}: {answer}" for run_dir, status, answer in self._replies
                  if status != "ok"]
        if failed or len(self._replies) != self._submitted:
            lost = self._submitted - len(self._replies)
            raise MemlabError(
                f"{len(failed) + lost} of {self._submitted} runs were not logged to MLflow "
                f"(their run directories are complete: `python -m memlab.eval report` reads "
                f"them, `python -m memlab.eval log RUN_DIR` mirrors one once MLflow works): "
                + "; ".join(failed or [f"{lost} lost with the logger process"]))
        return done

    def close(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None

    def __enter__(self) -> BackgroundLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _feed(self) -> None:
        """Thread: start the worker, hand it each job, collect its reply."""
        # the memlab this process runs (not one the working directory holds, which
        # `python -m` would put first on the path), in its own session: a Ctrl-C meant for
        # the sweep does not cut the logger off mid-write (it ends at its input's end)
        root = str(Path(__file__).resolve().parents[2])
        worker = subprocess.Popen(
            [sys.executable, "-c", f"import sys; sys.path.insert(0, {root!r}); "
             "from memlab.eval.log_worker import main; raise SystemExit(main())"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
        assert worker.stdin is not None and worker.stdout is not None
        try:
            while (item := self._jobs.get()) is not None:
                run_dir, job = item
                try:
                    worker.stdin.write(job)
                    worker.stdin.flush()
                    line = worker.stdout.readline()
                    if not line:
                        raise EOFError("no reply")
                    status, answer = json.loads(line)
                except (OSError, EOFError, ValueError) as exc:
                    status, answer = "error", f"the logger process died: {exc!r}"
                self._replies.append((run_dir, status, answer))
        finally:
            with contextlib.suppress(OSError):
                worker.stdin.close()
            worker.wait()
