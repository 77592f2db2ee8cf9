"""Reading raw dataset files so every failure names file, record and field.

Loaders never index raw JSON directly; they go through :func:`read_json` /
:func:`read_jsonl` and a :class:`Fields` view of each record, which raise
:class:`~memlab.errors.DatasetError` with the full location. A field holding ``NaN`` or
``Infinity`` (or ``1e400``, read as infinity) is an error at that field (metadata is
checked by :mod:`memlab.data.checks`); text that is not UTF-8 and nesting too deep for
the parser are errors naming the file and line. :func:`located` turns
whatever else a loader trips over into a DatasetError naming the file, so a malformed
file never ends in a bare traceback.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable, Collection, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from memlab.errors import DatasetError, did_you_mean

T = TypeVar("T")

_TYPE_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean",
               list: "list", dict: "object", type(None): "null"}


def _type_name(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _expected(types: type | tuple[type, ...]) -> str:
    types = types if isinstance(types, tuple) else (types,)
    names = dict.fromkeys(_TYPE_NAMES.get(t, t.__name__) for t in types)
    if "integer" in names and "number" in names:
        del names["integer"]  # an int is a number; say it once
    return " or ".join(names)


def open_path(path: str | Path) -> Path:
    """``path`` as a Path that exists and is a file, else a DatasetError saying so."""
    p = Path(path).expanduser()
    if not p.exists():
        where = "" if p.is_absolute() else f" (a relative path is read from {Path.cwd()})"
        from memlab.data.paths import benchmark_dir

        folder = benchmark_dir()
        if p.parent == folder:  # a benchmark file looked for in the default folder
            origin = ("MEMLAB_DATASETS" if os.environ.get("MEMLAB_DATASETS")
                      else "the default ../shared/datasets beside the checkout; set "
                      "MEMLAB_DATASETS to the folder holding the benchmark files")
            where += (f" (benchmark folder from {origin}"
                      + ("" if folder.is_dir() else ", which does not exist") + ")")
        raise DatasetError(f"file not found{where}", path=p)
    if not p.is_file():
        raise DatasetError("not a file", path=p)
    return p


def read_json(path: str | Path) -> Any:
    """Parse a whole JSON file; invalid JSON names line and column."""
    p = open_path(path)
    try:
        text = p.read_bytes().decode("utf-8-sig")  # a byte-order mark is not content
    except UnicodeDecodeError as exc:
        raise DatasetError(f"not UTF-8 text: {exc.reason} at byte {exc.start}", path=p) from None
    return loads_strict(text, p, None)


def read_jsonl(path: str | Path) -> list[Any]:
    """Parse a JSON Lines file (blank lines skipped); records are numbered by line."""
    return [record for _, record in jsonl_lines(open_path(path))]


def jsonl_lines(p: Path) -> Iterable[tuple[int, Any]]:
    """``(line number, record)`` of a JSON Lines file, blank lines skipped."""
    lineno = 0
    try:
        with p.open("r", encoding="utf-8-sig") as fh:
            for lineno, line in enumerate(fh, start=1):
                if line.strip():
                    yield lineno, loads_strict(line, p, f"line {lineno}")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"not UTF-8 text: {exc.reason}", path=p,
                           record=f"line {lineno + 1}") from None


def loads_strict(text: str, path: Path, record: str | None) -> Any:
    """One JSON document; errors (with line and column for a whole file) name ``path``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        at = (f"line {exc.lineno}, column {exc.colno}" if record is None
              else f"column {exc.colno}")
        reason = exc.msg.removesuffix(" at")  # "Invalid control character at" + position
        raise DatasetError(f"invalid JSON at {at}: {reason}", path=path,
                           record=record) from None
    except RecursionError:
        raise DatasetError("JSON nested too deeply to read", path=path, record=record) from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise DatasetError(f"JSON that cannot be read: {exc}", path=path,
                           record=record) from None


def located(load: Callable[..., T]) -> Callable[..., T]:
    """A loader whose unexpected failures (dates out of range, nesting, bad bytes) become
    DatasetErrors naming the file it was given, instead of bare tracebacks."""
    @functools.wraps(load)
    def wrapper(path: Any = None, *args: Any, **kwargs: Any) -> T:
        try:
            return load(*([] if path is None else [path]), *args, **kwargs)
        except DatasetError:
            raise
        except (RecursionError, OverflowError, UnicodeError, ValueError, KeyError,
                IndexError, AttributeError) as exc:
            if isinstance(exc, ValueError) and type(exc).__module__.startswith("memlab"):
                raise  # ConfigError: an option, not the file
            raise DatasetError(f"cannot be read ({type(exc).__name__}: {exc})",
                               path=path) from exc

    return wrapper


class Fields:
    """A raw JSON object seen as one record of one file, for located errors.

    ``prefix`` is the path of this object inside the record (``"sessions[2]"``), so
    nested fields are reported as ``sessions[2].turns[5].text``.
    """

    __slots__ = ("path", "prefix", "raw", "record")

    def __init__(self, raw: Any, *, path: str | Path | None, record: str | int | None,
                 prefix: str = "") -> None:
        self.path = path
        self.record = record
        self.prefix = prefix
        if not isinstance(raw, dict):
            raise self.error(f"expected an object, got {_type_name(raw)}", field=prefix or None)
        self.raw: dict[str, Any] = raw

    def where(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def error(self, message: str, *, field: str | None = None) -> DatasetError:
        return DatasetError(message, path=self.path, record=self.record, field=field)

    def has(self, key: str) -> bool:
        return key in self.raw

    def near_misses(self, known: Collection[str]) -> None:
        """A DatasetError for a key that is not in ``known`` but looks like one of them
        (``startedAt``, ``categroy``): where other keys are allowed and ignored or kept as
        metadata, a misspelt one would otherwise be dropped without a word."""
        spelt = {k.replace("_", "").lower(): k for k in known}
        for key in self.raw:
            if key in known:
                continue
            same = spelt.get(key.replace("_", "").lower())
            hint = f"did you mean {same!r}?" if same else did_you_mean(key, known, cutoff=0.8)
            if hint:
                raise self.error(f"unknown field; {hint}", field=self.where(key))

    def get(self, key: str, types: type | tuple[type, ...], default: Any = ...) -> Any:
        """The value at ``key``, checked against ``types``; missing -> default or error."""
        if key not in self.raw:
            if default is ...:
                raise self.error("missing required field", field=self.where(key))
            return default
        value = self.raw[key]
        allowed = types if isinstance(types, tuple) else (types,)
        # bool is an int subclass; never accept it where a number is meant.
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise self.error(
                f"expected {_expected(types)}, got {_type_name(value)} ({_short(value)})",
                field=self.where(key),
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise self.error(f"non-finite number {value} (expected a finite number)",
                             field=self.where(key))
        return value

    def child(self, key: str, value: Any | None = None) -> Fields:
        """A nested object at ``key`` (or the given value, reported under ``key``)."""
        raw = self.get(key, dict) if value is None else value
        return Fields(raw, path=self.path, record=self.record, prefix=self.where(key))

    def children(self, key: str) -> list[Fields]:
        """The list of objects at ``key``."""
        return [
            Fields(item, path=self.path, record=self.record, prefix=f"{self.where(key)}[{i}]")
            for i, item in enumerate(self.get(key, list))
        ]

    def strings(self, key: str, default: Any = ...) -> list[str]:
        values = self.get(key, list, default)
        for i, v in enumerate(values):
            if not isinstance(v, str):
                raise self.error(f"expected string, got {_type_name(v)} ({_short(v)})",
                                 field=f"{self.where(key)}[{i}]")
        return list(values)

    def datetime(self, key: str, parse: Callable[[str], datetime], default: Any = ...) -> Any:
        """A timestamp string parsed by ``parse``; unparseable -> located error."""
        raw = self.get(key, str, default)
        if raw is default and default is not ...:
            return default
        return parse_with(parse, raw, self, self.where(key))


def parse_with(parse: Callable[[str], datetime], raw: str, fields: Fields, field: str) -> datetime:
    try:
        return as_utc(parse(raw))
    except (ValueError, TypeError, OverflowError) as exc:
        raise fields.error(f"unparseable date {raw!r} ({exc})", field=field) from None


def as_utc(value: datetime) -> datetime:
    """Aware datetimes are converted to UTC; naive ones are taken to be UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_iso(raw: str) -> datetime:
    """ISO-8601 (``2023-05-08T13:56:00``, with or without zone, ``Z`` allowed)."""
    return datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)


def strptime_any(formats: Iterable[str]) -> Callable[[str], datetime]:
    """A parser trying each ``strptime`` format in turn."""
    formats = tuple(formats)

    def parse(raw: str) -> datetime:
        for fmt in formats:
            try:
                return datetime.strptime(raw.strip(), fmt)
            except ValueError:
                continue
        raise ValueError(f"matches none of the formats {', '.join(formats)}")

    return parse


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
