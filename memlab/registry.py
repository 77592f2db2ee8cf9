"""One generic registry per component kind.

A registry maps a name to a factory. Factories may be registered eagerly (a class or
function) or lazily as ``"module.path:attr"`` strings, so listing names never imports
heavy optional dependencies. Unknown names fail with the closest matches.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from memlab.errors import ConfigError, MemlabError, UnknownComponentError, did_you_mean

T = TypeVar("T")


@dataclass(frozen=True)
class Param:
    """One constructor parameter of a registered component, for ``ls`` and docs."""

    name: str
    default: Any
    annotation: str
    required: bool


class Registry(Generic[T]):
    """Name -> factory for one component kind (``kind`` is used in messages)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., T] | str] = {}

    def register(
        self, name: str, target: Callable[..., T] | str | None = None, *,
        replace: bool = False,
    ) -> Callable[[Callable[..., T]], Callable[..., T]] | None:
        """Register ``target`` under ``name``; without a target, act as a decorator.

        A name bound to another object is refused unless ``replace=True`` (what a
        notebook cell that is edited and re-run wants).
        """
        if target is not None:
            self._add(name, target, replace)
            return None

        def decorator(obj: Callable[..., T]) -> Callable[..., T]:
            self._add(name, obj, replace)
            return obj

        return decorator

    def _add(self, name: str, target: Callable[..., T] | str, replace: bool) -> None:
        existing = self._entries.get(name)
        lazy = isinstance(existing, str) or isinstance(target, str)
        same = existing is target or (lazy and _where(existing) == _where(target))
        if existing is not None and not replace and not same:
            shown = existing if isinstance(existing, str) else repr(existing)
            raise ConfigError(f"{self.kind} '{name}' is already registered to {shown}; "
                              "pass replace=True to rebind it (a plugin that means to replace "
                              "a built-in), or register yours under another name")
        self._entries[name] = target

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> Callable[..., T]:
        """The factory for ``name``, importing it if it was registered lazily."""
        try:
            target = self._entries[name]
        except KeyError:
            raise UnknownComponentError(self._unknown_message(name)) from None
        if isinstance(target, str):
            target = self._import(name, target)
            self._entries[name] = target
        return target

    def _import(self, name: str, target: str) -> Callable[..., T]:
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(
                f"{self.kind} '{name}' could not be imported from {module_name}: {exc}. "
                "Is its optional dependency installed?"
            ) from exc
        try:
            return getattr(module, attr)  # type: ignore[no-any-return, unused-ignore]
        except AttributeError:
            raise ConfigError(f"{self.kind} '{name}': {module_name} has no {attr}") from None

    def build(self, name: str, params: dict[str, Any] | None = None) -> T:
        """Instantiate ``name`` with keyword ``params``, checking the names first."""
        factory = self.get(name)
        params = dict(params or {})
        self.check_params(name, params)
        try:
            return factory(**params)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, MemlabError):  # DatasetError etc. pass through unchanged
                raise
            raise ConfigError(f"{self.kind} '{name}' rejected its parameters: {exc}") from exc

    def check_params(self, name: str, params: dict[str, Any]) -> None:
        """Refuse parameters ``name`` does not take and required ones left out."""
        accepted = self.params(name)
        if not _accepts_var_kwargs(self.get(name)):
            unknown = sorted(set(params) - {p.name for p in accepted})
            if unknown:
                valid = ", ".join(p.name for p in accepted) or "(none)"
                raise ConfigError(
                    f"{self.kind} '{name}' has no parameter(s) {', '.join(unknown)}; "
                    f"valid parameters: {valid}"
                )
        missing = [p.name for p in accepted if p.required and p.name not in params]
        if missing:
            raise ConfigError(f"{self.kind} '{name}' needs parameter(s): {', '.join(missing)}")

    def name_of(self, instance: object) -> str:
        """The name ``instance``'s class is registered under (its class name if none)."""
        cls = type(instance)
        for name, target in self._entries.items():
            if target is cls or (isinstance(target, str) and
                                 target == f"{cls.__module__}:{cls.__qualname__}"):
                return name
        return cls.__name__

    def params(self, name: str) -> list[Param]:
        """Keyword parameters of ``name``'s factory with their defaults."""
        factory = self.get(name)
        signature = inspect.signature(factory)
        out = []
        for p in signature.parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name == "self":
                continue
            required = p.default is inspect.Parameter.empty
            annotation = p.annotation if isinstance(p.annotation, str) else getattr(
                p.annotation, "__name__", repr(p.annotation)
            )
            if p.annotation is inspect.Parameter.empty:
                annotation = ""
            out.append(Param(p.name, None if required else p.default, annotation, required))
        return out

    def describe(self) -> list[dict[str, Any]]:
        """Every entry with its parameters, as plain data (for ``ls --json``)."""
        rows = []
        for name in self.names():
            factory = self.get(name)
            doc = inspect.getdoc(factory) or ""
            rows.append(
                {
                    "kind": self.kind,
                    "name": name,
                    "summary": doc.splitlines()[0] if doc else "",
                    "params": [
                        {
                            "name": p.name,
                            "default": p.default,
                            "type": p.annotation,
                            "required": p.required,
                        }
                        for p in self.params(name)
                    ],
                }
            )
        return rows

    def _unknown_message(self, name: str) -> str:
        close = did_you_mean(name, self.names(), n=3, cutoff=0.5)
        hint = f" D{close[1:]}" if close else ""
        return (
            f"unknown {self.kind} '{name}'.{hint} "
            f"Valid choices: {', '.join(self.names()) or '(none registered)'} (your own "
            "component: list the module that registers it under the config's plugins:)"
        )


def _accepts_var_kwargs(factory: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind is p.VAR_KEYWORD for p in parameters)


def _where(target: Any) -> str:
    """Where a registry entry lives, as a lazy registration spells it (``module:qualname``)."""
    if isinstance(target, str):
        return target
    return f"{getattr(target, '__module__', '')}:{getattr(target, '__qualname__', '')}"
