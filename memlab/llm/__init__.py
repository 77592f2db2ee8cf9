"""memlab.llm: LLM backends behind one protocol, plus token accounting and a response cache.

Backends are registered lazily by name so listing them never imports llama.cpp or the
Ollama client:

- ``llamacpp`` — the embedded default: a GGUF in-process (Qwen2.5-Coder-0.5B by default)
- ``ollama`` — a model on an Ollama server (``qwen3:4b`` by default)
- ``openai`` — any OpenAI-compatible server (vLLM, LM Studio, llama.cpp server)
- ``mock`` — scripted answers for fast tests; never a default
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from memlab.llm.base import LLM, Completion, Message
from memlab.registry import Registry

registry: Registry[LLM] = Registry("llm backend")
registry.register("llamacpp", "memlab.llm.llamacpp:LlamaCppLLM")
registry.register("ollama", "memlab.llm.ollama:OllamaLLM")
registry.register("openai", "memlab.llm.openai:OpenAICompatLLM")
registry.register("mock", "memlab.llm.mock:MockLLM")

DEFAULT_BACKEND = "llamacpp"


def build_llm(spec: Mapping[str, Any] | str | None = None) -> LLM:
    """An LLM from a spec ``{name, params}`` (or just a name); the embedded model by default."""
    from memlab.spec import build

    llm: LLM = build("llm", DEFAULT_BACKEND if spec is None else spec)
    return llm


__all__ = ["LLM", "Completion", "Message", "build_llm", "registry"]
