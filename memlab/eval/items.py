"""``items.jsonl``: one row per probe, appended as probes finish, read back to resume.

Rows are written a conversation at a time with one ``write`` + flush + fsync, so a run
killed at any moment loses at most the probes in flight; a truncated last line (killed
mid-write) is ignored on resume and rewritten.

Lines are compact JSON with sorted keys, written and read by ``orjson`` (a LoCoMo run's
items are ~8 MB, and the standard library's json took a third of a warm retrieval
run's bookkeeping). NaN and infinities are written as ``null`` (strict JSON, and how
memlab reads a missing metric anyway); values JSON has no type for are written as their
``str()``, as ``json.dumps(default=str)`` does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from memlab.errors import MemlabError

#: Fields that measure time; everything else must be identical between two runs of the
#: same config with warm caches.
TIMING_FIELDS = ("seconds", "latency")


def read_items(path: Path, *, resuming: bool = False) -> list[dict[str, Any]]:
    """Complete rows of an items file. A partial final line from a kill is dropped when
    ``resuming`` or while the run is unfinished; in a finished run's file (beside its
    ``metrics.json``) it is damage. A line that is not JSON is a MemlabError naming the
    file and line."""
    if not path.exists():
        return []
    rows: list[dict[str, Any]] = []
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.endswith("\n"):
                if not resuming and (path.parent / "metrics.json").exists():
                    raise MemlabError(f"{path}: damaged: line {number}, the last, is cut "
                                      f"off in a finished run ({len(rows)} complete rows "
                                      "before it); re-run the config into a new directory")
                break  # interrupted mid-write
            try:
                rows.append(_loads(line))
            except (orjson.JSONDecodeError, ValueError):
                raise MemlabError(f"{path}: damaged: line {number} is not a JSON row "
                                  f"(starts {line[:40]!r}); the {len(rows)} rows before "
                                  "it read fine") from None
    return rows


def repair(path: Path) -> list[dict[str, Any]]:
    """Read complete rows and rewrite the file without any partial final line (before a
    run appends to it again)."""
    rows = read_items(path, resuming=True)
    if path.exists() and path.stat().st_size and not _ends_with_newline(path):
        _rewrite(path, rows)
    return rows


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def compact(path: Path) -> list[dict[str, Any]]:
    """Keep only the latest row of each probe (after errored probes were run again), so
    nothing reading the file counts a probe twice; rewritten atomically."""
    latest = {row["probe_id"]: row for row in read_items(path)}  # first place, last row
    rows = list(latest.values())
    _rewrite(path, rows)
    return rows


def _rewrite(path: Path, rows: list[dict[str, Any]]) -> None:
    """Replace ``path`` with ``rows`` atomically (a temporary file, then a rename)."""
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(dumps(row))
    os.replace(tmp, path)


def dumps(row: dict[str, Any]) -> str:
    """One items.jsonl line (with its newline)."""
    try:
        return orjson.dumps(row, option=_OPTIONS, default=_default).decode("utf-8")
    except TypeError:  # an integer beyond 64 bits: the standard library has no limit
        return json.dumps(row, sort_keys=True, ensure_ascii=False, default=str) + "\n"


_OPTIONS = (orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE
            | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS)


def _default(value: Any) -> Any:
    """What json.dumps(default=str) would write: float subclasses (numpy.float64) as
    numbers, everything else unknown as its ``str()``."""
    return float(value) if isinstance(value, float) else str(value)


def _loads(line: str) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:  # NaN / Infinity tokens of files json.dumps wrote
        return json.loads(line)


class ItemWriter:
    """Appends rows durably."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh = path.open("a", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        self.write_all([row])

    def write_all(self, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Append ``rows`` and make them durable with one fsync (a conversation's rows);
        returns them as reading the file back would (parsed from the written lines)."""
        lines = [dumps(row) for row in rows]
        self._fh.write("".join(lines))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        return [_loads(line) for line in lines]

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> ItemWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def without_timing(row: dict[str, Any]) -> dict[str, Any]:
    """A row with every timing field removed, for reproducibility comparisons."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if any(t in key for t in TIMING_FIELDS):
            continue
        out[key] = without_timing(value) if isinstance(value, dict) else value
    return out
