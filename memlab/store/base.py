"""The store protocol: units plus optional vectors, per namespace, in insertion order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from memlab.chunkers.base import MemoryUnit
from memlab.errors import MemlabError

DEFAULT_NAMESPACE = "default"


class UnitNotFound(MemlabError, KeyError):
    """``get``/``vectors`` asked for ids the namespace does not hold."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

T = TypeVar("T")


@runtime_checkable
class Store(Protocol):
    """Memory units and their vectors for one namespace (one user) of a backing storage.

    Order is insertion order; adding a unit whose id is already stored replaces it in
    place (same position). ``vectors()`` rows follow ``all()`` (or the ``ids`` given).
    ``namespace(name)`` is a view of the same storage for another user; namespaces
    never see each other's units.
    """

    namespace_name: str

    def add(self, units: Sequence[MemoryUnit], vectors: np.ndarray | None = None) -> None:
        ...

    def get(self, ids: Sequence[str]) -> list[MemoryUnit]:
        ...

    def all(self) -> list[MemoryUnit]:
        ...

    def vectors(self, ids: Sequence[str] | None = None) -> np.ndarray:
        ...

    def delete(self, ids: Sequence[str]) -> int:
        ...

    def count(self) -> int:
        ...

    def namespaces(self) -> list[str]:
        ...

    def namespace(self, name: str) -> Store:
        ...

    def close(self) -> None:
        ...

    def params(self) -> dict[str, Any]:
        ...


@runtime_checkable
class Versioned(Protocol):
    """A store shared by processes that counts writes per namespace (``pgvector``), so a
    process holding a namespace's units in memory knows when to reload them."""

    def version(self) -> int:
        ...

    def namespace(self, name: str) -> Store:
        ...


def check_vectors(
    units: Sequence[MemoryUnit], vectors: np.ndarray | None, where: str
) -> np.ndarray | None:
    """``vectors`` as float32 rows matching ``units`` one to one (or None)."""
    if vectors is None:
        return None
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != len(units):
        raise MemlabError(
            f"{where}: {len(units)} units need a ({len(units)}, dim) vector matrix, "
            f"got shape {matrix.shape}"
        )
    return matrix


def check_unique(units: Sequence[MemoryUnit], where: str) -> None:
    seen: set[str] = set()
    for unit in units:
        if unit.id in seen:
            raise MemlabError(f"{where}: unit id {unit.id!r} appears twice in one add()")
        seen.add(unit.id)


def in_id_order(found: Mapping[str, T], ids: Sequence[str], where: str) -> list[T]:
    """``found[i]`` for every id in ``ids``, in order; UnitNotFound naming the absent ones."""
    missing = [i for i in ids if i not in found]
    if missing:
        raise missing_error(where, missing)
    return [found[i] for i in ids]


def require_vectors(lacking: Sequence[str], where: str) -> None:
    """Refuse a vectors() read when some of its units were stored without a vector."""
    if len(lacking):
        raise MemlabError(f"{where}: unit(s) {', '.join(map(repr, lacking[:5]))} "
                          "have no vector")


def missing_error(where: str, missing: Sequence[str]) -> UnitNotFound:
    shown = ", ".join(repr(m) for m in list(missing)[:5])
    more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
    return UnitNotFound(f"{where}: no unit(s) {shown}{more}")
