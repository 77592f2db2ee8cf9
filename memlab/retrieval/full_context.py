"""The long-context baseline: every visible unit, in time order, within a token budget.

Units written at or before ``as_of`` are returned oldest first. When their texts hold
more than ``max_tokens`` Qwen tokens (exact counts, :mod:`memlab.tokens`), the *oldest*
are dropped until the most recent ones fit, and ``last_trim`` records what happened.
The budget counts unit texts only; the prompt template adds dates and framing on top.
``k`` (default unlimited) caps the number of units the same way, keeping the newest.
Every hit scores 1.0, so only a ``threshold`` above 1 removes anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

import numpy as np

from memlab.chunkers.base import MemoryUnit
from memlab.data.schema import Probe
from memlab.errors import check_number
from memlab.retrieval.base import Hit
from memlab.retrieval.ranking import UnitTable, resolve_k
from memlab.spec import Component
from memlab.tokens import DEFAULT_TOKENIZER, check_tokenizer, count_tokens


@dataclass(frozen=True)
class Trim:
    """What the last search kept: units and tokens visible, kept, and whether it trimmed."""

    visible_units: int
    kept_units: int
    visible_tokens: int | None  # None when counting stopped early at the budget
    kept_tokens: int

    @property
    def trimmed(self) -> bool:
        return self.kept_units < self.visible_units


class FullContextStrategy(Component):
    """All units up to as_of in time order, newest kept within a Qwen-token budget."""

    def __init__(
        self,
        k: int | None = None,
        threshold: float | None = None,
        max_tokens: int | None = 6000,
        tokenizer: str = DEFAULT_TOKENIZER,
    ) -> None:
        self.k = k
        self.threshold = threshold
        self.max_tokens = max_tokens
        self.tokenizer = tokenizer
        self.last_trim: Trim | None = None
        self._tokens: dict[str, int] = {}

    def check_params(self) -> None:
        """Raise a ConfigError for a budget below 1 or an unknown tokenizer (config
        validation runs it)."""
        check_number("full_context: max_tokens", self.max_tokens, low=1, integer=True,
                     optional=True)
        check_tokenizer("full_context: tokenizer", self.tokenizer)

    @cached_property
    def table(self) -> UnitTable:
        return UnitTable()

    def index(self, units: Sequence[MemoryUnit], vectors: np.ndarray | None = None) -> None:
        self.check_params()
        self.table.add(units)

    def tokens(self, unit: MemoryUnit) -> int:
        """Exact Qwen token count of ``unit.text`` (memoised per unit id and text)."""
        key = f"{unit.id}\x00{unit.text}"
        if key not in self._tokens:
            self._tokens[key] = count_tokens(unit.text, self.tokenizer)
        return self._tokens[key]

    def search(
        self,
        query: str,
        k: int | None = None,
        as_of: datetime | None = None,
        *,
        probe: Probe | None = None,
    ) -> list[Hit]:
        limit = resolve_k(k, self.k)
        visible = self.table.visible(as_of)
        if self.threshold is not None and self.threshold > 1.0:
            visible = 0
        units = self.table.sorted_units
        newest_first = (units[i] for i in range(visible - 1, -1, -1))  # no copy of 1M units
        kept, used = self._fit(newest_first, limit)
        self.last_trim = Trim(visible, len(kept), used if len(kept) == visible else None, used)
        return [Hit(unit, 1.0) for unit in reversed(kept)]

    def _fit(
        self, newest_first: Iterable[MemoryUnit], limit: int | None
    ) -> tuple[list[MemoryUnit], int]:
        """The newest units that fit both the token budget and ``limit``, and their tokens."""
        kept: list[MemoryUnit] = []
        used = 0
        for unit in newest_first:
            if limit is not None and len(kept) >= limit:
                break
            cost = self.tokens(unit)
            if self.max_tokens is not None and used + cost > self.max_tokens:
                break
            kept.append(unit)
            used += cost
        return kept, used
