"""Reading model answers: JSON from small models, marked final answers, judge labels.

A 0.5B model rarely returns clean output: JSON comes wrapped in code fences, followed by
chatter, with trailing commas or Python-style quotes; reasoning answers forget their
marker. These helpers recover what can be recovered and say ``None`` otherwise, so the
caller records a parse failure instead of scoring a silent zero.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_FINAL = re.compile(
    r"^[\s>*#_-]*final\s+answer[\s*_]*[:：][\s*_]*(?P<answer>.*?)[\s*_]*$",
    re.IGNORECASE | re.MULTILINE,
)
_LABEL = re.compile(r"\b(CORRECT|WRONG)\b")
_VERDICT_WORD = re.compile(r"\b(yes|no|correct|incorrect|wrong)\b", re.IGNORECASE)
_VERDICT_LINE = re.compile(r"^[\s>*#_-]*(?:verdict|final answer|answer)[\s*_]*[:：](?P<rest>.*)$",
                           re.IGNORECASE | re.MULTILINE)


def strip_thinking(text: str) -> str:
    """``text`` without Qwen3-style ``<think>...</think>`` blocks, stripped."""
    return _THINK.sub("", text or "").strip()


def extract_json(text: str) -> Any | None:
    """The first JSON object or array in ``text``, or None if there is none.

    Tries, in order: the whole text, each fenced code block, then every ``{``/``[``
    position (so leading or trailing prose is ignored). Each candidate is also tried
    with trailing commas removed and as a Python literal (single quotes, True/None).
    """
    text = strip_thinking(text)
    candidates = [text, *(m.group(1) for m in _FENCE.finditer(text))]
    for candidate in candidates:
        value = _loads(candidate.strip())
        if value is not None:
            return value
    for candidate in candidates:
        value = _scan(candidate)
        if value is not None:
            return value
    return None


def _loads(candidate: str) -> Any | None:
    if not candidate or candidate[0] not in "{[":
        return None
    for variant in (candidate, _TRAILING_COMMA.sub(r"\1", candidate)):
        try:
            return json.loads(variant)
        except ValueError:
            pass
        try:
            value = ast.literal_eval(variant)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        if isinstance(value, dict | list):
            return value
    return None


def _scan(text: str) -> Any | None:
    """Decode JSON starting at each opening bracket; the first that parses wins."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"[{\[]", text):
        start = match.start()
        try:
            value, _ = decoder.raw_decode(text, start)
            return value
        except ValueError:
            pass
        end = _matching_bracket(text, start)
        value = _loads(text[start : end + 1] if end is not None else _close(text, start))
        if value is not None:
            return value
    return None


def _brackets(text: str, start: int) -> Iterator[tuple[int, list[str]]]:
    """(index, open brackets after it) at each bracket outside strings, from ``start``."""
    stack: list[str] = []
    quote, escaped = "", False
    for i in range(start, len(text)):
        ch = text[i]
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "{[":
            stack.append(ch)
            yield i, stack
        elif ch in "}]" and stack:
            stack.pop()
            yield i, stack
            if not stack:
                return


def _matching_bracket(text: str, start: int) -> int | None:
    """Index of the bracket closing ``text[start]``, ignoring brackets inside strings."""
    for i, stack in _brackets(text, start):
        if not stack and i > start:
            return i
    return None


def _close(text: str, start: int) -> str:
    """A truncated answer (the model ran out of tokens) cut after its last complete
    element and closed, so ``{"memories": [{...}, {...`` keeps the complete items."""
    last, closers = -1, ""
    for i, stack in _brackets(text, start):
        if text[i] in "}]" and stack:
            last, closers = i, "".join("}" if b == "{" else "]" for b in reversed(stack))
    return text[start : last + 1] + closers if last >= 0 else ""


def parse_final_answer(text: str) -> str | None:
    """The answer on the last ``Final answer: ...`` line, or None if no line is marked.

    Markdown emphasis around the marker (``**Final answer:**``) is tolerated. Callers
    that want a fallback write ``parse_final_answer(t) or t.strip()`` and record that
    the marker was missing.
    """
    matches = list(_FINAL.finditer(strip_thinking(text)))
    if not matches:
        return None
    answer = matches[-1].group("answer").strip().strip("*_").strip()
    return answer or None


def parse_yes_no(text: str) -> bool:
    """LongMemEval's rule, verbatim: the label is ``'yes' in response.lower()``.

    (``src/evaluation/evaluate_qa.py`` in xiaowu0162/LongMemEval.) Kept exactly so
    judge accuracies compare with published numbers, including its leniency.
    """
    return "yes" in strip_thinking(text).lower()


def parse_correct_wrong(text: str) -> bool | None:
    """mem0's LoCoMo judge label: True for CORRECT, False for WRONG, None if unclear.

    mem0 reads ``{"label": ...}`` from the JSON answer; a small judge often writes the
    bare word instead, which is accepted when exactly one of the two labels appears.
    """
    data = extract_json(text)
    if isinstance(data, dict) and isinstance(data.get("label"), str):
        label = data["label"].strip().upper()
        if label in ("CORRECT", "WRONG"):
            return label == "CORRECT"
    labels = set(_LABEL.findall(strip_thinking(text)))
    if len(labels) == 1:
        return labels.pop() == "CORRECT"
    return None


def parse_verdict(text: str) -> bool | None:
    """A judge's yes/no verdict read strictly: the first verdict word (yes / no, or
    correct / incorrect / wrong) on the last ``Verdict:`` line if the reply has one, else
    in the whole reply; None when there is none.

    Unlike :func:`parse_yes_no` (LongMemEval's ``'yes' in reply``), "no, not yes" is no
    and a reply with no verdict word is a parse failure, not a silent no.
    """
    text = strip_thinking(text)
    marked = list(_VERDICT_LINE.finditer(text))
    for scope in ([m.group("rest") for m in marked][-1:] if marked else []) + [text]:
        match = _VERDICT_WORD.search(scope)
        if match:
            return match.group(1).lower() in ("yes", "correct")
    return None


#: Output parsers a template can name in its header (``output: ...``).
PARSERS: dict[str, Callable[[str], Any]] = {
    "text": strip_thinking,
    "final_answer": parse_final_answer,
    "yes_no": parse_yes_no,
    "correct_wrong": parse_correct_wrong,
    "verdict": parse_verdict,
    "json": extract_json,
}


def record_schema(fields: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The JSON schema of an object of exactly ``fields`` (name -> its schema), all
    required: what an LLM backend's ``json_schema`` holds a one-record reply to."""
    return {"type": "object", "properties": dict(fields), "required": list(fields),
            "additionalProperties": False}


def list_schema(key: str, fields: dict[str, dict[str, Any]], max_items: int) -> dict[str, Any]:
    """The JSON schema of a reply ``{key: [item, ...]}`` with at most ``max_items`` items,
    each a :func:`record_schema` of ``fields``."""
    return record_schema({key: {"type": "array", "items": record_schema(fields),
                                "maxItems": max_items}})


def turn_numbers(most: int) -> dict[str, Any]:
    """The schema of a list of 1 to ``most`` turn numbers (as a prompt numbers turns)."""
    return {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": most}
