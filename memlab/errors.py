"""The exceptions memlab raises on purpose.

Every error a user can cause (a bad file, a bad config, an unknown component name)
is a :class:`MemlabError`, so callers can catch one type and show its message, which
always says *where* the problem is.
"""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any


class MemlabError(Exception):
    """Base class of every error memlab raises deliberately."""


class MemlabWarning(UserWarning):
    """Something a user should know that does not stop the work (the command-line tools
    print it as a ``warning: ...`` line)."""


class DatasetError(MemlabError, ValueError):
    """A dataset file that cannot be read as its format says.

    The message names the file, the record (index or id) and the field, e.g.
    ``locomo10.json: record 3 (conv-41): field 'qa[7].category': expected int, got str``.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        record: str | int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.record = record
        self.field = field
        self.reason = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.path is not None:
            where.append(self.path)
        if self.record is not None:
            where.append(f"record {self.record}")
        if self.field is not None:
            where.append(f"field '{self.field}'")
        return ": ".join([*where, self.reason]) if where else self.reason


class StorageError(MemlabError):
    """A data file (a SQLite store, the agent's conversation log) that cannot be opened or
    used: the disk, permissions or file descriptors, not the model backend."""


class ConfigError(MemlabError, ValueError):
    """An experiment configuration or component spec that is not valid."""


class UnknownComponentError(ConfigError, KeyError):
    """A component name that no registry knows; the message lists close matches."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


def did_you_mean(name: str, known: Iterable[str], *, n: int = 1, cutoff: float = 0.6) -> str:
    """``did you mean 'a' or 'b'?`` for the (at most ``n``) entries of ``known`` closest to
    a misspelt ``name`` (difflib's ratio >= ``cutoff``); "" when none is that close."""
    close = difflib.get_close_matches(name, sorted(known), n=n, cutoff=cutoff)
    return f"did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def check_choice(what: str, value: object, choices: Collection[str]) -> None:
    """Raise a ConfigError unless ``value`` is one of ``choices``; the message reads
    ``{what} {value!r} is not known; valid choices: ...`` (``what`` names the component and
    its parameter, e.g. ``time_aware mode``)."""
    if value not in choices:
        raise ConfigError(f"{what} {value!r} is not known; "
                          f"valid choices: {', '.join(choices)}")


def check_number(what: str, value: object, *, low: float | None = None,
                 high: float | None = None, low_open: bool = False, high_open: bool = False,
                 integer: bool = False, optional: bool = False) -> None:
    """Raise a ConfigError unless ``value`` is a number (an ``integer``) within the bounds
    (``low_open``/``high_open``: the bound itself is excluded; ``optional``: None passes);
    the message reads ``{what} must be an integer >= 1, got 0`` (``what`` names the
    component and its parameter, e.g. ``llm 'llamacpp': n_ctx``)."""
    if value is None and optional:
        return
    kind = numbers.Integral if integer else numbers.Real
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if ok:
        number = float(value)  # type: ignore[arg-type]
        ok = number == number and (  # NaN is never within bounds
            (low is None or (number > low if low_open else number >= low))
            and (high is None or (number < high if high_open else number <= high)))
    if not ok:
        raise ConfigError(f"{what} must be {_describe(low, high, low_open, high_open, integer)}"
                          f"{' or null' if optional else ''}, got {value!r}")


def check_numbers(owner: str, values: Mapping[str, object],
                  bounds: Mapping[str, Mapping[str, Any]]) -> None:
    """:func:`check_number` on each of ``values`` that ``bounds`` names, in the order of
    ``values``; messages read ``{owner}: {key} must be ...``."""
    for key, value in values.items():
        if key in bounds:
            check_number(f"{owner}: {key}", value, **bounds[key])


def _describe(low: float | None, high: float | None, low_open: bool, high_open: bool,
              integer: bool) -> str:
    noun = "an integer" if integer else "a number"
    if low is not None and high is not None:
        return (f"{noun} in {'(' if low_open else '['}{low:g}, {high:g}"
                f"{')' if high_open else ']'}")
    if low is not None:
        return f"{noun} {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{noun} {'<' if high_open else '<='} {high:g}"
    return noun
