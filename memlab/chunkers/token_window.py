"""Windows packed up to a token budget, counted with Qwen's exact BPE."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from memlab.chunkers.base import MemoryUnit
from memlab.chunkers.common import make_unit, require, turn_line, turns_text
from memlab.data.schema import Conversation, Session, Turn
from memlab.spec import Component
from memlab.tokens import DEFAULT_TOKENIZER, check_tokenizer, count_tokens, decode, encode


class TokenWindowChunker(Component):
    """Whole turns packed into units of at most ``max_tokens`` Qwen tokens.

    Consecutive windows share whole turns: the next window starts with the longest run
    of the previous window's last turns that fits in ``overlap`` tokens (never the
    whole previous window, so windows always advance). A turn longer than
    ``max_tokens`` on its own is cut at token boundaries into pieces of at most
    ``max_tokens`` tokens overlapping by ``overlap`` tokens (one unit each, metadata
    ``part``/``parts``); the window after it starts afresh. Cuts avoid splitting a
    multi-byte character. Every unit's text counts at most ``max_tokens`` tokens.
    """

    name = "token_window"
    bounds: ClassVar[Mapping[str, Mapping[str, Any]]] = {"max_tokens": {"low": 1, "integer": True}}

    def __init__(self, max_tokens: int = 256, overlap: int = 32,
                 tokenizer: str = DEFAULT_TOKENIZER) -> None:
        self.max_tokens = max_tokens
        self.overlap = overlap
        self.tokenizer = tokenizer

    def split(self, session: Session, context: Conversation | None = None) -> list[MemoryUnit]:
        self.check_params()
        units: list[MemoryUnit] = []
        window: list[Turn] = []
        pending = False  # does `window` hold a turn no unit has yet?
        for turn in session.turns:
            if self._count([turn]) > self.max_tokens:
                if pending:
                    units.append(self._unit(session, len(units), window))
                units.extend(self._pieces(session, len(units), turn))
                window, pending = [], False
                continue
            if self._count([*window, turn]) > self.max_tokens:
                if pending:
                    units.append(self._unit(session, len(units), window))
                window = self._tail(window)
                while window and self._count([*window, turn]) > self.max_tokens:
                    window.pop(0)
            window.append(turn)
            pending = True
        if pending:
            units.append(self._unit(session, len(units), window))
        return units

    def check_params(self) -> None:
        """Raise a ConfigError for an invalid parameter (config validation runs it)."""
        self.check_bounds(f"chunker '{self.name}'")
        require(isinstance(self.overlap, int) and 0 <= self.overlap < self.max_tokens,
                self.name, f"overlap must be an integer from 0 to max_tokens - 1 "
                f"({self.max_tokens - 1}), got {self.overlap!r}")
        check_tokenizer(f"chunker '{self.name}': tokenizer", self.tokenizer)

    def _count(self, turns: list[Turn]) -> int:
        return count_tokens(turns_text(turns), self.tokenizer)

    def _tail(self, window: list[Turn]) -> list[Turn]:
        """The longest proper suffix of ``window`` within ``overlap`` tokens."""
        for start in range(1, len(window)):
            if self._count(window[start:]) <= self.overlap:
                return list(window[start:])
        return []

    def _unit(self, session: Session, n: int, turns: list[Turn]) -> MemoryUnit:
        return make_unit(session, self.name, n, turns, kind="window")

    def _pieces(self, session: Session, n: int, turn: Turn) -> list[MemoryUnit]:
        ids = encode(turn_line(turn), self.tokenizer)
        texts: list[str] = []
        start = 0
        while True:
            end = self._cut(ids, min(start + self.max_tokens, len(ids)), start)
            text = decode(ids[start:end], self.tokenizer).strip()
            while count_tokens(text, self.tokenizer) > self.max_tokens:  # re-encoding drift
                end -= 1
                text = decode(ids[start:end], self.tokenizer).strip()
            texts.append(text)
            if end >= len(ids):
                break
            start = max(self._cut(ids, end - self.overlap, start + 1), start + 1)
        return [make_unit(session, self.name, n + k, [turn], kind="window", text=text,
                          metadata={"part": k, "parts": len(texts)})
                for k, text in enumerate(texts)]

    def _cut(self, ids: list[int], pos: int, floor: int) -> int:
        """``pos`` moved back (not below ``floor``) off a split multi-byte character."""
        if pos >= len(ids):
            return len(ids)
        for candidate in range(pos, max(floor, pos - 4), -1):
            left = decode(ids[max(0, candidate - 4) : candidate], self.tokenizer)
            right = decode(ids[candidate : candidate + 4], self.tokenizer)
            if not left.endswith("\ufffd") and not right.startswith("\ufffd"):
                return candidate
        return pos
