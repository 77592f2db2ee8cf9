"""Key expansion: index each unit under a different *key* than the text it shows.

LongMemEval retrieves by keys, not values: its own protocol indexes the **user's side
only** (a session's key is its user turns), and "K = V + fact" appends extracted facts
to the key (+9 % recall@k in its paper). This wrapper builds each unit's key, indexes the
base strategy on key units (same id, ``at`` and sources; ``text`` = key), and returns the
*original* units, so the reader and the budget metric still see and count the value.

``key``:

- ``user`` — the lines of the unit spoken by one of ``speakers`` (``Speaker: text``
  lines, the chunkers' convention; LongMemEval's speakers are ``user``/``assistant``);
  a unit with no such line gets an empty key and is never matched by words.
- ``text`` — the unit's own text (the base strategy unchanged; a control).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from functools import cached_property
from typing import Any

import numpy as np

from memlab.chunkers.base import MemoryUnit
from memlab.data.schema import Probe
from memlab.errors import ConfigError
from memlab.retrieval.base import Hit, Retriever
from memlab.retrieval.ranking import resolve_k
from memlab.retrieval.wrap import BaseSpec, build_base, describe_base

KEYS = ("user", "text")


def speaker_lines(text: str, speakers: Sequence[str]) -> str:
    """The ``Speaker: text`` lines of ``text`` whose speaker is in ``speakers``."""
    prefixes = tuple(f"{s}: " for s in speakers)
    return "\n".join(line for line in text.split("\n") if line.startswith(prefixes))


class KeyStrategy:
    """A base strategy that matches units by their key and returns their value."""

    def __init__(
        self,
        k: int | None = 10,
        threshold: float | None = None,
        base: BaseSpec = "hybrid",
        key: str = "user",
        speakers: Sequence[str] = ("user",),
    ) -> None:
        self.k = k
        self.threshold = threshold
        self.base = base
        self.key = key
        self.speakers = speakers

    def params(self) -> dict[str, Any]:
        return {"k": self.k, "threshold": self.threshold, "base": describe_base(self.base),
                "key": self.key, "speakers": list(self.speakers)}

    @cached_property
    def base_strategy(self) -> Retriever:
        if self.key not in KEYS:
            raise ConfigError(f"keys: key {self.key!r} is not known; "
                              f"valid choices: {', '.join(KEYS)}")
        if isinstance(self.speakers, str):
            raise ConfigError("keys: speakers must be a list of speaker names")
        return build_base(self.base)

    @cached_property
    def values(self) -> dict[str, MemoryUnit]:
        return {}

    def key_of(self, unit: MemoryUnit) -> str:
        if self.key == "user":
            return speaker_lines(unit.text, self.speakers)
        return unit.text

    def index(self, units: Sequence[MemoryUnit], vectors: np.ndarray | None = None) -> None:
        base = self.base_strategy
        keyed = []
        for unit in units:
            self.values[unit.id] = unit
            keyed.append(replace(unit, text=self.key_of(unit)))
        base.index(keyed)  # vectors embed values, not keys: the base embeds the keys itself

    def search(self, query: str, k: int | None = None, as_of: datetime | None = None, *,
               probe: Probe | None = None) -> list[Hit]:
        limit = resolve_k(k, self.k)
        wanted = len(self.values) if limit is None else limit
        hits = self.base_strategy.search(query, wanted, as_of, probe=probe)
        out = [Hit(self.values[h.unit.id], h.score) for h in hits]
        if self.threshold is not None:
            out = [h for h in out if h.score >= self.threshold]
        return out
