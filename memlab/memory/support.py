"""What the stateful architectures (``tiered``, ``extracted``) share.

Component specs are built through their registries; an LLM given as a spec is wrapped
in the on-disk response cache (an object is used as it is, so tests keep their mock);
stores are opened lazily; token counts are memoised per unit; times are compared as
timezone-aware UTC.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from memlab.chunkers.base import MemoryUnit
from memlab.errors import ConfigError, check_choice
from memlab.memory.base import ComponentSpec
from memlab.spec import build

#: The model an architecture uses when ``llm`` is None: the embedded Qwen, with the
#: answerer's context window so one loaded GGUF serves both.
DEFAULT_LLM: dict[str, Any] = {"name": "llamacpp", "params": {"n_ctx": 8192}}
CACHE_MODES = ("off", "read", "readwrite")


def indexed(retriever: Any, spec: ComponentSpec, pending: dict[str, MemoryUnit]) -> Any:
    """``retriever`` (built from ``spec`` on first use) with the ``pending`` units indexed;
    the queue is emptied."""
    if retriever is None:
        retriever = build("retrieval", spec)
    if pending:
        retriever.index(list(pending.values()))
        pending.clear()
    return retriever


def build_llm(spec: Any, cache: str = "readwrite") -> Any:
    """An LLM object: a spec is built (and cached unless ``cache`` is off), an object kept."""
    if cache not in CACHE_MODES:
        raise ConfigError(f"llm_cache must be one of {', '.join(CACHE_MODES)}, got {cache!r}")
    if spec is not None and not isinstance(spec, Mapping | str):
        if not callable(getattr(spec, "generate", None)):
            raise ConfigError(f"llm must be a spec {{name, params}} or an object with "
                              f"generate(messages), got {type(spec).__name__}")
        return spec
    from memlab.llm import build_llm as build_backend

    llm = build_backend(DEFAULT_LLM if spec is None else spec)
    if cache == "off":
        return llm
    from memlab.llm.cache import CachedLLM

    return CachedLLM(llm, mode=cache)  # type: ignore[arg-type]


def describe(spec: Any) -> Any:
    """A loggable form of a spec or object parameter."""
    if spec is None or isinstance(spec, str | int | float | bool):
        return spec
    if isinstance(spec, Mapping):
        return dict(spec)
    params = getattr(spec, "params", None)
    return {"name": type(spec).__name__, "params": params() if callable(params) else {}}


def open_store(spec: ComponentSpec) -> Any:
    """A store from its spec (``memory`` in the harness, ``sqlite`` for a live user)."""
    return build("store", spec)


def utc(moment: datetime | None) -> datetime | None:
    """``moment`` as aware UTC (a naive time is taken as UTC, as datasets are)."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def now() -> datetime:
    """The wall clock (live use only; the harness always passes dataset times)."""
    return datetime.now(UTC)


def visible(unit: MemoryUnit, as_of: datetime | None) -> bool:
    return as_of is None or unit.at <= as_of


def with_meta(unit: MemoryUnit, **metadata: Any) -> MemoryUnit:
    """``unit`` with ``metadata`` merged in (units are frozen)."""
    return replace(unit, metadata={**unit.metadata, **metadata})


def merged_ids(*groups: Iterable[str]) -> tuple[str, ...]:
    """The ids of ``groups`` in first-seen order, each once."""
    return tuple(dict.fromkeys(i for group in groups for i in group))


class TokenCounter:
    """Exact Qwen token counts of unit texts, counted once per (id, text)."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], int] = {}

    def __call__(self, unit: MemoryUnit) -> int:
        from memlab.tokens import count_tokens

        key = (unit.id, unit.text)
        if key not in self._counts:
            self._counts[key] = count_tokens(unit.text)
        return self._counts[key]

    def total(self, units: Sequence[MemoryUnit]) -> int:
        return sum(self(u) for u in units)


def check_values(memory: Any, choices: Mapping[str, Sequence[str]]) -> None:
    """Raise a ConfigError for the first of ``memory``'s parameters outside its class's
    ``bounds`` (:meth:`memlab.spec.Component.check_bounds`) or ``choices``, naming the
    architecture."""
    memory.check_bounds(f"memory '{memory.name}'")
    for key, allowed in choices.items():
        check_choice(f"memory '{memory.name}': {key}", getattr(memory, key), allowed)


def require(condition: bool, memory: str, message: str) -> None:
    """Raise a ConfigError for an invalid parameter, naming the architecture."""
    if not condition:
        raise ConfigError(f"memory '{memory}': {message}")
