"""The live agent's export (``GET /users/{user_id}/export``, ``MemoryAgent.save_conversation``)
as a dataset: score memory configurations on the chats your own agent had.

Usage::

    memlab.load_dataset("agent", path="export.json", session_gap_minutes=30,
                        memories=True, users=None)

``path`` is an export file, or the agent's data directory (``memory.data_dir``; its
``conversations.db`` is read, read-only, so a stopped or running agent's history loads
without the HTTP API). ``users`` keeps only those user ids (default: every user).

The file is what :mod:`memlab.agent.export` writes: ``{"format": "memlab-agent-export",
"version": 1, "users": {user id: {"messages": [...], "memory_units": [...]}}}``. Each
user becomes one ``Conversation`` (id = the user id, speakers the user and
``assistant``); ``memory_units`` (what one configuration made of the history) are not
read: a configuration under test builds its own.

**Turns.** A message ``{"session_id", "kind", "role", "content", "at", "meta"}`` of kind
``chat`` becomes a turn with its role (``user`` or ``assistant``; the speaker is the user
id or ``assistant``) at its time. With ``memories`` (default), an explicit memory (kind
``memory``, role its tier ``core`` / ``recall`` / ``archival``: what ``/memory/add``
stored) becomes a ``user`` turn too, its tier kept in the turn's metadata
(``memory_type``): something the user asked to be remembered. A message deleted before the
export (``meta.deleted``: content ``[deleted]``) is left out and counted in the
conversation's metadata (``deleted``). Turn id = ``m<n>``, the message's place in the
user's log (1, 2, ...; deleted ones keep their number), so ids stay put when the same
user is exported again later.

**Sessions.** The agent logs each exchange (a message and its reply) or explicit memory
under its own session id. Consecutive ones less than ``session_gap_minutes`` apart (from
the last message of one to the first of the next) are one session, a sitting; ``0`` keeps
every exchange its own session. Session ids are ``s1``, ``s2``, ... per user.

**Probes.** The export has none. Hand-written ones come from ``probes_path``, a probes
file (:mod:`memlab.data.probes_file`: ``conversation_id`` is the user id, an evidence turn
id ``m<n>``); or ``python -m memlab.data probes agent=export.json --out mine.jsonl``
proposes and checks some (see the README's "Probes for your own chats"), then
``mine.jsonl`` is scored like any dataset. Every error names file, record
(``users.<id>.messages[i]``) and field.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

from memlab.agent.export import FORMAT, VERSION
from memlab.agent.log import LOG_FILE
from memlab.agent.records import MEMORY_TYPES
from memlab.data.checks import check_dataset
from memlab.data.fields import Fields, located, open_path, parse_iso, read_json
from memlab.data.probes_file import attach_probes
from memlab.data.schema import Conversation, Dataset, Role, Session, Turn
from memlab.errors import ConfigError, DatasetError

_ROLES = {"user": Role.USER, "assistant": Role.ASSISTANT}
_MESSAGE_KEYS = {"user_id", "session_id", "kind", "role", "content", "at", "meta"}


@located
def load_agent(path: str | Path, session_gap_minutes: float = 30, memories: bool = True,
               users: list[str] | None = None,
               probes_path: str | Path | None = None) -> Dataset:
    """Load a live agent's export (or data directory) as a memlab Dataset, with the probes
    of ``probes_path`` if given (else none)."""
    if isinstance(session_gap_minutes, bool) or not isinstance(
            session_gap_minutes, (int, float)) or not session_gap_minutes >= 0:
        raise ConfigError(f"dataset 'agent': session_gap_minutes must be a number >= 0, got "
                          f"{session_gap_minutes!r}")
    if users is not None and (isinstance(users, str) or not all(
            isinstance(u, str) for u in users)):
        raise ConfigError(f"dataset 'agent': users must be a list of user ids, got {users!r}")
    folder = Path(path).expanduser()
    if folder.is_dir():
        path, raw = folder, _read_log(folder)
    else:
        path = open_path(path)
        raw = read_json(path)
    dataset = agent_dataset(raw, path, session_gap_minutes, memories, users)
    if probes_path is None:
        return dataset
    probes = open_path(probes_path)
    conversations = attach_probes(list(dataset.conversations), probes, "agent",
                                  held_by=("user", "export"))
    return check_dataset(dataclasses.replace(
        dataset, conversations=tuple(conversations),
        metadata={**dataset.metadata, "probes_path": str(probes_path)}), path,
        {c.id: f"users.{c.id}" for c in conversations})


def agent_dataset(raw: Any, path: Path, session_gap_minutes: float = 30,
                  memories: bool = True, users: list[str] | None = None) -> Dataset:
    """An export already read from ``path`` (a JSON value), checked as a whole (located
    errors) and read as conversations."""
    header = Fields(raw, path=path, record="header")
    fmt = header.get("format", str)
    if fmt != FORMAT:
        raise header.error(f"not a memlab agent export: format {fmt!r}, expected {FORMAT!r}",
                           field="format")
    version = header.get("version", int)
    if version != VERSION:
        raise header.error(f"unsupported version {version} (this memlab reads {VERSION})",
                           field="version")
    histories = header.get("users", dict)
    missing = [u for u in users or () if u not in histories]
    if missing:
        raise ConfigError(f"dataset 'agent': {path} has no user {', '.join(map(repr, missing))} "
                          f"(it has {', '.join(map(repr, histories)) or 'none'})")
    conversations = tuple(
        _conversation(str(user), Fields(content, path=path, record=f"users.{user}"),
                      session_gap_minutes * 60, memories)
        for user, content in histories.items() if users is None or user in users)
    return check_dataset(Dataset(
        name="agent", conversations=conversations, source=str(path),
        metadata={"config": header.get("config", str, ""),
                  "memory": header.get("memory", str, ""),
                  "exported_at": header.get("exported_at", str, ""),
                  "session_gap_minutes": session_gap_minutes, "memories": memories}),
        path, {c.id: f"users.{c.id}" for c in conversations})


def _read_log(folder: Path) -> dict[str, Any]:
    """An agent data directory's ``conversations.db`` (opened read-only) in the export's
    shape."""
    db = folder / LOG_FILE
    if not db.is_file():
        raise DatasetError(f"no {LOG_FILE} here: give an export file or the agent's data "
                           "directory (memory.data_dir)", path=folder)
    try:
        with closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as conn:
            rows = conn.execute("SELECT user_id, session_id, kind, role, content, at, meta "
                                "FROM messages ORDER BY seq").fetchall()
    except sqlite3.DatabaseError as exc:
        raise DatasetError(f"cannot read the conversation log: {exc}", path=db) from None
    histories: dict[str, Any] = {}
    for user, session, kind, role, content, at, meta in rows:
        messages = histories.setdefault(user, {"messages": []})["messages"]
        try:
            extra = json.loads(meta or "{}")
        except json.JSONDecodeError as exc:
            raise DatasetError(f"the message's meta is not JSON ({exc.msg})", path=db,
                               record=f"users.{user}",
                               field=f"messages[{len(messages)}].meta") from None
        messages.append({"user_id": user, "session_id": session, "kind": kind, "role": role,
                         "content": content, "at": at, "meta": extra})
    return {"format": FORMAT, "version": VERSION, "users": histories}


def _conversation(user: str, content: Fields, gap_seconds: float,
                  memories: bool) -> Conversation:
    """One user's messages as sessions of turns."""
    groups: list[list[Turn]] = []  # one per agent session id, in log order
    last_id: str | None = None
    deleted = 0
    for n, row in enumerate(content.children("messages"), start=1):
        row.near_misses(_MESSAGE_KEYS)
        if row.has("user_id") and row.get("user_id", str) != user:
            raise row.error(f"a message of user {row.get('user_id', str)!r} in the history of "
                            f"user {user!r}", field=row.where("user_id"))
        turn = _turn(user, n, row, memories)
        meta = row.get("meta", dict, {})
        if meta.get("deleted"):
            deleted += 1
            continue
        if turn is None:
            continue
        session_id = str(row.get("session_id", (str, int)))
        if groups and session_id == last_id:
            groups[-1].append(turn)
        else:
            groups.append([turn])
        last_id = session_id
    sessions: list[list[Turn]] = []
    for group in groups:
        if sessions and (group[0].at - sessions[-1][-1].at).total_seconds() < gap_seconds:
            sessions[-1].extend(group)
        else:
            sessions.append(list(group))
    return Conversation(
        id=user, speakers=(user, "assistant"),
        sessions=tuple(_session(f"s{i}", turns) for i, turns in enumerate(sessions, start=1)),
        probes=(), metadata={"deleted": deleted})


def _turn(user: str, n: int, row: Fields, memories: bool) -> Turn | None:
    """The message as a turn (its session is set later); None for a memory left out."""
    kind = row.get("kind", str)
    role = row.get("role", str)
    text = row.get("content", str)
    at: datetime = row.datetime("at", parse_iso)
    if kind == "chat":
        if role not in _ROLES:
            raise row.error(f"a chat message's role must be user or assistant, got {role!r}",
                            field=row.where("role"))
        return Turn(id=f"m{n}", session_id="", speaker=user if role == "user" else "assistant",
                    role=_ROLES[role], text=text, at=at)
    if kind == "memory":
        if role not in MEMORY_TYPES:
            raise row.error(f"a memory's role must be one of {', '.join(MEMORY_TYPES)}, got "
                            f"{role!r}", field=row.where("role"))
        if not memories:
            return None
        return Turn(id=f"m{n}", session_id="", speaker=user, role=Role.USER, text=text, at=at,
                    metadata={"memory_type": role})
    raise row.error(f"kind must be chat or memory, got {kind!r}", field=row.where("kind"))


def _session(session_id: str, turns: list[Turn]) -> Session:
    placed = tuple(dataclasses.replace(t, session_id=session_id) for t in turns)
    return Session(id=session_id, started_at=placed[0].at, turns=placed)
