"""OpenAI-compatible backend: for real against llama-cpp-python's server with the embedded model.

The server is started by ``python -m memlab.llm.server`` — llama-cpp-python's own
``llama_cpp.server`` with memlab's AMX workaround applied (the plain module segfaults on
its first request on AMX CPUs; see memlab.llm.llamacpp). Behaviours a single-model
llama.cpp server cannot show (a missing model, separate reasoning) are tested against
Ollama's OpenAI-compatible ``/v1`` API as memlab's fake Ollama reproduces it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from memlab.errors import MemlabError
from memlab.llm.chatml import count_chat_tokens
from memlab.llm.models import EMBEDDED_QWEN, ensure_embedded_model
from memlab.llm.openai import OpenAICompatLLM
from memlab.testing import FakeModel, FakeOllama

CHAT = [{"role": "system", "content": "You answer in one short sentence."},
        {"role": "user", "content": "What is the capital of France?"}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``http://127.0.0.1:<port>/v1`` of a llama.cpp server running the embedded model."""
    gguf = ensure_embedded_model(progress=False)
    port = free_port()
    log = Path(tmp_path_factory.mktemp("llama-server")) / "server.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "memlab.llm.server", "--model", str(gguf),
             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
             "--n_threads", "2", "--n_threads_batch", "2"],
            stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_ready(base, process, log)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama.cpp server exited early:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"llama.cpp server did not start in 120 s:\n{log.read_text()[-2000:]}")


@pytest.mark.slow
def test_chat_against_the_real_llama_cpp_server(llama_server: str) -> None:
    llm = OpenAICompatLLM(base_url=llama_server, max_tokens=24)
    c = llm.generate(CHAT)
    assert c.ok, c.error
    assert "Paris" in c.text
    served = ensure_embedded_model(progress=False)
    # memlab's server publishes the weights' sha256 in the model id; the backend records
    # the name and the digest apart
    assert c.model == served.name and c.digest == EMBEDDED_QWEN.sha256
    # the server renders the GGUF's Qwen template and counts with its tokenizer:
    assert c.prompt_tokens == count_chat_tokens(CHAT) == c.metadata["qwen_prompt_tokens"]
    assert 0 < c.completion_tokens <= 24
    assert c.completion_tokens == c.metadata["qwen_completion_tokens"]
    assert c.metadata["finish_reason"] in {"stop", "length"}
    no_system = llm.generate(CHAT[1:], max_tokens=12)
    # no system message: the template's default one is counted on both sides
    assert no_system.prompt_tokens == no_system.metadata["qwen_prompt_tokens"] == 36
    identity = llm.cache_identity()
    assert (identity["model"], identity["digest"]) == (served.name, EMBEDDED_QWEN.sha256)
    agreeing = OpenAICompatLLM(base_url=llama_server, max_tokens=4,
                               digest=f"sha256:{EMBEDDED_QWEN.sha256}")
    assert agreeing.generate(CHAT).ok
    wrong = OpenAICompatLLM(base_url=llama_server, max_tokens=4, digest="0" * 64).generate(CHAT)
    assert not wrong.ok and "not the declared digest" in wrong.error
    assert wrong.metadata["attempts"] == 1  # not retried: the weights will not change
    # streamed (server-sent events): the same greedy answer, piece by piece, same counts
    pieces: list[str] = []
    streamed = llm.generate(CHAT, on_token=pieces.append)
    assert streamed.ok, streamed.error
    assert len(pieces) > 1 and "".join(pieces) == streamed.text == c.text
    assert (streamed.prompt_tokens, streamed.completion_tokens) == (
        c.prompt_tokens, c.completion_tokens)


@pytest.mark.slow
def test_a_json_schema_holds_the_real_servers_reply(llama_server: str) -> None:
    """llama-cpp-python's server takes a schema in the ``json_object`` form and turns it
    into a grammar: the reply is exactly one JSON object under the schema."""
    schema = {"type": "object", "properties": {"city": {"type": "string"}},
              "required": ["city"], "additionalProperties": False}
    llm = OpenAICompatLLM(base_url=llama_server, max_tokens=32, schema_format="json_object")
    c = llm.generate(CHAT, json_schema=schema)
    assert c.ok, c.error
    reply = json.loads(c.text)
    assert set(reply) == {"city"} and "Paris" in reply["city"]


@pytest.mark.slow
def test_overflowing_prompt_is_a_permanent_error(llama_server: str) -> None:
    words = " ".join(f"word{i}" for i in range(3000))
    c = OpenAICompatLLM(base_url=llama_server, retries=3, backoff=0.01).generate(
        [{"role": "user", "content": words}])
    assert not c.ok and c.metadata["attempts"] == 1
    assert c.metadata["http_status"] == 400 and "context" in c.error.lower()


def test_connection_refused_says_where_it_looked() -> None:
    base = f"http://127.0.0.1:{free_port()}/v1"
    llm = OpenAICompatLLM(base_url=base, model="qwen", retries=1, backoff=0.01)
    c = llm.generate(CHAT)
    assert not c.ok and base in c.error and "connection refused" in c.error
    assert c.metadata["attempts"] == 2 and c.metadata["error_type"] == "transient"
    with pytest.raises(MemlabError, match="connection refused"):
        llm.check()


def test_a_host_name_that_does_not_resolve_is_not_called_a_refusal() -> None:
    llm = OpenAICompatLLM(base_url="http://no-such-host.invalid:8080/v1", model="qwen",
                          retries=0)
    c = llm.generate(CHAT)
    assert not c.ok and "the host name 'no-such-host.invalid' does not resolve" in c.error
    assert "refused" not in c.error


@pytest.fixture(scope="module")
def ollama_v1() -> Iterator[FakeOllama]:
    with FakeOllama() as fake:
        yield fake


def test_missing_model_is_a_permanent_error(ollama_v1: FakeOllama) -> None:
    c = OpenAICompatLLM(base_url=f"{ollama_v1.url}/v1", model="qwen3:235b",
                        backoff=0.01).generate(CHAT)
    assert not c.ok and c.metadata["attempts"] == 1 and c.metadata["http_status"] == 404
    assert "qwen3:235b" in c.error and 'model "qwen3:235b" not found' in c.error


def test_reasoning_field_becomes_thinking(ollama_v1: FakeOllama) -> None:
    c = OpenAICompatLLM(base_url=f"{ollama_v1.url}/v1", model="qwen3:4b").generate(CHAT)
    assert c.text == "You said: What is the capital of France?"
    assert c.thinking == "The user wrote 30 characters. I will answer briefly."
    assert c.prompt_tokens == count_chat_tokens(CHAT)


def test_a_streamed_reply_is_the_same_reply_piece_by_piece(ollama_v1: FakeOllama) -> None:
    llm = OpenAICompatLLM(base_url=f"{ollama_v1.url}/v1", model="qwen3:4b")
    pieces: list[str] = []
    streamed = llm.generate(CHAT, on_token=pieces.append)
    whole = llm.generate(CHAT)
    assert streamed.ok and len(pieces) > 1 and "".join(pieces) == streamed.text == whole.text
    assert streamed.thinking == whole.thinking  # reasoning deltas kept apart, not streamed
    assert (streamed.prompt_tokens, streamed.completion_tokens) == (
        whole.prompt_tokens, whole.completion_tokens)  # the usage chunk's counts
    bodies = [body for _, path, body in ollama_v1.requests if path == "/v1/chat/completions"]
    assert bodies[-2]["stream"] is True and bodies[-2]["stream_options"] == {
        "include_usage": True}


def test_timeouts_and_server_errors_are_retried(ollama_v1: FakeOllama) -> None:
    llm = OpenAICompatLLM(base_url=f"{ollama_v1.url}/v1", model="qwen3:4b", timeout=0.3,
                          retries=1, backoff=0.01)
    ollama_v1.fail_next(502)
    assert llm.generate(CHAT).metadata["attempts"] == 2
    ollama_v1.set_delay(1.0)
    try:
        c = llm.generate(CHAT)
    finally:
        ollama_v1.set_delay(0.0)
    assert not c.ok and "did not answer within 0.3 s" in c.error
    assert c.metadata["attempts"] == 1  # a hung server is not waited on twice


def test_api_key_comes_from_the_named_variable(
    ollama_v1: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    real = httpx.request

    def spy(*args: object, **kwargs: object) -> httpx.Response:
        seen.append(str((kwargs.get("headers") or {}).get("Authorization", "")))  # type: ignore[union-attr]
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(httpx, "request", spy)
    monkeypatch.setenv("MY_VLLM_KEY", "sk-test-123")
    llm = OpenAICompatLLM(base_url=f"{ollama_v1.url}/v1", model="qwen3:4b",
                          api_key_env="MY_VLLM_KEY")
    assert llm.generate(CHAT).ok
    assert seen == ["Bearer sk-test-123"]
    assert "sk-test-123" not in str(llm.params())


def test_a_digest_in_the_served_model_id_is_recorded_and_checked() -> None:
    """Any server whose model id carries ``@sha256:`` (memlab's own does) gives the
    digest; a declared one must agree with it."""
    digest = "ab" * 32
    model = FakeModel(name=f"qwen2.5-0.5b.gguf@sha256:{digest}", capabilities=("completion",))
    with FakeOllama([model]) as server:
        base = f"{server.url}/v1"
        c = OpenAICompatLLM(base_url=base, max_tokens=8).generate(CHAT)
        assert c.ok, c.error
        assert (c.model, c.digest) == ("qwen2.5-0.5b.gguf", digest)
        sent = [body for method, path, body in server.requests
                if path == "/v1/chat/completions"]
        assert sent[-1]["model"] == model.name  # the full id goes to the server
        named = OpenAICompatLLM(base_url=base, model=model.name, digest=digest)
        assert named.cache_identity()["digest"] == digest
        wrong = OpenAICompatLLM(base_url=base, digest="cd" * 32, retries=2)
        c = wrong.generate(CHAT)
        assert not c.ok and f"weights sha256:{digest}, not the declared digest" in c.error
        assert c.metadata["attempts"] == 1
        with pytest.raises(MemlabError, match="not the declared digest"):
            wrong.cache_identity()
    plain = FakeModel(name="qwen3:4b")
    with FakeOllama([plain]) as server:  # no digest served: the declared one is kept
        c = OpenAICompatLLM(base_url=f"{server.url}/v1", digest="mine").generate(CHAT)
        assert c.ok and (c.model, c.digest) == ("qwen3:4b", "mine")


def test_memlab_server_publishes_the_weights_digest_unless_an_alias_is_given(
        tmp_path: Path) -> None:
    import hashlib

    from memlab.llm.server import server_args

    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"not really a model")
    sha = hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert server_args(["--model", str(gguf), "--port", "1"]) == [
        "--model", str(gguf), "--port", "1", "--model_alias", f"tiny.gguf@sha256:{sha}"]
    assert server_args([f"--model={gguf}", "--model_alias", "mine"]) == [
        f"--model={gguf}", "--model_alias", "mine"]
    assert server_args(["--help"]) == ["--help"]
    embedded = server_args(["--port", "1"])
    assert embedded[:2] == ["--model", str(ensure_embedded_model(progress=False))]
    assert embedded[-1].endswith(f"@sha256:{EMBEDDED_QWEN.sha256}")
    by_name = server_args(["--model=qwen2.5-coder-0.5b", "--port", "1"])  # a catalog name
    assert by_name == [f"--model={ensure_embedded_model(progress=False)}", "--port", "1",
                       "--model_alias", embedded[-1]]


def _sse_server(body: str) -> Any:
    """A one-route server answering every POST with ``body`` as server-sent events."""
    return _route_server(lambda handler, _: _answer(handler, 200, body.encode(),
                                                    "text/event-stream"))


@pytest.mark.parametrize(("events", "says"), [
    (['{"choices": [{"delta": {"content": "Your cat "}}]}',
      '{"error": {"message": "out of memory"}}'], "failed while streaming: out of memory"),
    (['{"choices": [{"delta": {"content": "Your cat "}}]}'], "ended the stream before"),
    ([], "ended the stream before"),
])
def test_a_stream_that_fails_or_stops_early_is_an_error_not_a_short_reply(
        events: list[str], says: str) -> None:
    server = _sse_server("".join(f"data: {e}\n\n" for e in events))
    try:
        llm = OpenAICompatLLM(base_url=f"http://127.0.0.1:{server.server_port}/v1",
                              model="m", retries=2, backoff=0.0)
        pieces: list[str] = []
        c = llm.generate(CHAT, on_token=pieces.append)
    finally:
        server.shutdown()
    assert not c.ok and says in str(c.error), c.error
    if pieces:  # part of it was shown: never retried
        assert c.metadata["attempts"] == 1


def _route_server(post: Callable[[Any, dict[str, Any]], None]) -> Any:
    """A server whose POSTs ``post(handler, body)`` answers and whose GET lists model m."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            post(self, json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

        def do_GET(self) -> None:
            data = json.dumps({"object": "list", "data": [{"id": "m"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _answer(handler: Any, status: int, data: bytes, kind: str) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", kind)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def test_a_server_that_refuses_stream_options_is_asked_again_without_them() -> None:
    """Older OpenAI-compatible servers reject ``stream_options`` (HTTP 400): the stream is
    asked for again without it, once, and the counts come from Qwen's tokenizer."""
    bodies: list[dict[str, Any]] = []

    def post(handler: Any, body: dict[str, Any]) -> None:
        bodies.append(body)
        if "stream_options" in body:
            _answer(handler, 400, json.dumps({"error": {
                "message": "Unrecognized request argument supplied: stream_options"}}).encode(),
                "application/json")
            return
        events = [{"choices": [{"delta": {"content": piece}, "finish_reason": None}]}
                  for piece in ("Your cat ", "is Miso.")]
        events.append({"choices": [{"delta": {}, "finish_reason": "stop"}]})
        _answer(handler, 200, ("".join(f"data: {json.dumps(e)}\n\n" for e in events)
                               + "data: [DONE]\n\n").encode(), "text/event-stream")

    server = _route_server(post)
    try:
        llm = OpenAICompatLLM(base_url=f"http://127.0.0.1:{server.server_port}/v1",
                              model="m", retries=0)
        pieces: list[str] = []
        first = llm.generate(CHAT, on_token=pieces.append)
        second = llm.generate(CHAT, on_token=pieces.append)
    finally:
        server.shutdown()
    assert first.ok and second.ok, (first.error, second.error)
    assert first.text == "Your cat is Miso." and pieces == ["Your cat ", "is Miso."] * 2
    assert first.metadata["prompt_tokens_source"] == "qwen" and first.completion_tokens > 0
    assert ["stream_options" in b for b in bodies] == [True, False, False]  # asked once


def test_a_stream_that_trickles_past_the_timeout_is_stopped() -> None:
    def post(handler: Any, body: dict[str, Any]) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.end_headers()  # no length: the stream runs until the connection closes
        event = {"choices": [{"delta": {"content": "la "}, "finish_reason": None}]}
        try:
            for _ in range(50):
                handler.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                handler.wfile.flush()
                time.sleep(0.1)
        except OSError:  # the client gave up
            pass
        handler.close_connection = True

    server = _route_server(post)
    try:
        llm = OpenAICompatLLM(base_url=f"http://127.0.0.1:{server.server_port}/v1",
                              model="m", timeout=0.5, retries=2, backoff=0.0)
        pieces: list[str] = []
        c = llm.generate(CHAT, on_token=pieces.append)
    finally:
        server.shutdown()
    assert not c.ok and "still streaming after 0.5 s" in str(c.error), c.error
    assert 1 <= len(pieces) < 50 and c.metadata["attempts"] == 1  # stopped early; not retried
