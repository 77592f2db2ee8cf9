"""Runs logged to a real ``mlflow server`` on 127.0.0.1 and read back through the client."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from memlab.eval.run import evaluate


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--workers", "1"],
        cwd=root, stdout=subprocess.DEVNULL, stderr=(root / "server.log").open("w"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {(root / 'server.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("mlflow server did not become healthy in 120 s")
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def served(mlflow_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An MLflow client of the test server, which runs of this test log to (own cache)."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("MEMLAB_CACHE_DIR", str(tmp_path / "cache"))
    return mlflow.MlflowClient(tracking_uri=mlflow_server)


@pytest.mark.slow
def test_run_is_logged_to_a_real_tracking_server(served: Any, tmp_path: Path) -> None:
    config = {"name": "served", "dataset": {"name": "synthetic"},
              "retrieval": {"name": "bm25"}, "tracking": {"experiment": "memlab-test"}}
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
    local = client.download_artifacts(run.info.run_id, "run/metrics.json", str(tmp_path))
    assert Path(local).read_text() == (tmp_path / "run" / "metrics.json").read_text()

    # mirrored again from the run directory alone, as after a tracking-server outage
    out = subprocess.run([sys.executable, "-m", "memlab.eval", "log", str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    again = client.get_run(out.strip().rsplit(" ", 1)[-1])
    assert again.info.run_id != run.info.run_id
    assert again.info.experiment_id == run.info.experiment_id
    assert again.data.params == run.data.params
    assert again.data.metrics == run.data.metrics

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
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.params["memory.params.retrieval.name"] for r in runs) == [
        "bm25", "none", "recency"]
    for run in runs:
        run_dir = Path(run.data.tags["memlab.run_dir"])
        summary = json.loads((run_dir / "metrics.json").read_text())
        assert run.data.metrics["turn.recall_any_at_5"] == pytest.approx(
            summary["metrics"]["turn.recall_any@5"]["all"]["mean"])
        assert run.info.status == "FINISHED"
    last = next(r for r in runs if r.data.params["memory.params.retrieval.name"] == "none")
    plots = {a.path for a in client.list_artifacts(last.info.run_id, "plots")}
    assert "plots/pareto.png" in plots  # drawn once, on the last variant, over all three


def test_background_logger_names_the_runs_it_could_not_log(tmp_path: Path) -> None:
    from memlab.errors import MemlabError
    from memlab.eval.tracking import BackgroundLogger

    with BackgroundLogger() as logger:  # not a finished run directory: nothing to mirror
        logger.submit(tmp_path / "run-a", pareto=False)
        with pytest.raises(MemlabError, match=r"1 of 1 runs were not logged.*run-a"):
            logger.wait()
