"""Mirror a finished run directory into MLflow (one experiment per dataset).

Params are the flattened resolved config; metrics are every summary mean (overall and
per category), latency percentiles and token totals; artifacts are the run directory,
an items table (parquet) and plots. Tracking goes to ``$MLFLOW_TRACKING_URI`` when set,
else to a SQLite store inside the project (``mlflow.db``, artifacts in ``mlartifacts/``):
``mlflow ui --backend-store-uri sqlite:///mlflow.db`` from the project root shows it.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memlab.data.paths import PROJECT_ROOT
from memlab.eval.config import flatten, resolved_dict
from memlab.metrics.base import mlflow_key

if TYPE_CHECKING:
    from memlab.data.schema import Dataset
    from memlab.eval.run import RunResult

#: The metric the cross-run Pareto plot puts against prompt tokens, first present wins.
PARETO_METRICS = ("judge", "locomo_f1", "turn.budget_evidence_recall@1000")


def tracking_uri(configured: str | None = None) -> str:
    return (configured or os.environ.get("MLFLOW_TRACKING_URI")
            or f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}")


def experiment_name(result: RunResult, dataset: Dataset | str) -> str:
    return result.config.tracking.experiment or f"memlab-{_dataset_name(dataset)}"


def _dataset_name(dataset: Dataset | str) -> str:
    return dataset if isinstance(dataset, str) else dataset.name


def _client(uri: str) -> Any:
    import mlflow

    mlflow.set_tracking_uri(uri)
    return _cached_client(uri)


@lru_cache(maxsize=8)
def _cached_client(uri: str) -> Any:
    """One client per tracking URI and process (building one checks the store's schema,
    which a sweep would otherwise pay for every run)."""
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri)


def _experiment_id(client: Any, name: str, uri: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = None
    if uri.startswith("sqlite:///"):  # artifacts beside the database file
        db = Path(uri.removeprefix("sqlite:///")).resolve()
        location = (db.parent / "mlartifacts").as_uri()
    return str(client.create_experiment(name, artifact_location=location))


def log_run(result: RunResult, dataset: Dataset | str, *, pareto: bool = True) -> str:
    """Log ``result`` as a new MLflow run; returns its run id. With ``pareto``, the
    accuracy-vs-tokens plot over every run of the experiment is drawn onto it.
    ``dataset`` is the run's dataset or its name."""
    import mlflow
    from mlflow.entities import Metric, Param, RunTag

    uri = tracking_uri(result.config.tracking.tracking_uri)
    client = _client(uri)
    experiment_id = _experiment_id(client, experiment_name(result, dataset), uri)

    with mlflow.start_run(experiment_id=experiment_id, run_name=result.config.name) as run:
        run_id = str(run.info.run_id)
        now = int(time.time() * 1000)
        tags = {"memlab.run_dir": str(result.run_dir.resolve()),
                "memlab.dataset": _dataset_name(dataset),
                "memlab.retrieval_only": str(result.config.retrieval_only),
                **summary_tags(result.summary)}
        client.log_batch(  # one call: params, metrics and tags in as few writes as fit
            run_id,
            metrics=[Metric(k, v, now, 0) for k, v in run_metrics(result.summary).items()],
            params=[Param(k, _param(v)) for k, v in
                    flatten(resolved_dict(result.config)).items()],
            tags=[RunTag(k, v) for k, v in tags.items()])
        _log_artifacts(result)
    if pareto:
        _log_pareto(client, experiment_id, run_id)
    return run_id


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
    out["errors"] = float(summary["errors"])
    out["cache_hits"] = float(summary["cache_hits"])
    return out


def summary_tags(summary: dict[str, Any]) -> dict[str, str]:
    """Tags linking a re-judged/re-scored run to its source, and the judge warning."""
    tags = {f"memlab.{key}": str(summary[key]) for key in ("source_run", "derived_by")
            if summary.get(key)}
    check = summary.get("judge_check")
    if check:
        tags["memlab.judge_agreement_ok"] = str(bool(check.get("ok")))
    return tags


def _log_artifacts(result: RunResult) -> None:
    import mlflow

    from memlab.eval.plots import category_bars, latency_hist

    mlflow.log_artifacts(str(result.run_dir), artifact_path="run")
    items = result.items()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        frame = result.to_frame()
        frame.to_parquet(folder / "items.parquet", index=False)
        category_bars(result.summary, folder / "category_bars.png",
                      f"{result.config.name}: by category (95% CI)")
        latency_hist(items, folder / "latency.png", f"{result.config.name}: latency per phase")
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
    """Prompt tokens per probe; memory tokens shown for retrieval-only runs."""
    return metrics.get("tokens.prompt.mean", metrics.get("tokens.memory.mean", 0.0))


def _param(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", name)


class BackgroundLogger:
    """Mirrors finished runs into MLflow from one background process, in submission
    order, while the caller replays the next configuration (a sweep on two cores:
    replay is single-threaded Python, and MLflow's inserts and the plots took a third
    of a warm sweep). The process is ``python -m memlab.eval.log_worker``, fed by a
    thread here, so submitting never blocks. Run directories are complete before a run
    is submitted, so a failed log loses nothing but the mirror; :meth:`wait` says which.
    """

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
        self._replies: list[tuple[str, str, str]] = []
        self._thread: threading.Thread | None = None
        self._submitted = 0

    def submit(self, result: RunResult, dataset: Dataset | str, *, pareto: bool) -> None:
        job = (str(result.run_dir), result.config, result.summary, _dataset_name(dataset),
               pareto)
        self._jobs.put((str(result.run_dir), pickle.dumps(job)))
        self._submitted += 1
        if self._thread is None:
            self._thread = threading.Thread(target=self._feed, name="memlab-mlflow-logger",
                                            daemon=True)
            self._thread.start()

    def wait(self) -> dict[str, str]:
        """Run directory -> MLflow run id of every submitted run, once all are logged."""
        from memlab.errors import MemlabError

        self.close()
        done = {run_dir: answer for run_dir, status, answer in self._replies if status == "ok"}
        failed = [f"{run_dir}: {answer}" for run_dir, status, answer in self._replies
                  if status != "ok"]
        if failed or len(self._replies) != self._submitted:
            lost = self._submitted - len(self._replies)
            raise MemlabError(
                f"{len(failed) + lost} of {self._submitted} runs were not logged to MLflow "
                f"(their run directories are complete; `python -m memlab.eval report` reads "
                f"them): " + "; ".join(failed or [f"{lost} lost with the logger process"]))
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
        worker = subprocess.Popen([sys.executable, "-m", "memlab.eval.log_worker"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert worker.stdin is not None and worker.stdout is not None
        try:
            while (item := self._jobs.get()) is not None:
                run_dir, job = item
                try:
                    worker.stdin.write(job)
                    worker.stdin.flush()
                    status, answer = pickle.load(worker.stdout)
                except (OSError, EOFError, pickle.UnpicklingError) as exc:
                    status, answer = "error", f"the logger process died: {exc!r}"
                self._replies.append((run_dir, status, answer))
        finally:
            with contextlib.suppress(OSError):
                worker.stdin.close()
            worker.wait()
