"""Shared machinery of the retrieval strategies: the unit table and exact top-k.

Every strategy keeps its units in a :class:`UnitTable`: insertion order (which breaks
score ties) plus a stable time-sorted view, so the units visible at ``as_of`` are always
a *prefix* of the sorted view. Strategies score that prefix only, which is how the
``as_of`` filter happens before top-k: k hits come back whenever k older units qualify.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np

from memlab.chunkers.base import MemoryUnit
from memlab.errors import ConfigError
from memlab.store.codec import at_micros

#: Hits a strategy returns when neither its ``k`` nor the caller's says otherwise.
DEFAULT_K = 5


class UnitTable:
    """Indexed units: insertion order, id lookup and a time-sorted view.

    Adding a unit whose id is already indexed replaces it (keeping its position), so
    calling ``index`` per session or once with everything gives the same result.
    """

    def __init__(self) -> None:
        self.units: list[MemoryUnit] = []
        self.rows: dict[str, int] = {}
        self._times: list[int] = []
        self._fresh = False
        self.version = 0  # bumped by every change, for indexes derived from the units
        self.order = np.zeros(0, dtype=np.int64)
        self.sorted_times = np.zeros(0, dtype=np.int64)
        self.sorted_units: list[MemoryUnit] = []

    def __len__(self) -> int:
        return len(self.units)

    def add(self, units: Sequence[MemoryUnit]) -> tuple[np.ndarray, np.ndarray]:
        """Insert or replace ``units``.

        Returns their rows (insertion positions) and which of them are new or changed
        their text (what an embedder still has to see).
        """
        rows = np.empty(len(units), dtype=np.int64)
        changed = np.ones(len(units), dtype=bool)
        for i, unit in enumerate(units):
            row = self.rows.setdefault(unit.id, len(self.units))
            if row == len(self.units):
                self.units.append(unit)
                self._times.append(0)
            else:
                changed[i] = self.units[row].text != unit.text
            moment = at_micros(unit.at)
            if changed[i] or self._times[row] != moment or self.units[row] != unit:
                self._fresh = False  # re-adding identical units leaves every index valid
                self.version += 1
            self.units[row] = unit
            self._times[row] = moment
            rows[i] = row
        return rows, changed

    @property
    def fresh(self) -> bool:
        """Whether the time-sorted view (and indexes built on it) is up to date."""
        return self._fresh

    def refresh(self) -> bool:
        """Rebuild the time-sorted view if units changed; True if it was rebuilt."""
        if self._fresh:
            return False
        times = np.asarray(self._times, dtype=np.int64)
        self.order = np.argsort(times, kind="stable")
        self.sorted_times = times[self.order]
        self.sorted_units = [self.units[i] for i in self.order]
        self._fresh = True
        return True

    @property
    def in_time_order(self) -> bool:
        """Whether insertion order already is time order (no reordering needed)."""
        return bool(np.all(self.order == np.arange(len(self.order))))

    def visible(self, as_of: datetime | None) -> int:
        """How many sorted units are dated at or before ``as_of`` (all if None)."""
        self.refresh()
        if as_of is None:
            return len(self.units)
        return int(np.searchsorted(self.sorted_times, at_micros(as_of), side="right"))

    def newest(self) -> datetime | None:
        self.refresh()
        return self.sorted_units[-1].at if self.sorted_units else None


def resolve_k(k: int | None, default: int | None) -> int | None:
    """The caller's ``k`` if given, else the strategy's own; None means unlimited."""
    chosen = default if k is None else k
    if chosen is not None and (not isinstance(chosen, int | np.integer) or chosen < 0):
        raise ConfigError(f"k must be a non-negative integer or None, got {chosen!r}")
    return None if chosen is None else int(chosen)


def select_top(
    scores: np.ndarray,
    keys: np.ndarray,
    k: int | None,
    threshold: float | None = None,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Indices of the best ``k`` scores (all if None), best first, ties by lower ``keys``.

    Only scores ``>= threshold`` (and where ``mask`` is true) qualify. Exact and
    deterministic: a tie at the k-th place is resolved by ``keys`` (unit order), not by
    whatever ``argpartition`` happened to pick.
    """
    allowed = mask
    if threshold is not None:
        above = scores >= threshold
        allowed = above if allowed is None else allowed & above
    idx = None if allowed is None else np.flatnonzero(allowed)
    cand = scores if idx is None else scores[idx]
    cand_keys = keys if idx is None else keys[idx]
    if k == 0 or len(cand) == 0:
        return np.zeros(0, dtype=np.int64)
    if len(cand) <= _SORT_ALL_BELOW:  # one sort is faster than partition + tie handling
        pick = np.lexsort((cand_keys, -cand))[:k]
        return pick if idx is None else idx[pick]
    if k is None or k >= len(cand):
        pick = np.arange(len(cand))
    else:
        kth = cand[np.argpartition(-cand, k - 1)[:k]].min()
        better = np.flatnonzero(cand > kth)
        ties = np.flatnonzero(cand == kth)
        ties = ties[np.argsort(cand_keys[ties], kind="stable")][: k - len(better)]
        pick = np.concatenate([better, ties])
    pick = pick[np.lexsort((cand_keys[pick], -cand[pick]))]
    return pick if idx is None else idx[pick]


#: Up to this many candidates ``select_top`` sorts them all (same order as partitioning).
_SORT_ALL_BELOW = 8192


class GrowingMatrix:
    """Float32 rows addressed by unit row, growing by doubling (amortised appends)."""

    def __init__(self) -> None:
        self.data = np.zeros((0, 0), dtype=np.float32)

    def put(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        need = int(rows.max()) + 1 if len(rows) else 0
        dim = vectors.shape[1]
        if self.data.shape[1] not in (0, dim):
            raise ConfigError(f"vectors of dim {dim} cannot join indexed ones of dim "
                              f"{self.data.shape[1]}")
        if need > self.data.shape[0] or self.data.shape[1] != dim:
            grown = np.zeros((max(need, 2 * self.data.shape[0], 16), dim), dtype=np.float32)
            if self.data.shape[1] == dim:
                grown[: self.data.shape[0]] = self.data
            self.data = grown
        self.data[rows] = vectors

    def rows(self, n: int, order: np.ndarray | None = None) -> np.ndarray:
        """The first ``n`` rows, reordered by ``order`` if given (a copy then)."""
        return self.data[:n] if order is None else self.data[order]
