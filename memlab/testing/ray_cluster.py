"""A throwaway Ray cluster on 127.0.0.1 (``ray start --head --block``), for tests.

Its processes (GCS, raylet, workers) run in a process group of their own, which
``stop()`` ends (SIGTERM, then SIGKILL), so nothing outlives the test; its temp directory
is private. ``address`` is what ``--executor ray --address`` takes.

Usage::

    with LocalRay(num_cpus=2) as cluster:
        sweep(config, executor=RayExecutor(address=cluster.address))
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from memlab.errors import MemlabError
from memlab.testing.postgres import free_port

#: ``ray start`` gives the raylet a fixed 30 s to register, which two busy cores can miss.
_ATTEMPTS = 4


class LocalRay:
    """``start()`` -> a running head node (``address``); ``stop()`` ends every process of it."""

    def __init__(self, num_cpus: int = 2, port: int = 0,
                 env: dict[str, str] | None = None) -> None:
        self.num_cpus = num_cpus
        self.port = port
        self.env = env
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self._port = 0

    @property
    def address(self) -> str:
        if self._proc is None:
            raise MemlabError("LocalRay is not running")
        return f"127.0.0.1:{self._port}"

    def start(self) -> LocalRay:
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                self._start_once()
                return self
            except MemlabError:
                if attempt == _ATTEMPTS:
                    raise
        return self

    def _start_once(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="ray-"))
        self._port = self.port or free_port()
        command = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
                   "--node-ip-address", "127.0.0.1", "--port", str(self._port),
                   "--num-cpus", str(self.num_cpus), "--temp-dir", str(self._dir),
                   "--include-dashboard", "false", "--disable-usage-stats"]
        log = (self._dir / "head.log").open("wb")
        self._proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                      env={**os.environ, **(self.env or {})},
                                      start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self._proc is None:
            return
        import psutil

        for _ in range(3):  # the raylet may start a worker while the others end
            procs = self._processes()
            if not procs:
                break
            for proc in procs:
                _signal(proc, "terminate")
            _, alive = psutil.wait_procs(procs, timeout=5)
            for proc in alive:
                _signal(proc, "kill")
            psutil.wait_procs(alive, timeout=5)
        self._proc.wait(timeout=10)
        self._proc = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    def worker_pids(self, name: str) -> list[int]:
        """Pids of this cluster's workers running a task named ``name`` (``ray::name``)."""
        return [p.pid for p in self._processes()
                if " ".join(_cmdline(p)).startswith(f"ray::{name}")]

    def _processes(self) -> list[Any]:
        """Every live process of this cluster: the ``ray start`` process group (GCS,
        raylet...), their descendants (workers start sessions of their own and retitle
        themselves ``ray::...``) and orphans that still name our temp dir."""
        import psutil

        assert self._proc is not None
        mine: dict[int, Any] = {}
        for proc in psutil.process_iter():
            try:
                if os.getpgid(proc.pid) == self._proc.pid or \
                        any(str(self._dir) in part for part in _cmdline(proc)):
                    mine[proc.pid] = proc
                    for child in proc.children(recursive=True):
                        mine[child.pid] = child
            except (ProcessLookupError, psutil.Error):
                continue
        mine.pop(os.getpid(), None)
        return list(mine.values())

    def __enter__(self) -> LocalRay:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        assert self._proc is not None and self._dir is not None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                text = (self._dir / "head.log").read_text(errors="replace")[-3000:]
                raise MemlabError(f"ray start exited ({self._proc.returncode}): {text}")
            if "will now block forever" in (self._dir / "head.log").read_text(errors="replace"):
                with socket.socket() as sock:
                    if sock.connect_ex(("127.0.0.1", self._port)) == 0:
                        return
            time.sleep(0.5)
        raise MemlabError("ray start did not come up in 180 s")


def _cmdline(proc: Any) -> list[str]:
    import psutil

    try:
        return list(proc.cmdline())
    except psutil.Error:
        return []


def _signal(proc: Any, action: str) -> None:
    import psutil

    with contextlib.suppress(psutil.Error):
        getattr(proc, action)()
