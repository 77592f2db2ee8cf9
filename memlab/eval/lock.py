"""One process per run directory: an advisory lock on ``<run_dir>/.lock``.

Two processes writing one run directory used to end correctly only by luck (resuming
rewrites ``items.jsonl`` under the other writer). The first process to open a run
directory takes an exclusive ``flock`` on its ``.lock`` file (recording its pid); a
second process fails at once with a message naming the directory and that pid. The
lock is the process's: it is released when the run ends or the process exits (even
killed: the kernel drops it), and the same process may open the directory again.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from memlab.errors import ConfigError

LOCK_NAME = ".lock"
_held: dict[Path, IO[str]] = {}


def lock_run_dir(run_dir: Path) -> None:
    """Take the run directory's lock, or raise ConfigError if another process holds it."""
    key = run_dir.resolve()
    if key in _held:
        return
    handle = (run_dir / LOCK_NAME).open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise ConfigError(f"{run_dir} is in use by another memlab process (pid {holder}); "
                          "wait for it to finish, or choose another --out directory") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    _held[key] = handle


def unlock_run_dir(run_dir: Path) -> None:
    """Release the lock taken by :func:`lock_run_dir` (nothing if not held)."""
    handle = _held.pop(run_dir.resolve(), None)
    if handle is not None:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
