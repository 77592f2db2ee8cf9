"""LongMemEval (Wu et al., ICLR 2025): one user-assistant chat history per question.

The oracle, S and M files share one schema, so this loader reads all three.

Mapping onto memlab records
---------------------------
- Each question is its own Conversation (id = ``question_id``, speakers user and
  assistant) holding its haystack sessions and one Probe (id = ``question_id``).
- Sessions are sorted by ``haystack_dates`` (stable; 34 of the oracle's 500 questions
  list them out of date order, each reported as a DataIssue ``sorted sessions by date``).
  Session id = ``haystack_session_ids[i]``, ``started_at`` = ``haystack_dates[i]``
  (``"2023/05/20 (Sat) 02:21"``, weekday checked, taken as UTC).
- Turn id = ``f"{session_id}_{position + 1}"`` with ``position`` counting every turn of
  the session, user and assistant. This is how LongMemEval's own retrieval code
  (``src/retrieval/run_retrieval.py``, ``process_item_flat_index``) names turn-level
  corpus ids. Note that it indexes *only user turns* at turn granularity (so its ids skip
  the assistant positions) and joins only user turns at session granularity; memlab
  keeps every turn, and a strategy reproducing the paper filters ``role == "user"``.
- Turn role and speaker = the record's ``role``; ``Turn.at`` = session start (no per-turn
  times); ``metadata["has_answer"]`` is True on evidence turns.
- Probe: category = category_id = ``question_type`` (six types); ``"_abs" in
  question_id`` marks abstention (LongMemEval's own test); integer answers become text;
  evidence turns = turns with ``has_answer`` true, in time order; evidence sessions =
  ``answer_session_ids``, in time order.
- ``asked_at`` = ``question_date``. In 43 oracle questions 65 sessions start later the
  same day than ``question_date`` (LongMemEval issue #8 reports 77 such questions in S);
  they are kept and reported (DataIssue ``kept: session after question_date``,
  ``probe.metadata["sessions_after_asked_at"]``) because time-faithful replay would hide
  them. ``clamp_asked_at=True`` moves such an ``asked_at`` to the last session start.
- A session id listed twice in one history (13 filler sessions in S, LongMemEval issue
  #54) keeps its earliest copy when the copies are identical (DataIssue ``dropped:
  duplicate session``); differing copies are an error.

Oracle figures: 500 conversations and probes, 948 sessions, 10,960 turns, 896 evidence
turns; 21 probes have no ``has_answer`` turn, all of them abstention questions (the
asked-about thing was never said); the other 9 abstention probes mark the related fact.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from memlab.data.checks import check_dataset
from memlab.data.fields import Fields, located, parse_with, read_json
from memlab.data.paths import benchmark_file
from memlab.data.schema import Conversation, DataIssue, Dataset, Probe, Role, Session, Turn
from memlab.errors import DatasetError

DEFAULT_PATH = benchmark_file("longmemeval_oracle.json")

QUESTION_TYPES = (
    "single-session-user",
    "single-session-assistant",
    "single-session-preference",
    "multi-session",
    "knowledge-update",
    "temporal-reasoning",
)
SPEAKERS = ("user", "assistant")

_DATE_FORMAT = "%Y/%m/%d (%a) %H:%M"
_WEEKDAY = re.compile(r"\((\w+)\)")
# Shared read-only metadata: the S variant has ~250k turns, nearly all without answer.
_EVIDENCE = MappingProxyType({"has_answer": True})
_PLAIN = MappingProxyType({"has_answer": False})


@located
def load_longmemeval(path: str | Path = DEFAULT_PATH, clamp_asked_at: bool = False) -> Dataset:
    """Load a LongMemEval file (oracle, S or M): one conversation and probe per question."""
    raw = read_json(path)
    if not isinstance(raw, list):
        raise DatasetError(f"expected a list of questions, got {type(raw).__name__}", path=path)
    issues: list[DataIssue] = []
    conversations = tuple(_conversation(item, i, path, clamp_asked_at, issues)
                          for i, item in enumerate(raw))
    return check_dataset(Dataset("longmemeval", conversations, source=str(path),
                                 issues=tuple(issues), metadata={
                                     "variant": Path(path).stem,
                                     "clamp_asked_at": clamp_asked_at}), path)


def parse_date(raw: str) -> datetime:
    """``"2023/05/20 (Sat) 02:21"``; a weekday that does not fit the date is an error."""
    at = datetime.strptime(raw.strip(), _DATE_FORMAT)
    written = _WEEKDAY.search(raw)
    if written and written[1].lower() != at.strftime("%a").lower():
        raise ValueError(f"{written[1]} is not the weekday of {at:%Y-%m-%d}")
    return at


def _conversation(raw: Any, index: int, path: str | Path, clamp: bool,
                  issues: list[DataIssue]) -> Conversation:
    qid = Fields(raw, path=path, record=index).get("question_id", str)
    rec = Fields(raw, path=path, record=f"{index} ({qid})")
    sessions = _sessions(rec, qid, issues)
    probe = _probe(rec, qid, sessions, clamp, issues)
    return Conversation(qid, SPEAKERS, sessions, (probe,))


def _sessions(rec: Fields, qid: str, issues: list[DataIssue]) -> tuple[Session, ...]:
    """Haystack sessions in date order (stable), duplicates of a session id dropped."""
    ids = rec.strings("haystack_session_ids")
    date_strings = rec.strings("haystack_dates")
    bodies = rec.get("haystack_sessions", list)
    if not len(ids) == len(date_strings) == len(bodies):
        raise rec.error(f"haystack_session_ids, haystack_dates and haystack_sessions differ in "
                        f"length ({len(ids)}, {len(date_strings)}, {len(bodies)})",
                        field="haystack_dates")
    dates = [parse_with(parse_date, d, rec, f"haystack_dates[{i}]")
             for i, d in enumerate(date_strings)]
    order = sorted(range(len(ids)), key=dates.__getitem__)
    if order != sorted(order):
        issues.append(DataIssue(qid, qid, "haystack_dates", ", ".join(date_strings),
                                "sorted sessions by date"))
    kept: dict[str, int] = {}
    sessions = []
    for i in order:
        if ids[i] in kept:
            _check_duplicate(rec, bodies, kept[ids[i]], i, ids[i])
            issues.append(DataIssue(qid, qid, f"haystack_session_ids[{i}]", ids[i],
                                    "dropped: duplicate session"))
            continue
        kept[ids[i]] = i
        sessions.append(Session(ids[i], dates[i], _turns(rec, bodies[i], i, ids[i], dates[i])))
    return tuple(sessions)


def _check_duplicate(rec: Fields, bodies: list, first: int, again: int, sid: str) -> None:
    if bodies[first] != bodies[again]:
        raise rec.error(f"session id {sid!r} is used for two different sessions "
                        f"(haystack_sessions[{first}] and [{again}])",
                        field=f"haystack_session_ids[{again}]")


def _turns(rec: Fields, body: Any, i: int, sid: str, at: datetime) -> tuple[Turn, ...]:
    where = f"haystack_sessions[{i}]"
    if not isinstance(body, list):
        raise rec.error(f"expected a list of turns, got {type(body).__name__}", field=where)
    turns = []
    for j, item in enumerate(body):
        t = Fields(item, path=rec.path, record=rec.record, prefix=f"{where}[{j}]")
        role = t.get("role", str)
        if role not in SPEAKERS:
            raise t.error(f"unknown role {role!r}; expected user or assistant",
                          field=t.where("role"))
        evidence = t.get("has_answer", bool, False)
        turns.append(Turn(f"{sid}_{j + 1}", sid, role, Role(role), t.get("content", str), at,
                          _EVIDENCE if evidence else _PLAIN))
    return tuple(turns)


def _probe(rec: Fields, qid: str, sessions: tuple[Session, ...], clamp: bool,
           issues: list[DataIssue]) -> Probe:
    qtype = rec.get("question_type", str)
    if qtype not in QUESTION_TYPES:
        raise rec.error(f"unknown question type {qtype!r}; expected one of "
                        f"{', '.join(QUESTION_TYPES)}", field="question_type")
    answer = rec.get("answer", (str, int, float))
    asked_at = rec.datetime("question_date", parse_date)
    evidence_turns = tuple(t.id for s in sessions for t in s.turns if t.metadata["has_answer"])
    evidence_sessions = _evidence_sessions(rec, qid, sessions, issues)
    later = tuple(s.id for s in sessions if s.started_at > asked_at)
    for sid in later:
        action = ("asked_at moved to last session start" if clamp
                  else "kept: session after question_date")
        issues.append(DataIssue(qid, qid, "question_date", f"{sid} > {asked_at:%Y-%m-%d %H:%M}",
                                action))
    if clamp and later:
        asked_at = sessions[-1].started_at
    question = rec.get("question", str)
    if not question.strip():
        raise rec.error("empty question", field="question")
    if isinstance(answer, str) and not answer.strip() and "_abs" not in qid:
        raise rec.error("empty answer (every reply would score 0, or match an empty one)",
                        field="answer")
    return Probe(qid, question, answer if isinstance(answer, str) else str(answer),
                 evidence_turns, evidence_sessions, qtype, asked_at,
                 abstention="_abs" in qid, category_id=qtype,
                 metadata={"sessions_after_asked_at": later})


def _evidence_sessions(rec: Fields, qid: str, sessions: tuple[Session, ...],
                       issues: list[DataIssue]) -> tuple[str, ...]:
    """``answer_session_ids`` in time order; ids naming no haystack session are reported."""
    wanted = rec.strings("answer_session_ids")
    present = {s.id for s in sessions}
    for k, sid in enumerate(wanted):
        if sid not in present:
            issues.append(DataIssue(qid, qid, f"answer_session_ids[{k}]", sid,
                                    "dropped: no such session"))
    wanted_set = set(wanted)
    return tuple(s.id for s in sessions if s.id in wanted_set)
