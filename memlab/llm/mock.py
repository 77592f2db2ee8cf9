"""A scripted LLM for fast tests. Never a default: configs must ask for it by name."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from memlab.llm.base import Completion, Message
from memlab.llm.retry import failed
from memlab.tokens import count_tokens


class MockLLM:
    """Answers from a script instead of a model.

    ``responses`` is either a list of answers returned in turn (cycling), or a mapping
    from a substring of the last user message to its answer (first match wins), or a
    callable ``messages -> str``. ``default`` answers anything the mapping does not
    match. Every call is kept in ``calls`` so tests can inspect the prompts. ``error``
    makes every call fail with that message (a dead backend, for the failure paths).
    ``seed`` shifts where a list of answers starts (call ``i`` gets answer ``i + seed``),
    so repeated runs with other seeds answer differently, as a sampling model would.
    """

    def __init__(
        self,
        responses: Sequence[str] | dict[str, str] | Callable[[Sequence[Message]], str] = (),
        default: str = "I don't know.",
        model: str = "mock",
        error: str = "",
        seed: int = 0,
    ) -> None:
        self.responses = responses
        self.default = default
        self.model = model
        self.error = error
        self.seed = seed
        self.calls: list[list[Message]] = []

    def params(self) -> dict[str, Any]:
        script = self.responses if not callable(self.responses) else repr(self.responses)
        return {"responses": script, "default": self.default, "model": self.model,
                "error": self.error, "seed": self.seed}

    def generate(self, messages: Sequence[Message], **overrides: Any) -> Completion:
        start = time.perf_counter()
        index = len(self.calls)
        self.calls.append(list(messages))
        if self.error:
            return failed(self.error, model=self.model, digest="mock",
                          seconds=time.perf_counter() - start)
        text = self._answer(messages, index)
        prompt = "".join(m["content"] for m in messages)
        return Completion(
            text=text,
            prompt_tokens=count_tokens(prompt),
            completion_tokens=count_tokens(text),
            seconds=time.perf_counter() - start,
            model=self.model,
            digest="mock",
        )

    def _answer(self, messages: Sequence[Message], index: int) -> str:
        if callable(self.responses):
            return self.responses(messages)
        if isinstance(self.responses, dict):
            last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
            for needle, answer in self.responses.items():
                if needle in last:
                    return answer
            return self.default
        if self.responses:
            return self.responses[(index + self.seed) % len(self.responses)]
        return self.default
