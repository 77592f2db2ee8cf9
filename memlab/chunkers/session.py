"""The whole session as one unit: coarse, but keeps everything said together."""

from __future__ import annotations

from memlab.chunkers.base import MemoryUnit
from memlab.chunkers.common import make_unit
from memlab.data.schema import Conversation, Session
from memlab.spec import Component


class SessionChunker(Component):
    """One unit per session: every turn as a ``Speaker: text`` line.

    The session date is not written into the text (see ``memlab.chunkers.common``):
    answer templates show the unit's date, which is the session's last turn time.
    """

    name = "session"

    def split(self, session: Session, context: Conversation | None = None) -> list[MemoryUnit]:
        if not session.turns:
            return []
        return [make_unit(session, self.name, 0, session.turns, kind="session")]
