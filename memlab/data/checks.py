"""Checks every loader applies to what it read, so all four treat bad data alike.

After a loader builds its Dataset, :func:`check_dataset` enforces what evaluation relies
on, each as an error naming file, record and field, or as a reported repair:

- ids are unique: conversations in the file, probes in the file, turns and sessions in a
  conversation (a repeated id used to be counted twice: 796 rows for 199 probes);
- the file holds at least one conversation; one without turns is kept and reported
  (``kept: conversation without turns``);
- no id is empty or invisible (conversations, sessions, turns, probes);
- no text (turns, questions, answers) holds an unpaired surrogate (``\\ud800``: JSON can
  spell one, UTF-8 cannot, so the run's records could not be written);
- every probe has a question and, unless it is an abstention, a gold answer (an empty one
  is an error);
- every turn's speaker is one of the conversation's ``speakers``;
- a probe names each evidence id once, and its evidence sessions include the session of
  every evidence turn;
- no metadata value is a non-finite number (NaN cannot be written back as JSON);
- a probe asked before its evidence (LongMemEval has 43 such questions) is kept and
  reported as ``kept: asked before evidence`` unless the loader already reported the
  conversation's question date (the OMI loader rejects such probes while reading);
- a session without turns is kept and reported (``kept: session without turns``);
- turns out of time order inside a session are kept and reported (``kept: turns out of
  time order``);
- sessions in date order: out-of-order sessions are sorted (stable) and reported in
  ``ds.issues`` as ``sorted sessions by date`` (memlab's native format, which must be
  written in order, rejects them while reading).
"""

from __future__ import annotations

import dataclasses
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from memlab.data.schema import Conversation, DataIssue, Dataset, Probe
from memlab.errors import DatasetError


def check_dataset(dataset: Dataset, path: str | Path,
                  records: Mapping[str, str] | None = None) -> Dataset:
    """``dataset`` read from ``path``, checked (see the module docstring), with sessions
    sorted if need be. ``records`` names where each conversation (by id) stands in the
    file, e.g. ``line 3 (c2)``, for the errors (default: its id)."""
    path = str(path)
    if not dataset.conversations:
        raise DatasetError("holds no conversation: nothing to replay", path=path)
    where = {c.id: (records or {}).get(c.id) or (c.id if _visible(c.id) else f"#{i} (no id)")
             for i, c in enumerate(dataset.conversations)}
    _unique(((c.id, w if (w := where[c.id]).startswith("#") else f"#{i} ({w})", "id")
             for i, c in enumerate(dataset.conversations)),  # by position: twins share an id
            "conversation id", path)
    _unique(((p.id, where[c.id], f"probes[{k}].id") for c in dataset.conversations
             for k, p in enumerate(c.probes)), "probe id", path)
    issues: list[DataIssue] = []
    dated = {i.conversation_id for i in dataset.issues
             if i.field in ("question_date", "asked_at")}
    conversations = tuple(_conversation(c, path, where[c.id], c.id not in dated, issues)
                          for c in dataset.conversations)
    _finite(dataset.metadata, path, "header", "metadata")
    said = set(dataset.issues)
    issues = [i for i in dict.fromkeys(issues) if i not in said]  # each said once
    if not issues and conversations == dataset.conversations:
        return dataset
    return dataclasses.replace(dataset, conversations=conversations,
                               issues=(*dataset.issues, *issues))


def _conversation(c: Conversation, path: str, record: str, report_late: bool,
                  issues: list[DataIssue]) -> Conversation:
    def fail(message: str, field: str) -> DatasetError:
        return DatasetError(message, path=path, record=record, field=field)

    _unique(((s.id, record, f"sessions[{i}].id") for i, s in enumerate(c.sessions)),
            "session id", path)
    _unique(((t.id, record, f"sessions[{i}].turns[{j}].id") for i, s in enumerate(c.sessions)
             for j, t in enumerate(s.turns)), "turn id", path)
    _finite(c.metadata, path, record, "metadata")
    if not any(s.turns for s in c.sessions):  # nothing to remember: said, not refused
        issues.append(DataIssue(c.id, c.id, "sessions", str(len(c.sessions)),
                                "kept: conversation without turns"))
    turn_at, turn_session = {}, {}
    for i, s in enumerate(c.sessions):
        _finite(s.metadata, path, record, f"sessions[{i}].metadata")
        if not s.turns:  # nothing to remember; said, as LoCoMo's date-only sessions are
            issues.append(DataIssue(c.id, s.id, f"sessions[{i}].turns", "",
                                    "kept: session without turns"))
        behind = next((j for j in range(1, len(s.turns))
                       if s.turns[j].at < s.turns[j - 1].at), None)
        if behind is not None:
            issues.append(DataIssue(c.id, s.id, f"sessions[{i}].turns[{behind}].at",
                                    s.turns[behind].at.isoformat(),
                                    "kept: turns out of time order"))
        for j, t in enumerate(s.turns):
            where = f"sessions[{i}].turns[{j}]"
            _text(t.text, fail, f"{where}.text")
            if c.speakers and t.speaker not in c.speakers:
                raise fail(f"speaker {t.speaker!r} is not in the conversation's speakers "
                           f"{list(c.speakers)}", f"{where}.speaker")
            _finite(t.metadata, path, record, f"{where}.metadata")
            turn_at[t.id] = t.at
            turn_session[t.id] = s.id
    for k, p in enumerate(c.probes):
        _text(p.question, fail, f"probes[{k}].question")
        _text(p.answer, fail, f"probes[{k}].answer")
        if not p.question.strip():
            raise fail(f"probe {p.id!r} has an empty question", f"probes[{k}].question")
        if not p.answer.strip() and not p.abstention:
            raise fail(f"probe {p.id!r} has an empty gold answer (every answer would score "
                       "0, or match an empty one)", f"probes[{k}].answer")
        _finite(p.metadata, path, record, f"probes[{k}].metadata")
        wrong = _evidence_error(p, turn_session)
        if wrong is not None:
            raise fail(wrong[0], f"probes[{k}].{wrong[1]}")
        late = [t for t in p.evidence_turn_ids if t in turn_at and turn_at[t] > p.asked_at]
        if report_late and late:
            issues.append(DataIssue(c.id, p.id, "asked_at", f"{p.asked_at.isoformat()} < "
                                    f"{late[0]} at {turn_at[late[0]].isoformat()}",
                                    "kept: asked before evidence"))
    order = sorted(range(len(c.sessions)), key=lambda i: c.sessions[i].started_at)
    if order == list(range(len(c.sessions))):
        return c
    issues.append(DataIssue(c.id, c.id, "sessions", ", ".join(c.sessions[i].id for i in order),
                            "sorted sessions by date"))
    return dataclasses.replace(c, sessions=tuple(c.sessions[i] for i in order))


def _evidence_error(p: Probe, turn_session: Mapping[str, str]) -> tuple[str, str] | None:
    """(message, field) when a probe names an evidence id twice, or an evidence turn whose
    session is not among its evidence sessions (turn- and session-level metrics would
    score different answers); else None."""
    for field in ("evidence_turn_ids", "evidence_session_ids"):
        ids = getattr(p, field)
        twice = next((i for n, i in enumerate(ids) if i in ids[:n]), None)
        if twice is not None:
            return f"probe {p.id!r} names evidence {twice!r} twice", field
    for turn in p.evidence_turn_ids:
        session = turn_session.get(turn)
        if session is not None and session not in p.evidence_session_ids:
            return (f"probe {p.id!r}: evidence turn {turn!r} is in session {session!r}, "
                    f"which is not among its evidence sessions "
                    f"{list(p.evidence_session_ids)}", "evidence_session_ids")
    return None


_SURROGATE = re.compile("[\ud800-\udfff]")


def _text(text: str, fail: Callable[[str, str], DatasetError], field: str) -> None:
    """An unpaired surrogate is an error: the text could not be written as UTF-8."""
    found = _SURROGATE.search(text)
    if found is not None:
        raise fail(f"unpaired surrogate {found.group()!r} at character {found.start()} "
                   "(not Unicode text: it cannot be written as UTF-8)", field)


def _visible(value: str) -> bool:
    """Whether an id has a character that shows (not only spaces and zero-width ones)."""
    return any(not ch.isspace() and unicodedata.category(ch) != "Cf" for ch in value)


def _unique(entries: Iterable[tuple[str, str, str]], what: str, path: str) -> None:
    seen: dict[str, tuple[str, str]] = {}
    for value, record, field in entries:
        if not _visible(str(value)):
            raise DatasetError(f"empty {what} (an id names what the metrics count: evidence, "
                               "resumed probes, sessions)", path=path, record=record,
                               field=field)
        if value in seen:
            first_record, first_field = seen[value]
            first = first_field if first_record == record else f"{first_record}, {first_field}"
            raise DatasetError(f"duplicate {what} {value!r}, first at {first} (ids must be "
                               "unique; a repeated one would be counted twice)", path=path,
                               record=record, field=field)
        seen[value] = (record, field)


def _finite(value: Any, path: str, record: str, field: str) -> None:
    """No NaN or infinity anywhere inside ``value``."""
    if isinstance(value, float) and not math.isfinite(value):
        raise DatasetError(f"non-finite number {value} (cannot be written as JSON)",
                           path=path, record=record, field=field)
    if isinstance(value, Mapping):
        for key, item in value.items():
            _finite(item, path, record, f"{field}.{key}")
    elif isinstance(value, list | tuple):
        for n, item in enumerate(value):
            _finite(item, path, record, f"{field}[{n}]")
