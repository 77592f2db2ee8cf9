"""The HTTP API in-process: the seed's shapes, API key, size limits, clear 4xx, and 503
with the reason when Ollama is down (then recovery against the fake Ollama server)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from memlab.agent import load_settings
from memlab.llm.mock import MockLLM
from memlab.serve import build_app

KEY = {"X-API-Key": "s3cret"}


def _client(tmp_path: Path, llm: Any = None, **extra: Any) -> TestClient:
    settings = load_settings(env={}, overrides={
        "model.embedding_model": "hash", "memory.data_dir": str(tmp_path / "data"),
        "server.api_key": "s3cret", "retrieval.relevance_threshold": 0.2, **extra})
    return TestClient(build_app(settings, llm=llm or MockLLM(["Got it."])))


def test_seed_requests_and_responses(tmp_path: Path) -> None:
    client = _client(tmp_path)
    chat = client.post("/chat", headers=KEY, json={
        "message": "Hello, remember I like Python", "user_id": "alice",
        "include_memory_search": True})
    assert chat.status_code == 200 and chat.json()["message"] == "Got it."
    assert chat.json()["user_id"] == "alice" and chat.json()["session_id"] == "s1"
    added = client.post("/memory/add", headers=KEY, json={
        "content": "User prefers async programming", "memory_type": "archival"})
    assert added.status_code == 200
    assert added.json() | {"timestamp": None} == {
        "status": "ok", "id": "m1", "user_id": "default", "memory_type": "archival",
        "content": "User prefers async programming", "timestamp": None,
        "changed": True, "replaced": [], "evicted": []}
    found = client.post("/memory/search", headers=KEY,
                        json={"query": "async programming preferences", "limit": 5})
    assert found.status_code == 200
    assert [r["id"] for r in found.json()["results"]] == ["m1"] and found.json()["count"] == 1
    alice = client.post("/memory/search", headers=KEY,
                        json={"query": "I like Python", "limit": 5, "user_id": "alice"})
    assert [r["content"] for r in alice.json()["results"]] == [
        "alice: Hello, remember I like Python"]
    status = client.get("/status", headers=KEY).json()
    assert status["memory"]["users"] == 2 and status["memory"]["architecture"] == "tiered"
    consolidated = client.post("/memory/consolidate", headers=KEY, json={"user_id": "alice"})
    assert consolidated.status_code == 200 and consolidated.json()["consolidated"] == []


def test_delete_user_forgets_everything_of_theirs(tmp_path: Path) -> None:
    client = _client(tmp_path)
    client.post("/chat", headers=KEY, json={"message": "I like Python", "user_id": "alice"})
    client.post("/memory/add", headers=KEY, json={"content": "Alice keeps bees",
                                                  "user_id": "alice"})
    client.post("/memory/add", headers=KEY, json={"content": "Bob keeps goats",
                                                  "user_id": "bob"})
    assert client.delete("/users/alice").status_code == 401  # the key is needed
    gone = client.delete("/users/alice", headers=KEY)
    assert gone.status_code == 200 and gone.json()["messages"] == 3
    assert gone.json()["status"] == "deleted" and gone.json()["deleted"]
    listed = client.get("/memory/list", headers=KEY, params={"user_id": "alice"})
    assert listed.json()["total"] == 0
    assert client.get("/memory/list", headers=KEY, params={"user_id": "bob"}).json()["total"]
    again = client.delete("/users/alice", headers=KEY)
    assert again.status_code == 404 and "keeps nothing for user 'alice'" in again.text
    assert client.delete("/users/no%20spaces", headers=KEY).status_code == 422


def test_api_key_is_required_but_docs_are_open(tmp_path: Path) -> None:
    client = _client(tmp_path)
    for headers in ({}, {"X-API-Key": "wrong"}):
        response = client.post("/chat", headers=headers, json={"message": "hi"})
        assert response.status_code == 401
        assert response.json() == {"detail": "missing or invalid API key (header X-API-Key)"}
    assert client.get("/status").status_code == 401
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert client.get(path).status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/chat", "/memory/add", "/memory/search", "/status"} <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"


def test_oversize_bodies_get_413_declared_or_streamed(tmp_path: Path) -> None:
    client = _client(tmp_path, **{"server.max_body_bytes": 2048})
    big = b'{"message": "' + b"x" * 4000 + b'"}'
    declared = client.post("/chat", headers={**KEY, "content-type": "application/json"},
                           content=big)
    assert declared.status_code == 413
    assert declared.json() == {"detail": "request body of 4015 bytes is over the limit of "
                                         "2048 bytes"}

    def chunks() -> Iterator[bytes]:
        yield big[:1500]
        yield big[1500:]

    streamed = client.post("/chat", headers={**KEY, "content-type": "application/json"},
                           content=chunks())
    assert streamed.status_code == 413 and "over the limit of 2048" in streamed.json()["detail"]
    small = client.post("/chat", headers=KEY, json={"message": "x" * 1000})
    assert small.status_code == 200


@pytest.mark.parametrize(("path", "body", "where"), [
    ("/chat", {"message": ""}, "message"),
    ("/chat", {"message": "hi", "user_id": "../../etc/passwd"}, "user_id"),
    ("/chat", {"message": "hi", "stream": True}, "stream"),
    ("/chat", b'{"message": "\\ud800"}', "message"),  # a lone surrogate, JSON-escaped
    ("/memory/add", {"content": "x", "memory_type": "episodic"}, "memory_type"),
    ("/memory/search", {"query": "x", "limit": 0}, "limit"),
    ("/memory/search", {"query": "x", "limit": 51}, "limit"),
])
def test_invalid_input_is_a_422_naming_the_field(tmp_path: Path, path: str,
                                                 body: dict[str, Any] | bytes,
                                                 where: str) -> None:
    client = _client(tmp_path)
    if isinstance(body, bytes):
        response = client.post(path, headers={**KEY, "content-type": "application/json"},
                               content=body)
    else:
        response = client.post(path, headers=KEY, json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] == where


def test_agent_level_refusals_are_422_with_a_message(tmp_path: Path) -> None:
    response = _client(tmp_path).post("/chat", headers=KEY, json={"message": "   "})
    assert response.status_code == 422
    assert response.json() == {"detail": "message must not be empty"}
    broken = _client(tmp_path).post("/chat", headers={**KEY, "content-type":
                                                      "application/json"}, content=b"{oops")
    assert broken.status_code == 422 and broken.json()["detail"][0]["type"] == "json_invalid"
    plain = _client(tmp_path).post("/memory/search", headers=KEY, content=b'{"query": "x"}')
    assert plain.status_code == 422 and plain.json()["detail"][0]["msg"] == (
        "the body is not read as JSON: send the header Content-Type: application/json (got "
        "no content type)")
    # both shapes are what the OpenAPI description says a 422 is
    from memlab.serve.schemas import UnprocessableResponse

    for body in (response.json(), broken.json()):
        UnprocessableResponse.model_validate(body)
    spec = _client(tmp_path).get("/openapi.json", headers=KEY).json()
    assert spec["paths"]["/chat"]["post"]["responses"]["422"]["content"][
        "application/json"]["schema"] == {"$ref": "#/components/schemas/UnprocessableResponse"}


def test_ollama_down_is_503_with_the_reason_then_recovers(tmp_path: Path) -> None:
    from memlab.testing import FakeOllama

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    settings = load_settings(env={}, overrides={
        "model.embedding_model": "hash", "memory.data_dir": str(tmp_path / "data"),
        "model.type": "ollama", "model.name": "qwen3:4b",
        "model.host": f"http://127.0.0.1:{port}"})
    app = build_app(settings)
    app.state.agent.llm.retries = 0
    client = TestClient(app)
    down = client.post("/chat", json={"message": "Are you there?", "user_id": "gus"})
    assert down.status_code == 503 and down.headers["retry-after"] == "5"
    assert down.json()["backend"] == "ollama"
    assert down.json()["detail"].startswith(f"cannot reach Ollama at http://127.0.0.1:{port}")
    assert "ollama serve" in down.json()["detail"]
    status = client.get("/status")  # a health check sees it: 503, degraded, the reason
    assert status.status_code == 503 and status.json()["status"] == "degraded"
    assert status.json()["backend"]["reachable"] is False
    assert status.json()["problems"] == [f"model backend: {status.json()['backend']['detail']}"]
    with FakeOllama(port=port):
        up = client.post("/chat", json={"message": "Are you there?", "user_id": "gus"})
        assert up.status_code == 200 and up.json()["message"] == "You said: Are you there?"
        healthy = client.get("/status")
        assert healthy.status_code == 200 and healthy.json()["status"] == "ok"
        assert healthy.json()["problems"] == []
    found = client.post("/memory/search", json={"query": "Are you there?", "user_id": "gus"})
    assert {r["content"] for r in found.json()["results"]} == {
        "gus: Are you there?", "assistant: You said: Are you there?"}


def test_cli_refuses_exposure_without_a_key_and_bad_settings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from memlab.serve.__main__ import main

    monkeypatch.delenv("MEMLAB_API_KEY", raising=False)
    monkeypatch.delenv("MEMLAB_SERVE_CONFIG", raising=False)
    assert main(["--host", "0.0.0.0", "--data-dir", str(tmp_path)]) == 2
    assert "refusing to listen on 0.0.0.0 without an API key" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "nope.json")]) == 2
    assert "nope.json: settings file not found" in capsys.readouterr().err
    with socket.socket() as taken:  # another server on the port: said before loading
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--port", str(port), "--data-dir", str(tmp_path)]) == 2
    assert (f"port {port} on 127.0.0.1 is in use (another server, or an earlier "
            "memlab.serve still running); choose another with --port"
            ) in capsys.readouterr().err
