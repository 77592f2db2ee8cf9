"""A loopback HTTP server that speaks Ollama's REST API, for tests without an Ollama.

Response shapes follow Ollama's API reference (``docs/api.md``: ``/api/chat``,
``/api/generate``, ``/api/tags``, ``/api/show``, ``/api/embed``, ``/api/version``; the
OpenAI-compatible ``/v1/chat/completions`` and ``/v1/models``) and its thinking guide
(``think`` request field, ``message.thinking`` reply field). Behaviour worth testing is
reproduced: a missing model is a 404 with Ollama's ``{"error": "model \\"x\\" not found, try
pulling it first"}`` body; ``think: true`` on a model without the thinking capability is a
400; a thinking model asked without ``think`` returns its reasoning inline as
``<think>…</think>`` (what Ollama did before the field existed); token counts are exact
Qwen counts of the rendered ChatML prompt and of the reply.

Usage::

    with FakeOllama() as server:
        OllamaLLM(host=server.url).generate([...])

``python -m memlab.testing.fake_ollama --port 11434`` runs one in the foreground.
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import ThreadingHTTPServer
from typing import Any

from memlab.testing.ollama_handler import OllamaHandler
from memlab.testing.ollama_models import (
    FakeModel,
    FakeState,
    Injected,
    default_models,
    echo_reply,
    echo_thinking,
)

__all__ = ["FakeModel", "FakeOllama", "default_models", "echo_reply", "echo_thinking"]


class FakeOllama:
    """The server: ``start()``/``stop()`` or a ``with`` block; ``url`` once started."""

    def __init__(self, models: list[FakeModel] | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        chosen = default_models() if models is None else models
        self.state = FakeState(models={m.name: m for m in chosen})
        self.host = host
        self.port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeOllama is not running")
        return f"http://{self.host}:{self._server.server_address[1]}"

    @property
    def requests(self) -> list[tuple[str, str, Any]]:
        """Every request seen, as ``(method, path, json body or None)``."""
        return self.state.requests

    def start(self) -> FakeOllama:
        handler = type("Handler", (OllamaHandler,), {"state": self.state})
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeOllama:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail_next(self, status: int = 503, times: int = 1, error: str = "server busy") -> None:
        """Answer the next ``times`` requests with HTTP ``status`` and an Ollama error body."""
        self.state.failures.append(Injected(status, json.dumps({"error": error}), times))

    def reply_empty(self, times: int = 1) -> None:
        """Answer the next ``times`` chat requests with HTTP 200 and empty content."""
        with self.state.lock:
            self.state.empty = times

    def set_delay(self, seconds: float) -> None:
        """Sleep this long before answering each generation request (timeout tests)."""
        self.state.delay = seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run memlab's fake Ollama server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    args = parser.parse_args(argv)
    server = FakeOllama(host=args.host, port=args.port).start()
    print(f"fake Ollama listening on {server.url} (Ctrl-C to stop)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
