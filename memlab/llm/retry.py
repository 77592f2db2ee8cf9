"""Retries with exponential backoff, and the shape of a failed call.

Backends raise :class:`TransientError` for failures worth retrying (connection refused or
reset, HTTP 5xx) and :class:`PermanentError` for the rest (a missing model, HTTP 4xx, a bad
request). A server that accepted the request but did not answer within the timeout raises
:class:`HungServer`: transient, but not retried, as waiting again on a hung server doubled
the cost of every probe (300 s x 3 attempts was 15 minutes per probe).
:func:`with_retries` retries only transient errors; whatever still fails
becomes a Completion whose ``error`` holds the message, because per-call errors are data
the harness records, not exceptions that end a run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from memlab.errors import MemlabError
from memlab.llm.base import Completion

T = TypeVar("T")


class LLMCallError(MemlabError):
    """One LLM call that failed; ``transient`` says whether retrying may help."""

    transient = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TransientError(LLMCallError):
    """A failure that may go away: connection refused/reset, timeout, HTTP 5xx."""

    transient = True


class HungServer(TransientError):
    """No answer within the timeout: recorded as transient, never retried."""


#: Default seconds to wait for one generation (a 4B model on a slow CPU answers 256
#: tokens well within it) and to connect; a health check gets CHECK_TIMEOUT.
DEFAULT_TIMEOUT = 120.0
CONNECT_TIMEOUT = 10.0
CHECK_TIMEOUT = 5.0


class PermanentError(LLMCallError):
    """A failure retrying cannot fix: missing model, HTTP 4xx, invalid request."""


def with_retries(
    call: Callable[[], T],
    *,
    retries: int,
    backoff: float,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[T | None, LLMCallError | None, int]:
    """Run ``call`` up to ``1 + retries`` times; ``(result, error, attempts)``.

    The wait before retry ``i`` (0-based) is ``backoff * 2**i`` seconds.
    """
    attempts = 0
    while True:
        attempts += 1
        try:
            return call(), None, attempts
        except TransientError as exc:
            if attempts > retries or isinstance(exc, HungServer):
                return None, exc, attempts
            sleep(backoff * 2 ** (attempts - 1))
        except LLMCallError as exc:
            return None, exc, attempts


def failed(
    error: LLMCallError | str,
    *,
    model: str,
    digest: str,
    seconds: float,
    metadata: dict[str, Any] | None = None,
) -> Completion:
    """A Completion recording a failed call (empty text, zero tokens)."""
    meta = dict(metadata or {})
    if isinstance(error, LLMCallError):
        meta["error_type"] = "transient" if error.transient else "permanent"
        if error.status is not None:
            meta["http_status"] = error.status
    return Completion(
        text="",
        prompt_tokens=0,
        completion_tokens=0,
        seconds=seconds,
        model=model,
        digest=digest,
        error=str(error),
        metadata=meta,
    )
