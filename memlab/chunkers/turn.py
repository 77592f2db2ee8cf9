"""One memory unit per turn: the finest grain, and what LoCoMo's evidence ids point at."""

from __future__ import annotations

from memlab.chunkers.base import MemoryUnit
from memlab.chunkers.common import make_unit
from memlab.data.schema import Conversation, Session
from memlab.spec import Component


class TurnChunker(Component):
    """One unit per turn, text ``Speaker: text`` (image captions included)."""

    name = "turn"

    def split(self, session: Session, context: Conversation | None = None) -> list[MemoryUnit]:
        return [make_unit(session, self.name, n, [turn], kind="turn")
                for n, turn in enumerate(session.turns)]
