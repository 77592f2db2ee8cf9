"""What the server backends (``ollama``, ``openai``) share: the generate loop and the
cache identity. A backend supplies the request (``_chat``), the answer (``_completion``)
and who it is (``_identity`` for cache keys, ``_known_identity`` after a failed call,
which must not call the server again, and ``_where`` for the call record).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from memlab.llm.base import Completion, Message
from memlab.llm.common import BackendBounds, check_messages, resolve_generation
from memlab.llm.retry import HungServer, failed, with_retries


class RemoteChat(BackendBounds, ABC):
    """``generate`` with retries, timing and per-call errors returned as data."""

    backend: str
    cache_exempt: frozenset[str]
    retries: int
    backoff: float
    timeout: float
    params: Callable[[], dict[str, Any]]  # read off the constructor (memlab.spec.Component)
    check_bounds: Callable[[str], None]  # memlab.spec.Component's

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the parameters only (clients and answers from the server are rebuilt)."""
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    @abstractmethod
    def _defaults(self) -> dict[str, Any]:
        ...

    @abstractmethod
    def _identity(self) -> tuple[str, str]:
        """(model, digest) for cache keys; may ask the server."""
        ...

    @abstractmethod
    def _known_identity(self) -> tuple[str, str]:
        """(model, digest) as far as known without asking the server."""
        ...

    @abstractmethod
    def _where(self) -> dict[str, Any]:
        ...

    @abstractmethod
    def _chat(self, chat: list[Message], gen: dict[str, Any]) -> Any:
        ...

    @abstractmethod
    def _completion(self, chat: list[Message], response: Any, seconds: float,
                    meta: dict[str, Any]) -> Completion:
        ...

    def check_params(self) -> None:
        """Raise a ConfigError for a value out of range (config validation runs it; the
        server is not asked)."""
        self.check_bounds(f"llm '{self.backend}'")

    def cache_identity(self, **overrides: Any) -> dict[str, Any]:
        self.check_params()
        params = {k: v for k, v in self.params().items() if k not in self.cache_exempt}
        params.update(resolve_generation(self.backend, self._defaults(), overrides))
        model, digest = self._identity()
        return {"backend": self.backend, "model": model, "digest": digest, "params": params}

    #: ``generate(..., on_token=callback)`` passes the text as it is generated
    streams_tokens = True

    @abstractmethod
    def _chat_streamed(self, chat: list[Message], gen: dict[str, Any],
                       on_token: Callable[[str], None]) -> Any:
        """``_chat``, passing the reply's text to ``on_token`` as it arrives; a failure
        after some text was passed is not retried."""
        ...

    def _stream_deadline(self, where: str) -> Callable[[], None]:
        """A check to run on each streamed piece: HungServer once ``timeout`` seconds have
        passed since the call began. The read timeout restarts with every piece, so alone
        it would let a server trickling text hold a call forever."""
        end = time.monotonic() + self.timeout

        def check() -> None:
            if time.monotonic() > end:
                raise HungServer(f"{where} was still streaming after {self.timeout:g} s (the "
                                 "timeout parameter caps a whole call; a hung server is not "
                                 "retried)")
        return check

    def generate(self, messages: Sequence[Message], *,
                 on_token: Callable[[str], None] | None = None,
                 **overrides: Any) -> Completion:
        start = time.perf_counter()
        self.check_params()
        gen = resolve_generation(self.backend, self._defaults(), overrides)
        chat = check_messages(messages)
        call = ((lambda: self._chat(chat, gen)) if on_token is None
                else (lambda: self._chat_streamed(chat, gen, on_token)))
        response, error, attempts = with_retries(
            call, retries=self.retries, backoff=self.backoff)
        seconds = time.perf_counter() - start
        meta = {"backend": self.backend, **self._where(), "attempts": attempts}
        if error is not None:
            model, digest = self._known_identity()
            return failed(error, model=model, digest=digest, seconds=seconds, metadata=meta)
        return self._completion(chat, response, seconds, meta)
