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
- ``llm`` — the text plus facts and keyphrases the LLM extracted from it (template
  ``extract_keys``, one call per unit, through the on-disk response cache). Each call is
  recorded in ``records``; :meth:`KeyStrategy.ingest_cost` sums calls, tokens and seconds
  — the work happens in ``index``, which the harness times as ingest. A unit's key is
  made from its own text only, so nothing later leaks into it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from memlab.chunkers.base import MemoryUnit
from memlab.data.schema import Probe
from memlab.errors import ConfigError, check_choice, check_number
from memlab.llm.calls import CallRecords
from memlab.retrieval.base import Hit
from memlab.retrieval.ranking import resolve_k
from memlab.retrieval.wrap import BaseSpec, Wrapper
from memlab.spec import Component

KEYS = ("user", "text", "llm")
_BAR_FROM = 20  # units to extract before a progress bar is worth showing


def speaker_lines(text: str, speakers: Sequence[str]) -> str:
    """The ``Speaker: text`` lines of ``text`` whose speaker is in ``speakers``."""
    prefixes = tuple(f"{s}: " for s in speakers)
    return "\n".join(line for line in text.split("\n") if line.startswith(prefixes))


class KeyStrategy(CallRecords, Wrapper, Component):
    """A base strategy that matches units by their key and returns their value."""

    nested: ClassVar[Mapping[str, str]] = {"base": "retrieval", "llm": "llm"}

    def __init__(
        self,
        k: int | None = 10,
        threshold: float | None = None,
        base: BaseSpec = "hybrid",
        key: str = "user",
        speakers: Sequence[str] = ("user",),
        llm: Any = None,
        template: str = "extract_keys",
        max_tokens: int = 96,
        cache: str = "readwrite",
    ) -> None:
        self.k = k
        self.threshold = threshold
        self.base = base
        self.key = key
        self.speakers = speakers
        self.llm = llm
        self.template = template
        self.max_tokens = max_tokens
        self.cache = cache
        self.records: list[dict[str, Any]] = []  # one per LLM call: tokens, seconds, error

    def check_params(self) -> None:
        from memlab.prompts import check_template

        check_choice("keys: key", self.key, KEYS)
        check_number("keys: max_tokens", self.max_tokens, low=1, integer=True)
        check_template("keys: template", self.template)
        if isinstance(self.speakers, str):
            raise ConfigError("keys: speakers must be a list of speaker names")

    @cached_property
    def values(self) -> dict[str, MemoryUnit]:
        return {}

    @cached_property
    def keys(self) -> dict[str, str]:
        """Key text per unit id (so re-indexing a unit never calls the LLM again)."""
        return {}

    @cached_property
    def model(self) -> Any:
        from memlab.chunkers.llm_support import resolve_llm
        from memlab.llm.cache import CachedLLM

        return CachedLLM(resolve_llm(self.llm, "keys"), mode=self.cache)  # type: ignore[arg-type]

    def key_of(self, unit: MemoryUnit) -> str:
        if self.key == "user":
            return speaker_lines(unit.text, self.speakers)
        if self.key == "llm":
            return f"{unit.text}\n{self._extracted(unit)}"
        return unit.text

    def _extracted(self, unit: MemoryUnit) -> str:
        from memlab.prompts import get_template

        rendered = get_template(self.template).render(text=unit.text)
        completion = self.model.generate(rendered.messages, max_tokens=self.max_tokens)
        self.records.append({"unit_id": unit.id, "prompt_tokens": completion.prompt_tokens,
                             "completion_tokens": completion.completion_tokens,
                             "seconds": completion.seconds, "cached": completion.cached,
                             "error": completion.error})
        return completion.text.strip() if completion.ok else ""

    def take_calls(self) -> list[dict[str, Any]]:
        """The key-extraction calls since the last take, then the base's."""
        return CallRecords.take_calls(self) + Wrapper.take_calls(self)

    def ingest_cost(self) -> dict[str, float]:
        """LLM calls, tokens and seconds spent building keys (cache hits count 0 calls)."""
        fresh = [r for r in self.records if not r["cached"]]
        return {"calls": len(fresh), "cached_calls": len(self.records) - len(fresh),
                "prompt_tokens": sum(r["prompt_tokens"] for r in fresh),
                "completion_tokens": sum(r["completion_tokens"] for r in fresh),
                "seconds": round(sum(r["seconds"] for r in self.records), 6)}

    def index(self, units: Sequence[MemoryUnit], vectors: np.ndarray | None = None) -> None:
        base = self.base_strategy
        fresh = [u for u in units if self.values.get(u.id) != u or u.id not in self.keys]
        for unit in _progress(fresh, self.key == "llm"):
            self.keys[unit.id] = self.key_of(unit)
        keyed = []
        for unit in units:
            self.values[unit.id] = unit
            keyed.append(replace(unit, text=self.keys[unit.id]))
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


def _progress(units: list[MemoryUnit], llm: bool) -> Any:
    """``units``, with a progress bar when an LLM extracts keys for many of them (seconds a
    call: the harness's bars would otherwise sit still for the whole extraction)."""
    if not llm or len(units) < _BAR_FROM:
        return units
    from tqdm.auto import tqdm

    return tqdm(units, desc="keys: LLM extraction", unit="unit", leave=False)
