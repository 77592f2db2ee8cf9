"""Several ``python -m memlab.serve --workers`` processes over one real PostgreSQL store:
every worker sees what another wrote (it reloads a user's memory when the store's write
counter moved), users stay apart across workers, and a store that cannot tell is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from memlab.testing.postgres import free_port

ROOT = Path(__file__).resolve().parents[1]


def _post(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{url}{path}", json=body, timeout=300)  # a new connection each
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _search(url: str, query: str, user: str) -> list[str]:
    found = _post(url, "/memory/search", {"query": query, "limit": 5, "user_id": user})
    return [r["content"] for r in found["results"]]


def _settings(tmp_path: Path, store: dict[str, Any] | None) -> Path:
    path = tmp_path / "letta_config.json"
    memory: dict[str, Any] = {"data_dir": "data"}
    if store is not None:
        memory["store"] = store
    path.write_text(json.dumps({"memory": memory,
                                "model": {"type": "mock", "embedding_model": "hash"}}))
    return path


def _wait(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited ({proc.returncode}): {log.read_text()}")
        try:
            if httpx.get(f"{url}/status", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"server did not start: {log.read_text()}")


@pytest.mark.slow
def test_two_workers_share_one_postgres_store(postgres, pg_table, tmp_path: Path) -> None:
    store = {"name": "pgvector", "params": {"dsn": postgres.dsn, "table": pg_table}}
    port, log = free_port(), tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "memlab.serve", "--config", str(_settings(tmp_path, store)),
             "--port", str(port), "--workers", "2"], cwd=ROOT, stdout=out,
            stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(proc, url, log)
        _post(url, "/memory/add", {"content": "Alice keeps three beehives",
                                   "memory_type": "archival", "user_id": "alice"})
        _post(url, "/memory/add", {"content": "Bob restores old motorbikes",
                                   "memory_type": "archival", "user_id": "bob"})
        for _ in range(12):  # both workers load both users' memories
            assert "Alice keeps three beehives" in _search(url, "Alice keeps three beehives",
                                                            "alice")
            assert "Bob restores old motorbikes" in _search(url, "Bob restores old motorbikes",
                                                             "bob")
        _post(url, "/memory/add", {"content": "Alice moved to Lyon in May",
                                   "memory_type": "archival", "user_id": "alice"})
        def check() -> int:  # whichever worker answers has seen the write of the other
            assert "Alice moved to Lyon in May" in _search(url, "Alice moved to Lyon in May",
                                                            "alice")
            seen = " ".join(_search(url, "Alice moved to Lyon beehives", "bob"))
            assert "Alice" not in seen and "Lyon" not in seen
            return int(httpx.get(f"{url}/status", timeout=60).json()["process"])

        # Sequential requests on a quiet machine may all be accepted by one worker: send
        # them 8 at a time until both workers have answered (or 20 rounds have passed).
        pids: set[int] = set()
        with ThreadPoolExecutor(max_workers=8) as pool:
            for _ in range(20):
                pids.update(pool.map(lambda _: check(), range(8)))
                if len(pids) == 2:
                    break
        assert len(pids) == 2, "requests reached only one worker"
        # writes racing through both workers get distinct ids: none overwrites another
        with ThreadPoolExecutor(max_workers=4) as pool:
            added = list(pool.map(lambda n: _post(url, "/memory/add", {
                "content": f"Alice's note number {n}", "memory_type": "archival",
                "user_id": "alice"})["id"], range(12)))
        assert len(set(added)) == 12, added
        listed = httpx.get(f"{url}/memory/list", params={"user_id": "alice", "limit": 100},
                           timeout=60).json()
        assert {m["content"] for m in listed["memories"]} >= {
            f"Alice's note number {n}" for n in range(12)}
        # a background import is followed through either worker: its record is in the
        # shared conversation log, not in the memory of the process running it
        export = httpx.get(f"{url}/users/alice/export", timeout=60).json()
        queued = httpx.post(f"{url}/users/carol/import?background=true", json=export,
                            timeout=60)
        assert queued.status_code == 202, queued.text
        location = queued.headers["location"]
        with ThreadPoolExecutor(max_workers=8) as pool:
            for _ in range(200):
                states = list(pool.map(lambda _: httpx.get(f"{url}{location}", timeout=60)
                                       .json()["state"], range(8)))
                if set(states) == {"done"}:
                    break
                time.sleep(0.1)
        assert set(states) == {"done"}, states
        assert "Alice keeps three beehives" in _search(url, "Alice keeps three beehives",
                                                        "carol")
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_several_workers_without_a_shared_store_are_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "memlab.serve", "--config", str(_settings(tmp_path, None)),
         "--port", str(free_port()), "--workers", "2"], cwd=ROOT, capture_output=True,
        text=True, timeout=300)
    assert done.returncode == 2
    assert "--workers 2 needs memory.store set to a shared store" in done.stderr
    assert "SqliteStore" in done.stderr


def test_several_workers_with_a_memory_that_keeps_no_store_are_refused(tmp_path: Path) -> None:
    """flat memory is rebuilt from the log in each process: a store in the settings does
    not make it shared (it never writes there)."""
    settings = _settings(tmp_path, {"name": "pgvector",
                                    "params": {"dsn": "postgresql://nobody@127.0.0.1:1/x"}})
    done = subprocess.run(
        [sys.executable, "-m", "memlab.serve", "--config", str(settings), "--experiment",
         str(ROOT / "experiments" / "agent-best.yaml"), "--port", str(free_port()),
         "--workers", "2"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "--workers 2: memory 'flat' keeps no store" in done.stderr


def test_a_shared_store_that_does_not_answer_or_a_model_that_is_not_there_fail_the_start(
        tmp_path: Path) -> None:
    """Not the first memory request (or chat) hours later: the server refuses to start."""
    closed = free_port()
    settings = _settings(tmp_path, {"name": "pgvector", "params": {
        "dsn": f"postgresql://nobody@127.0.0.1:{closed}/memlab"}})
    done = subprocess.run(
        [sys.executable, "-m", "memlab.serve", "--config", str(settings), "--port",
         str(free_port())], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert f"pgvector store postgresql://nobody@127.0.0.1:{closed}/memlab: cannot open" \
        in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "memlab.serve", "--config", str(_settings(tmp_path, None)),
         "--backend", "llamacpp", "--model", "qwen9-nonexistent", "--port",
         str(free_port())], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert ("model 'qwen9-nonexistent' (--model, settings model.name, MEMLAB_MODEL): neither "
            "an embedded model (qwen2.5-coder-0.5b, qwen2.5-coder-1.5b) nor a GGUF file"
            ) in done.stderr
