"""LoCoMo (Maharana et al., ACL 2024): ten very long two-person conversations with QA probes.

Mapping onto memlab records
---------------------------
- Conversation id = ``sample_id``; ``speaker_a`` -> ``Role.USER``, ``speaker_b`` ->
  ``Role.OTHER`` (both are people); each turn keeps the person's name as ``speaker``.
- Sessions: a session is a ``session_N`` list with at least one turn, taken in *numeric*
  order of N (``session_10`` after ``session_9``), id ``"session_N"``, ``started_at`` parsed
  from ``session_N_date_time`` (``"1:56 pm on 8 May, 2023"``) as UTC. A
  ``session_N_date_time`` without a non-empty ``session_N`` list is ignored and reported as
  a DataIssue: conv-26 carries dates for sessions 20-35 but turns only for 1-19. With this
  rule the file has exactly 272 sessions and 5,882 turns.
- Turn id = ``dia_id``; ``Turn.at`` = session start (LoCoMo has no per-turn times). Shared
  images: metadata ``image_caption`` (``blip_caption``), ``image_urls`` (``img_url``),
  ``image_query`` (``query``); ``Turn.full_text`` appends the caption.
- Session metadata: ``summary`` (``session_summary``), ``events`` (``event_summary``),
  ``observation`` (``observation``), for summary-based baselines.
- Probe id = ``f"{sample_id}:q{index}"`` (index in ``qa``); integer answers become text.
  ``asked_at`` = start of the conversation's last session: LoCoMo gives no question
  time, and its questions are asked after the whole conversation. Turns of the last
  session therefore have ``at == asked_at``; ``as_of`` filtering is inclusive.

Categories (the ids are not in the order the paper lists them), checked on the data
(evidence sessions counted after the repair below):
  1 multi-hop    -- 269 of 282 (95.4%) have evidence in two or more sessions
                    (category 4: 1 of 841; category 2: 28 of 321).
  2 temporal     -- 246 of 321 (76.6%) questions start with "When" (others <= 1.4%).
  3 open-domain  -- 42 of 96 (43.8%) ask "would / likely / might / could"
                    (others: at most 1 question); answers are inferences, not quotes.
  4 single-hop   -- 840 of 841 (99.9%) have all their evidence in one session.
  5 adversarial  -- all 446 carry ``adversarial_answer`` (no other category does); 444
                    have no ``answer``.
Category 5 probes are abstention probes: answer = ``ABSTENTION_ANSWER`` (LoCoMo's scorer,
``task_eval/evaluation.py``,
accepts answers containing "not mentioned" or "no information available"), metadata
keeps ``adversarial_answer`` and, for the two records that have one, ``dataset_answer``.

Evidence repair (each repair or drop is a DataIssue; ``raw_evidence`` and
``unresolved_evidence`` are kept in probe metadata):
  split              -- a string holding several ids is split on ``;``, ``,`` or spaces
                        (2,815 raw strings -> 2,824 ids);
  unpadded           -- ``D30:05`` -> ``D30:5``;
  repaired malformed -- ``D:11:26`` -> ``D11:26`` (that turn exists in conv-43);
  dropped: malformed -- no session and turn number in it (a bare ``D``);
  dropped: empty     -- an evidence string with no id in it (``""``, separators only);
  dropped: no such turn -- well-formed but past a session's end (``D10:19``, ``D4:36``);
  dropped: duplicate -- an id already listed for the probe (``D4:5`` twice, conv-50).
Result: 3 ids match no turn, 1 duplicate, 2,820 evidence turn ids. Evidence session
ids are the sessions of the resolved turns.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

from memlab.data.checks import check_dataset
from memlab.data.fields import Fields, located, read_json, strptime_any
from memlab.data.paths import benchmark_file
from memlab.data.schema import Conversation, DataIssue, Dataset, Probe, Role, Session, Turn
from memlab.errors import DatasetError

DEFAULT_PATH = benchmark_file("locomo10.json")

CATEGORIES: dict[int, str] = {
    1: "multi-hop",
    2: "temporal",
    3: "open-domain",
    4: "single-hop",
    5: "adversarial",
}
ADVERSARIAL = 5
ABSTENTION_ANSWER = "Not mentioned in the conversation"

_parse_date = strptime_any(["%I:%M %p on %d %B, %Y", "%I:%M %p on %d %b, %Y"])
_SESSION_KEY = re.compile(r"session_(\d+)")
_DATE_KEY = re.compile(r"session_(\d+)_date_time")
_ID = re.compile(r"D(\d+):(\d+)")
_MALFORMED_ID = re.compile(r"D[:._\-]*(\d+)[:._\-]+(\d+)")
_SEPARATORS = re.compile(r"[;,\s]+")


@located
def load_locomo(path: str | Path = DEFAULT_PATH) -> Dataset:
    """Load ``locomo10.json``: 10 conversations, 272 sessions, 5,882 turns, 1,986 probes."""
    raw = read_json(path)
    if not isinstance(raw, list):
        raise DatasetError(f"expected a list of conversations, got {type(raw).__name__}",
                           path=path)
    issues: list[DataIssue] = []
    conversations = tuple(_conversation(item, i, path, issues) for i, item in enumerate(raw))
    return check_dataset(Dataset("locomo", conversations, source=str(path),
                                 issues=tuple(issues),
                                 metadata={"evidence": _evidence_counts(conversations,
                                                                        issues)}), path)


def _conversation(raw: Any, index: int, path: str | Path,
                  issues: list[DataIssue]) -> Conversation:
    sample_id = Fields(raw, path=path, record=index).get("sample_id", str)
    rec = Fields(raw, path=path, record=f"{index} ({sample_id})")
    conv = rec.child("conversation")
    speakers = (conv.get("speaker_a", str), conv.get("speaker_b", str))
    sessions = _sessions(sample_id, rec, conv, speakers, issues)
    if not sessions:
        raise rec.error("conversation has no session with turns", field="conversation")
    turn_sessions: dict[str, str] = {}
    for session in sessions:
        for turn in session.turns:
            if turn.id in turn_sessions:
                raise rec.error(f"duplicate turn id {turn.id!r}",
                                field=f"conversation.{session.id}")
            turn_sessions[turn.id] = session.id
    asked_at = max(s.started_at for s in sessions)  # after the last session, by date
    probes = tuple(_probe(q, i, sample_id, asked_at, turn_sessions, issues)
                   for i, q in enumerate(rec.children("qa")))
    return Conversation(sample_id, speakers, sessions, probes,
                        metadata={"speaker_a": speakers[0], "speaker_b": speakers[1]})


def _sessions(sample_id: str, rec: Fields, conv: Fields, speakers: tuple[str, str],
              issues: list[DataIssue]) -> tuple[Session, ...]:
    """Non-empty ``session_N`` lists in numeric order; report what is left without turns."""
    for key in conv.raw:
        m = _SESSION_KEY.fullmatch(key) or _DATE_KEY.fullmatch(key)
        if m and str(int(m[1])) != m[1]:
            raise conv.error(f"session numbers are written without leading zeros: "
                             f"{key.replace(m[1], str(int(m[1])), 1)!r}, not {key!r}",
                             field=conv.where(key))
    numbers = sorted(int(m[1]) for k in conv.raw if (m := _SESSION_KEY.fullmatch(k)))
    dated = sorted(int(m[1]) for k in conv.raw if (m := _DATE_KEY.fullmatch(k)))
    summaries = {key: rec.get(key, dict, {}) for key in
                 ("session_summary", "event_summary", "observation")}
    sessions = []
    for n in numbers:
        if conv.get(f"session_{n}", list):
            sessions.append(_session(conv, n, speakers, summaries))
        elif n not in dated:
            issues.append(DataIssue(sample_id, sample_id, f"conversation.session_{n}", "[]",
                                    "ignored: session without turns"))
    kept = {int(s.id.removeprefix("session_")) for s in sessions}
    for n in sorted(set(dated) - kept):
        key = f"session_{n}_date_time"
        issues.append(DataIssue(sample_id, sample_id, f"conversation.{key}",
                                str(conv.raw[key]), "ignored: date without turns"))
    return tuple(sessions)


def _session(conv: Fields, n: int, speakers: tuple[str, str],
             summaries: dict[str, dict]) -> Session:
    sid = f"session_{n}"
    started_at = conv.datetime(f"{sid}_date_time", _parse_date)
    turns = tuple(_turn(t, sid, started_at, speakers) for t in conv.children(sid))
    metadata = {
        "summary": summaries["session_summary"].get(f"{sid}_summary"),
        "events": summaries["event_summary"].get(f"events_{sid}"),
        "observation": summaries["observation"].get(f"{sid}_observation"),
    }
    return Session(sid, started_at, turns, metadata)


def _turn(t: Fields, session_id: str, at: datetime, speakers: tuple[str, str]) -> Turn:
    speaker = t.get("speaker", str)
    if speaker not in speakers:
        raise t.error(f"speaker {speaker!r} is neither speaker_a nor speaker_b "
                      f"({speakers[0]!r}, {speakers[1]!r})", field=t.where("speaker"))
    role = Role.USER if speaker == speakers[0] else Role.OTHER
    metadata: dict[str, Any] = {}
    if t.has("blip_caption"):
        metadata["image_caption"] = t.get("blip_caption", str)
    if t.has("img_url"):
        metadata["image_urls"] = tuple(t.strings("img_url"))
    if t.has("query"):
        metadata["image_query"] = t.get("query", str)
    dia_id = t.get("dia_id", str)
    if not dia_id.strip():
        raise t.error("empty dia_id (it is the turn's id: evidence names it)",
                      field=t.where("dia_id"))
    return Turn(dia_id, session_id, speaker, role, t.get("text", str), at, metadata)


def _probe(q: Fields, index: int, sample_id: str, asked_at: datetime,
           turn_sessions: dict[str, str], issues: list[DataIssue]) -> Probe:
    probe_id = f"{sample_id}:q{index}"
    category_id = q.get("category", int)
    if category_id not in CATEGORIES:
        raise q.error(f"unknown category {category_id}; expected 1-5", field=q.where("category"))
    raw_evidence = q.strings("evidence")
    turn_ids, unresolved = _resolve_evidence(raw_evidence, q, sample_id, probe_id,
                                             turn_sessions, issues)
    metadata: dict[str, Any] = {"raw_evidence": tuple(raw_evidence),
                                "unresolved_evidence": tuple(unresolved)}
    if category_id == ADVERSARIAL:
        answer = ABSTENTION_ANSWER
        metadata["adversarial_answer"] = _text(q, "adversarial_answer")
        if q.has("answer"):
            metadata["dataset_answer"] = _text(q, "answer")
    else:
        answer = _text(q, "answer")
        if not answer.strip():
            raise q.error("empty answer (every reply would score 0, or match an empty one)",
                          field=q.where("answer"))
    question = q.get("question", str)
    if not question.strip():
        raise q.error("empty question", field=q.where("question"))
    session_ids = tuple(dict.fromkeys(turn_sessions[t] for t in turn_ids))
    return Probe(probe_id, question, answer, turn_ids, session_ids,
                 CATEGORIES[category_id], asked_at, abstention=category_id == ADVERSARIAL,
                 category_id=category_id, metadata=metadata)


def _text(q: Fields, key: str) -> str:
    value = q.get(key, (str, int, float))
    return value if isinstance(value, str) else str(value)


def _resolve_evidence(raw: list[str], q: Fields, sample_id: str, probe_id: str,
                      turn_sessions: dict[str, str],
                      issues: list[DataIssue]) -> tuple[tuple[str, ...], list[str]]:
    """Split, normalise and look up evidence ids; report every change (see module doc)."""
    resolved: list[str] = []
    unresolved: list[str] = []
    for j, value in enumerate(raw):
        field = f"{q.where('evidence')}[{j}]"

        def report(val: str, action: str, field: str = field) -> None:
            issues.append(DataIssue(sample_id, probe_id, field, val, action))

        parts = [p for p in _SEPARATORS.split(value.strip()) if p]
        if not parts:
            report(value, "dropped: empty")
        if len(parts) > 1:
            report(value, "split")
        for part in parts:
            turn_id, action = _normalise(part)
            if action:
                report(part, action)
            if turn_id is None:
                unresolved.append(part)
            elif turn_id not in turn_sessions:
                unresolved.append(part)
                report(part, "dropped: no such turn")
            elif turn_id in resolved:
                report(part, "dropped: duplicate")
            else:
                resolved.append(turn_id)
    return tuple(resolved), unresolved


def _normalise(part: str) -> tuple[str | None, str | None]:
    """``(turn id or None, repair action or None)`` for one evidence id."""
    if m := _ID.fullmatch(part):
        canonical = f"D{int(m[1])}:{int(m[2])}"
        return canonical, None if canonical == part else "unpadded"
    if m := _MALFORMED_ID.fullmatch(part):
        return f"D{int(m[1])}:{int(m[2])}", "repaired malformed"
    return None, "dropped: malformed"


def _evidence_counts(conversations: tuple[Conversation, ...],
                     issues: list[DataIssue]) -> dict[str, int]:
    """Raw strings, ids after splitting, and what became of them, for reports."""
    probes = [p for c in conversations for p in c.probes]
    resolved = sum(len(p.evidence_turn_ids) for p in probes)
    unresolved = sum(len(p.metadata["unresolved_evidence"]) for p in probes)
    duplicates = sum(i.action == "dropped: duplicate" for i in issues)
    return {
        "raw_strings": sum(len(p.metadata["raw_evidence"]) for p in probes),
        "ids_after_split": resolved + unresolved + duplicates,
        "resolved": resolved,
        "unresolved": unresolved,
        "duplicates": duplicates,
    }
