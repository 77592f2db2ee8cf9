"""The memory-architecture protocol: ingest sessions, answer searches as of a time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from memlab.chunkers.base import MemoryUnit
from memlab.data.schema import Conversation, Probe, Session
from memlab.retrieval.base import Hit

ComponentSpec = str | Mapping[str, Any]


@runtime_checkable
class Memory(Protocol):
    """One conversation's memory.

    ``ingest`` is called once per session in time order and returns the units it
    stored; ``search`` never returns anything learned after ``as_of``.
    """

    def ingest(self, session: Session, conversation: Conversation | None = None
               ) -> list[MemoryUnit]:
        ...

    def search(self, query: str, k: int, as_of: datetime | None = None, *,
               probe: Probe | None = None) -> list[Hit]:
        ...

    def units(self) -> Sequence[MemoryUnit]:
        ...

    def params(self) -> dict[str, Any]:
        ...


# Optional verbs a memory may declare (checked with isinstance, never by probing names).

@runtime_checkable
class Preparable(Protocol):
    """Builds its search indexes on demand (the harness calls it after ingesting, so the
    first probe's search does not pay for indexing)."""

    def prepare(self) -> None:
        ...


@runtime_checkable
class Accounted(Protocol):
    """Calls an LLM while ingesting; ``take_calls`` hands over the call records made
    since the last take (see :mod:`memlab.llm.calls`)."""

    def take_calls(self) -> list[dict[str, Any]]:
        ...


@runtime_checkable
class Consolidating(Protocol):
    """Summarises old memory into long-term memory; returns the units it wrote."""

    def consolidate(self, as_of: datetime | None = None, min_tokens: int = 0
                    ) -> list[MemoryUnit]:
        ...


@runtime_checkable
class Editable(Protocol):
    """Takes a memory written directly (``memory_type``: ``core``, ``archival`` ...)."""

    def remember(self, text: str, memory_type: str = "archival", at: datetime | None = None,
                 **kwargs: Any) -> MemoryUnit:
        ...


@runtime_checkable
class Forgetting(Protocol):
    """Deletes one memory (and what depends on it); the ids it removed."""

    def forget(self, unit_id: str) -> list[str]:
        ...


@runtime_checkable
class Trimming(Protocol):
    """Records what its last search had to leave out to fit a token budget
    (``full_context``; a ``flat`` memory reports its strategy's), or None."""

    @property
    def last_trim(self) -> Any:
        ...


@runtime_checkable
class Closable(Protocol):
    """Holds resources (a store's connection) to release."""

    def close(self) -> None:
        ...


@runtime_checkable
class HasContext(Protocol):
    """Builds its own prompt context (core block, recall buffer, retrieved units) and
    searches for the live agent with ``find``."""

    def context(self, query: str, as_of: datetime | None = None, **kwargs: Any) -> Any:
        ...

    def find(self, query: str, k: int, as_of: datetime | None = None) -> list[Hit]:
        ...
