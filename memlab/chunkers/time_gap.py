"""Segments split where the conversation goes quiet (OMI ends a conversation that way)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from memlab.chunkers.base import MemoryUnit
from memlab.chunkers.common import make_unit
from memlab.data.schema import Conversation, Session, Turn
from memlab.spec import Component


class TimeGapChunker(Component):
    """A new unit wherever more than ``gap_seconds`` pass between consecutive turns.

    The default, 120 s, is OMI's conversation timeout (seeds/omi-memory-extraction-qa.md:
    a conversation is processed after 120 s of silence). A gap exactly equal to the
    threshold does not split. LoCoMo and LongMemEval give every turn of a session the
    session's timestamp, so there this chunker returns one unit per session, like
    ``session``; it differs only on data with real per-turn times (OMI transcripts).
    """

    name = "time_gap"
    bounds: ClassVar[Mapping[str, Mapping[str, Any]]] = {"gap_seconds": {"low": 0}}

    def __init__(self, gap_seconds: float = 120.0) -> None:
        self.gap_seconds = gap_seconds

    def check_params(self) -> None:
        """Raise a ConfigError for an invalid gap (config validation runs it)."""
        self.check_bounds(f"chunker '{self.name}'")

    def split(self, session: Session, context: Conversation | None = None) -> list[MemoryUnit]:
        self.check_params()
        segments: list[list[Turn]] = []
        for turn in session.turns:
            if not segments or self._quiet_before(segments[-1][-1], turn):
                segments.append([turn])
            else:
                segments[-1].append(turn)
        return [make_unit(session, self.name, n, segment, kind="window")
                for n, segment in enumerate(segments)]

    def _quiet_before(self, previous: Turn, turn: Turn) -> bool:
        return (turn.at - previous.at).total_seconds() > self.gap_seconds
