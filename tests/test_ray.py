"""Sweeps on a real local Ray cluster (``ray start --head`` on 127.0.0.1, 2 CPUs): the same
items and metrics as a local sweep, also when a worker is killed mid-task; and a team
setup - MLflow server on a real PostgreSQL - that a sweep through Ray logs to."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memlab.eval.items import read_items, without_timing

pytestmark = pytest.mark.slow  # a Ray head takes 10-40 s to start on two busy cores
ray = pytest.importorskip("ray", reason="needs the cluster extra (ray)")

from memlab.eval.ray_executor import RayExecutor  # noqa: E402
from memlab.eval.sweep import sweep  # noqa: E402
from memlab.testing.ray_cluster import LocalRay  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRay]:
    with pytest.MonkeyPatch.context() as patch:
        # a loopback test cluster; the driver (this process, CLI children) must match it
        patch.setenv("RAY_AUTH_MODE", "disabled")
        with LocalRay(num_cpus=2) as head:
            yield head


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMLAB_CACHE_DIR", str(tmp_path / "cache"))  # workers get it too


def _config(name: str, retrieval: list[str]) -> dict[str, Any]:
    return {"name": name, "dataset": {"name": "synthetic"}, "tracking": {"mlflow": False},
            "grid": {"retrieval.name": retrieval}}


def _same_runs(local: Path, remote: Path) -> None:
    """Every variant's items (apart from timings) and metrics are identical."""
    variants = sorted(p.name for p in local.iterdir())
    assert variants and sorted(p.name for p in remote.iterdir()) == variants
    for name in variants:
        want = [without_timing(r) for r in read_items(local / name / "items.jsonl")]
        got = [without_timing(r) for r in read_items(remote / name / "items.jsonl")]
        assert len(got) == len(want) == 48
        for row, expected in zip(got, want, strict=True):
            diff = {k for k in row.keys() | expected.keys() if row.get(k) != expected.get(k)}
            assert not diff, (name, row["probe_id"], {k: (row.get(k), expected.get(k))
                                                      for k in diff})
        metrics = [json.loads((d / name / "metrics.json").read_text())["metrics"]
                   for d in (local, remote)]
        assert metrics[0] == metrics[1]
        assert (remote / name / "config.resolved.yaml").read_text() == \
            (local / name / "config.resolved.yaml").read_text()


def test_a_sweep_through_ray_equals_the_local_sweep(cluster: LocalRay, tmp_path: Path) -> None:
    config = _config("ray-sweep", ["bm25", "recency"])
    sweep(config, out=tmp_path / "local", progress=False)
    with RayExecutor(address=cluster.address, shard_size=2) as executor:
        remote = sweep(config, out=tmp_path / "ray", progress=False, executor=executor)
    _same_runs(tmp_path / "local", tmp_path / "ray")
    assert len(remote) == 2
    assert not ray.is_initialized()  # the executor disconnected the driver


def test_a_killed_worker_is_retried_and_the_sweep_still_equals_the_local_one(
        cluster: LocalRay, tmp_path: Path) -> None:
    from memlab.testing import FakeOllama

    with FakeOllama() as server:  # answers take 0.25 s each: a task runs for seconds
        server.state.delay = 0.25
        config = {**_config("ray-kill", ["bm25"]), "grid": {"k": [3, 5]},
                  "cache": {"llm": "off"},  # a retried task asks again, as the local run did
                  "answer": {"llm": {"name": "ollama", "params": {"host": server.url}}}}
        sweep(config, out=tmp_path / "local", progress=False)
        killed: list[int] = []
        failure: list[BaseException] = []

        def run(executor: RayExecutor) -> None:
            try:
                sweep(config, out=tmp_path / "ray", progress=False, executor=executor)
            except BaseException as exc:  # re-raised by the test thread below
                failure.append(exc)

        with RayExecutor(address=cluster.address, shard_size=2) as executor:
            thread = threading.Thread(target=run, args=(executor,))
            thread.start()
            deadline = time.monotonic() + 300
            while not killed and thread.is_alive() and time.monotonic() < deadline:
                for pid in cluster.worker_pids("memlab:ray-kill"):
                    os.kill(pid, signal.SIGKILL)  # a worker dies mid-task (a lost node)
                    killed.append(pid)
                    break
                time.sleep(0.05)
            thread.join(timeout=600)
    assert not failure, failure
    assert killed, "the kill must land while a task runs"
    _same_runs(tmp_path / "local", tmp_path / "ray")


def test_the_cli_runs_through_ray(cluster: LocalRay, tmp_path: Path) -> None:
    path = tmp_path / "one.yaml"
    path.write_text(json.dumps({"name": "ray-cli", "dataset": {"name": "synthetic"},
                                "retrieval": {"name": "bm25"}}))
    local = subprocess.run([sys.executable, "-m", "memlab.eval", "run", str(path), "--out",
                            str(tmp_path / "local"), "--no-mlflow"],
                           capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert local.returncode == 0, local.stderr
    remote = subprocess.run([sys.executable, "-m", "memlab.eval", "run", str(path), "--out",
                             str(tmp_path / "ray"), "--no-mlflow", "--executor", "ray",
                             "--address", cluster.address, "--shard-size", "3"],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert remote.returncode == 0, remote.stderr
    assert [without_timing(r) for r in read_items(tmp_path / "ray" / "items.jsonl")] == \
        [without_timing(r) for r in read_items(tmp_path / "local" / "items.jsonl")]
    bad = subprocess.run([sys.executable, "-m", "memlab.eval", "run", str(path),
                          "--address", cluster.address], capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert bad.returncode == 2 and "--address needs --executor ray" in bad.stderr
    # a resource no node has: refused at once, not left pending at 0 % for ever
    pending = subprocess.run([sys.executable, "-m", "memlab.eval", "run", str(path), "--out",
                              str(tmp_path / "pending"), "--no-mlflow", "--executor", "ray",
                              "--address", cluster.address, "--task-resources",
                              '{"llm": 1}'], capture_output=True, text=True, timeout=300,
                             cwd=ROOT)
    assert pending.returncode == 2, pending.stderr[-2000:]
    assert "no node of the cluster has what one task asks for (CPU 1, llm 1)" in pending.stderr
    assert "CPU 2" in pending.stderr


@pytest.fixture
def team_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``mlflow server`` on a real PostgreSQL (its backend store) with an artifact root,
    as README's "Running on a cluster" starts it; MLFLOW_TRACKING_URI points at it."""
    from memlab.testing.postgres import LocalPostgres, free_port

    with LocalPostgres(database="mlflow") as pg:
        port = free_port()
        log = (tmp_path / "mlflow-server.log").open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port",
             str(port), "--backend-store-uri", pg.url(driver="postgresql+psycopg"),
             "--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1"],
            cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(proc, url, tmp_path / "mlflow-server.log")
            monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("mlflow server did not become healthy in 300 s")


def test_a_ray_sweep_logs_to_an_mlflow_server_on_postgresql(
        cluster: LocalRay, team_server: str, tmp_path: Path) -> None:
    import mlflow

    config = {**_config("team", ["bm25", "none"]),
              "tracking": {"mlflow": True, "experiment": "memlab-team"}}
    with RayExecutor(address=cluster.address) as executor:
        sweep(config, out=tmp_path / "runs", progress=False, executor=executor)

    client = mlflow.MlflowClient(team_server)
    experiment = client.get_experiment_by_name("memlab-team")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")
    found = client.search_runs([experiment.experiment_id])
    parents = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    runs = [r for r in found if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1  # the sweep, with one child per configuration
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parents[0].info.run_id}
    assert sorted(r.data.params["memory.params.retrieval.name"] for r in runs) == [
        "bm25", "none"]
    for run in runs:
        run_dir = Path(run.data.tags["memlab.run_dir"])
        assert run_dir.parent == (tmp_path / "runs").resolve()
        summary = json.loads((run_dir / "metrics.json").read_text())
        assert run.data.metrics["turn.recall_any_at_5"] == pytest.approx(
            summary["metrics"]["turn.recall_any@5"]["all"]["mean"])
        assert run.info.status == "FINISHED"
        local = client.download_artifacts(run.info.run_id, "run/metrics.json", str(tmp_path))
        assert Path(local).read_text() == (run_dir / "metrics.json").read_text()
    assert (tmp_path / "artifacts").is_dir()  # the server stored them, not the client
