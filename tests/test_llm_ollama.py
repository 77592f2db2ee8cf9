"""Ollama backend: contract tests against memlab's fake Ollama, plus an opt-in live test."""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from memlab.errors import MemlabError
from memlab.llm.chatml import count_chat_tokens
from memlab.llm.ollama import OllamaLLM, ollama_url
from memlab.llm.retry import TransientError
from memlab.testing import FakeModel, FakeOllama
from memlab.tokens import count_tokens

CHAT = [{"role": "system", "content": "Answer from memory."},
        {"role": "user", "content": "Where did Caroline move from?"}]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOllama]:
    with FakeOllama() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _reset(server: FakeOllama) -> None:
    server.state.failures.clear()
    server.set_delay(0.0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def last_chat_request(server: FakeOllama) -> dict:
    return next(body for method, path, body in reversed(server.requests) if path == "/api/chat")


def test_chat_returns_answer_tokens_durations_and_digest(server: FakeOllama) -> None:
    c = OllamaLLM(host=server.url, num_ctx=4096, seed=7, max_tokens=99).generate(CHAT)
    assert c.ok and c.text == "You said: Where did Caroline move from?"
    assert c.model == "qwen3:4b" and c.thinking == ""
    assert c.digest == server.state.models["qwen3:4b"].digest
    assert c.prompt_tokens == count_chat_tokens(CHAT) == c.metadata["qwen_prompt_tokens"] == 23
    assert c.completion_tokens == count_tokens(c.text) == 9
    assert c.metadata["prompt_eval_duration_s"] == pytest.approx(23 * 0.002)
    assert c.metadata["eval_duration_s"] == pytest.approx(9 * 0.02)
    assert c.metadata["done_reason"] == "stop" and c.metadata["attempts"] == 1
    request = last_chat_request(server)
    assert request["options"] == {"num_ctx": 4096, "temperature": 0.0, "seed": 7,
                                  "num_predict": 99}
    assert request["stream"] is False and request["think"] is False
    assert request["messages"] == CHAT


def test_thinking_field_is_separated_from_the_answer(server: FakeOllama) -> None:
    c = OllamaLLM(host=server.url, think=True).generate(CHAT)
    assert c.text == "You said: Where did Caroline move from?"
    assert c.thinking == "The user wrote 29 characters. I will answer briefly."
    assert last_chat_request(server)["think"] is True
    assert c.completion_tokens == count_tokens(c.thinking + c.text)


def test_inline_think_block_is_stripped_when_think_is_not_sent(server: FakeOllama) -> None:
    c = OllamaLLM(host=server.url, think=None).generate(CHAT)
    assert "think" not in last_chat_request(server)
    assert c.text == "You said: Where did Caroline move from?"
    assert c.thinking == "The user wrote 29 characters. I will answer briefly."
    assert "<think>" not in c.text


def test_think_is_not_sent_to_models_that_cannot_think(server: FakeOllama) -> None:
    c = OllamaLLM(host=server.url, model="qwen2.5:0.5b", think=True).generate(CHAT)
    assert c.ok and c.thinking == ""
    assert "think" not in last_chat_request(server)


def test_connection_refused_says_where_it_looked(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    llm = OllamaLLM(host=f"127.0.0.1:{port}", retries=2, backoff=0.01)
    c = llm.generate(CHAT)
    assert not c.ok and c.text == "" and c.prompt_tokens == 0
    assert f"http://127.0.0.1:{port}" in c.error and "ollama serve" in c.error
    assert c.metadata["attempts"] == 3 and c.metadata["error_type"] == "transient"
    with pytest.raises(MemlabError, match="connection refused"):
        llm.check()


def test_a_host_name_that_does_not_resolve_is_not_called_a_refusal() -> None:
    c = OllamaLLM(host="no-such-host.invalid:11434", retries=0).generate(CHAT)
    assert not c.ok and "the host name 'no-such-host.invalid' does not resolve" in c.error
    assert "refused" not in c.error


def test_missing_model_says_ollama_pull(server: FakeOllama) -> None:
    llm = OllamaLLM(host=server.url, model="qwen3:235b", backoff=0.01)
    c = llm.generate(CHAT)
    assert not c.ok
    assert "ollama pull qwen3:235b" in c.error and server.url in c.error
    assert c.metadata["attempts"] == 1 and c.metadata["http_status"] == 404
    with pytest.raises(MemlabError, match="ollama pull qwen3:235b"):
        llm.check()


def test_server_errors_are_retried_then_recorded(server: FakeOllama) -> None:
    llm = OllamaLLM(host=server.url, retries=2, backoff=0.01)
    llm.check()  # model info fetched before the failures start
    server.fail_next(503, times=2)
    c = llm.generate(CHAT)
    assert c.ok and c.metadata["attempts"] == 3
    server.fail_next(500, times=5, error="llama runner process has terminated")
    c = llm.generate(CHAT)
    assert not c.ok and c.metadata["attempts"] == 3
    assert "HTTP 500" in c.error and "llama runner process has terminated" in c.error
    server.state.failures.clear()
    server.fail_next(400, error="invalid options")
    c = llm.generate(CHAT)
    assert not c.ok and c.metadata["attempts"] == 1 and c.metadata["error_type"] == "permanent"


def test_timeout_per_call_is_transient_and_not_retried(server: FakeOllama) -> None:
    llm = OllamaLLM(host=server.url, timeout=0.3, retries=1, backoff=0.01)
    llm.check()
    server.set_delay(1.0)
    c = llm.generate(CHAT)
    assert not c.ok and "did not answer /api/chat within 0.3 s" in c.error
    assert c.metadata["attempts"] == 1 and c.metadata["error_type"] == "transient"


def test_host_comes_from_ollama_host(server: FakeOllama, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", server.url)
    assert OllamaLLM().generate(CHAT).ok
    assert ollama_url("") == server.url
    monkeypatch.delenv("OLLAMA_HOST")
    assert ollama_url("") == "http://127.0.0.1:11434"
    assert ollama_url("gpu-box") == "http://gpu-box:11434"
    assert ollama_url(":9999") == "http://127.0.0.1:9999"
    assert ollama_url("https://ollama.example.com/") == "https://ollama.example.com:443"


def test_identity_for_the_cache_uses_the_digest_not_the_host(server: FakeOllama) -> None:
    a = OllamaLLM(host=server.url).cache_identity()
    b = OllamaLLM(host=server.url.replace("127.0.0.1", "localhost"), timeout=5).cache_identity()
    assert a == b and a["digest"] == server.state.models["qwen3:4b"].digest
    assert OllamaLLM(host=server.url).cache_identity(think=True) != a


# ---------------------------------------------------------------- the fake server itself


def test_fake_server_speaks_the_rest_of_the_api(server: FakeOllama) -> None:
    import ollama

    client = ollama.Client(host=server.url)
    assert httpx.get(f"{server.url}/api/version").json() == {"version": "0.12.6"}
    names = [m.model for m in client.list().models]
    assert "qwen3:4b" in names and "all-minilm:latest" in names
    shown = client.show("qwen3:4b")
    assert shown.capabilities == ["completion", "thinking"] and shown.details.family == "qwen3"
    first = client.embed(model="all-minilm", input=["hello world", "goodbye"]).embeddings
    again = client.embed(model="all-minilm", input="hello world").embeddings
    assert len(first) == 2 and len(first[0]) == 384 and first[0] == again[0]
    assert math.isclose(sum(v * v for v in first[0]), 1.0, rel_tol=1e-6)
    assert first[0] != first[1]
    generated = client.generate(model="qwen3:4b", prompt="Hi there", think=True)
    assert generated.response == "You said: Hi there" and generated.thinking
    chunks = list(client.chat(model="qwen3:4b", messages=CHAT, stream=True, think=True))
    assert "".join(c.message.content for c in chunks) == "You said: Where did Caroline move from?"
    assert "".join(c.message.thinking or "" for c in chunks) == (
        "The user wrote 29 characters. I will answer briefly.")
    assert chunks[-1].done and chunks[-1].eval_count == count_tokens(
        "The user wrote 29 characters. I will answer briefly."
        "You said: Where did Caroline move from?")
    with pytest.raises(ollama.ResponseError) as info:
        client.chat(model="nope", messages=CHAT)
    assert info.value.status_code == 404
    assert info.value.error == 'model "nope" not found, try pulling it first'
    assert httpx.get(f"{server.url}/api/nothing").status_code == 404


def test_fake_models_can_be_scripted() -> None:
    model = FakeModel("memory-qwen", reply=lambda msgs: "Sweden.", capabilities=("completion",))
    with FakeOllama(models=[model]) as fake:
        c = OllamaLLM(host=fake.url, model="memory-qwen").generate(CHAT)
    assert c.text == "Sweden." and c.model == "memory-qwen"


# ---------------------------------------------------------------- live


@pytest.mark.live
def test_live_ollama() -> None:
    """Runs against a real server when OLLAMA_HOST is set (model: MEMLAB_OLLAMA_MODEL)."""
    if not os.environ.get("OLLAMA_HOST"):
        pytest.skip("OLLAMA_HOST is not set: no live Ollama server to test against")
    model = os.environ.get("MEMLAB_OLLAMA_MODEL", "qwen3:4b")
    llm = OllamaLLM(model=model, max_tokens=64, think=False)
    llm.check()
    c = llm.generate([{"role": "user", "content": "Reply with the single word: ready"}])
    assert c.ok, c.error
    assert c.text.strip() and "<think>" not in c.text
    assert c.prompt_tokens > 0 and c.completion_tokens > 0
    assert len(c.digest) == 64
    assert c.metadata["eval_duration_s"] > 0
    pieces: list[str] = []  # streamed (POST /chat/stream): the same text, piece by piece
    streamed = llm.generate([{"role": "user", "content": "Count from one to five in words"}],
                            on_token=pieces.append)
    assert streamed.ok, streamed.error
    assert len(pieces) > 1 and "".join(pieces).strip() == streamed.text


def test_backend_pickles_without_its_client(server: FakeOllama) -> None:
    import pickle

    from memlab.llm.cache import CachedLLM

    llm = OllamaLLM(host=server.url)
    assert llm.generate(CHAT).ok  # now holds an httpx client and the model info
    copy = pickle.loads(pickle.dumps(llm))
    assert copy.params() == llm.params() and "_ollama_client" not in copy.__dict__
    assert copy.generate(CHAT).ok
    wrapped = pickle.loads(pickle.dumps(CachedLLM(OllamaLLM(host=server.url), mode="off")))
    wrapped.check()  # delegated to the wrapped backend
    assert wrapped.url == server.url


def test_a_failure_after_part_of_a_streamed_reply_is_not_retried(server: FakeOllama) -> None:
    llm = OllamaLLM(host=server.url, retries=3, backoff=0.0)
    pieces: list[str] = []

    def broken(text: str) -> None:
        pieces.append(text)
        if len(pieces) == 2:
            raise TransientError("the connection dropped")

    c = llm.generate(CHAT, on_token=broken)
    assert not c.ok and "part of the reply was already streamed: not retried" in str(c.error)
    assert c.metadata["attempts"] == 1 and len(pieces) == 2


def test_a_stream_that_stops_before_done_is_an_error_not_a_short_reply(
        server: FakeOllama, monkeypatch: pytest.MonkeyPatch) -> None:
    import ollama

    llm = OllamaLLM(host=server.url, retries=2, backoff=0.0)
    llm.check()
    piece = ollama.ChatResponse(model="qwen3:4b", done=False,
                                message=ollama.Message(role="assistant", content="Your cat "))
    monkeypatch.setattr(llm._client(), "chat", lambda **kwargs: iter([piece]))
    pieces: list[str] = []
    c = llm.generate(CHAT, on_token=pieces.append)
    assert not c.ok and "ended the stream before the reply did" in str(c.error)
    assert pieces == ["Your cat "] and c.metadata["attempts"] == 1  # shown: not retried


def test_a_stream_that_trickles_past_the_timeout_is_stopped(
        server: FakeOllama, monkeypatch: pytest.MonkeyPatch) -> None:
    """The read timeout restarts with every piece: the call's own deadline stops a server
    that keeps sending text slower than it should, forever."""
    import ollama

    llm = OllamaLLM(host=server.url, timeout=0.5, retries=2, backoff=0.0)
    llm.check()

    def trickle(**kwargs: Any) -> Any:
        while True:
            time.sleep(0.1)
            yield ollama.ChatResponse(model="qwen3:4b", done=False,
                                      message=ollama.Message(role="assistant", content="la "))

    monkeypatch.setattr(llm._client(), "chat", trickle)
    pieces: list[str] = []
    c = llm.generate(CHAT, on_token=pieces.append)
    assert not c.ok and "still streaming after 0.5 s" in str(c.error), c.error
    assert 1 <= len(pieces) < 50 and c.metadata["attempts"] == 1  # stopped; not retried
