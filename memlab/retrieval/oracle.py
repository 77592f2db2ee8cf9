"""The ceiling: exactly the units that hold the probe's gold evidence.

A unit is returned when one of its ``source_turn_ids`` is among the probe's
``evidence_turn_ids`` (or, for probes with only session-level evidence, when its
``session_id`` is among ``evidence_session_ids``), it is visible at ``as_of``, in unit
order, each with score 1.0. It reads the probe, which no real strategy may do, so it
needs ``probe=`` and refuses to run without one. ``k`` defaults to unlimited: the
ceiling sees all of its evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cached_property

import numpy as np

from memlab.chunkers.base import MemoryUnit
from memlab.data.schema import Probe
from memlab.errors import ConfigError
from memlab.retrieval.base import Hit
from memlab.retrieval.ranking import UnitTable, resolve_k
from memlab.spec import Component
from memlab.store.codec import at_micros


class OracleStrategy(Component):
    """The gold evidence units of the probe (the ceiling); needs probe=."""

    def __init__(self, k: int | None = None, threshold: float | None = None) -> None:
        self.k = k
        self.threshold = threshold
        self._maps: tuple[int, dict[str, list[int]], dict[str, list[int]]] | None = None

    @cached_property
    def table(self) -> UnitTable:
        return UnitTable()

    def index(self, units: Sequence[MemoryUnit], vectors: np.ndarray | None = None) -> None:
        self.table.add(units)

    def search(
        self,
        query: str,
        k: int | None = None,
        as_of: datetime | None = None,
        *,
        probe: Probe | None = None,
    ) -> list[Hit]:
        if probe is None:
            raise ConfigError(
                "the 'oracle' retrieval strategy returns a probe's gold evidence, so "
                "search() needs probe=<the Probe being answered>"
            )
        limit = resolve_k(k, self.k)
        if self.threshold is not None and self.threshold > 1.0:
            return []
        by_turn, by_session = self._lookup()
        if probe.evidence_turn_ids:
            keys, lookup = probe.evidence_turn_ids, by_turn
        else:
            keys, lookup = probe.evidence_session_ids, by_session
        rows = sorted({row for key in keys for row in lookup.get(key, ())})
        units = self.table.units
        cut = None if as_of is None else at_micros(as_of)
        visible = [r for r in rows if cut is None or at_micros(units[r].at) <= cut]
        return [Hit(units[r], 1.0) for r in visible[:limit]]

    def _lookup(self) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
        """Turn id -> rows and session id -> rows, rebuilt when the units change."""
        if self._maps is None or self._maps[0] != self.table.version:
            by_turn: dict[str, list[int]] = {}
            by_session: dict[str, list[int]] = {}
            for row, unit in enumerate(self.table.units):
                for turn in unit.source_turn_ids:
                    by_turn.setdefault(turn, []).append(row)
                by_session.setdefault(unit.session_id, []).append(row)
            self._maps = (self.table.version, by_turn, by_session)
        return self._maps[1], self._maps[2]
