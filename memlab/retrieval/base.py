"""Scored hits and the retrieval-strategy protocol."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple, Protocol, runtime_checkable

from memlab.chunkers.base import MemoryUnit
from memlab.data.schema import Probe


class Hit(NamedTuple):
    """A retrieved unit with its strategy's score (higher is better). Immutable; a named
    tuple because a search builds ~100 of them (three times cheaper than a dataclass)."""

    unit: MemoryUnit
    score: float


@runtime_checkable
class Retriever(Protocol):
    """Indexes memory units and answers queries.

    ``search`` returns at most ``k`` hits, best first, scoring at least the strategy's
    threshold, and never a unit whose ``at`` is after ``as_of``. ``probe`` is the probe
    being answered; only the ``oracle`` strategy (the ceiling) may look at its evidence.
    """

    def index(self, units: Sequence[MemoryUnit]) -> None:
        ...

    def search(
        self, query: str, k: int, as_of: datetime | None = None, *, probe: Probe | None = None
    ) -> list[Hit]:
        ...

    def params(self) -> dict[str, Any]:
        ...
