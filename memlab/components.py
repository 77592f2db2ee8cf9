"""Every component registry in one place, for ``ls`` and config validation.

Registries live in their kind's package (``memlab.chunkers.registry`` ...); this module
only knows where, so listing imports each package's registry without importing any
implementation.
"""

from __future__ import annotations

import importlib
from typing import Any

from memlab.registry import Registry

#: kind -> "module:attribute" of its registry, in pipeline order.
REGISTRIES: dict[str, str] = {
    "dataset": "memlab.data:registry",
    "chunker": "memlab.chunkers:registry",
    "embedder": "memlab.embed:registry",
    "store": "memlab.store:registry",
    "retrieval": "memlab.retrieval:registry",
    "template": "memlab.prompts:registry",
    "llm": "memlab.llm:registry",
    "memory": "memlab.memory:registry",
    "scorer": "memlab.metrics:registry",
}


def registry(kind: str) -> Registry[Any]:
    """The registry of one component kind."""
    from memlab.errors import UnknownComponentError, did_you_mean

    if kind not in REGISTRIES:
        close = did_you_mean(kind, REGISTRIES)
        raise UnknownComponentError(
            f"unknown component kind '{kind}'{f' ({close})' if close else ''}. Valid kinds: "
            f"{', '.join(REGISTRIES)}"
        )
    module_name, _, attr = REGISTRIES[kind].partition(":")
    found: Registry[Any] = getattr(importlib.import_module(module_name), attr)
    from memlab.plugins import environment_plugins

    environment_plugins()  # MEMLAB_PLUGINS and installed entry points, once
    return found


def available_kinds() -> list[str]:
    """Kinds whose registry exists in this installation."""
    kinds = []
    for kind in REGISTRIES:
        try:
            registry(kind)
        except (ImportError, AttributeError):
            continue
        kinds.append(kind)
    return kinds


def describe(kinds: list[str] | None = None) -> list[dict[str, Any]]:
    """Every registered component with its parameters and defaults."""
    rows: list[dict[str, Any]] = []
    for kind in kinds or available_kinds():
        for row in registry(kind).describe():
            rows.append({**row, "kind": kind})
    return rows
