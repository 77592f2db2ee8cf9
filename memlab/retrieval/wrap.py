"""Nested base strategies: the one place wrapper strategies turn a ``base`` into a strategy.

Wrappers (``budget``, ``sessions``, ``timed``, ``keys``) re-rank, filter or re-package the
hits of a *base* strategy given as a registry name, a ``{name, params}`` spec (nested
wrappers included, e.g. ``{name: budget, params: {base: {name: timed, params: {base:
hybrid}}}}``) or an already built instance (so several wrappers can share one index).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from memlab.chunkers.base import MemoryUnit
from memlab.retrieval.base import Retriever

#: What a wrapper's ``base`` parameter accepts.
BaseSpec = str | Mapping[str, Any] | Retriever


def build_base(base: BaseSpec) -> Retriever:
    """The base strategy of a wrapper: built from its spec, or the instance given."""
    from memlab.retrieval import build_strategy

    if isinstance(base, str | Mapping):
        return build_strategy(base)
    return base


def describe_base(base: BaseSpec) -> Any:
    """A loggable form of the base: its spec, or an instance's class and params."""
    if isinstance(base, str):
        return base
    if isinstance(base, Mapping):
        return dict(base)
    return {"name": type(base).__name__, "params": base.params()}


def index_base(base: Retriever, units: Sequence[MemoryUnit],
               vectors: np.ndarray | None = None) -> None:
    """Index ``units`` in ``base``, passing precomputed ``vectors`` only when given."""
    index: Any = base.index
    if vectors is None:
        index(units)
    else:
        index(units, vectors)
