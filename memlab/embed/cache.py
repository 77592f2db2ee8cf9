"""A persistent embedding cache: each text is embedded once per model, ever.

Vectors live in one SQLite file (``$MEMLAB_CACHE_DIR/embeddings.sqlite``, default
``~/.cache/memlab/embeddings.sqlite``) keyed by ``(model_id, sha256(text))``. The model id
includes a digest of the weights where one is known, so a changed model never reuses old
vectors. WAL mode plus a busy timeout and retries make it safe for several processes at
once (a process pool replaying conversations in parallel).

Layout: ``models`` numbers each model id once; ``vectors`` holds (model number, text hash,
float32 vector) rows in an ordinary rowid table with a unique index on the key, so a
384-d vector (1,536 bytes) sits inside its B-tree page. The first layout, one ``WITHOUT
ROWID`` table ``embeddings`` keyed by the model id's full text, put every such row over the
size a key-ordered page keeps inline: each vector spilled into an overflow page of its own
(~4.1 kB a vector, 2.7x the bytes, two page reads a lookup). A file that still holds that
table is read as a fallback (nothing is lost on upgrade); ``compact`` moves its rows into
the new layout, drops it and gives the space back (``python -m memlab.eval cache
--compact``).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from memlab.cache import cache_root
from memlab.embed.base import Embedder
from memlab.errors import MemlabError

T = TypeVar("T")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS models (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL)",
    "CREATE TABLE IF NOT EXISTS vectors (model INTEGER NOT NULL, text_sha256 BLOB NOT NULL, "
    "vector BLOB NOT NULL)",
    "CREATE UNIQUE INDEX IF NOT EXISTS vectors_key ON vectors (model, text_sha256)",
)
#: The first layout's table, read as a fallback until ``compact`` moves its rows.
LEGACY_TABLE = "embeddings"
_CHUNK = 500  # keys per SELECT ... IN (...), well under SQLite's variable limit
_RETRIES = 20


def default_cache_path() -> Path:
    """``$MEMLAB_CACHE_DIR/embeddings.sqlite`` or ``~/.cache/memlab/embeddings.sqlite``."""
    return cache_root() / "embeddings.sqlite"


def text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class EmbeddingCache:
    """(model id, text hash) -> float32 vector, in one SQLite file shared by processes."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_cache_path()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._legacy = False
        self._models: dict[str, int] = {}

    def get_many(self, model_id: str, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """The cached vectors among ``keys`` (missing keys are simply absent).

        Vectors read from the file are also kept in memory for the process (bounded,
        oldest dropped first), so a query embedded once in a sweep is not looked up in
        SQLite again by every later configuration.
        """
        found: dict[bytes, np.ndarray] = {}
        tier = _memory_tier(str(self.path), model_id)
        missing = []
        for key in keys:
            vector = tier.get(key)
            if vector is None:
                missing.append(key)
            else:
                found[key] = vector
        number = self._model_number(model_id, create=False) if missing else None
        sources: list[tuple[str, int | str]] = []
        if number is not None:
            sources.append(("vectors", number))
        if self._legacy and missing:
            sources.append((LEGACY_TABLE, model_id))  # the first layout, until compacted
        for table, model in sources:
            for start in range(0, len(missing), _CHUNK):
                chunk = missing[start : start + _CHUNK]
                sql = (f"SELECT text_sha256, vector FROM {table} WHERE model = ? AND "
                       f"text_sha256 IN ({','.join('?' * len(chunk))})")
                try:
                    rows = self._retry(partial(self._fetch, sql, [model, *chunk]))
                except MemlabError as exc:
                    if table != LEGACY_TABLE or "no such table" not in str(exc.__cause__):
                        raise
                    self._legacy = False  # another process compacted the file meanwhile
                    break
                for key, blob in rows:
                    vector = np.frombuffer(blob, dtype="<f4").astype(np.float32)
                    vector.setflags(write=False)
                    found[bytes(key)] = vector
                    _remember(tier, bytes(key), vector)
            missing = [key for key in missing if key not in found]
        return found

    def put_many(self, model_id: str, items: Sequence[tuple[bytes, np.ndarray]]) -> None:
        """Store vectors; a key already present (another process won the race) is kept."""
        if not items:
            return
        number = self._model_number(model_id, create=True)
        rows = [(number, key, np.asarray(vec, dtype="<f4").tobytes()) for key, vec in items]

        def write() -> None:
            with self._db() as conn:
                conn.executemany("INSERT OR IGNORE INTO vectors VALUES (?, ?, ?)", rows)

        self._retry(write)

    def count(self, model_id: str | None = None) -> int:
        """Vectors cached (of ``model_id``), in either layout."""
        return sum(rows for name, rows, _, _ in self.models()
                   if model_id is None or name == model_id)

    def models(self) -> list[tuple[str, int, int, bool]]:
        """``(model id, vectors, bytes of vector data, in the first layout)`` per model and
        layout, largest first."""
        self._db()
        out = [(str(name), int(rows), int(size or 0), False) for name, rows, size in
               self._retry(partial(self._fetch, "SELECT m.name, COUNT(*), SUM(LENGTH(v.vector)) "
                                   "FROM vectors v JOIN models m ON m.id = v.model "
                                   "GROUP BY v.model", []))]
        if self._legacy:
            out += [(str(name), int(rows), int(size or 0), True) for name, rows, size in
                    self._retry(partial(self._fetch, f"SELECT model, COUNT(*), SUM(LENGTH("
                                        f"vector)) FROM {LEGACY_TABLE} GROUP BY model", []))]
        return sorted(out, key=lambda row: (-row[2], row[0], row[3]))

    def drop(self, model_ids: Sequence[str]) -> int:
        """Delete every vector of ``model_ids`` (both layouts); the rows deleted. The file
        keeps its size until :meth:`compact` (SQLite reuses the freed pages first)."""
        deleted = 0
        for model_id in model_ids:
            number = self._model_number(model_id, create=False)

            def delete(number: int | None = number, model_id: str = model_id) -> int:
                with self._db() as conn:
                    n = 0
                    if number is not None:  # its number stays: another process may hold it
                        n += conn.execute("DELETE FROM vectors WHERE model = ?",
                                          (number,)).rowcount
                    if self._legacy:
                        n += conn.execute(f"DELETE FROM {LEGACY_TABLE} WHERE model = ?",
                                          (model_id,)).rowcount
                    return n

            deleted += self._retry(delete)
            self._models.pop(model_id, None)
            _TIERS.pop((str(self.path), model_id), None)
        return deleted

    def compact(self) -> tuple[int, int]:
        """Move the first layout's rows into the current one, drop its table and VACUUM
        (which needs free disk space about the size of what remains); ``(bytes before,
        bytes after)``. Run it when no other process is using the cache."""
        before = self.path.stat().st_size if self.path.exists() else 0
        conn = self._db()
        if self._legacy:
            def move() -> None:
                with conn:
                    conn.execute(f"INSERT OR IGNORE INTO models (name) SELECT DISTINCT model "
                                 f"FROM {LEGACY_TABLE}")
                    conn.execute(f"INSERT OR IGNORE INTO vectors SELECT m.id, e.text_sha256, "
                                 f"e.vector FROM {LEGACY_TABLE} e JOIN models m ON "
                                 f"m.name = e.model")
                    conn.execute(f"DROP TABLE {LEGACY_TABLE}")

            self._retry(move)
            self._legacy = False
            self._models.clear()
        self._retry(lambda: conn.execute("VACUUM"))
        self._retry(lambda: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)"))
        return before, self.path.stat().st_size

    def _model_number(self, model_id: str, *, create: bool) -> int | None:
        """The number ``models`` gives ``model_id`` (None if it has none and not ``create``)."""
        number = self._models.get(model_id)
        if number is None:
            conn = self._db()
            if create:
                def add() -> None:
                    with conn:
                        conn.execute("INSERT OR IGNORE INTO models (name) VALUES (?)",
                                     (model_id,))

                self._retry(add)
            row = self._retry(partial(self._fetch, "SELECT id FROM models WHERE name = ?",
                                      [model_id]))
            if not row:
                return None
            number = self._models[model_id] = int(row[0][0])
        return number

    def _fetch(self, sql: str, args: list[Any]) -> list[Any]:
        return self._db().execute(sql, args).fetchall()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _db(self) -> sqlite3.Connection:
        """This process's connection (reopened after a fork, never shared across processes)."""
        if self._conn is None or self._pid != os.getpid():
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
                self._retry(lambda: conn.execute("PRAGMA journal_mode=WAL"))
                conn.execute("PRAGMA synchronous=NORMAL")
                for statement in _SCHEMA:
                    self._retry(partial(conn.execute, statement))
                self._legacy = bool(conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                    (LEGACY_TABLE,)).fetchone())
            except (OSError, sqlite3.DatabaseError) as exc:
                raise MemlabError(f"embedding cache {self.path}: cannot open: {exc}") from exc
            self._conn, self._pid, self._models = conn, os.getpid(), {}
        return self._conn

    def _retry(self, action: Callable[[], T]) -> T:
        """Run ``action``, retrying with backoff while another process holds the lock."""
        for attempt in range(_RETRIES):
            try:
                return action()
            except sqlite3.OperationalError as exc:
                busy = "locked" in str(exc) or "busy" in str(exc)
                if not busy or attempt == _RETRIES - 1:
                    raise MemlabError(f"embedding cache {self.path}: {exc}") from exc
                time.sleep(min(0.05 * 2**attempt, 2.0))
        raise AssertionError("unreachable")


#: Vectors the in-memory tier keeps per process (~100 MB of 384-dim float32 vectors).
MEMORY_VECTORS = 65_536
_TIERS: dict[tuple[str, str], dict[bytes, np.ndarray]] = {}


def _memory_tier(path: str, model_id: str) -> dict[bytes, np.ndarray]:
    return _TIERS.setdefault((path, model_id), {})


def _remember(tier: dict[bytes, np.ndarray], key: bytes, vector: np.ndarray) -> None:
    if len(tier) >= MEMORY_VECTORS:
        del tier[next(iter(tier))]  # oldest first
    tier[key] = vector


class CachedEmbedder:
    """Wraps an embedder so that only texts never seen before reach the model.

    ``model_id`` and ``params()`` are the wrapped embedder's, so caching never changes
    what a run records; ``hits`` and ``misses`` count texts served from the cache and
    sent to the model.
    """

    def __init__(self, embedder: Embedder, cache: EmbeddingCache | str | Path | None = None):
        self.embedder = embedder
        self.cache = cache if isinstance(cache, EmbeddingCache) else EmbeddingCache(cache)
        self.hits = 0
        self.misses = 0

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    def params(self) -> dict[str, Any]:
        return self.embedder.params()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        keys = [text_key(t) for t in texts]
        model_id = self.model_id
        known = self.cache.get_many(model_id, list(dict.fromkeys(keys)))
        todo = {k: t for k, t in zip(keys, texts, strict=True) if k not in known}
        if todo:
            fresh = self.embedder.encode(list(todo.values()))
            new = list(zip(todo, fresh, strict=True))
            self.cache.put_many(model_id, new)
            known.update(new)
        self.misses += len(todo)
        self.hits += len(texts) - len(todo)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([known[k] for k in keys]).astype(np.float32, copy=False)


def maybe_cached(embedder: Embedder, cache: bool | str | Path = True) -> Embedder:
    """``embedder`` behind the persistent cache, unless caching is off or pointless.

    ``cache`` is True (default file), False, or a path. Embedders marked ``cheap`` (the
    hashing test double) compute faster than a lookup and are returned as they are.
    """
    if cache is False or getattr(embedder, "cheap", False) or isinstance(embedder, CachedEmbedder):
        return embedder
    return CachedEmbedder(embedder, None if cache is True else cache)
