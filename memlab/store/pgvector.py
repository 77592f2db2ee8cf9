"""A PostgreSQL store with pgvector: units, metadata and vectors of every user in one table.

The same rows as the SQLite store (tagged-JSON metadata from :mod:`memlab.store.codec`,
``seq`` for insertion order, ``at_us`` for time), with the vector in a pgvector ``vector``
column (float4, so float32 vectors come back bit for bit). ``search(vector, k, as_of)``
ranks by inner product *in SQL*, filtered to the namespace and to units dated at or before
``as_of`` before the top k (pgvector's iterative index scan keeps going until k rows pass
the filter). Its HNSW index is a partial expression index per vector dimension, created
when vectors of that dimension first arrive.

Real deployments point ``dsn`` (default ``$MEMLAB_PG_DSN``) at their own server; tests and
a zero-setup default use :class:`memlab.testing.postgres.LocalPostgres`. Several processes
(uvicorn workers, Ray tasks) may share one database: schema creation is serialised by an
advisory lock and every write is one transaction.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

import numpy as np

from memlab.chunkers.base import MemoryUnit
from memlab.errors import ConfigError, MemlabError, check_number
from memlab.spec import Component
from memlab.store.base import (
    DEFAULT_NAMESPACE,
    check_unique,
    check_vectors,
    in_id_order,
    require_vectors,
)
from memlab.store.codec import at_micros, row_unit, unit_row

_FIELDS = "id, text, kind, source_turn_ids, session_id, at, at_us, metadata"
_LOCK_ID = 0x6D656D6C  # "meml": serialises schema creation across processes
_CHUNK = 1000


class PgvectorStore(Component):
    """Units and vectors in PostgreSQL + pgvector, one namespace per user, HNSW search."""

    param_attrs: ClassVar[Mapping[str, str]] = {"namespace": "namespace_name"}

    persistent = True

    def __init__(self, dsn: str | None = None, namespace: str = DEFAULT_NAMESPACE,
                 table: str = "memlab_units", hnsw_m: int = 16, ef_construction: int = 64,
                 ef_search: int = 100) -> None:
        self.dsn = dsn
        self.namespace_name = namespace
        self.table = table
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self._conn: Any = None
        self._lock = threading.RLock()
        self._indexed: set[int] = set()

    @property
    def _where(self) -> str:
        return f"pgvector store table {self.table} namespace {self.namespace_name!r}"

    def add(self, units: Sequence[MemoryUnit], vectors: np.ndarray | None = None) -> None:
        matrix = check_vectors(units, vectors, self._where)
        check_unique(units, self._where)
        dim = None if matrix is None else int(matrix.shape[1])
        if dim is not None:
            self._check_dim(dim)
            self._ensure_index(dim)
        rows = [(self.namespace_name, *unit_row(unit), dim,
                 None if matrix is None else _literal(matrix[i]))
                for i, unit in enumerate(units)]
        sql = (f"INSERT INTO {self.table} (namespace, {_FIELDS}, dim, vector) VALUES "
               f"(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::vector) "
               "ON CONFLICT (namespace, id) DO UPDATE SET text = excluded.text, "
               "kind = excluded.kind, source_turn_ids = excluded.source_turn_ids, "
               "session_id = excluded.session_id, at = excluded.at, at_us = excluded.at_us, "
               "metadata = excluded.metadata, dim = excluded.dim, vector = excluded.vector")
        with self._tx() as cur:
            cur.executemany(sql, rows)
            self._bump(cur)

    def bulk_add(self, units: Sequence[MemoryUnit], vectors: np.ndarray,
                 maintenance_work_mem: str = "1GB", index: bool = True) -> None:
        """Load many NEW units fast: the table's HNSW index of this dimension is dropped,
        the rows are streamed with ``COPY`` and the index is built once afterwards (an
        HNSW index maintained row by row inserts a few hundred rows a second). Every
        namespace sharing the table waits for the rebuild; an id already stored is an
        error (use :meth:`add` to replace units). ``index=False`` leaves the index to be
        built by the next :meth:`add` or :meth:`build_index` (searches scan meanwhile)."""
        matrix = check_vectors(units, vectors, self._where)
        check_unique(units, self._where)
        assert matrix is not None
        dim = int(matrix.shape[1])
        self._check_dim(dim)
        check_work_mem(maintenance_work_mem, self._where)  # before the COPY, not after
        with self._tx() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
            cur.execute(f"DROP INDEX IF EXISTS {self.table}_hnsw_{dim}")
            with cur.copy(f"COPY {self.table} (namespace, {_FIELDS}, dim, vector) "
                          "FROM STDIN") as copy:
                for i, unit in enumerate(units):
                    copy.write_row((self.namespace_name, *unit_row(unit), dim,
                                    _literal(matrix[i])))
            self._bump(cur)
        with self._tx() as cur:  # fresh statistics, else the planner scans past the index
            cur.execute(f"ANALYZE {self.table}")
        self._indexed.discard(dim)
        if index:
            self.build_index(dim, maintenance_work_mem)

    def build_index(self, dim: int, maintenance_work_mem: str = "1GB") -> None:
        """Build the HNSW index over this dimension's rows if it is missing."""
        self._ensure_index(dim, check_work_mem(maintenance_work_mem, self._where))

    def get(self, ids: Sequence[str]) -> list[MemoryUnit]:
        found = {row[0]: row_unit(row) for row in self._select(_FIELDS, ids)}
        return in_id_order(found, ids, self._where)

    def all(self) -> list[MemoryUnit]:
        sql = f"SELECT {_FIELDS} FROM {self.table} WHERE namespace = %s ORDER BY seq"
        return [row_unit(r) for r in self._query(sql, (self.namespace_name,))]

    def vectors(self, ids: Sequence[str] | None = None) -> np.ndarray:
        """Rows for ``ids`` (default: every unit, in ``all()`` order)."""
        if ids is None:
            sql = (f"SELECT id, dim, vector::text FROM {self.table} WHERE namespace = %s "
                   "ORDER BY seq")
            rows = self._query(sql, (self.namespace_name,))
        else:
            found = {r[0]: r for r in self._select("id, dim, vector::text", ids)}
            rows = in_id_order(found, ids, self._where)
        require_vectors([r[0] for r in rows if r[2] is None], self._where)
        dim = rows[0][1] if rows else self._stored_dim() or 0
        if not rows:
            return np.zeros((0, dim), dtype=np.float32)
        return np.vstack([_parse(r[2]) for r in rows]).astype(np.float32)

    def search(self, vector: np.ndarray, k: int,
               as_of: datetime | None = None) -> list[tuple[str, float]]:
        """The ``k`` units nearest ``vector`` by inner product, dated at or before ``as_of``."""
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        dim = int(query.shape[0])
        cut = "" if as_of is None else "AND at_us <= %(cut)s"
        sql = (f"SELECT id, -((vector::vector({dim})) <#> %(q)s::vector({dim})) FROM {self.table} "
               f"WHERE namespace = %(ns)s AND dim = {dim} {cut} "
               f"ORDER BY (vector::vector({dim})) <#> %(q)s::vector({dim}) LIMIT %(k)s")
        args = {"q": _literal(query), "ns": self.namespace_name, "k": int(k),
                "cut": None if as_of is None else at_micros(as_of)}
        with self._tx() as cur:
            cur.execute("SET LOCAL hnsw.iterative_scan = strict_order")
            cur.execute(f"SET LOCAL hnsw.ef_search = {int(self.ef_search)}")
            cur.execute(sql, args)
            return [(r[0], float(r[1])) for r in cur.fetchall()]

    def delete(self, ids: Sequence[str]) -> int:
        removed = 0
        with self._tx() as cur:
            for chunk in _chunks(ids):
                cur.execute(f"DELETE FROM {self.table} WHERE namespace = %s AND id = ANY(%s)",
                            (self.namespace_name, chunk))
                removed += cur.rowcount
            self._bump(cur)
        return removed

    def version(self) -> int:
        """A counter of this namespace's writes, so a process holding its units in RAM
        can tell that another one (a uvicorn worker) changed them."""
        sql = f"SELECT version FROM {self.table}_versions WHERE namespace = %s"
        rows = self._query(sql, (self.namespace_name,))
        return int(rows[0][0]) if rows else 0

    def _bump(self, cur: Any) -> None:
        cur.execute(f"INSERT INTO {self.table}_versions VALUES (%s, 1) ON CONFLICT (namespace) "
                    f"DO UPDATE SET version = {self.table}_versions.version + 1",
                    (self.namespace_name,))

    def count(self) -> int:
        sql = f"SELECT COUNT(*) FROM {self.table} WHERE namespace = %s"
        return int(self._query(sql, (self.namespace_name,))[0][0])

    def namespaces(self) -> list[str]:
        rows = self._query(f"SELECT DISTINCT namespace FROM {self.table} ORDER BY namespace", ())
        return [r[0] for r in rows]

    def namespace(self, name: str) -> PgvectorStore:
        """The same table seen as namespace ``name`` (shares this connection)."""
        view = PgvectorStore(dsn=self.dsn, namespace=name, table=self.table, hnsw_m=self.hnsw_m,
                             ef_construction=self.ef_construction, ef_search=self.ef_search)
        view._conn, view._lock, view._indexed = self._db(), self._lock, self._indexed
        return view

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _db(self) -> Any:
        with self._lock:
            if self._conn is None:
                self._conn = self._connect()
            return self._conn

    def check_params(self) -> None:
        """Raise a ConfigError for a table that is not a plain SQL name or HNSW settings
        out of range (config validation runs it; the server is not asked, and a dsn may
        still come from MEMLAB_PG_DSN at run time)."""
        if not isinstance(self.table, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*",
                                                               self.table):
            raise ConfigError(f"pgvector store: table {self.table!r} is not a plain SQL name")
        check_number("pgvector store: hnsw_m", self.hnsw_m, low=2, high=100, integer=True)
        check_number("pgvector store: ef_construction", self.ef_construction,
                     low=2 * self.hnsw_m, high=1000, integer=True)
        check_number("pgvector store: ef_search", self.ef_search, low=1, high=1000,
                     integer=True)

    def _connect(self) -> Any:
        dsn = self.dsn or os.environ.get("MEMLAB_PG_DSN")
        if not dsn:
            raise ConfigError("pgvector store: no dsn (set the store's dsn parameter or "
                              "MEMLAB_PG_DSN, e.g. postgresql://user@host:5432/memlab)")
        self.check_params()
        try:
            import psycopg
        except ImportError as exc:
            raise MemlabError("the pgvector store needs psycopg (pip install -e '.[cluster]')"
                              ) from exc
        try:
            conn = psycopg.connect(dsn, autocommit=True)
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                conn.execute(_schema(self.table))
        except psycopg.Error as exc:
            raise MemlabError(f"pgvector store {_safe(dsn)}: cannot open: {exc}") from exc
        return conn

    def _tx(self) -> Any:
        return _Transaction(self)

    def _query(self, sql: str, args: Any) -> list[tuple[Any, ...]]:
        with self._tx() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())

    def _select(self, columns: str, ids: Sequence[str]) -> Iterator[tuple[Any, ...]]:
        sql = f"SELECT {columns} FROM {self.table} WHERE namespace = %s AND id = ANY(%s)"
        for chunk in _chunks(ids):
            yield from self._query(sql, (self.namespace_name, chunk))

    def _stored_dim(self) -> int | None:
        sql = (f"SELECT dim FROM {self.table} WHERE namespace = %s AND dim IS NOT NULL "
               "LIMIT 1")
        rows = self._query(sql, (self.namespace_name,))
        return None if not rows else int(rows[0][0])

    def _check_dim(self, dim: int) -> None:
        stored = self._stored_dim()
        if stored is not None and stored != dim:
            raise MemlabError(f"{self._where}: vectors of dim {dim} cannot join stored ones "
                              f"of dim {stored}")

    def _ensure_index(self, dim: int, work_mem: str | None = None) -> None:
        """A partial HNSW index over the rows of this dimension (once per process)."""
        if dim in self._indexed:
            return
        with self._tx() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
            if work_mem:  # building over many rows: the graph fits in memory, faster
                cur.execute(f"SET LOCAL maintenance_work_mem = '{work_mem}'")
            cur.execute(f"CREATE INDEX IF NOT EXISTS {self.table}_hnsw_{dim} ON {self.table} "
                        f"USING hnsw ((vector::vector({dim})) vector_ip_ops) "
                        f"WITH (m = {int(self.hnsw_m)}, "
                        f"ef_construction = {int(self.ef_construction)}) WHERE dim = {dim}")
        self._indexed.add(dim)


class _Transaction:
    """One transaction on the store's connection, holding its lock (threads share it)."""

    def __init__(self, store: PgvectorStore) -> None:
        self.store = store
        self._tx: Any = None
        self._cur: Any = None

    def __enter__(self) -> Any:
        import psycopg

        self.store._lock.acquire()
        try:
            conn = self.store._db()
            self._tx = conn.transaction()
            self._tx.__enter__()
            self._cur = conn.cursor()
        except (psycopg.Error, MemlabError):
            self.store._lock.release()
            raise
        return self._cur

    def __exit__(self, *exc: Any) -> None:
        import psycopg

        try:
            self._cur.close()
            self._tx.__exit__(*exc)
        except psycopg.Error as error:
            raise MemlabError(f"{self.store._where}: {error}") from error
        finally:
            self.store._lock.release()
        if exc[0] is not None and issubclass(exc[0], psycopg.Error):
            raise MemlabError(f"{self.store._where}: {exc[1]}") from exc[1]


def check_work_mem(value: str, where: str) -> str:
    """``value`` if it is a PostgreSQL size such as '1GB' (it is put into SQL), else a
    ConfigError naming ``where``."""
    if not re.fullmatch(r"\d+\s*[kMG]?B", value):
        raise ConfigError(f"{where}: maintenance_work_mem {value!r} is not a size such as "
                          "'1GB'")
    return value


def _schema(table: str) -> str:
    return f"""
CREATE TABLE IF NOT EXISTS {table} (
    seq BIGSERIAL PRIMARY KEY,
    namespace TEXT NOT NULL,
    id TEXT NOT NULL,
    text TEXT NOT NULL,
    kind TEXT NOT NULL,
    source_turn_ids TEXT NOT NULL,
    session_id TEXT NOT NULL,
    at TEXT NOT NULL,
    at_us BIGINT NOT NULL,
    metadata TEXT NOT NULL,
    dim INTEGER,
    vector vector,
    UNIQUE (namespace, id)
);
CREATE INDEX IF NOT EXISTS {table}_by_time ON {table} (namespace, at_us);
CREATE TABLE IF NOT EXISTS {table}_versions (namespace TEXT PRIMARY KEY, version BIGINT NOT NULL);
"""


def _literal(row: np.ndarray) -> str:
    """pgvector's text form; ``repr`` of each float32 widened to float64 is exact."""
    return "[" + ",".join(repr(float(x)) for x in np.asarray(row, dtype=np.float32)) + "]"


def _parse(text: str) -> np.ndarray:
    return np.array(text[1:-1].split(","), dtype=np.float32)


def _safe(dsn: str) -> str:
    """The DSN without its password."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", dsn)


def _chunks(ids: Sequence[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), _CHUNK):
        yield list(ids[start : start + _CHUNK])
