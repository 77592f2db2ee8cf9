"""The live agent's conversation log: every message and explicit memory, per user, in SQLite.

It is what ``save_conversation`` exports, what ``/status`` counts, and what a memory
architecture without its own store (``flat``) is rebuilt from after a restart. Each row
records the wall-clock time (UTC) it happened at.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from memlab.errors import StorageError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    at TEXT NOT NULL,
    meta TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_user ON messages (user_id, seq);
CREATE TABLE IF NOT EXISTS session_numbers (user_id TEXT PRIMARY KEY, last INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS import_jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    state TEXT NOT NULL,
    cancel INTEGER NOT NULL DEFAULT 0,
    record TEXT NOT NULL
);
"""
KINDS = ("chat", "memory")
#: The log's file name in an agent's data directory.
LOG_FILE = "conversations.db"


def _utc(at: str) -> datetime:
    """A logged time as UTC (one without a zone is UTC)."""
    moment = datetime.fromisoformat(at)
    return (moment.replace(tzinfo=UTC) if moment.tzinfo is None
            else moment.astimezone(UTC))


def _drop_old_import_jobs(conn: sqlite3.Connection) -> None:
    """The ``import_jobs`` table of a development build (no ``user_id`` / ``cancel``
    columns) is dropped to be made again: it holds only job records, never messages."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(import_jobs)")}
    if columns and not {"user_id", "cancel"} <= columns:
        conn.execute("DROP TABLE import_jobs")


class ConversationLog:
    """Append-only messages per user (``kind`` chat or memory) in one SQLite file.

    The file is opened on first use and again after :meth:`close`. Each user's session
    numbers come from :meth:`next_session`, one row per user reserved in a write
    transaction, so server processes sharing the file never hand out the same one.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._connection is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                _drop_old_import_jobs(conn)
                conn.executescript(_SCHEMA)
            except (OSError, sqlite3.DatabaseError) as exc:
                raise StorageError(f"conversation log {self.path}: cannot open: {exc}") from exc
            self._connection = conn
        return self._connection

    def append(self, user_id: str, session_id: str, kind: str, role: str, content: str,
               at: datetime, meta: dict[str, Any] | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT INTO messages (user_id, session_id, kind, role, content, at, meta) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (user_id, session_id, kind, role, content, at.isoformat(),
                 json.dumps(meta or {}, ensure_ascii=False, default=str)))

    def messages(self, user_id: str | None = None, kind: str | None = None
                 ) -> list[dict[str, Any]]:
        """Rows in order, each ``{user_id, session_id, kind, role, content, at, meta}``."""
        sql = "SELECT user_id, session_id, kind, role, content, at, meta FROM messages"
        where, args = [], []
        if user_id is not None:
            where.append("user_id = ?")
            args.append(user_id)
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY seq", args).fetchall()
        return [{"user_id": r[0], "session_id": r[1], "kind": r[2], "role": r[3],
                 "content": r[4], "at": r[5], "meta": json.loads(r[6])} for r in rows]

    def forget(self, user_id: str, unit_ids: list[str]) -> int:
        """Blank the user's explicit-memory rows that stored one of ``unit_ids`` (content
        ``[deleted]``; the row stays so session numbers, hence new ids, never repeat)."""
        wanted = set(unit_ids)
        with self._lock, self._conn:
            rows = self._conn.execute(
                "SELECT seq, meta FROM messages WHERE user_id = ? AND kind = 'memory'",
                (user_id,)).fetchall()
            return self._blank([(seq, meta) for seq, meta in rows
                                if json.loads(meta).get("unit_id") in wanted])

    def forget_turns(self, user_id: str, turn_ids: list[str]) -> int:
        """Blank the user's chat messages that were the turns ``turn_ids`` (``{session}:t{n}``:
        the n-th chat message of that session), as :meth:`forget` does explicit memories:
        a deleted turn's words leave the log too."""
        wanted: dict[str, set[int]] = {}
        for turn_id in turn_ids:
            session, sep, n = turn_id.rpartition(":t")
            if sep and n.isdigit():
                wanted.setdefault(session, set()).add(int(n))
        gone = []
        with self._lock, self._conn:
            for session, positions in wanted.items():
                rows = self._conn.execute(
                    "SELECT seq, meta FROM messages WHERE user_id = ? AND session_id = ? AND "
                    "kind = 'chat' ORDER BY seq", (user_id, session)).fetchall()
                gone += [row for n, row in enumerate(rows, start=1) if n in positions]
            return self._blank(gone)

    def forget_sessions(self, user_id: str, session_ids: list[str]) -> int:
        """Blank every message of the user's sessions ``session_ids`` (a memory rebuilt from
        the log, ``flat``, then no longer has them)."""
        with self._lock, self._conn:
            return self._blank(self._conn.execute(
                f"SELECT seq, meta FROM messages WHERE user_id = ? AND session_id IN "
                f"({', '.join('?' * len(session_ids))})", (user_id, *session_ids)).fetchall())

    def forget_user(self, user_id: str) -> int:
        """Delete every message of ``user_id``; how many. The user's session counter stays
        (set from the sessions logged if it was never kept), so ids given afterwards never
        repeat one the user had."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO session_numbers (user_id, last) SELECT ?, COUNT(DISTINCT "
                "session_id) FROM messages WHERE user_id = ? ON CONFLICT (user_id) DO "
                "NOTHING", (user_id, user_id))
            gone = conn.execute("DELETE FROM messages WHERE user_id = ?", (user_id,))
        return int(gone.rowcount)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """The connection inside one write transaction that takes the database's write lock
        first (``BEGIN IMMEDIATE``: what it reads, no other process changes before it
        commits); rolled back if the block raises."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    def _blank(self, rows: list[tuple[int, str]]) -> int:
        """Content ``[deleted]`` and ``meta.deleted`` for the ``(seq, meta)`` rows (the
        caller holds the lock and the transaction); how many."""
        self._conn.executemany(
            "UPDATE messages SET content = '[deleted]', meta = ? WHERE seq = ?",
            [(json.dumps({**json.loads(meta), "deleted": True}), seq) for seq, meta in rows])
        return len(rows)

    def user_summaries(self) -> list[dict[str, Any]]:
        """Per user, in id order: ``messages`` and ``memories`` logged (deleted ones left
        out), ``sessions``, and the ``first_at`` / ``last_at`` message times."""
        kept = "json_extract(meta, '$.deleted') IS NOT 1"
        with self._lock:
            rows = self._conn.execute(
                "SELECT user_id, SUM(kind = 'chat'), SUM(kind = 'memory'), "
                f"COUNT(DISTINCT session_id) FROM messages WHERE {kept} GROUP BY user_id "
                "ORDER BY user_id").fetchall()
            times: dict[str, list[datetime]] = {}
            for user, at in self._conn.execute(f"SELECT user_id, at FROM messages WHERE {kept}"):
                times.setdefault(user, []).append(_utc(at))  # imports keep their offsets
        return [{"user_id": r[0], "messages": int(r[1]), "memories": int(r[2]),
                 "sessions": int(r[3]), "first_at": min(times[r[0]]).isoformat(),
                 "last_at": max(times[r[0]]).isoformat()} for r in rows]

    def users(self) -> list[str]:
        with self._lock:
            rows = self._conn.execute("SELECT DISTINCT user_id FROM messages ORDER BY user_id")
            return [r[0] for r in rows]

    def next_session(self, user_id: str) -> int:
        """A session number for ``user_id`` (a chat exchange or an explicit memory) that no
        process sharing this file has been given before: 1, 2, ... in the order asked. A
        user of a log written before numbers were kept continues after the sessions it
        holds. O(1) per call, one short write transaction."""
        with self._write() as conn:  # read and bump as one
            row = conn.execute("SELECT last FROM session_numbers WHERE user_id = ?",
                               (user_id,)).fetchone()
            last = int(row[0]) if row is not None else int(conn.execute(
                "SELECT COUNT(DISTINCT session_id) FROM messages WHERE user_id = ?",
                (user_id,)).fetchone()[0])
            conn.execute("INSERT INTO session_numbers (user_id, last) VALUES (?, ?) "
                         "ON CONFLICT (user_id) DO UPDATE SET last = excluded.last",
                         (user_id, last + 1))
        return last + 1

    def save_import(self, owner: str, record: dict[str, Any]) -> None:
        """Write a background import's record (``job_id``, ``state``, ...), run by the
        process ``owner``, so every server process sharing this file can answer for it."""
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT INTO import_jobs (job_id, user_id, owner, state, record) VALUES (?, ?, "
                "?, ?, ?) ON CONFLICT (job_id) DO UPDATE SET owner = excluded.owner, "
                "state = excluded.state, record = excluded.record",
                (record["job_id"], record["user_id"], owner, record["state"],
                 json.dumps(record)))

    def cancel_imports(self, user_id: str, unfinished: tuple[str, ...]) -> int:
        """Ask the user's imports in a state of ``unfinished`` to stop (whichever process
        runs them reads it between two sessions); how many."""
        with self._lock, self._conn:
            done = self._conn.execute(
                f"UPDATE import_jobs SET cancel = 1 WHERE user_id = ? AND state IN "
                f"({', '.join('?' * len(unfinished))})", (user_id, *unfinished))
        return int(done.rowcount)

    def import_cancelled(self, job_id: str) -> bool:
        """Whether the import ``job_id`` was asked to stop (:meth:`cancel_imports`)."""
        with self._lock:
            row = self._conn.execute("SELECT cancel FROM import_jobs WHERE job_id = ?",
                                     (job_id,)).fetchone()
        return bool(row and row[0])

    def imports(self, job_id: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """``(owner, record)`` of the background imports kept (or of ``job_id``), newest
        first."""
        sql, args = "SELECT owner, record FROM import_jobs", []
        if job_id is not None:
            sql, args = sql + " WHERE job_id = ?", [job_id]
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY seq DESC", args).fetchall()
        return [(owner, json.loads(record)) for owner, record in rows]

    def prune_imports(self, keep: int, finished: tuple[str, ...]) -> None:
        """Delete the finished imports' records but the newest ``keep``."""
        marks = ", ".join("?" * len(finished))
        with self._lock, self._conn:
            self._conn.execute(
                f"DELETE FROM import_jobs WHERE state IN ({marks}) AND seq NOT IN (SELECT "
                f"seq FROM import_jobs WHERE state IN ({marks}) ORDER BY seq DESC LIMIT ?)",
                (*finished, *finished, keep))

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
