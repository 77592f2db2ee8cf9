"""Waiting for a server a test started: until a URL answers 200, the process dies, or a
deadline passes (each failure says why, with the server's log)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def wait_until_serving(url: str, proc: subprocess.Popen[bytes], log: Path, *,
                       timeout: float = 120.0, interval: float = 0.3) -> None:
    """Return once ``url`` answers 200; AssertionError if ``proc`` exits or time runs out."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"server exited ({proc.returncode}): {log.read_text()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"server did not start: {log.read_text()}")
        time.sleep(interval)
