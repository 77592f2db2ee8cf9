"""Listing and deleting a user's memories (``GET /memory/list``, ``DELETE /memory/{id}``),
and forgetting a user altogether (``DELETE /users/{user_id}``).

A user can see every memory the agent keeps for them and remove any of it: a turn, a
note, a summary, or the core block (core memory is one versioned block; deleting any of
its ids deletes every version). Deleted memories leave the store at once and are never
retrieved again; what they came from in the conversation log (an explicit memory's row,
a chat turn's message; for ``flat``, the whole exchange) is blanked.
"""

from __future__ import annotations

from typing import Any

from memlab.agent.records import InvalidRequest, MemoryNotFound, tier
from memlab.chunkers.base import MemoryUnit

MAX_PAGE = 500


def list_memories(memory: Any, user_id: str, memory_type: str | None, limit: int,
                  offset: int) -> dict[str, Any]:
    """One page of the user's memories: ``{user_id, total, offset, memories}``."""
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise InvalidRequest(f"limit must be 1-{MAX_PAGE} and offset >= 0, got {limit}, "
                             f"{offset}")
    from memlab.memory.base import Editable

    tiers = isinstance(memory, Editable)
    units = [u for u in _current(memory)
             if memory_type is None or tier(u, tiers) == memory_type]
    page = units[offset : offset + limit]
    return {"user_id": user_id, "total": len(units), "offset": offset,
            "memories": [_record(u, tiers) for u in page]}


def delete_memory(agent: Any, memory: Any, user_id: str, memory_id: str
                  ) -> dict[str, Any]:
    """Delete ``memory_id`` of the user; :class:`MemoryNotFound` if they have none such.

    A memory that can forget one unit (``tiered``, ``extracted``) does, and the log blanks
    what it came from: an explicit memory's row, a chat turn's message. A memory rebuilt
    from the log (``flat``) loses the whole exchange (session) the unit came from: its
    messages are blanked and the memory is rebuilt without them."""
    from memlab.memory.base import Forgetting

    units = {u.id: u for u in memory.units()}
    if not isinstance(memory, Forgetting):
        unit = units.get(memory_id)
        if unit is None:
            raise MemoryNotFound(f"user {user_id!r} has no memory {memory_id!r}")
        deleted = [u.id for u in units.values() if u.session_id == unit.session_id]
        agent.log.forget_sessions(user_id, [unit.session_id])
        agent.reopen(user_id)
        return {"status": "deleted", "user_id": user_id, "deleted": deleted}
    deleted = list(memory.forget(memory_id))
    if not deleted:
        raise MemoryNotFound(f"user {user_id!r} has no memory {memory_id!r}")
    agent.log.forget(user_id, deleted)
    agent.log.forget_turns(user_id, [t for i in deleted if i in units and units[i].kind == "turn"
                                     for t in units[i].source_turn_ids])
    return {"status": "deleted", "user_id": user_id, "deleted": deleted}


def forget_user(agent: Any, memory: Any, user_id: str) -> dict[str, Any]:
    """Delete everything the agent keeps for ``user_id``: every memory (from the store, as
    :func:`delete_memory` does one) and every message of the conversation log;
    :class:`MemoryNotFound` if it keeps nothing for them."""
    from memlab.memory.base import Forgetting

    ids = [u.id for u in memory.units()]
    deleted: dict[str, None] = {}  # (ordered)
    if isinstance(memory, Forgetting):  # otherwise (flat) the memory is the log's
        for unit_id in ids:
            if unit_id not in deleted:  # (a core id takes every core version with it)
                deleted.update(dict.fromkeys(memory.forget(unit_id)))
    messages = agent.log.forget_user(user_id)
    agent.reopen(user_id)
    if not ids and not messages:
        raise MemoryNotFound(f"memlab keeps nothing for user {user_id!r}")
    return {"status": "deleted", "user_id": user_id,
            "deleted": list(dict.fromkeys([*ids, *deleted])), "messages": messages}


def _current(memory: Any) -> list[MemoryUnit]:
    """Memories as the user has them now: the current core version, then the rest."""
    units = list(memory.units())
    cores = [u for u in units if u.kind == "core"]
    rest = sorted((u for u in units if u.kind != "core"), key=lambda u: u.at)
    return cores[-1:] + rest if cores and cores[-1].text else rest


def _record(unit: MemoryUnit, tiers: bool) -> dict[str, Any]:
    return {"id": unit.id, "content": unit.text, "memory_type": tier(unit, tiers),
            "kind": unit.kind, "timestamp": unit.at.isoformat(),
            "source_turn_ids": list(unit.source_turn_ids)}
