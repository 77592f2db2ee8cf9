"""Request handling of the fake Ollama: routes and response shapes of Ollama's API.

Shapes follow Ollama's API reference (``docs/api.md``) and thinking guide; see
:mod:`memlab.testing.fake_ollama` for what is reproduced.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any, cast

from memlab.llm.chatml import count_chat_tokens
from memlab.testing.ollama_models import FakeModel, FakeState
from memlab.tokens import count_tokens


def _prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """Exact Qwen count of the ChatML prompt (Qwen3 templates add no default system)."""
    return count_chat_tokens(cast(Any, messages))


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _hashed_vector(text: str, dim: int) -> list[float]:
    """A deterministic unit vector for ``text`` (same text, same vector)."""
    values: list[float] = []
    counter = 0
    while len(values) < dim:
        block = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        values.extend((b - 127.5) / 127.5 for b in block)
        counter += 1
    norm = math.sqrt(sum(v * v for v in values[:dim])) or 1.0
    return [round(v / norm, 8) for v in values[:dim]]


class OllamaHandler(BaseHTTPRequestHandler):
    """One request; ``state`` is set on a per-server subclass."""

    state: FakeState
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    # ------------------------------------------------------------------ plumbing

    def do_GET(self) -> None:
        self._dispatch("GET", None)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError as exc:
            self._record("POST", raw.decode(errors="replace"))
            self._error(400, f"invalid character in request body: {exc}")
            return
        self._dispatch("POST", body)

    def _record(self, method: str, body: Any) -> None:
        with self.state.lock:
            self.state.requests.append((method, self.path, body))

    def _dispatch(self, method: str, body: Any) -> None:
        self._record(method, body)
        if self._inject():
            return
        routes: dict[tuple[str, str], Callable[[Any], None]] = {
            ("GET", "/"): lambda _: self._send(200, "Ollama is running", "text/plain"),
            ("GET", "/api/version"): lambda _: self._json(200, {"version": self.state.version}),
            ("GET", "/api/tags"): self._tags,
            ("POST", "/api/show"): self._show,
            ("POST", "/api/chat"): self._chat,
            ("POST", "/api/generate"): self._generate,
            ("POST", "/api/embed"): self._embed,
            ("POST", "/api/embeddings"): self._embeddings,
            ("GET", "/v1/models"): self._v1_models,
            ("POST", "/v1/chat/completions"): self._v1_chat,
        }
        route = routes.get((method, self.path.split("?")[0]))
        if route is None:
            self._send(404, "404 page not found", "text/plain")
            return
        route(body)

    def _inject(self) -> bool:
        with self.state.lock:
            if not self.state.failures:
                return False
            failure = self.state.failures[0]
            failure.times -= 1
            if failure.times <= 0:
                self.state.failures.pop(0)
        self._send(failure.status, failure.body, "application/json")
        return True

    def _send(self, status: int, text: str, content_type: str = "application/json") -> None:
        data = text.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type + "; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
            self.close_connection = True

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload))

    def _ndjson(self, chunks: list[dict[str, Any]]) -> None:
        self._send(200, "".join(json.dumps(c) + "\n" for c in chunks), "application/x-ndjson")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def _model(self, body: Any, v1: bool = False) -> FakeModel | None:
        name = str((body or {}).get("model") or "")
        if not name:
            self._error(400, "model is required")
            return None
        key = name if ":" in name else name + ":latest"
        model = self.state.models.get(key)
        if model is None:
            message = f'model "{name}" not found, try pulling it first'
            if v1:
                self._json(404, {"error": {"message": message, "type": "api_error",
                                           "param": None, "code": None}})
            else:
                self._error(404, message)
        return model

    # ------------------------------------------------------------------ model info

    def _details(self, model: FakeModel) -> dict[str, Any]:
        return {"parent_model": "", "format": "gguf", "family": model.family,
                "families": [model.family], "parameter_size": model.parameter_size,
                "quantization_level": model.quantization_level}

    def _tags(self, _: Any) -> None:
        models = [
            {"name": m.name, "model": m.name, "modified_at": "2025-05-01T10:00:00.000000000Z",
             "size": 2_497_293_931, "digest": m.digest, "details": self._details(m)}
            for m in self.state.models.values()
        ]
        self._json(200, {"models": models})

    def _show(self, body: Any) -> None:
        model = self._model(body)
        if model is None:
            return
        self._json(200, {
            "modelfile": f"# Modelfile generated by \"ollama show\"\nFROM {model.name}\n",
            "parameters": "temperature 0.6\ntop_k 20\ntop_p 0.95",
            "template": "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}"
                        "<|im_end|>\n{{ end }}<|im_start|>assistant\n",
            "details": self._details(model),
            "model_info": {"general.architecture": model.family,
                           f"{model.family}.context_length": 40960},
            "capabilities": list(model.capabilities),
            "modified_at": "2025-05-01T10:00:00.000000000Z",
        })

    # ------------------------------------------------------------------ generation

    def _think(self, model: FakeModel, body: dict[str, Any],
               messages: list[dict[str, Any]]) -> tuple[str, str] | None:
        """``(thinking, content)`` per the request's ``think``; None if already answered."""
        think = body.get("think")
        thinks = "thinking" in model.capabilities
        if think and not thinks:
            self._error(400, f'"{model.name}" does not support thinking')
            return None
        answer = model.reply(messages)
        if not thinks or think is False:
            return "", answer
        reasoning = model.thinking(messages)
        if think is None:  # no field: reasoning inline, as before Ollama 0.9
            return "", f"<think>\n{reasoning}\n</think>\n\n{answer}"
        return reasoning, answer

    def _stats(self, prompt_tokens: int, eval_tokens: int) -> dict[str, Any]:
        prompt_ns, eval_ns, load_ns = prompt_tokens * 2_000_000, eval_tokens * 20_000_000, 1_000_000
        return {"total_duration": prompt_ns + eval_ns + load_ns + 500_000,
                "load_duration": load_ns, "prompt_eval_count": prompt_tokens,
                "prompt_eval_duration": prompt_ns, "eval_count": eval_tokens,
                "eval_duration": eval_ns}

    def _run(self, body: Any, messages: list[dict[str, Any]]) -> tuple[FakeModel, str, str] | None:
        model = self._model(body)
        if model is None or "completion" not in model.capabilities:
            if model is not None:
                self._error(400, f'"{model.name}" does not support chat')
            return None
        result = self._think(model, body, messages)
        if result is None:
            return None
        if self.state.delay:
            time.sleep(self.state.delay)
        return model, *result

    def _chat(self, body: Any) -> None:
        messages = list(body.get("messages") or [])
        result = self._run(body, messages)
        if result is None:
            return
        _, thinking, content = result
        with self.state.lock:
            if self.state.empty > 0:  # an HTTP 200 with no answer (a misbehaving server)
                self.state.empty -= 1
                thinking, content = "", ""
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if thinking:
            message["thinking"] = thinking
        stats = self._stats(_prompt_tokens(messages), count_tokens(thinking + content))
        final = {"model": body["model"], "created_at": _now(), "message": message,
                 "done_reason": "stop", "done": True, **stats}
        if body.get("stream", True) is False:
            self._json(200, final)
            return
        pieces = [{"model": body["model"], "created_at": _now(),
                   "message": {"role": "assistant", "content": "", field: piece}, "done": False}
                  for field, text in (("thinking", thinking), ("content", content))
                  for piece in re.findall(r"\s*\S+\s*", text)]
        final["message"] = {"role": "assistant", "content": ""}
        self._ndjson([*pieces, final])

    def _generate(self, body: Any) -> None:
        messages = [{"role": "user", "content": str(body.get("prompt") or "")}]
        if body.get("system"):
            messages.insert(0, {"role": "system", "content": str(body["system"])})
        result = self._run(body, messages)
        if result is None:
            return
        _, thinking, content = result
        stats = self._stats(_prompt_tokens(messages), count_tokens(thinking + content))
        reply = {"model": body["model"], "created_at": _now(), "response": content,
                 "done": True, "done_reason": "stop", **stats}
        if thinking:
            reply["thinking"] = thinking
        self._json(200, reply)

    # ------------------------------------------------------------------ embeddings

    def _embed(self, body: Any) -> None:
        model = self._model(body)
        if model is None:
            return
        inputs = body.get("input", "")
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        vectors = [_hashed_vector(str(t), model.embedding_dim) for t in texts]
        self._json(200, {"model": body["model"], "embeddings": vectors,
                         "total_duration": 14_143_917, "load_duration": 1_019_500,
                         "prompt_eval_count": sum(count_tokens(str(t)) for t in texts)})

    def _embeddings(self, body: Any) -> None:
        model = self._model(body)
        if model is not None:
            vector = _hashed_vector(str(body.get("prompt") or ""), model.embedding_dim)
            self._json(200, {"embedding": vector})

    # ------------------------------------------------------------------ OpenAI-compatible

    def _v1_models(self, _: Any) -> None:
        data = [{"id": m.name, "object": "model", "created": 1_746_093_600,
                 "owned_by": "library"} for m in self.state.models.values()]
        self._json(200, {"object": "list", "data": data})

    def _v1_chat(self, body: Any) -> None:
        model = self._model(body, v1=True)
        if model is None:
            return
        messages = list(body.get("messages") or [])
        if self.state.delay:
            time.sleep(self.state.delay)
        thinking, content = "", model.reply(messages)
        if "thinking" in model.capabilities:
            thinking = model.thinking(messages)
        prompt, completion = _prompt_tokens(messages), count_tokens(thinking + content)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if thinking:
            message["reasoning"] = thinking
        usage = {"prompt_tokens": prompt, "completion_tokens": completion,
                 "total_tokens": prompt + completion}
        head = {"id": "chatcmpl-1", "created": int(time.time()), "model": body["model"],
                "system_fingerprint": "fp_ollama"}
        if not body.get("stream"):
            self._json(200, {**head, "object": "chat.completion", "usage": usage,
                             "choices": [{"index": 0, "message": message,
                                          "finish_reason": "stop"}]})
            return
        chunk = {**head, "object": "chat.completion.chunk"}  # OpenAI's streaming shape
        events = [{**chunk, "choices": [{"index": 0, "delta": {field: piece},
                                         "finish_reason": None}]}
                  for field, text in (("reasoning", thinking), ("content", content))
                  for piece in re.findall(r"\s*\S+\s*", text)]
        events.append({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append({**chunk, "choices": [], "usage": usage})
        self._send(200, "".join(f"data: {json.dumps(e)}\n\n" for e in events)
                   + "data: [DONE]\n\n", "text/event-stream")
