"""The users' memories the agent holds open: at most ``limit``, least recently used closed.

Each open memory holds its own SQLite connection (the database file, its WAL and its
shared-memory index), so an agent that kept every user it ever saw open ran out of file
descriptors after a few hundred users (``ulimit -n 256``: ~120). A closed memory is
reopened, and reloaded from its store, the next time its user sends a request. A memory
in use (its user's lock held by a request) is never closed; it is closed later.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any


class OpenMemories:
    """User id -> open memory, bounded by ``limit`` (least recently used closed first)."""

    def __init__(self, limit: int, lock_of: Callable[[str], threading.RLock]) -> None:
        self.limit = limit
        self.lock_of = lock_of
        self._open: OrderedDict[str, Any] = OrderedDict()
        self._guard = threading.Lock()

    def get(self, user_id: str) -> Any:
        """The user's open memory (marked most recently used), or None."""
        with self._guard:
            memory = self._open.get(user_id)
            if memory is not None:
                self._open.move_to_end(user_id)
            return memory

    def put(self, user_id: str, memory: Any) -> None:
        """Hold ``memory`` open for ``user_id`` (the caller holds the user's lock), closing
        the least recently used others beyond ``limit``."""
        with self._guard:
            self._open[user_id] = memory
            extra = max(0, len(self._open) - self.limit)
            victims = [u for u in self._open if u != user_id][:extra]
        for victim in victims:
            self._close_idle(victim)

    def _close_idle(self, user_id: str) -> None:
        lock = self.lock_of(user_id)
        if not lock.acquire(blocking=False):
            return  # a request is using it: closed when a later put finds it idle
        try:
            with self._guard:
                memory = self._open.pop(user_id, None)
            close_memory(memory)
        finally:
            lock.release()

    def close_all(self) -> None:
        """Close every open memory (the caller holds every user's lock)."""
        with self._guard:
            memories = list(self._open.values())
            self._open.clear()
        for memory in memories:
            close_memory(memory)

    def __len__(self) -> int:
        return len(self._open)


def close_memory(memory: Any) -> None:
    from memlab.memory.base import Closable

    if isinstance(memory, Closable):
        memory.close()
