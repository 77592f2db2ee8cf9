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

from memlab.agent.records import check_user

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
    """Replay ``path`` into ``agent`` through its public verbs (``replay_session``,
    ``add_memory`` with the original time); the number of sessions imported. The file
    is checked first as the ``agent`` dataset loader reads it, so a malformed message is
    an error naming the file, user and field before anything is replayed."""
    from memlab.data.fields import open_path, read_json
    from memlab.data.loaders.agent import agent_dataset

    data = read_json(open_path(path))
    agent_dataset(data, path)  # every message checked before anything is replayed
    imported = 0
    for user, content in data["users"].items():
        user = check_user(user)
        known = {(m["role"], m["content"], m["at"]) for m in agent.log.messages(user)}
        sessions: dict[str, list[dict[str, Any]]] = {}
        for row in content.get("messages", []):
            if (row.get("meta") or {}).get("deleted"):
                continue  # deleted before the export: not brought back
            if (row["role"], row["content"], row["at"]) not in known:
                sessions.setdefault(row["session_id"], []).append(row)
        for rows in sessions.values():
            _replay(agent, user, rows)
            imported += 1
    return imported


def _replay(agent: Any, user: str, rows: list[dict[str, Any]]) -> None:
    if rows[0]["kind"] != "memory":
        agent.replay_session(user, rows)
        return
    for row in rows:  # the role is a memory type: agent_dataset checked it
        agent.add_memory(row["content"], row["role"], user,
                         at=datetime.fromisoformat(row["at"]))
