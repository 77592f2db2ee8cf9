"""OpenAI-compatible chat servers (vLLM, LM Studio, llama.cpp's server, Ollama's ``/v1``).

Spoken with plain ``httpx`` (the ``openai`` package is not a dependency). The API key is
read from the environment variable named by ``api_key_env`` and never stored in params.
Such servers do not publish a weights digest, so ``digest`` may be declared by the user;
memlab's own server (``python -m memlab.llm.server``) publishes it in the model id
(``<name>@sha256:<hex>``), and the backend then records it, refusing a declared digest
that differs. The base URL is part of the cache key either way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from memlab.errors import check_choice
from memlab.llm.base import Completion, Message
from memlab.llm.chatml import default_system_for, split_thinking, tokenizer_for
from memlab.llm.common import qwen_counts, split_served_id, unreachable
from memlab.llm.remote import RemoteChat
from memlab.llm.retry import (
    CHECK_TIMEOUT,
    CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    HungServer,
    LLMCallError,
    PermanentError,
    TransientError,
)
from memlab.spec import Component

#: How a call's ``json_schema`` is sent (see :class:`OpenAICompatLLM`).
SCHEMA_FORMATS = ("json_schema", "json_object")


class OpenAICompatLLM(RemoteChat, Component):
    """A chat model behind an OpenAI-compatible ``/chat/completions`` endpoint.

    ``model`` empty means the first model the server lists at ``/models``. A call's
    ``json_schema`` goes out as ``response_format``: ``{"type": "json_schema", ...}`` (the
    OpenAI form: vLLM, LM Studio, llama.cpp's llama-server) or, with ``schema_format:
    json_object``, ``{"type": "json_object", "schema": ...}`` (llama-cpp-python's server).
    """

    backend = "openai"
    cache_exempt = frozenset({"api_key_env", "timeout", "retries", "backoff", "schema_format"})

    def __init__(
        self,
        model: str = "",
        base_url: str = "http://127.0.0.1:8000/v1",
        api_key_env: str = "OPENAI_API_KEY",
        digest: str = "",
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
        max_tokens: int = 256,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = 2,
        backoff: float = 0.5,
        schema_format: str = "json_schema",
    ) -> None:
        self.model = model
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.digest = digest
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.schema_format = schema_format

    def check_params(self) -> None:
        """Raise a ConfigError for a value out of range or an unknown schema_format."""
        super().check_params()
        check_choice("llm 'openai': schema_format", self.schema_format, SCHEMA_FORMATS)

    def _defaults(self) -> dict[str, Any]:
        return {"temperature": float(self.temperature), "top_p": float(self.top_p),
                "seed": int(self.seed), "max_tokens": int(self.max_tokens)}

    # ------------------------------------------------------------------ HTTP

    def _url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path

    def _request(self, method: str, path: str, body: Any = None,
                 timeout: float | None = None) -> Any:
        """One HTTP exchange; failures become Transient/PermanentError with a clear message."""
        import httpx

        wait = self.timeout if timeout is None else timeout
        with self._failures(path, wait):
            response = httpx.request(method, self._url(path), json=body,
                                     headers=self._headers(), timeout=httpx.Timeout(
                                         wait, connect=min(wait, CONNECT_TIMEOUT)))
        if response.status_code >= 400:
            raise self._status_error(response)
        try:
            return response.json()
        except ValueError:
            raise TransientError(f"{self._url(path)} answered non-JSON: "
                                 f"{response.text[:200]!r}") from None

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        return {"Authorization": f"Bearer {key}"} if key else {}

    @contextmanager
    def _failures(self, path: str, wait: float) -> Iterator[None]:
        """httpx's failures of a call to ``path`` as Transient/PermanentError."""
        import httpx

        try:
            yield
        except httpx.ConnectError:
            raise TransientError(
                f"cannot reach the OpenAI-compatible server at {self.base_url} "
                f"({unreachable(self.base_url)}); start it (e.g. `python -m "
                "memlab.llm.server`) or fix base_url"
            ) from None
        except httpx.TimeoutException:
            raise HungServer(f"{self._url(path)} did not answer within {wait:g} s (the "
                             "timeout parameter; a hung server is not retried)") from None
        except httpx.TransportError as exc:
            raise TransientError(f"{self._url(path)} failed: {exc}") from None

    def _status_error(self, response: Any) -> LLMCallError:
        status = response.status_code
        message = _error_message(response)
        where = f"the server at {self.base_url}"
        if status in (401, 403):
            return PermanentError(f"{where} refused the credentials (HTTP {status}: {message}); "
                                  f"set the API key in ${self.api_key_env}", status=status)
        if status == 404:
            return PermanentError(f"model '{self.model}' or its endpoint is not available at "
                                  f"{where} (HTTP 404: {message})", status=status)
        if status >= 500 or status in (408, 429):
            return TransientError(f"{where} answered HTTP {status}: {message}", status=status)
        return PermanentError(f"{where} rejected the request (HTTP {status}): {message}",
                              status=status)

    def served_model(self) -> str:
        """``model``, or the first model the server lists (asked once)."""
        if self.model:
            return self.model
        name = self.__dict__.get("_served_model")
        if name is None:
            listing = self._request("GET", "/models")
            data = listing.get("data") or []
            if not data:
                raise PermanentError(f"the server at {self.base_url} lists no models")
            name = str(data[0]["id"])
            self.__dict__["_served_model"] = name
        return name

    def check(self) -> None:
        """Raise a MemlabError unless the server answers ``/models`` (within
        CHECK_TIMEOUT s)."""
        self._request("GET", "/models", timeout=min(self.timeout, CHECK_TIMEOUT))

    def _identity(self) -> tuple[str, str]:
        return self._name_and_digest(self.served_model())

    def _known_identity(self) -> tuple[str, str]:
        return self._name_and_digest(self.model or self.__dict__.get("_served_model", ""),
                                     strict=False)

    def _name_and_digest(self, model_id: str, strict: bool = True) -> tuple[str, str]:
        """The model's name and weights digest: the digest a server publishes in the id
        (memlab's own server does), else the declared one; both given, they must agree
        (a PermanentError when ``strict``)."""
        name, served = split_served_id(model_id)
        declared = self.digest.removeprefix("sha256:")
        if strict and served and declared and served != declared:
            raise PermanentError(
                f"the server at {self.base_url} serves {name} with weights sha256:{served}, "
                f"not the declared digest {self.digest}; fix the digest parameter or serve "
                "those weights")
        return name, served or self.digest

    def _where(self) -> dict[str, Any]:
        return {"base_url": self.base_url}

    # ------------------------------------------------------------------ generate

    def _chat(self, chat: list[Message], gen: dict[str, Any]) -> Any:
        return self._request("POST", "/chat/completions", self._chat_body(chat, gen))

    def _chat_streamed(self, chat: list[Message], gen: dict[str, Any],
                       on_token: Callable[[str], None]) -> Any:
        """``/chat/completions`` with ``stream: true`` (server-sent events): each piece of
        the answer to ``on_token`` as it arrives; the pieces put together as one reply (the
        usage chunk's counts, when the server sends one)."""
        import httpx

        body = {**self._chat_body(chat, gen), "stream": True}
        if not self.__dict__.get("_usage_refused"):
            body["stream_options"] = {"include_usage": True}
        path, sent, refused = "/chat/completions", False, False
        content: list[str] = []
        reasoning: list[str] = []
        finish, usage, done = None, None, False
        over = self._stream_deadline(self._url(path))
        try:
            with self._failures(path, self.timeout), httpx.stream(
                    "POST", self._url(path), json=body, headers=self._headers(),
                    timeout=httpx.Timeout(self.timeout,
                                          connect=min(self.timeout, CONNECT_TIMEOUT))) as reply:
                if reply.status_code >= 400:
                    reply.read()
                    refused = (reply.status_code in (400, 422) and "stream_options" in body
                               and "stream_options" in _error_message(reply))
                    if not refused:
                        raise self._status_error(reply)
                for line in () if refused else reply.iter_lines():
                    over()
                    data = line.removeprefix("data:").strip() if line.startswith("data:") else ""
                    if data == "[DONE]":
                        done = True
                    if not data or done:
                        continue
                    try:
                        chunk = json.loads(data)
                    except ValueError:
                        raise TransientError(f"{self._url(path)} streamed non-JSON: "
                                             f"{data[:200]!r}") from None
                    if chunk.get("error"):  # a server that fails mid-stream says so here
                        raise PermanentError(f"{self._url(path)} failed while streaming: "
                                             f"{_error_text(chunk['error'])}")
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        delta = choice.get("delta") or {}
                        reasoning.append(delta.get("reasoning_content")
                                         or delta.get("reasoning") or "")
                        if delta.get("content"):
                            sent = True
                            content.append(delta["content"])
                            on_token(delta["content"])
                        finish = choice.get("finish_reason") or finish
            if not (refused or done or finish is not None):
                raise TransientError(f"{self._url(path)} ended the stream before the reply "
                                     "did (no finish_reason, no [DONE])")
        except LLMCallError as exc:
            if sent and not isinstance(exc, PermanentError):  # the reader has part of it
                raise PermanentError(f"{exc} (part of the reply was already streamed: not "
                                     "retried)") from None
            raise
        if refused:  # a server that does not know include_usage: ask without it (its token
            self.__dict__["_usage_refused"] = True  # counts then come from Qwen's tokenizer)
            return self._chat_streamed(chat, gen, on_token)
        message = {"content": "".join(content), "reasoning_content": "".join(reasoning)}
        return {"choices": [{"message": message, "finish_reason": finish}],
                **({"usage": usage} if usage else {})}

    def _chat_body(self, chat: list[Message], gen: dict[str, Any]) -> dict[str, Any]:
        self._identity()  # a declared digest the server contradicts fails the call
        body = {"model": self.served_model(), "messages": chat, "stream": False,
                "temperature": gen["temperature"], "top_p": gen["top_p"], "seed": gen["seed"],
                "max_tokens": gen["max_tokens"]}
        if "json_schema" in gen and self.schema_format == "json_object":
            body["response_format"] = {"type": "json_object", "schema": gen["json_schema"]}
        elif "json_schema" in gen:
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "reply", "schema": gen["json_schema"], "strict": True}}
        return body

    def _completion(self, chat: list[Message], reply: dict[str, Any], seconds: float,
                    meta: dict[str, Any]) -> Completion:
        model, digest = self._identity()
        choice = (reply.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        content = message.get("content") or ""
        thinking = message.get("reasoning_content") or message.get("reasoning") or ""
        if thinking:  # reasoning came in its own field; count it as the model wrote it
            answer, raw = content.strip(), f"<think>\n{thinking}\n</think>\n\n{content}"
        else:
            (thinking, answer), raw = split_thinking(content), content
        meta.update(qwen_counts(chat, raw, tokenizer_for(model), default_system_for(model)))
        meta["finish_reason"] = choice.get("finish_reason")
        usage = reply.get("usage") or {}
        if "prompt_tokens" not in usage:
            meta["prompt_tokens_source"] = "qwen"
        return Completion(
            text=answer,
            prompt_tokens=int(usage.get("prompt_tokens", meta["qwen_prompt_tokens"])),
            completion_tokens=int(usage.get("completion_tokens",
                                            meta["qwen_completion_tokens"])),
            seconds=seconds, model=model, digest=digest, thinking=thinking, metadata=meta,
        )


def _error_text(error: Any) -> str:
    """An error object's message (OpenAI's ``{"message": ...}``) or the value itself."""
    return str(error.get("message") or error) if isinstance(error, dict) else str(error)


def _error_message(response: Any) -> str:
    """The server's error text: OpenAI's ``{"error": {"message"}}``, Ollama's ``{"error"}``."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error)
    if error:
        return str(error)
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return str(body)[:300]
