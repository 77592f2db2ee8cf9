"""The sentences inside indexed units, as a second index ``multigrain`` can score.

A sentence embedder sees one window of text (MiniLM: 256 word pieces, the rest cut off)
and averages the topics in it, so a fact mentioned in passing inside a long turn ("...
By the way, I finally went to see my doctor") is matched weakly or not at all. Indexing
each unit's sentences on their own and scoring a unit by its best sentence finds it.

:func:`sentences` splits a unit's text: each ``Speaker: text`` line loses its speaker
prefix and is cut after ``.``, ``!`` or ``?`` followed by white space; pieces of fewer
than ``min_words`` words are dropped (greetings, "Thanks!"), and a unit with no piece
left keeps its whole text as one. :class:`SentenceIndex` indexes each distinct sentence
once (``sentence`` units, ``{session}/sentence/{n}``), dated when the first unit holding
it became known, so ``as_of`` holds: a sentence is never visible before a unit showing it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from memlab.chunkers.base import MemoryUnit
from memlab.retrieval.turns import FineIndex

if TYPE_CHECKING:
    from memlab.retrieval.base import Hit
    from memlab.retrieval.wrap import BaseSpec

_BREAK = re.compile(r"(?<=[.!?])\s+")
_SPEAKER = re.compile(r"^[^:\n]{1,40}: ")


def sentences(text: str, min_words: int = 3) -> list[str]:
    """The distinct sentences of ``text`` with at least ``min_words`` words, in order
    (speaker prefixes removed); the whole text if none is left."""
    out: list[str] = []
    for line in text.split("\n"):
        body = _SPEAKER.sub("", line, count=1)
        for piece in _BREAK.split(body):
            piece = piece.strip()
            if len(piece.split()) >= min_words and piece not in out:
                out.append(piece)
    return out or [text.strip()]


class SentenceIndex(FineIndex):
    """The distinct sentences of indexed units; ``holders`` maps a sentence unit's id to
    the indexed units showing that sentence."""

    def __init__(self, spec: BaseSpec, min_words: int = 3) -> None:
        super().__init__(spec)
        self.min_words = min_words
        self._ids: dict[str, str] = {}  # sentence text -> its unit id
        self._of: dict[str, tuple[str, ...]] = {}  # indexed unit id -> its sentence ids
        self._pieces: dict[str, MemoryUnit] = {}

    def add(self, units: Sequence[MemoryUnit]) -> None:
        """Index the new sentences of ``units``; a sentence already indexed is re-dated
        (re-indexed) when a unit known earlier shows it."""
        from memlab.retrieval.wrap import index_base

        changed: dict[str, MemoryUnit] = {}
        for unit in units:
            ids = []
            for text in sentences(unit.text, self.min_words):
                sid = self._ids.get(text)
                if sid is None:
                    sid = self._ids[text] = f"{unit.session_id}/sentence/{len(self._ids)}"
                ids.append(sid)
                held = self.holders.setdefault(sid, [])
                if unit not in held:
                    held.append(unit)
                piece = self._pieces.get(sid)
                if piece is None or unit.at < piece.at:
                    piece = MemoryUnit(sid, text, "sentence", unit.source_turn_ids,
                                       unit.session_id, unit.at)
                    self._pieces[sid] = changed[sid] = piece
            self._of[unit.id] = tuple(ids)
        if changed:
            index_base(self.strategy, list(changed.values()))

    def key(self, hit: Hit) -> str:
        return hit.unit.id

    def keys(self, unit: MemoryUnit) -> tuple[str, ...]:
        """The sentence ids of an indexed unit (none for a unit never indexed)."""
        return self._of.get(unit.id, ())
