"""``POST /chat/stream``: the reply as server-sent events, token events then the whole
reply; a bad request refused before the stream, a backend failure as an ``error`` event,
the exchange remembered as ``/chat`` remembers it. (The real llama.cpp model streaming
token by token through the real server: ``tests/test_serve_live.py``.)"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from memlab.agent import load_settings
from memlab.errors import ConfigError
from memlab.llm.base import Completion, Message
from memlab.llm.mock import MockLLM
from memlab.serve import build_app

KEY = {"X-API-Key": "k"}


class Streaming(MockLLM):
    """A scripted model that streams its reply in pieces, leaving the last one to the final
    text (as llama.cpp leaves the last sampled token)."""

    streams_tokens = True

    def generate(self, messages: Sequence[Message], *,
                 on_token: Callable[[str], None] | None = None,
                 **overrides: Any) -> Completion:
        completion = super().generate(messages, **overrides)
        for piece in ("Your ", "cat ", "is "):
            if on_token is not None:
                on_token(piece)
        return completion


class Slow(Streaming):
    """Thinks ``delay`` seconds before its first token (a long prefill)."""

    def __init__(self, responses: list[str], delay: float) -> None:
        super().__init__(responses)
        self.delay = delay

    def generate(self, messages: Sequence[Message], **kwargs: Any) -> Completion:
        time.sleep(self.delay)
        return super().generate(messages, **kwargs)


def _client(tmp_path: Path, llm: Any, **server: Any) -> TestClient:
    settings = load_settings(env={}, overrides={
        "model.embedding_model": "hash", "memory.data_dir": str(tmp_path / "data"),
        "server.api_key": "k", **{f"server.{k}": v for k, v in server.items()}})
    return TestClient(build_app(settings, llm=llm))


def _events(text: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in text.strip().split("\n\n"):
        if block.startswith(":"):  # a comment (keepalive): clients ignore it
            continue
        name, data = block.split("\n")
        out.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


def test_tokens_then_the_whole_reply_and_the_exchange_is_remembered(tmp_path: Path) -> None:
    client = _client(tmp_path, Streaming(["Your cat is Miso."]))
    response = client.post("/chat/stream", headers=KEY,
                           json={"message": "What is my cat called?", "user_id": "ana"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = _events(response.text)
    assert [name for name, _ in events] == ["token"] * 4 + ["reply"]
    assert [data["text"] for _, data in events[:4]] == ["Your ", "cat ", "is ", "Miso."]
    reply = events[-1][1]
    assert reply["message"] == "Your cat is Miso." and reply["user_id"] == "ana"
    assert set(reply) == set(client.post("/chat", headers=KEY, json={
        "message": "Hi", "user_id": "bob"}).json())  # the shape /chat answers with
    said = [m["content"] for m in client.get("/users/ana/export", headers=KEY).json()[
        "users"]["ana"]["messages"]]
    assert said == ["What is my cat called?", "Your cat is Miso."]


def test_a_backend_that_does_not_stream_sends_the_reply_in_one_piece(tmp_path: Path) -> None:
    events = _events(_client(tmp_path, MockLLM(["Noted."])).post(
        "/chat/stream", headers=KEY, json={"message": "Hello"}).text)
    assert events[0] == ("token", {"text": "Noted."}) and events[1][0] == "reply"


def test_bad_requests_are_refused_before_the_stream_and_failures_are_error_events(
        tmp_path: Path) -> None:
    client = _client(tmp_path, MockLLM(["Noted."]))
    assert client.post("/chat/stream", json={"message": "Hi"}).status_code == 401
    empty = client.post("/chat/stream", headers=KEY, json={"message": "   "})
    assert empty.status_code == 422 and "must not be empty" in empty.text
    bad_user = client.post("/chat/stream", headers=KEY, json={"message": "Hi",
                                                             "user_id": "no spaces"})
    assert bad_user.status_code == 422
    down = _client(tmp_path / "down", MockLLM(error="connection refused"))
    events = _events(down.post("/chat/stream", headers=KEY, json={"message": "Hi"}).text)
    assert events == [("error", {"detail": "connection refused", "status": 503,
                                 "backend": "llamacpp"})]  # as /chat names it


def test_an_ollama_backend_streams_the_reply_piece_by_piece(tmp_path: Path) -> None:
    """Against memlab's fake Ollama (its /api/chat streams NDJSON as Ollama does): the
    pieces arrive as token events, and a non-streamed /chat gives the same message."""
    from memlab.testing import FakeOllama
    from memlab.testing.postgres import free_port

    port = free_port()
    settings = load_settings(env={}, overrides={
        "model.embedding_model": "hash", "memory.data_dir": str(tmp_path / "data"),
        "model.type": "ollama", "model.name": "qwen3:4b",
        "model.host": f"http://127.0.0.1:{port}"})
    client = TestClient(build_app(settings))
    with FakeOllama(port=port) as server:
        events = _events(client.post("/chat/stream", json={
            "message": "Tell me about my garden plans", "user_id": "gus"}).text)
        plain = client.post("/chat", json={"message": "Tell me about my garden plans",
                                           "user_id": "tom"}).json()
        streamed = [body.get("stream", True) for _, path, body in server.requests
                    if path == "/api/chat"]
    names = [name for name, _ in events]
    assert names[-1] == "reply" and len(names) > 3 and set(names[:-1]) == {"token"}
    reply = events[-1][1]
    assert "".join(data["text"] for _, data in events[:-1]) == reply["message"]
    assert reply["message"] == plain["message"] == "You said: Tell me about my garden plans"
    assert streamed == [True, False]  # the stream asked Ollama to stream, /chat did not
    assert reply["tokens"]["completion"] == plain["tokens"]["completion"] > 0


class Thinking(MockLLM):
    """Streams a raw reply with leading whitespace and a <think> block (as a Qwen3 writes
    it inline), its last token left to the final text; the Completion holds the clean one."""

    streams_tokens = True

    def generate(self, messages: Sequence[Message], *,
                 on_token: Callable[[str], None] | None = None,
                 **overrides: Any) -> Completion:
        completion = super().generate(messages, **overrides)
        for piece in ("\n", "<think>hm</think>", "\n\n", "Miso"):
            if on_token is not None:
                on_token(piece)
        return completion


def test_the_reply_event_is_the_clean_message_whatever_the_tokens_showed(
        tmp_path: Path) -> None:
    events = _events(_client(tmp_path, Thinking(["Miso."])).post(
        "/chat/stream", headers=KEY, json={"message": "My cat?"}).text)
    assert "".join(data["text"] for name, data in events if name == "token") == \
        "\n<think>hm</think>\n\nMiso"  # as generated; no "." appended to a mismatch
    assert events[-1][1]["message"] == "Miso."
    leading = _events(_client(tmp_path / "b", Streaming(["Your cat is Miso."])).post(
        "/chat/stream", headers=KEY, json={"message": "My cat?"}).text)
    assert "".join(data["text"] for name, data in leading if name == "token") == \
        "Your cat is Miso."


def test_a_cached_model_still_streams_on_a_miss(tmp_path: Path) -> None:
    from memlab.llm.cache import CachedLLM

    pieces: list[str] = []
    cached = CachedLLM(Streaming(["Your cat is Miso."]), tmp_path / "c.sqlite")
    chat = [{"role": "user", "content": "My cat?"}]
    first = cached.generate(chat, on_token=pieces.append)  # type: ignore[arg-type]
    again = cached.generate(chat, on_token=pieces.append)  # type: ignore[arg-type]
    assert pieces == ["Your ", "cat ", "is "] and not first.cached and again.cached
    assert again.text == first.text == "Your cat is Miso."


def test_a_long_prefill_sends_keepalive_comments_before_the_first_token(
        tmp_path: Path) -> None:
    client = _client(tmp_path, Slow(["Your cat is Miso."], delay=1.0), stream_keepalive=0.2)
    text = client.post("/chat/stream", headers=KEY,
                       json={"message": "What is my cat called?"}).text
    head = text.split("event: token")[0]
    assert head.count(": keepalive\n\n") >= 2  # ~every 0.2 s of the 1 s wait (more when slow)
    assert [name for name, _ in _events(text)] == ["token"] * 4 + ["reply"]
    quick = _client(tmp_path / "quick", Streaming(["Noted."]), stream_keepalive=5)
    assert ": keepalive" not in quick.post("/chat/stream", headers=KEY,
                                           json={"message": "Hi"}).text


def test_the_python_verb_yields_keepalive_events_only_when_asked(tmp_path: Path) -> None:
    agent = _client(tmp_path, Slow(["Noted.", "Noted."], delay=0.5)).app.state.agent
    asked = [e["event"] for e in agent.chat_stream("Hi", keepalive=0.1)]
    assert asked[0] == "keepalive" and asked[-2:] == ["token", "reply"]
    assert "keepalive" not in [e["event"] for e in agent.chat_stream("Hi again")]
    with pytest.raises(ValueError, match="keepalive must be a positive"):
        agent.chat_stream("Hi", keepalive=0)
    with pytest.raises(ConfigError, match="stream_keepalive"):
        load_settings(env={"MEMLAB_STREAM_KEEPALIVE": "0"})


def test_a_process_that_ends_mid_reply_still_remembers_the_exchange(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    script = f"""
import time
from memlab.agent import from_config, load_settings
from memlab.llm.mock import MockLLM

class Slow(MockLLM):
    def generate(self, messages, **kwargs):
        time.sleep(1.0)
        return super().generate(messages, **kwargs)

settings = load_settings(env={{}}, overrides={{"model.embedding_model": "hash",
                                             "memory.data_dir": {data!r}}})
agent = from_config(settings=settings, llm=Slow(["Hello!", "Noted."]))
agent.chat("Hi", "ana")
agent.chat_stream("My cat is called Miso.", "ana")  # the script ends before the reply
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    export = _client(tmp_path, MockLLM(["Hi"])).get("/users/ana/export", headers=KEY).json()
    said = [m["content"] for m in export["users"]["ana"]["messages"]]
    assert said == ["Hi", "Hello!", "My cat is called Miso.", "Noted."]
