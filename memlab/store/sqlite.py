"""A SQLite store: units, metadata and vectors of every namespace in one file.

This is the Letta seed's ``archival.db`` idea made explicit: one row per unit with its
namespace (user), fields, tagged-JSON metadata (see :mod:`memlab.store.codec`) and its
float32 vector as a blob. ``seq`` keeps insertion order; re-adding an id updates the row
in place. WAL mode and a busy timeout let a server and a notebook share the file.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from memlab.chunkers.base import MemoryUnit
from memlab.errors import MemlabError, StorageError
from memlab.spec import Component
from memlab.store.base import (
    DEFAULT_NAMESPACE,
    check_unique,
    check_vectors,
    in_id_order,
    require_vectors,
)
from memlab.store.codec import row_unit, unit_row

SCHEMA_VERSION = 1
_FIELDS = "id, text, kind, source_turn_ids, session_id, at, at_us, metadata"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS units (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace TEXT NOT NULL,
    id TEXT NOT NULL,
    text TEXT NOT NULL,
    kind TEXT NOT NULL,
    source_turn_ids TEXT NOT NULL,
    session_id TEXT NOT NULL,
    at TEXT NOT NULL,
    at_us INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    dim INTEGER,
    vector BLOB,
    UNIQUE (namespace, id)
);
CREATE INDEX IF NOT EXISTS units_by_time ON units (namespace, at_us);
CREATE TABLE IF NOT EXISTS memlab (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO memlab VALUES ('schema_version', '{SCHEMA_VERSION}');
"""
_UPSERT = f"""
INSERT INTO units (namespace, {_FIELDS}, dim, vector) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (namespace, id) DO UPDATE SET
    text = excluded.text, kind = excluded.kind, source_turn_ids = excluded.source_turn_ids,
    session_id = excluded.session_id, at = excluded.at, at_us = excluded.at_us,
    metadata = excluded.metadata, dim = excluded.dim, vector = excluded.vector
"""
_CHUNK = 500


def default_path() -> Path:
    """``$XDG_DATA_HOME/memlab/archival.db`` (default ``~/.local/share/memlab/archival.db``)."""
    root = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(root).expanduser() / "memlab" / "archival.db"


class SqliteStore(Component):
    """Units, metadata and vectors in one SQLite file, one namespace per user (persistent)."""

    param_attrs: ClassVar[Mapping[str, str]] = {"namespace": "namespace_name"}

    persistent = True

    def __init__(self, path: str | None = None, namespace: str = DEFAULT_NAMESPACE) -> None:
        self.path = path
        self.namespace_name = namespace
        self._conn: sqlite3.Connection | None = None

    @property
    def file(self) -> Path:
        return Path(self.path).expanduser() if self.path else default_path()

    @property
    def _where(self) -> str:
        return f"sqlite store {self.file} namespace {self.namespace_name!r}"

    def add(self, units: Sequence[MemoryUnit], vectors: np.ndarray | None = None) -> None:
        matrix = check_vectors(units, vectors, self._where)
        check_unique(units, self._where)
        if matrix is not None:
            self._check_dim(matrix.shape[1])
        rows = [
            (self.namespace_name, *unit_row(unit),
             None if matrix is None else int(matrix.shape[1]),
             None if matrix is None else np.asarray(matrix[i], dtype="<f4").tobytes())
            for i, unit in enumerate(units)
        ]
        with self._db() as conn:
            conn.executemany(_UPSERT, rows)

    def get(self, ids: Sequence[str]) -> list[MemoryUnit]:
        found = {row[0]: row_unit(row) for row in self._select(_FIELDS, ids)}
        return in_id_order(found, ids, self._where)

    def all(self) -> list[MemoryUnit]:
        sql = f"SELECT {_FIELDS} FROM units WHERE namespace = ? ORDER BY seq"
        return [row_unit(r) for r in self._db().execute(sql, (self.namespace_name,))]

    def vectors(self, ids: Sequence[str] | None = None) -> np.ndarray:
        """Rows for ``ids`` (default: every unit, in ``all()`` order)."""
        if ids is None:
            sql = "SELECT id, dim, vector FROM units WHERE namespace = ? ORDER BY seq"
            rows = self._db().execute(sql, (self.namespace_name,)).fetchall()
        else:
            found = {r[0]: r for r in self._select("id, dim, vector", ids)}
            rows = in_id_order(found, ids, self._where)
        require_vectors([r[0] for r in rows if r[2] is None], self._where)
        dim = rows[0][1] if rows else self._stored_dim() or 0
        return np.frombuffer(b"".join(r[2] for r in rows), dtype="<f4").astype(
            np.float32).reshape(len(rows), dim)

    def delete(self, ids: Sequence[str]) -> int:
        removed = 0
        with self._db() as conn:
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                cur = conn.execute(
                    f"DELETE FROM units WHERE namespace = ? AND id IN ({marks})",
                    (self.namespace_name, *chunk),
                )
                removed += cur.rowcount
        return removed

    def count(self) -> int:
        sql = "SELECT COUNT(*) FROM units WHERE namespace = ?"
        return int(self._db().execute(sql, (self.namespace_name,)).fetchone()[0])

    def namespaces(self) -> list[str]:
        rows = self._db().execute("SELECT DISTINCT namespace FROM units ORDER BY namespace")
        return [r[0] for r in rows]

    def namespace(self, name: str) -> SqliteStore:
        """The same file seen as namespace ``name`` (shares this connection)."""
        view = SqliteStore(path=self.path, namespace=name)
        view._conn = self._db()
        return view

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self.file.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.file, timeout=30.0, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(_SCHEMA)
                self._check_version(conn)
            except (OSError, sqlite3.DatabaseError) as exc:
                raise StorageError(f"sqlite store {self.file}: cannot open: {exc}") from exc
            self._conn = conn
        return self._conn

    def _check_version(self, conn: sqlite3.Connection) -> None:
        row = conn.execute("SELECT value FROM memlab WHERE key = 'schema_version'").fetchone()
        if row is None or int(row[0]) != SCHEMA_VERSION:
            raise MemlabError(f"sqlite store {self.file}: schema version {row and row[0]} "
                              f"is not {SCHEMA_VERSION}")

    def _select(self, columns: str, ids: Sequence[str]) -> Iterator[tuple[Any, ...]]:
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT {columns} FROM units WHERE namespace = ? AND id IN ({marks})"
            yield from self._db().execute(sql, (self.namespace_name, *chunk))

    def _stored_dim(self) -> int | None:
        sql = "SELECT dim FROM units WHERE namespace = ? AND dim IS NOT NULL LIMIT 1"
        row = self._db().execute(sql, (self.namespace_name,)).fetchone()
        return None if row is None else int(row[0])

    def _check_dim(self, dim: int) -> None:
        stored = self._stored_dim()
        if stored is not None and stored != dim:
            raise MemlabError(f"{self._where}: vectors of dim {dim} cannot join stored ones "
                              f"of dim {stored}")


def _chunks(ids: Sequence[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), _CHUNK):
        yield list(ids[start : start + _CHUNK])
