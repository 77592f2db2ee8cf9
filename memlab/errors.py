"""The exceptions memlab raises on purpose.

Every error a user can cause (a bad file, a bad config, an unknown component name)
is a :class:`MemlabError`, so callers can catch one type and show its message, which
always says *where* the problem is.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path


class MemlabError(Exception):
    """Base class of every error memlab raises deliberately."""


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


def check_choice(what: str, value: object, choices: Collection[str]) -> None:
    """Raise a ConfigError unless ``value`` is one of ``choices``; the message reads
    ``{what} {value!r} is not known; valid choices: ...`` (``what`` names the component and
    its parameter, e.g. ``time_aware mode``)."""
    if value not in choices:
        raise ConfigError(f"{what} {value!r} is not known; "
                          f"valid choices: {', '.join(choices)}")
