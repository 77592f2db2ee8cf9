"""Qwen served by Ollama — the backend real users run — via the official ``ollama`` client.

The host comes from the ``host`` parameter, else ``OLLAMA_HOST``, else
``http://127.0.0.1:11434``. Qwen3's reasoning is kept apart from the answer: Ollama returns
it in ``message.thinking`` when the request sets ``think``; otherwise a ``<think>…</think>``
block in the content is split off. The model's digest comes from ``/api/tags`` and its
capabilities from ``/api/show`` (``think`` is only sent to models that can think).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from memlab.llm.base import Completion, Message
from memlab.llm.chatml import default_system_for, split_thinking, tokenizer_for
from memlab.llm.common import qwen_counts, unreachable
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

DEFAULT_HOST = "127.0.0.1:11434"


def ollama_url(host: str = "") -> str:
    """The base URL the client will use for ``host`` / ``OLLAMA_HOST`` (as Ollama parses it)."""
    host = host or os.environ.get("OLLAMA_HOST", "") or DEFAULT_HOST
    scheme, sep, rest = host.partition("://")
    if not sep:
        scheme, rest = "http", host
    hostport, _, path = rest.partition("/")
    if hostport.startswith(":"):
        hostport = "127.0.0.1" + hostport
    if ":" not in hostport.rsplit("]", 1)[-1]:
        port = 11434 if not sep else (443 if scheme == "https" else 80)
        hostport = f"{hostport}:{port}"
    path = path.strip("/")
    return f"{scheme}://{hostport}" + (f"/{path}" if path else "")


class OllamaLLM(RemoteChat, Component):
    """A model on an Ollama server (default ``qwen3:4b``) through the ``ollama`` package.

    ``think``: ``False`` asks Qwen3 to answer directly, ``True`` to reason first (the
    reasoning lands in ``Completion.thinking``), ``None`` sends nothing (the server's
    default). ``max_tokens`` is Ollama's ``num_predict``.
    """

    backend = "ollama"
    # Transport settings; the weights are identified by the digest.
    cache_exempt = frozenset({"host", "timeout", "retries", "backoff", "keep_alive"})

    def __init__(
        self,
        model: str = "qwen3:4b",
        host: str = "",
        num_ctx: int = 8192,
        temperature: float = 0.0,
        seed: int = 0,
        max_tokens: int = 256,
        think: bool | None = False,
        keep_alive: str = "",
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = 2,
        backoff: float = 0.5,
    ) -> None:
        self.model = model
        self.host = host
        self.num_ctx = num_ctx
        self.temperature = temperature
        self.seed = seed
        self.max_tokens = max_tokens
        self.think = think
        self.keep_alive = keep_alive
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff

    def _defaults(self) -> dict[str, Any]:
        return {"num_ctx": int(self.num_ctx), "temperature": float(self.temperature),
                "seed": int(self.seed), "max_tokens": int(self.max_tokens), "think": self.think}

    @property
    def url(self) -> str:
        return ollama_url(self.host)

    # ------------------------------------------------------------------ server calls

    def _client(self, timeout: float | None = None) -> Any:
        """The client (``timeout`` seconds per read, CONNECT_TIMEOUT to connect); one
        with another ``timeout`` is made for that call only (health checks)."""
        import httpx
        import ollama

        wait = self.timeout if timeout is None else timeout
        limits = httpx.Timeout(wait, connect=min(wait, CONNECT_TIMEOUT))
        if timeout is not None:
            return ollama.Client(host=self.url, timeout=limits)
        client = self.__dict__.get("_ollama_client")
        if client is None:
            client = ollama.Client(host=self.url, timeout=limits)
            self.__dict__["_ollama_client"] = client
        return client

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one client call, turning its failures into Transient/PermanentError."""
        import httpx
        import ollama

        try:
            return fn(*args, **kwargs)
        except ollama.ResponseError as exc:
            raise self._response_error(exc) from None
        except ConnectionError:
            raise TransientError(
                f"cannot reach Ollama at {self.url} ({what}: {unreachable(self.url)}). "
                "Start it "
                f"with `ollama serve`, or point OLLAMA_HOST / the `host` parameter at it."
            ) from None
        except httpx.TimeoutException:
            raise HungServer(
                f"Ollama at {self.url} did not answer {what} within {self.timeout:g} s "
                "(the timeout parameter; a hung server is not retried)") from None
        except httpx.TransportError as exc:
            raise TransientError(f"Ollama at {self.url} failed during {what}: {exc}") from None

    def _response_error(self, exc: Any) -> LLMCallError:
        status, message = exc.status_code, str(exc.error)
        if status == 404 and "not found" in message:
            return PermanentError(
                f"model '{self.model}' is not on the Ollama server at {self.url} "
                f"({message}). Pull it with: ollama pull {self.model}", status=status)
        if status >= 500 or status in (408, 429):
            return TransientError(f"Ollama at {self.url} answered HTTP {status}: {message}",
                                  status=status)
        return PermanentError(f"Ollama at {self.url} rejected the request (HTTP {status}): "
                              f"{message}", status=status)

    def model_info(self) -> dict[str, Any]:
        """``{"digest", "capabilities", "details"}`` of the model, fetched once."""
        info = self.__dict__.get("_model_info")
        if info is None:
            client = self._client()
            shown = self._call("/api/show", client.show, self.model)
            listed = self._call("/api/tags", client.list)
            info = {
                "digest": _digest_of(listed, self.model),
                "capabilities": list(shown.capabilities or []),
                "details": shown.details.model_dump() if shown.details else {},
            }
            self.__dict__["_model_info"] = info
        return info

    def check(self) -> None:
        """Raise a MemlabError unless the server answers now (asked every time, within
        CHECK_TIMEOUT s: ``/status`` must not report a health that was true once) and
        lists the model."""
        listed = self._call("/api/tags", self._client(min(self.timeout, CHECK_TIMEOUT)).list)
        if not _listed(listed, self.model):
            raise PermanentError(f"model '{self.model}' is not on the Ollama server at "
                                 f"{self.url}. Pull it with: ollama pull {self.model}")

    def digest(self) -> str:
        return str(self.model_info()["digest"])

    def _identity(self) -> tuple[str, str]:
        return self.model, self.digest()

    def _known_identity(self) -> tuple[str, str]:
        info = self.__dict__.get("_model_info") or {}
        return self.model, info.get("digest", "")

    def _where(self) -> dict[str, Any]:
        return {"host": self.url}

    # ------------------------------------------------------------------ generate

    def _chat(self, chat: list[Message], gen: dict[str, Any]) -> Any:
        return self._call("/api/chat", self._client().chat, **self._chat_args(chat, gen))

    def _chat_streamed(self, chat: list[Message], gen: dict[str, Any],
                       on_token: Callable[[str], None]) -> Any:
        """``/api/chat`` with ``stream: true``: each piece of the answer to ``on_token`` as
        it arrives; the chunks put together as one response (the last chunk's counts)."""
        sent = False

        def streamed(**kwargs: Any) -> Any:
            nonlocal sent
            text: list[str] = []
            thinking: list[str] = []
            last = None
            over = self._stream_deadline(f"Ollama at {self.url}")
            for chunk in self._client().chat(**kwargs, stream=True):
                over()
                thinking.append(chunk.message.thinking or "")
                piece = chunk.message.content or ""
                if piece:
                    sent = True
                    text.append(piece)
                    on_token(piece)
                last = chunk
            if last is None or not last.done:
                raise TransientError(f"Ollama at {self.url} ended the stream before the "
                                     "reply did (no chunk with done: true)")
            message = last.message.model_copy(update={
                "content": "".join(text), "thinking": "".join(thinking) or None})
            return last.model_copy(update={"message": message})

        args = self._chat_args(chat, gen)
        args.pop("stream")
        try:
            return self._call("/api/chat", streamed, **args)
        except LLMCallError as exc:
            if sent and not isinstance(exc, PermanentError):  # the reader has part of it
                raise PermanentError(f"{exc} (part of the reply was already streamed: not "
                                     "retried)") from None
            raise

    def _chat_args(self, chat: list[Message], gen: dict[str, Any]) -> dict[str, Any]:
        info = self.model_info()
        kwargs: dict[str, Any] = {
            "model": self.model, "messages": chat, "stream": False,
            "options": {"num_ctx": gen["num_ctx"], "temperature": gen["temperature"],
                        "seed": gen["seed"], "num_predict": gen["max_tokens"]},
        }
        if gen["think"] is not None and "thinking" in info["capabilities"]:
            kwargs["think"] = gen["think"]
        if "json_schema" in gen:
            kwargs["format"] = gen["json_schema"]
        if self.keep_alive:
            kwargs["keep_alive"] = self.keep_alive
        return kwargs

    def _completion(self, chat: list[Message], response: Any, seconds: float,
                    meta: dict[str, Any]) -> Completion:
        content = response.message.content or ""
        thinking = response.message.thinking or ""
        if thinking:  # reasoning came in its own field; count it as the model wrote it
            answer, raw = content.strip(), f"<think>\n{thinking}\n</think>\n\n{content}"
        else:
            (thinking, answer), raw = split_thinking(content), content
        meta.update(qwen_counts(chat, raw, tokenizer_for(self.model),
                                default_system_for(self.model)))
        meta["done_reason"] = response.done_reason
        for name in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
            value = getattr(response, name, None)
            meta[f"{name}_s"] = value / 1e9 if value is not None else None
        prompt_tokens = response.prompt_eval_count
        if prompt_tokens is None:  # Ollama omits it when the whole prompt was cached
            prompt_tokens = meta["qwen_prompt_tokens"]
            meta["prompt_tokens_source"] = "qwen"
        return Completion(
            text=answer, prompt_tokens=int(prompt_tokens),
            completion_tokens=int(response.eval_count or 0), seconds=seconds,
            model=self.model, digest=self._known_identity()[1], thinking=thinking,
            metadata=meta,
        )


def _digest_of(listed: Any, model: str) -> str:
    entry = _listed(listed, model)
    return str(entry.digest or "") if entry is not None else ""


def _listed(listed: Any, model: str) -> Any:
    """The ``/api/tags`` entry of ``model``, or None."""
    wanted = {model, model if ":" in model else model + ":latest"}
    for entry in listed.models or []:
        names = {getattr(entry, "model", None), getattr(entry, "name", None)}
        if names & wanted:
            return entry
    return None


__all__ = ["OllamaLLM", "ollama_url"]
