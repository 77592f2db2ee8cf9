"""Base class of strategies that give every visible unit a score (bm25, dense)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cached_property

import numpy as np

from memlab.chunkers.base import MemoryUnit
from memlab.data.schema import Probe
from memlab.retrieval.base import Hit
from memlab.retrieval.ranking import UnitTable, resolve_k, select_top


class ScoredStrategy:
    """Scores the units visible at ``as_of`` and keeps the best ``k`` above ``threshold``.

    Subclasses set ``k`` and ``threshold`` in their constructor and implement
    :meth:`_scores`; :meth:`_prepare` rebuilds derived indexes lazily after ``index``.
    """

    k: int | None
    threshold: float | None

    @cached_property
    def table(self) -> UnitTable:
        return UnitTable()

    def index(self, units: Sequence[MemoryUnit], vectors: np.ndarray | None = None) -> None:
        """Add ``units`` (an id already indexed is replaced); ``vectors`` are optional."""
        rows, changed = self.table.add(units)
        self._added(units, rows, changed, vectors)

    def search(
        self,
        query: str,
        k: int | None = None,
        as_of: datetime | None = None,
        *,
        probe: Probe | None = None,
    ) -> list[Hit]:
        rows, scores = self.ranked(query, resolve_k(k, self.k), as_of)
        units = self.table.sorted_units
        return [Hit(units[r], s) for r, s in zip(rows.tolist(), scores.tolist(), strict=True)]

    def prepare_index(self) -> None:
        """Build the derived indexes now instead of at the next search."""
        self.table.refresh()
        self._prepare()

    def ranked(
        self, query: str, k: int | None, as_of: datetime | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Best-first (rows of the time-sorted view, scores) for ``query``."""
        self.table.refresh()
        self._prepare()
        visible = self.table.visible(as_of)
        if visible == 0 or k == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        scores = self._scores(query, visible)
        keys = self.table.order[:visible]
        picked = select_top(scores, keys, k, self.threshold, self._mask(scores))
        return picked, scores[picked]

    def _added(
        self,
        units: Sequence[MemoryUnit],
        rows: np.ndarray,
        changed: np.ndarray,
        vectors: np.ndarray | None,
    ) -> None:
        """Hook: ``units`` went to ``rows`` (``changed``: new or new text); mark stale."""

    def _prepare(self) -> None:
        """Hook: rebuild derived indexes if units changed."""

    def _scores(self, query: str, visible: int) -> np.ndarray:
        """Scores of the first ``visible`` units of the time-sorted view."""
        raise NotImplementedError

    def _mask(self, scores: np.ndarray) -> np.ndarray | None:
        """Hook: which scored units may be returned at all (None: every one)."""
        return None
