"""LLM calls made while ingesting: kept by the component that made them, taken by the
harness (``take_calls``) and summed per conversation into ``memory.jsonl``.

Chunkers and memories that call a model never raise on a failed call (a failure yields
no unit to carry an error), so each call is a record: model, prompt/completion tokens,
seconds, cache hit and ``error`` (None when the answer was used). A record without
``prompt_tokens`` tells of something decided *without* a call (a session too short to
send, a fact a rule settled) and is not counted as one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: How many distinct error messages a conversation's ingest summary keeps.
MAX_MESSAGES = 5


class CallRecords:
    """Mixin: ``records`` (every call, in order) and ``take_calls`` (the new ones)."""

    records: list[dict[str, Any]]
    _taken: int = 0

    def take_calls(self) -> list[dict[str, Any]]:
        """The call records made since the last ``take_calls``."""
        new = self.records[self._taken:]
        self._taken = len(self.records)
        return list(new)


def ingest_summary(calls: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Calls, errors (with their first distinct messages), tokens and seconds."""
    out: dict[str, Any] = {"calls": 0, "errors": 0, "error_messages": [], "prompt_tokens": 0,
                           "completion_tokens": 0, "seconds": 0.0, "cached": 0}
    for call in calls:
        if "prompt_tokens" not in call:
            continue  # decided without a model call
        out["calls"] += 1
        out["prompt_tokens"] += int(call.get("prompt_tokens") or 0)
        out["completion_tokens"] += int(call.get("completion_tokens") or 0)
        out["seconds"] += float(call.get("seconds") or 0.0)
        out["cached"] += bool(call.get("cached"))
        error = call.get("error")
        if error:
            out["errors"] += 1
            if len(out["error_messages"]) < MAX_MESSAGES and error not in out["error_messages"]:
                out["error_messages"].append(str(error))
    out["seconds"] = round(out["seconds"], 6)
    return out


def merge_summaries(summaries: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Ingest summaries of several conversations added up."""
    total = ingest_summary(())
    for s in summaries:
        for key in ("calls", "errors", "prompt_tokens", "completion_tokens", "cached"):
            total[key] += int(s.get(key) or 0)
        total["seconds"] = round(total["seconds"] + float(s.get("seconds") or 0.0), 6)
        for message in s.get("error_messages") or []:
            if len(total["error_messages"]) < MAX_MESSAGES and \
                    message not in total["error_messages"]:
                total["error_messages"].append(message)
    return total
