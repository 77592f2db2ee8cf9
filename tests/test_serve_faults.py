"""The real server (``python -m memlab.serve`` on 127.0.0.1, a subprocess) under faults and
bad input: non-finite JSON numbers, an oversized core memory, listing and deleting
memories, 1,000 users under ``ulimit -n 256``, a model server that goes away and comes
back, and a request body shorter than its Content-Length.

The model backend is memlab's fake Ollama (a loopback HTTP server in this process); the
embedder is ``hash``, so nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from memlab.testing import FakeOllama
from memlab.testing.servers import wait_until_serving

KEY = {"X-API-Key": "k3y"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _limit_files(limit: int) -> Any:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return apply


@contextmanager
def _server(tmp_path: Path, ollama_url: str, *, files: int | None = None,
            env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A server process on a free port; yields (URL, process) once /docs answers."""
    config = tmp_path / "letta_config.json"
    config.write_text(json.dumps({
        "model": {"type": "ollama", "name": "qwen3:4b", "host": ollama_url,
                  "embedding_model": "hash", "max_tokens": 32},
        "memory": {"data_dir": str(tmp_path / "data")},
        "server": {"api_key": KEY["X-API-Key"]}}))
    port, log = _free_port(), tmp_path / "server.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "memlab.serve", "--config", str(config), "--port", str(port),
             "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
            preexec_fn=_limit_files(files) if files else None)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(f"{url}/docs", proc, log, timeout=120)
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.fixture
def ollama() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        yield server


def test_non_finite_numbers_are_422_on_every_post_route(tmp_path: Path,
                                                        ollama: FakeOllama) -> None:
    bodies = {
        "/memory/search": ['{"query": "x", "limit": NaN}', '{"query": NaN}',
                           '{"query": "x", "limit": 1e400}', '{"query": "x", "user_id": -1e999}'],
        "/chat": ['{"message": Infinity}', '{"message": "hi", "include_memory_search": NaN}',
                  '{"message": "hi", "user_id": -Infinity}'],
        "/memory/add": ['{"content": "x", "memory_type": NaN}', '{"content": 1e400}',
                        '{"content": "x", "extra": [NaN, Infinity]}'],
        "/memory/consolidate": ['{"user_id": Infinity}', '{"user_id": "a", "x": -Infinity}'],
    }
    with _server(tmp_path, ollama.url) as (url, _):
        for route, cases in bodies.items():
            for body in cases:
                response = httpx.post(f"{url}{route}", content=body, timeout=30,
                                      headers={**KEY, "content-type": "application/json"})
                assert response.status_code == 422, (route, body, response.text)
                assert response.json()["detail"], (route, body)


def test_core_memory_is_capped_and_users_list_and_delete_their_own(
        tmp_path: Path, ollama: FakeOllama) -> None:
    with _server(tmp_path, ollama.url) as (url, _):
        def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
            return httpx.request(method, f"{url}{path}", headers=KEY, timeout=60, **kwargs)

        huge = call("POST", "/memory/add", json={
            "content": "记忆" * 4000, "memory_type": "core", "user_id": "ann"})
        assert huge.status_code == 422 and "capped at 200 tokens" in huge.json()["detail"]
        core = call("POST", "/memory/add", json={
            "content": "Ann is vegetarian", "memory_type": "core", "user_id": "ann"})
        note = call("POST", "/memory/add", json={
            "content": "Ann's sister lives in Lyon", "user_id": "ann"})
        call("POST", "/memory/add", json={"content": "Bob plays chess", "user_id": "bob"})
        assert core.status_code == 200 and note.status_code == 200
        assert call("POST", "/chat", json={"message": "hi", "user_id": "ann"}).status_code == 200
        listed = call("GET", "/memory/list", params={"user_id": "ann"}).json()
        assert listed["memories"][0] == listed["memories"][0] | {
            "id": core.json()["id"], "memory_type": "core", "content": "- Ann is vegetarian"}
        ids = [m["id"] for m in listed["memories"]]
        assert note.json()["id"] in ids and listed["total"] == len(ids) == 4  # + the chat
        assert all("Bob" not in m["content"] for m in listed["memories"])
        only_core = call("GET", "/memory/list", params={"user_id": "ann", "memory_type": "core"})
        assert [m["id"] for m in only_core.json()["memories"]] == [core.json()["id"]]
        assert call("GET", "/memory/list", params={"limit": 0}).status_code == 422

        not_hers = call("DELETE", f"/memory/{note.json()['id']}", params={"user_id": "bob"})
        assert not_hers.status_code == 404 and "has no memory" in not_hers.json()["detail"]
        assert httpx.delete(f"{url}/memory/{note.json()['id']}", params={"user_id": "ann"},
                            timeout=30).status_code == 401
        for memory_id in (note.json()["id"], core.json()["id"]):
            gone = call("DELETE", f"/memory/{memory_id}", params={"user_id": "ann"})
            assert gone.status_code == 200 and memory_id in gone.json()["deleted"]
        left = call("GET", "/memory/list", params={"user_id": "ann"}).json()["memories"]
        assert [m["memory_type"] for m in left] == ["recall", "recall"]
        found = call("POST", "/memory/search", json={"query": "sister Lyon", "user_id": "ann"})
        assert all("Lyon" not in r["content"] for r in found.json()["results"])
        assert call("DELETE", f"/memory/{note.json()['id']}",
                    params={"user_id": "ann"}).status_code == 404
        bob = call("GET", "/memory/list", params={"user_id": "bob"}).json()
        assert [m["content"] for m in bob["memories"]] == ["Bob plays chess"]


def _open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_thousand_users_under_ulimit_256(tmp_path: Path, ollama: FakeOllama) -> None:
    statuses: dict[int, int] = {}
    with _server(tmp_path, ollama.url, files=256) as (url, proc), \
            httpx.Client(base_url=url, headers=KEY, timeout=60) as client:
        for n in range(1000):
            response = client.post("/memory/add", json={
                "content": f"user {n} likes the number {n}", "user_id": f"u{n}"})
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if n % 100 == 0:
                early = client.post("/memory/search", json={
                    "query": "likes the number 0", "user_id": "u0"})
                assert early.status_code == 200, early.text
                assert [r["content"] for r in early.json()["results"]] == [
                    "user 0 likes the number 0"]
        files = _open_files(proc.pid)
        status = client.get("/status")
        assert status.status_code == 200 and status.json()["memory"]["users"] == 1000
        last = client.post("/memory/search", json={"query": "number 999", "user_id": "u999"})
        assert last.status_code == 200 and last.json()["count"] == 1
    assert statuses == {200: 1000}
    assert files < 200  # bounded by memory.max_open_users (64), not by the users seen
    assert "Too many open files" not in (tmp_path / "server.log").read_text()


def test_status_rechecks_the_backend_every_time(tmp_path: Path) -> None:
    port = _free_port()
    with FakeOllama(port=port) as server, _server(tmp_path, server.url) as (url, _):
        def reachable() -> Any:
            return httpx.get(f"{url}/status", headers=KEY, timeout=30).json()["backend"][
                "reachable"]

        assert reachable() is True
        server.stop()
        assert reachable() is False
        chat = httpx.post(f"{url}/chat", headers=KEY, json={"message": "hi"}, timeout=60)
        assert chat.status_code == 503
        server.start()
        assert reachable() is True


def test_a_body_shorter_than_its_content_length_gets_408(tmp_path: Path,
                                                         ollama: FakeOllama) -> None:
    with _server(tmp_path, ollama.url, env={"MEMLAB_BODY_TIMEOUT": "1"}) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"POST /memory/search HTTP/1.1\r\nHost: x\r\nX-API-Key: k3y\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                         b'{"query":')
            reply = b""
            while chunk := sock.recv(4096):  # the server closes the connection
                reply += chunk
        reply_text = reply.decode()
        assert reply_text.startswith("HTTP/1.1 408"), reply_text
        assert "not received within 1 s" in reply_text
        healthy = httpx.get(f"{url}/status", headers=KEY, timeout=30)
        assert healthy.status_code == 200


def test_a_failing_store_is_a_503_blaming_storage_not_the_model(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from memlab.agent import load_settings
    from memlab.llm.mock import MockLLM
    from memlab.serve import build_app

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be")
    settings = load_settings(env={}, overrides={
        "model.embedding_model": "hash", "memory.data_dir": str(tmp_path / "data"),
        "memory.archival.path": str(blocker / "archival.db")})
    client = TestClient(build_app(settings, llm=MockLLM(["ok"])))
    for route, body in (("/memory/add", {"content": "x"}), ("/chat", {"message": "hi"}),
                        ("/memory/search", {"query": "x"})):
        response = client.post(route, json=body)
        assert response.status_code == 503, (route, response.text)
        assert response.json()["backend"] == "storage"
        assert str(blocker) in response.json()["detail"]
