"""Small pieces every backend shares: override checking, Qwen token metadata and why a
server could not be reached."""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from memlab.errors import ConfigError, check_numbers
from memlab.llm.base import Message
from memlab.llm.chatml import count_chat_tokens
from memlab.tokens import count_tokens

#: The bounds (:func:`memlab.errors.check_number`'s) of the LLM backends' numeric
#: parameters, generation and transport alike; a backend checks those it takes.
BOUNDS: dict[str, dict[str, Any]] = {
    "temperature": {"low": 0},
    "top_p": {"low": 0, "high": 1, "low_open": True},
    "top_k": {"low": 0, "integer": True},
    "min_p": {"low": 0, "high": 1},
    "repeat_penalty": {"low": 0, "low_open": True},
    "max_tokens": {"low": 1, "integer": True},
    "seed": {"integer": True},
    "n_ctx": {"low": 1, "integer": True},
    "num_ctx": {"low": 1, "integer": True},
    "n_threads": {"low": 0, "integer": True},
    "n_batch": {"low": 1, "integer": True},
    "timeout": {"low": 0},  # 0: every call times out (a recorded error; tests use it)
    "retries": {"low": 0, "integer": True},
    "backoff": {"low": 0},
}


class BackendBounds:
    """Mixin of the LLM backends: a subclass's ``bounds`` are the :data:`BOUNDS` of the
    parameters its constructor takes, so validation lists every value out of range, each
    at its YAML path, and ``check_params`` checks them with
    :meth:`memlab.spec.Component.check_bounds`."""

    bounds: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        import inspect

        super().__init_subclass__(**kwargs)
        taken = inspect.signature(cls.__init__).parameters
        cls.bounds = {key: bound for key, bound in BOUNDS.items() if key in taken}


#: Per-call parameters every backend takes beyond its own generation defaults; a call's
#: identity (its cache key) holds them only when given, so calls without them keep their keys.
#: ``json_schema``: the reply must be JSON valid under this schema (llama.cpp: a grammar;
#: Ollama: ``format``; OpenAI-compatible servers: ``response_format`` ``json_schema``).
OPTIONAL_CALL = ("json_schema",)


def check_values(backend: str, values: Mapping[str, Any]) -> None:
    """Raise a ConfigError for the first of ``values`` (a call's overrides) outside its
    :data:`BOUNDS` (``llm 'llamacpp': max_tokens must be an integer >= 1, got 0``)."""
    check_numbers(f"llm '{backend}'", values, BOUNDS)


def resolve_generation(
    backend: str, defaults: Mapping[str, Any], overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """``defaults`` updated by per-call ``overrides``; unknown override names are an error."""
    unknown = sorted(set(overrides) - set(defaults) - set(OPTIONAL_CALL))
    if unknown:
        raise ConfigError(
            f"llm backend '{backend}' cannot override {', '.join(unknown)} per call; "
            f"per-call parameters: {', '.join(sorted({*defaults, *OPTIONAL_CALL}))}"
        )
    resolved = dict(defaults)
    resolved.update({k: v for k, v in overrides.items()
                     if not (k in OPTIONAL_CALL and v is None)})
    check_values(backend, overrides)
    if "json_schema" in resolved:
        check_json_schema(backend, resolved["json_schema"])
    return resolved


def check_json_schema(backend: str, schema: Any) -> None:
    """Raise a ConfigError unless ``schema`` is a JSON object schema (a mapping with a
    ``type``, serializable as JSON)."""
    import json

    if not isinstance(schema, Mapping) or "type" not in schema:
        raise ConfigError(f"llm '{backend}': json_schema must be a JSON schema (a mapping "
                          f"with a 'type'), got {schema!r}")
    try:
        json.dumps(schema)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"llm '{backend}': json_schema is not JSON: {exc}") from None


def check_messages(messages: Sequence[Message]) -> list[Message]:
    """Plain ``{"role", "content"}`` dicts, or a ConfigError naming the bad message."""
    out = []
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, Mapping) else None
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(role, str) or not isinstance(content, str):
            raise ConfigError(
                f"message {i} must be a mapping with string 'role' and 'content', got {message!r}"
            )
        out.append(Message(role=role, content=content))
    if not out:
        raise ConfigError("cannot generate from an empty list of messages")
    return out


def qwen_counts(
    messages: Sequence[Message], output: str, tokenizer: str, default_system: str
) -> dict[str, Any]:
    """memlab's own Qwen token counts of the rendered prompt and of the raw output."""
    return {
        "qwen_tokenizer": tokenizer,
        "qwen_prompt_tokens": count_chat_tokens(messages, tokenizer, default_system),
        "qwen_completion_tokens": count_tokens(output, tokenizer),
    }


def unreachable(url: str) -> str:
    """Why nothing answered at ``url``, for a connection error: a host name that does not
    resolve is said so (HTTP clients report it as a failed connection, like a refusal)."""
    host = urlsplit(url if "://" in url else f"http://{url}").hostname or ""
    try:
        socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError):
        return f"the host name {host!r} does not resolve"
    except OSError:
        pass
    return "connection refused"


#: What separates a model's name from its weights digest in a model id that memlab's
#: server publishes (``python -m memlab.llm.server``).
DIGEST_MARK = "@sha256:"


def served_id(model_path: str | Path, digest: str) -> str:
    """The model id published for a GGUF: its file name and its sha256."""
    return f"{Path(model_path).name}{DIGEST_MARK}{digest}"


def split_served_id(model_id: str) -> tuple[str, str]:
    """``(name, sha256)`` of a model id; the digest is empty for an id without one."""
    name, mark, digest = model_id.partition(DIGEST_MARK)
    return (name, digest) if mark else (model_id, "")
