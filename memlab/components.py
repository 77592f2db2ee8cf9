"""Every component registry in one place, for ``ls`` and config validation.

Registries live in their kind's package (``memlab.chunkers.registry`` ...); this module
only knows where, so listing imports each package's registry without importing any
implementation. It also knows each kind's protocol (``PROTOCOLS``), against which
``validate`` and ``conform`` check a component before memlab calls it.
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


#: Each kind's protocol: the methods memlab calls, and how (checked before any is called).
PROTOCOLS = {
    "chunker": "memlab.chunkers.base:Chunker", "embedder": "memlab.embed.base:Embedder",
    "store": "memlab.store.base:Store", "retrieval": "memlab.retrieval.base:Retriever",
    "memory": "memlab.memory.base:Memory", "llm": "memlab.llm.base:LLM",
    "scorer": "memlab.metrics.base:Scorer"}


def protocol_problems(kind: str, component: Any) -> list[str]:
    """Each method of ``kind``'s protocol that ``component`` (an instance, or its class)
    lacks or could not be called as memlab calls it (required parameters by position, the
    others by name)."""
    import inspect

    if kind not in PROTOCOLS:
        return []
    module, _, name = PROTOCOLS[kind].partition(":")
    protocol = getattr(importlib.import_module(module), name)
    problems = []
    for method_name, member in vars(protocol).items():
        if method_name.startswith("_") or not inspect.isfunction(member):
            continue
        wanted = inspect.signature(member)
        shown = f"{method_name}{_without_self(wanted)}"
        method = getattr(component, method_name, None)
        if not callable(method):
            if inspect.isclass(component) and hasattr(component, "__getattr__"):
                continue  # a class that delegates: its instances may have it
            problems.append(f"no method {shown}")
            continue
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for param in list(wanted.parameters.values())[1:]:
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            if param.kind is param.KEYWORD_ONLY or param.default is not param.empty:
                kwargs[param.name] = None
            else:
                args.append(None)
        try:
            have = inspect.signature(method)
        except (TypeError, ValueError):  # a builtin without a signature: not checkable
            continue
        if inspect.isclass(component) and inspect.isfunction(
                inspect.getattr_static(component, method_name)):  # unbound: without self
            have = have.replace(parameters=list(have.parameters.values())[1:])
        try:
            have.bind(*args, **kwargs)
        except TypeError as exc:
            problems.append(f"{method_name}{_without_self(have, 0)} cannot be called as the "
                            f"protocol's {shown} ({exc})")
    return problems


def _without_self(signature: Any, drop: int = 1) -> str:
    """``(query, k, as_of=None, *, probe=None)``: the parameters after ``self`` (``drop``),
    without annotations."""
    params = [p.replace(annotation=p.empty) for p in list(signature.parameters.values())[drop:]]
    return str(signature.replace(parameters=params, return_annotation=signature.empty))
