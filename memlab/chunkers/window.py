"""Sliding windows of whole turns: context around each turn without an LLM."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from memlab.chunkers.base import MemoryUnit
from memlab.chunkers.common import make_unit, require
from memlab.data.schema import Conversation, Session
from memlab.spec import Component


class WindowChunker(Component):
    """Windows of ``size`` turns starting every ``stride`` turns; the last may be shorter.

    Windows start at turns 0, stride, 2*stride, ... and stop with the first window
    that reaches the session's last turn, so every turn is covered and no window is
    contained in the previous one. With 7 turns, size 4, stride 2: turns 0-3, 2-5, 4-6.
    """

    name = "window"
    bounds: ClassVar[Mapping[str, Mapping[str, Any]]] = {"size": {"low": 1, "integer": True}}

    def __init__(self, size: int = 4, stride: int = 2) -> None:
        self.size = size
        self.stride = stride

    def split(self, session: Session, context: Conversation | None = None) -> list[MemoryUnit]:
        self.check_params()
        turns = session.turns
        units: list[MemoryUnit] = []
        for start in range(0, len(turns), self.stride):
            window = turns[start : start + self.size]
            units.append(make_unit(session, self.name, len(units), window, kind="window"))
            if start + self.size >= len(turns):
                break
        return units

    def check_params(self) -> None:
        """Raise a ConfigError for an invalid size or stride (config validation runs it)."""
        self.check_bounds(f"chunker '{self.name}'")
        require(isinstance(self.stride, int) and 1 <= self.stride <= self.size, self.name,
                f"stride must be an integer from 1 to size ({self.size}), got {self.stride!r}"
                " (a larger stride would skip turns)")
