"""The core memory block of ``tiered``: a few persistent facts, always in the prompt.

Letta keeps a small editable block (the "human" and "persona" facts) in every prompt.
Here it is a list of lines, each with the turns it came from, capped at ``max_tokens``
Qwen tokens: new lines are appended; a line that nearly repeats one already there
(word-set Jaccard >= ``similarity``) replaces that line, as the newest one, when
``repeat`` is ``replace`` (an update: "phone 555 9876" after "phone 555 1234"), or is
dropped when it is ``skip``; a line with the very same words is dropped either way. The
oldest lines go first when the block outgrows its budget. :attr:`CoreBlock.change` says
what the last :meth:`CoreBlock.add` did. Every change makes a new *version* - a ``core`` memory unit
dated when the change happened - so a search ``as_of`` a past time shows the block as
it was then, and the block's source turn ids are those of its lines.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from memlab.chunkers.base import MemoryUnit
from memlab.memory.support import merged_ids
from memlab.tokens import count_tokens

CORE_SESSION = "core"
#: What a line nearly repeating one of the block does (see the module docstring).
REPEATS = ("replace", "skip")


@dataclass(frozen=True, slots=True)
class CoreLine:
    """One fact of the block and where it came from."""

    text: str
    source_turn_ids: tuple[str, ...]
    at: datetime

    def record(self) -> dict[str, Any]:
        return {"text": self.text, "source_turn_ids": self.source_turn_ids, "at": self.at}


@dataclass(frozen=True, slots=True)
class CoreChange:
    """What one :meth:`CoreBlock.add` did: lines replaced (old text, new text), new lines
    dropped as repeats, old lines evicted to fit the budget."""

    replaced: tuple[tuple[str, str], ...] = ()
    skipped: tuple[str, ...] = ()
    evicted: tuple[str, ...] = ()


class CoreBlock:
    """Versions of the core block; ``at(as_of)`` is the version a prompt at that time shows."""

    def __init__(self, max_tokens: int = 200, similarity: float = 0.8,
                 repeat: str = "replace") -> None:
        self.max_tokens = max_tokens
        self.similarity = similarity
        self.repeat = repeat
        self.versions: list[MemoryUnit] = []
        self.change = CoreChange()

    def load(self, units: Sequence[MemoryUnit]) -> None:
        """Restore versions read back from a store."""
        self.versions = sorted((u for u in units if u.kind == "core"),
                               key=lambda u: u.metadata.get("version", 0))

    def at(self, as_of: datetime | None = None) -> MemoryUnit | None:
        """The latest version dated no later than ``as_of`` (None: the current one)."""
        shown = [v for v in self.versions if as_of is None or v.at <= as_of]
        return shown[-1] if shown else None

    def lines(self, as_of: datetime | None = None) -> list[CoreLine]:
        version = self.at(as_of)
        if version is None:
            return []
        return [CoreLine(str(line["text"]), tuple(line["source_turn_ids"]), line["at"])
                for line in version.metadata.get("lines", [])]

    def add(self, new: Sequence[CoreLine]) -> MemoryUnit | None:
        """Add ``new`` lines (a near-repeat replaces or is skipped, see ``repeat``); the new
        version, or None if unchanged. :attr:`change` says what happened."""
        lines = self.lines()
        seen = [_words(line.text) for line in lines]
        added, replaced, skipped = [], [], []
        for line in new:
            words = _words(line.text)
            if not line.text.strip():
                continue
            close = next((n for n, s in enumerate(seen)
                          if _jaccard(words, s) >= self.similarity), None)
            if close is None:
                lines.append(line)
                seen.append(words)
            elif self.repeat == "replace" and words != seen[close]:
                replaced.append((lines[close].text, line.text))
                del lines[close], seen[close]  # the update is the newest line: last to go
                lines.append(line)
                seen.append(words)
            else:
                skipped.append(line.text)
                continue
            added.append(line)
        kept = self._fit(lines)
        self.change = CoreChange(tuple(replaced), tuple(skipped),
                                 tuple(line.text for line in lines[:len(lines) - len(kept)]))
        if not added:
            return None
        return self._commit(kept, max(line.at for line in added))

    def _fit(self, lines: list[CoreLine]) -> list[CoreLine]:
        """Drop the oldest lines until the block fits ``max_tokens`` (the newest always
        stays); the lines kept are a tail of ``lines``."""
        while len(lines) > 1 and count_tokens(_text(lines)) > self.max_tokens:
            lines = lines[1:]
        return lines

    def _commit(self, lines: list[CoreLine], at: datetime) -> MemoryUnit:
        previous = self.at()
        if previous is not None and previous.at > at:
            at = previous.at  # versions never go back in time
        number = len(self.versions) + 1
        unit = MemoryUnit(
            id=f"{CORE_SESSION}/{number}", text=_text(lines), kind="core",
            source_turn_ids=merged_ids(*(line.source_turn_ids for line in lines)),
            session_id=CORE_SESSION, at=at,
            metadata={"tier": "core", "version": number,
                      "lines": [line.record() for line in lines]},
        )
        self.versions.append(unit)
        return unit


def _text(lines: Sequence[CoreLine]) -> str:
    return "\n".join(f"- {line.text}" for line in lines)


def _words(text: str) -> frozenset[str]:
    return frozenset(re.findall(r"\w+", text.casefold()))


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0
