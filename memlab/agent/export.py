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
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from memlab.agent.records import InvalidRequest, check_user

FORMAT = "memlab-agent-export"
VERSION = 1
#: An import's progress callback: ``(done, total, counts)``.
Progress = Callable[[int, int, dict[str, int]], None]


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


def read_export(agent: Any, path: Path, *, progress: bool = True) -> int:
    """Replay the export file ``path`` into ``agent`` (checked first, then
    :func:`replay_import`, holding each user's import lock), with a
    progress bar of the sessions replayed unless ``progress`` is false; the number of
    sessions and explicit memories imported."""
    from memlab.agent.imports import user_import_lock
    from memlab.data.fields import open_path, read_json

    data = read_json(open_path(path))
    check_import(data, path)
    with ExitStack() as held, _bar(path, progress) as bar:
        for user in data["users"]:  # ImportBusy while another import into one runs
            held.enter_context(user_import_lock(agent.data_dir, check_user(user)))
        counts = replay_import(agent, data, path, progress=bar)
    return counts["sessions"] + counts["memories"]


@contextmanager
def _bar(path: Path, enabled: bool) -> Iterator[Progress]:
    """A tqdm bar (notebook-aware) as an import's ``progress`` callback."""
    from tqdm.auto import tqdm

    with tqdm(desc=f"import {path.name}", unit="session", disable=not enabled) as bar:
        def update(done: int, total: int, counts: dict[str, int]) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        yield update


class ImportStopped(Exception):
    """An import stopped between two sessions (the server shutting down); ``counts`` is what
    was imported before it. Importing again skips what is already in the log."""

    def __init__(self, counts: dict[str, int]) -> None:
        super().__init__(f"stopped after {counts['sessions']} sessions and "
                         f"{counts['memories']} memories")
        self.counts = counts


def check_import(data: Any, source: Path, users: dict[str, str] | None = None) -> None:
    """Check an export as the ``agent`` dataset loader reads it (only ``users``' keys of it,
    when given): a malformed message is a :class:`~memlab.errors.DatasetError` naming the
    source, user and field."""
    from memlab.data.loaders.agent import agent_dataset

    agent_dataset(data, source, users=None if users is None else list(users))


def replay_import(agent: Any, data: Any, source: Path,
                  users: dict[str, str] | None = None, *, progress: Progress | None = None,
                  stop: Callable[[], bool] | None = None) -> dict[str, int]:
    """Replay an export (a JSON value read from ``source``) that :func:`check_import`
    accepted into ``agent`` through its public verbs (``replay_session``, ``add_memory``
    with the original time); ``users`` maps the export's user ids to the agent's (default:
    every user, under its own id); the caller holds their import locks. Messages already in the
    agent's log (same role, content and time) are skipped, so importing the same export
    twice changes nothing; messages deleted before the export are not brought back.
    ``progress(done, total, counts)`` is called before the first session and after each;
    ``stop()``, once true, ends the import between two sessions (:class:`ImportStopped`).
    Counts: ``sessions`` (chat exchanges replayed), ``memories`` (explicit memories added),
    ``skipped`` and ``deleted`` (messages)."""
    counts = {"sessions": 0, "memories": 0, "skipped": 0, "deleted": 0}
    plan: list[tuple[str, str, list[tuple[int, dict[str, Any]]]]] = []
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
        plan.extend((source_user, user, rows) for rows in sessions.values())
    if progress is not None:
        progress(0, len(plan), counts)
    for done, (source_user, user, rows) in enumerate(plan, start=1):
        if stop is not None and stop():
            raise ImportStopped(counts)
        try:
            _replay(agent, user, rows, counts)
        except InvalidRequest as exc:  # e.g. a core memory over this agent's budget
            raise InvalidRequest(
                f"{source}: users.{source_user}.messages[{rows[0][0]}]: {exc} (imported "
                f"before it: {counts['sessions']} sessions, {counts['memories']} "
                "memories; importing again skips what is already in the log)") from None
        if progress is not None:
            progress(done, len(plan), counts)
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
