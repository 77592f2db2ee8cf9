"""Keeping the agent's own refusals out of its next prompt (no refusal cascade).

A small model that once answered "I'm sorry, but I don't have any memories of that"
sees that reply again - in the chat history and among retrieved memories - and copies
it to every following message, even when the answer is in the prompt. The agent's past
replies that only refused carry no information, so they are left out of the prompt
(they stay in the conversation log and in memory).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

REFUSAL = re.compile(
    r"^\W*(i'?m sorry|sorry|i apologi[sz]e|unfortunately)?[ ,.!]*(but )?"
    r"(i (do not|don't|cannot|can't|have no|am not able to|am unable to)"
    r" (have|recall|remember|know|find|access|see)|i have no (memories|memory|record|information)"
    r"|there (are|is) no (memories|memory|record|information))",
    re.IGNORECASE)


def is_refusal(text: str) -> bool:
    """Whether an assistant reply opens by saying it does not remember or know."""
    return bool(REFUSAL.match(text.strip().replace("\u2019", "'")))


def without_refusals(history: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """Chat history without the assistant's refusing replies."""
    return [row for row in history
            if not (row["role"] == "assistant" and is_refusal(row["content"]))]


def hits_without_refusals(hits: Sequence[Any]) -> list[Any]:
    """Retrieved memories without the assistant's own refusing replies."""
    return [h for h in hits if not (h.unit.text.startswith("assistant: ")
                                    and is_refusal(h.unit.text[len("assistant: "):]))]
