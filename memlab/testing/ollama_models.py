"""The fake Ollama's models and shared state: what it has "pulled" and what it was asked."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Reply = Callable[[list[dict[str, Any]]], str]


def _last_user(messages: list[dict[str, Any]]) -> str:
    return next((str(m.get("content", "")) for m in reversed(messages)
                 if m.get("role") == "user"), "")


def echo_reply(messages: list[dict[str, Any]]) -> str:
    return f"You said: {_last_user(messages)[:200]}"


def echo_thinking(messages: list[dict[str, Any]]) -> str:
    return f"The user wrote {len(_last_user(messages))} characters. I will answer briefly."


@dataclass
class FakeModel:
    """One model the fake server has "pulled"."""

    name: str
    capabilities: tuple[str, ...] = ("completion", "thinking")
    family: str = "qwen3"
    parameter_size: str = "4.0B"
    quantization_level: str = "Q4_K_M"
    reply: Reply = echo_reply
    thinking: Reply = echo_thinking
    embedding_dim: int = 384
    digest: str = ""

    def __post_init__(self) -> None:
        if ":" not in self.name:
            self.name += ":latest"
        if not self.digest:
            self.digest = hashlib.sha256(self.name.encode()).hexdigest()


def default_models() -> list[FakeModel]:
    return [
        FakeModel("qwen3:4b"),
        FakeModel("huihui_ai/qwen3-abliterated:4b-v2"),
        FakeModel("qwen2.5:0.5b", capabilities=("completion",), family="qwen2",
                  parameter_size="494.03M"),
        FakeModel("all-minilm:latest", capabilities=("embedding",), family="bert",
                  parameter_size="23M", quantization_level="F16"),
    ]


@dataclass
class Injected:
    status: int
    body: str
    times: int


@dataclass
class FakeState:
    models: dict[str, FakeModel]
    version: str = "0.12.6"
    delay: float = 0.0
    empty: int = 0  # the next this many chat replies have empty content
    failures: list[Injected] = field(default_factory=list)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
