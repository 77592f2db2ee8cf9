"""``save_conversation`` / ``load_conversation``: a user's history as one JSON file.

The export holds every logged message and explicit memory (with its wall-clock time)
and, for reading, the memory units the architecture holds. Loading replays the
messages into the agent in their original order *and times*: each chat exchange is
ingested as a session and each explicit memory is added to its tier again, so the
rebuilt memory is the one a replay of that history gives (units are not copied, since
another configuration may be loading them). Rows already in the log are skipped, so
loading the same file twice changes nothing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from memlab.agent.records import InvalidRequest, check_user

FORMAT = "memlab-agent-export"
VERSION = 1


def export_data(agent: Any, users: list[str]) -> dict[str, Any]:
    """Every logged message and the units each of ``users``' memory holds (the export's
    content; the ``agent`` dataset loader reads it back as conversations)."""
    data: dict[str, Any] = {"format": FORMAT, "version": VERSION,
                            "exported_at": datetime.now(UTC).isoformat(),
                            "config": agent.config.name, "memory": agent.memory_name,
                            "users": {}}
    for user in users:
        data["users"][user] = {
            "messages": agent.log.messages(user),
            "memory_units": [{"id": u.id, "kind": u.kind, "text": u.text,
                              "at": u.at.isoformat(),
                              "source_turn_ids": list(u.source_turn_ids)}
                             for u in agent.memory_units(user)],
        }
    return data


def write_export(agent: Any, path: Path, users: list[str]) -> Path:
    """:func:`export_data` as one JSON file."""
    data = export_data(agent, users)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def read_export(agent: Any, path: Path) -> int:
    """Replay the export file ``path`` into ``agent`` (:func:`import_data`); the number of
    sessions and explicit memories imported."""
    from memlab.data.fields import open_path, read_json

    counts = import_data(agent, read_json(open_path(path)), path)
    return counts["sessions"] + counts["memories"]


def import_data(agent: Any, data: Any, source: Path,
                users: dict[str, str] | None = None) -> dict[str, int]:
    """Replay an export (a JSON value read from ``source``) into ``agent`` through its public
    verbs (``replay_session``, ``add_memory`` with the original time). ``users`` maps the
    export's user ids to the agent's (default: every user, under its own id). The value is
    checked first as the ``agent`` dataset loader reads it, so a malformed message is an
    error naming the source, user and field before anything is replayed. Messages already
    in the agent's log (same role, content and time) are skipped, so importing the same
    export twice changes nothing; messages deleted before the export are not brought back.
    Counts: ``sessions`` (chat exchanges replayed), ``memories`` (explicit memories added),
    ``skipped`` and ``deleted`` (messages)."""
    from memlab.data.loaders.agent import agent_dataset

    agent_dataset(data, source, users=None if users is None else list(users))
    counts = {"sessions": 0, "memories": 0, "skipped": 0, "deleted": 0}
    for source_user, content in data["users"].items():
        if users is not None and source_user not in users:
            continue
        user = check_user(source_user if users is None else users[source_user])
        known = {(m["role"], m["content"], m["at"]) for m in agent.log.messages(user)}
        sessions: dict[str | int, list[tuple[int, dict[str, Any]]]] = {}
        for i, row in enumerate(content.get("messages", [])):
            if (row.get("meta") or {}).get("deleted"):
                counts["deleted"] += 1  # deleted before the export: not brought back
            elif (row["role"], row["content"], row["at"]) in known:
                counts["skipped"] += 1
            else:  # an exchange is replayed as one session, each memory on its own
                key = i if row["kind"] == "memory" else row["session_id"]
                sessions.setdefault(key, []).append((i, row))
        for rows in sessions.values():
            try:
                _replay(agent, user, rows, counts)
            except InvalidRequest as exc:  # e.g. a core memory over this agent's budget
                raise InvalidRequest(
                    f"{source}: users.{source_user}.messages[{rows[0][0]}]: {exc} (imported "
                    f"before it: {counts['sessions']} sessions, {counts['memories']} "
                    "memories; importing again skips what is already in the log)") from None
    return counts


def _replay(agent: Any, user: str, rows: list[tuple[int, dict[str, Any]]],
            counts: dict[str, int]) -> None:
    if rows[0][1]["kind"] != "memory":
        agent.replay_session(user, [row for _, row in rows])
        counts["sessions"] += 1
        return
    [(_, row)] = rows  # the role is a memory type: agent_dataset checked it
    agent.add_memory(row["content"], row["role"], user, at=datetime.fromisoformat(row["at"]))
    counts["memories"] += 1
