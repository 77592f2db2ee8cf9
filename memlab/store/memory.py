"""An in-process store: units in a list, vectors in one growing numpy matrix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from memlab.chunkers.base import MemoryUnit
from memlab.errors import MemlabError
from memlab.spec import Component
from memlab.store.base import (
    DEFAULT_NAMESPACE,
    check_unique,
    check_vectors,
    missing_error,
    require_vectors,
)


@dataclass
class _Space:
    """One namespace: units in insertion order and a matrix row per unit."""

    units: list[MemoryUnit] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    has_vector: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def check_dim(self, dim: int, where: str) -> None:
        if self.dim not in (0, dim) and self.has_vector[: len(self.units)].any():
            raise MemlabError(f"{where}: vectors of dim {dim} cannot join stored ones of "
                              f"dim {self.dim}")

    def grow(self, n: int, dim: int) -> None:
        """Make room for ``n`` rows (capacity doubles, so appends are amortised O(1))."""
        cap = len(self.has_vector)
        if n > cap:
            flags = np.zeros(max(n, 2 * cap, 16), dtype=bool)
            flags[:cap] = self.has_vector
            self.has_vector = flags
        size = len(self.has_vector)
        if dim and (dim != self.dim or self.matrix.shape[0] < size):
            matrix = np.zeros((size, dim), dtype=np.float32)
            if dim == self.dim:
                matrix[: self.matrix.shape[0]] = self.matrix
            self.matrix = matrix


class MemoryStore(Component):
    """Units and vectors in numpy arrays in this process (not persistent)."""

    param_attrs: ClassVar[Mapping[str, str]] = {"namespace": "namespace_name"}

    persistent = False

    def __init__(self, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.namespace_name = namespace
        self._spaces: dict[str, _Space] = {}

    @property
    def _where(self) -> str:
        return f"memory store namespace {self.namespace_name!r}"

    @property
    def _space(self) -> _Space:
        return self._spaces.setdefault(self.namespace_name, _Space())

    def add(self, units: Sequence[MemoryUnit], vectors: np.ndarray | None = None) -> None:
        matrix = check_vectors(units, vectors, self._where)
        check_unique(units, self._where)
        space = self._space
        if matrix is not None:
            space.check_dim(matrix.shape[1], self._where)
        rows = []
        for unit in units:
            row = space.rows.setdefault(unit.id, len(space.units))
            if row == len(space.units):
                space.units.append(unit)
            space.units[row] = unit
            rows.append(row)
        space.grow(len(space.units), matrix.shape[1] if matrix is not None else 0)
        index = np.asarray(rows, dtype=np.int64)
        if matrix is not None:
            space.matrix[index] = matrix
        space.has_vector[index] = matrix is not None

    def get(self, ids: Sequence[str]) -> list[MemoryUnit]:
        space = self._space
        missing = [i for i in ids if i not in space.rows]
        if missing:
            raise missing_error(self._where, missing)
        return [space.units[space.rows[i]] for i in ids]

    def all(self) -> list[MemoryUnit]:
        return list(self._space.units)

    def vectors(self, ids: Sequence[str] | None = None) -> np.ndarray:
        """Rows for ``ids`` (default: every unit, in ``all()`` order); read-only."""
        space = self._space
        n = len(space.units)
        if ids is None:
            index = np.arange(n)
        else:
            self.get(ids)
            index = np.asarray([space.rows[i] for i in ids], dtype=np.int64)
        require_vectors([space.units[r].id for r in index[~space.has_vector[index]]],
                        self._where)
        out = space.matrix[:n] if ids is None else space.matrix[index]
        out = out.view()
        out.flags.writeable = False
        return out

    def delete(self, ids: Sequence[str]) -> int:
        space = self._space
        gone = {i for i in ids if i in space.rows}
        if gone:
            keep = np.asarray([r for r, u in enumerate(space.units) if u.id not in gone],
                              dtype=np.int64)
            space.units = [space.units[r] for r in keep]
            space.rows = {u.id: r for r, u in enumerate(space.units)}
            space.has_vector = space.has_vector[keep]
            if space.dim:
                space.matrix = space.matrix[keep]
        return len(gone)

    def count(self) -> int:
        return len(self._space.units)

    def namespaces(self) -> list[str]:
        return sorted(name for name, space in self._spaces.items() if space.units)

    def namespace(self, name: str) -> MemoryStore:
        view = MemoryStore(namespace=name)
        view._spaces = self._spaces
        return view

    def close(self) -> None:
        """Nothing to release (kept for the protocol)."""
