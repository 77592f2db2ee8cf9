"""The floor: no memory at all. Every search returns nothing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np

from memlab.chunkers.base import MemoryUnit
from memlab.data.schema import Probe
from memlab.retrieval.base import Hit
from memlab.retrieval.ranking import DEFAULT_K
from memlab.spec import Component


class NoneStrategy(Component):
    """No memory (the floor): indexes nothing, returns no hits."""

    def __init__(self, k: int | None = DEFAULT_K, threshold: float | None = None) -> None:
        self.k = k
        self.threshold = threshold

    def index(self, units: Sequence[MemoryUnit], vectors: np.ndarray | None = None) -> None:
        """Forget ``units`` (this strategy keeps nothing)."""

    def search(
        self,
        query: str,
        k: int | None = None,
        as_of: datetime | None = None,
        *,
        probe: Probe | None = None,
    ) -> list[Hit]:
        return []
