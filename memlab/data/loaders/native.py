"""memlab's own conversation format (JSON or JSON Lines), read strictly and written losslessly.

Users bring any dataset by writing it in this format; :func:`save_native` exports any
loaded :class:`~memlab.data.schema.Dataset` (LoCoMo, LongMemEval, synthetic, ...) and
:func:`load_native` reads it back equal to the original. The schema is documented in
``datasets/README.md``. In brief:

* ``.json``: one object ``{"format": "memlab-conversations", "version": 1, "name", "source",
  "metadata", "issues", "conversations": [...]}``.
* ``.jsonl``: line 1 is that same header without ``conversations``; every further line is
  one conversation object.
* A conversation is ``{"id", "speakers", "metadata", "sessions": [{"id", "started_at",
  "metadata", "turns": [{"id", "speaker", "role", "text", "at", "metadata"}]}],
  "probes": [{"id", "question", "answer", "category", "category_id", "abstention",
  "asked_at", "evidence_turn_ids", "evidence_session_ids", "metadata"}]}``.

Times are ISO 8601; any offset is accepted and converted to UTC, a time without an offset
is UTC, and the writer always writes UTC (``...Z``). Metadata values are JSON values plus
two tagged forms so the round trip keeps Python types: ``{"$tuple": [...]}`` and
``{"$datetime": "ISO"}`` (kept exactly, naive or aware).

Because this is memlab's own format, loading is strict: unknown fields, duplicate ids,
evidence ids that name no turn or session, and sessions or turns out of time order are
errors naming file, record and field. The writer applies the same checks, so an export
can always be read back.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from memlab.data.checks import check_dataset
from memlab.data.fields import (
    Fields,
    as_utc,
    jsonl_lines,
    located,
    open_path,
    parse_iso,
    read_json,
)
from memlab.data.paths import SYNTHETIC_DEFAULT
from memlab.data.schema import Conversation, DataIssue, Dataset, Probe, Role, Session, Turn
from memlab.errors import DatasetError, did_you_mean

FORMAT = "memlab-conversations"
VERSION = 1

_HEADER_KEYS = ("format", "version", "name", "source", "metadata", "issues")
_KEYS = {
    "header": {*_HEADER_KEYS, "conversations"},
    "conversation": {"id", "speakers", "metadata", "sessions", "probes"},
    "session": {"id", "started_at", "metadata", "turns"},
    "turn": {"id", "speaker", "role", "text", "at", "metadata"},
    "probe": {"id", "question", "answer", "category", "category_id", "abstention", "asked_at",
              "evidence_turn_ids", "evidence_session_ids", "metadata"},
    "issue": {"conversation_id", "record", "field", "value", "action"},
}


@located
def load_native(path: str | Path) -> Dataset:
    """Read a memlab-conversations file (``.json`` or ``.jsonl``) into a Dataset."""
    p = open_path(path)
    if p.suffix.lower() in (".jsonl", ".ndjson"):
        header, records = _jsonl_records(p)
    elif p.suffix.lower() == ".json":
        header, records = _json_records(p)
    else:
        raise DatasetError(f"unknown file type {p.suffix!r}; use .json or .jsonl (or .ndjson)",
                           path=p)
    dataset = Dataset(
        name=header.get("name", str, p.stem),
        conversations=tuple(_conversation(raw, p, record) for record, raw in records),
        source=header.get("source", str, str(p)),
        issues=tuple(_issue(f) for f in header.children("issues")) if header.has("issues") else (),
        metadata=_decode(header.get("metadata", dict, {}), header, "metadata"),
    )
    labels = [r for r, _ in records]
    _check_unique_conversations(dataset, p, labels)
    return check_dataset(dataset, p, {c.id: f"{label} ({c.id})" for label, c
                                      in zip(labels, dataset.conversations, strict=True)})


def load_synthetic(path: str | Path = SYNTHETIC_DEFAULT) -> Dataset:
    """The embedded synthetic dataset (``datasets/synthetic-small.jsonl``) or another one."""
    return load_native(path)


def save_native(dataset: Dataset, path: str | Path) -> Path:
    """Write ``dataset`` as ``.json`` (one object) or ``.jsonl`` (header line + one line per
    conversation), after the checks :func:`load_native` applies, so it always reads back."""
    p = Path(path).expanduser()
    if p.suffix not in (".json", ".jsonl"):
        raise DatasetError(f"unknown file type {p.suffix!r}; use .json or .jsonl", path=p)
    records = [f"conversation {i} ({c.id})" for i, c in enumerate(dataset.conversations)]
    for conversation, record in zip(dataset.conversations, records, strict=True):
        _check_conversation(conversation, p, record, written=True)
    _check_unique_conversations(dataset, p, records)
    header = _encode_header(dataset, p)
    convs = [_encode_conversation(c, p, r) for c, r in zip(dataset.conversations, records,
                                                          strict=True)]
    if p.suffix == ".json":
        text = _dumps({**header, "conversations": convs}, indent=1) + "\n"
    else:
        text = "".join(_dumps(obj) + "\n" for obj in [header, *convs])
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(text, encoding="utf-8", newline="\n")
    os.replace(tmp, p)
    return p


# ---------------------------------------------------------------- reading


def _jsonl_records(p: Path) -> tuple[Fields, list[tuple[str, Any]]]:
    lines = list(_jsonl_lines(p))
    if not lines:
        raise DatasetError("empty file; expected a header line", path=p, record="line 1")
    lineno, raw = lines[0]
    header = _header(raw, p, f"line {lineno} (header)", jsonl=True)
    return header, [(f"line {n}", obj) for n, obj in lines[1:]]


def _jsonl_lines(p: Path) -> Iterable[tuple[int, Any]]:
    return jsonl_lines(p)


def _json_records(p: Path) -> tuple[Fields, list[tuple[str, Any]]]:
    header = _header(read_json(p), p, None, jsonl=False)
    raws = header.get("conversations", list)
    return header, [(f"conversation {i}", raw) for i, raw in enumerate(raws)]


def _header(raw: Any, p: Path, record: str | None, *, jsonl: bool) -> Fields:
    if not isinstance(raw, dict) or "format" not in raw:
        raise DatasetError(
            f"not a {FORMAT} file: the {'first line' if jsonl else 'top level'} must be an "
            f'object with "format": "{FORMAT}" and "version": {VERSION}', path=p, record=record)
    f = Fields(raw, path=p, record=record)
    if jsonl and "conversations" in raw:  # a .json file's one object, in a .jsonl file
        raise f.error("a .jsonl file's first line is the header alone, one conversation per "
                      "line after it; an object holding every conversation is the .json "
                      "form: name the file .json", field="conversations")
    _known(f, _KEYS["header"] - ({"conversations"} if jsonl else set()))
    if f.get("format", str) != FORMAT:
        raise f.error(f"expected {FORMAT!r}, got {raw['format']!r}", field="format")
    version = f.get("version", int)
    if version != VERSION:
        raise f.error(f"unsupported version {version}; this memlab reads version {VERSION}",
                      field="version")
    return f


def _conversation(raw: Any, p: Path, record: str) -> Conversation:
    cid = Fields(raw, path=p, record=record).get("id", str)
    f = Fields(raw, path=p, record=f"{record} ({cid})")
    _known(f, _KEYS["conversation"])
    sessions = tuple(_session(s) for s in f.children("sessions"))
    probes = tuple(_probe(q, sessions) for q in f.children("probes"))
    if f.has("speakers"):
        speakers = f.strings("speakers")
    else:
        speakers = list(dict.fromkeys(t.speaker for s in sessions for t in s.turns))
    conversation = Conversation(id=cid, speakers=tuple(speakers), sessions=sessions,
                                probes=probes, metadata=_metadata(f))
    _check_conversation(conversation, p, f.record, written=False)
    return conversation


def _session(f: Fields) -> Session:
    _known(f, _KEYS["session"])
    sid = f.get("id", str)
    started = f.datetime("started_at", parse_iso)
    turns = tuple(_turn(t, sid, started) for t in f.children("turns"))
    return Session(id=sid, started_at=started, turns=turns, metadata=_metadata(f))


def _turn(f: Fields, session_id: str, started: datetime) -> Turn:
    _known(f, _KEYS["turn"])
    role = f.get("role", str)
    if role not in {r.value for r in Role}:
        raise f.error(f"unknown role {role!r}; choose {', '.join(Role)}", field=f.where("role"))
    return Turn(id=f.get("id", str), session_id=session_id, speaker=f.get("speaker", str),
                role=Role(role), text=f.get("text", str),
                at=f.datetime("at", parse_iso, started), metadata=_metadata(f))


def _probe(f: Fields, sessions: tuple[Session, ...]) -> Probe:
    _known(f, _KEYS["probe"])
    turn_ids = f.strings("evidence_turn_ids")
    if f.has("evidence_session_ids"):
        session_ids = f.strings("evidence_session_ids")
    else:  # derived for hand-written files; the writer always writes them
        where = {t.id: s.id for s in sessions for t in s.turns}
        session_ids = list(dict.fromkeys(where[t] for t in turn_ids if t in where))
    return Probe(
        id=f.get("id", str), question=f.get("question", str), answer=f.get("answer", str),
        evidence_turn_ids=tuple(turn_ids), evidence_session_ids=tuple(session_ids),
        category=f.get("category", str), asked_at=f.datetime("asked_at", parse_iso),
        abstention=f.get("abstention", bool, False),
        category_id=f.get("category_id", (int, str, type(None)), None), metadata=_metadata(f),
    )


def _issue(f: Fields) -> DataIssue:
    _known(f, _KEYS["issue"])
    return DataIssue(**{key: f.get(key, str) for key in
                        ("conversation_id", "record", "field", "value", "action")})


def _known(f: Fields, allowed: set[str]) -> None:
    for key in f.raw:
        if key not in allowed:
            close = did_you_mean(key, allowed)
            hint = f"; {close}" if close else ""
            raise f.error(f"unknown field{hint} (allowed: {', '.join(sorted(allowed))})",
                          field=f.where(key))


def _metadata(f: Fields) -> dict[str, Any]:
    return _decode(f.get("metadata", dict, {}), f, f.where("metadata"))


def _decode(value: Any, f: Fields, field: str) -> Any:
    if isinstance(value, list):
        return [_decode(v, f, f"{field}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    if len(value) == 1 and "$tuple" in value and isinstance(value["$tuple"], list):
        return tuple(_decode(v, f, f"{field}[{i}]") for i, v in enumerate(value["$tuple"]))
    if len(value) == 1 and "$datetime" in value:
        try:
            return datetime.fromisoformat(value["$datetime"])
        except (TypeError, ValueError) as exc:
            raise f.error(f"unparseable date {value['$datetime']!r} ({exc})", field=field) from None
    return {k: _decode(v, f, f"{field}.{k}") for k, v in value.items()}


# ---------------------------------------------------------------- checks


def _check_conversation(c: Conversation, p: Path, record: str | int | None, *,
                        written: bool) -> None:
    """Ids unique, evidence resolvable, sessions and turns in time order."""
    def fail(message: str, field: str) -> DatasetError:
        return DatasetError(message, path=p, record=record, field=field)

    first_seen: dict[str, str] = {}
    sessions: set[str] = set()
    previous: Session | None = None
    last_at: datetime | None = None
    for i, s in enumerate(c.sessions):
        if s.id in sessions:
            raise fail(f"duplicate session id {s.id!r}", f"sessions[{i}].id")
        sessions.add(s.id)
        if previous is not None and s.started_at < previous.started_at:
            raise fail(f"session {s.id!r} starts at {_utc(s.started_at)}, before the previous "
                       f"session {previous.id!r} ({_utc(previous.started_at)}); sessions must "
                       "be in time order", f"sessions[{i}].started_at")
        previous = s
        for j, t in enumerate(s.turns):
            where = f"sessions[{i}].turns[{j}]"
            if t.id in first_seen:
                raise fail(f"duplicate turn id {t.id!r} (first at {first_seen[t.id]})",
                           f"{where}.id")
            first_seen[t.id] = where
            if written and t.session_id != s.id:
                raise fail(f"turn says session {t.session_id!r} but sits in {s.id!r}",
                           f"{where}.session_id")
            if t.at < s.started_at or (last_at is not None and t.at < last_at):
                own = " (its session's start, which a turn without `at` takes)" \
                    if t.at == s.started_at else ""
                raise fail(f"turn time {_utc(t.at)}{own} is before its session start or "
                           "the previous turn; turns must be in time order", f"{where}.at")
            last_at = t.at
    probe_ids: set[str] = set()
    for k, q in enumerate(c.probes):
        if q.id in probe_ids:
            raise fail(f"duplicate probe id {q.id!r}", f"probes[{k}].id")
        probe_ids.add(q.id)
        for m, tid in enumerate(q.evidence_turn_ids):
            if tid not in first_seen:
                raise fail(f"evidence turn {tid!r} is not a turn of this conversation",
                           f"probes[{k}].evidence_turn_ids[{m}]")
        for m, sid in enumerate(q.evidence_session_ids):
            if sid not in sessions:
                raise fail(f"evidence session {sid!r} is not a session of this conversation",
                           f"probes[{k}].evidence_session_ids[{m}]")


def _check_unique_conversations(dataset: Dataset, p: Path, records: list[str]) -> None:
    seen: set[str] = set()
    for c, record in zip(dataset.conversations, records, strict=True):
        if c.id in seen:
            raise DatasetError(f"duplicate conversation id {c.id!r}", path=p, record=record,
                               field="id")
        seen.add(c.id)


# ---------------------------------------------------------------- writing


def _encode_header(d: Dataset, p: Path) -> dict[str, Any]:
    issues = [{k: getattr(i, k) for k in sorted(_KEYS["issue"])} for i in d.issues]
    return {"format": FORMAT, "version": VERSION, "name": d.name, "source": d.source,
            "metadata": _encode(d.metadata, p, "header", "metadata"), "issues": issues}


def _encode_conversation(c: Conversation, p: Path, record: str) -> dict[str, Any]:
    def meta(obj: Any, field: str) -> Any:
        return _encode(obj.metadata, p, record, f"{field}.metadata")

    sessions = [
        {"id": s.id, "started_at": _utc(s.started_at), "metadata": meta(s, f"sessions[{i}]"),
         "turns": [{"id": t.id, "speaker": t.speaker, "role": str(t.role), "text": t.text,
                    "at": _utc(t.at), "metadata": meta(t, f"sessions[{i}].turns[{j}]")}
                   for j, t in enumerate(s.turns)]}
        for i, s in enumerate(c.sessions)
    ]
    probes = [
        {"id": q.id, "question": q.question, "answer": q.answer, "category": q.category,
         "category_id": q.category_id, "abstention": q.abstention, "asked_at": _utc(q.asked_at),
         "evidence_turn_ids": list(q.evidence_turn_ids),
         "evidence_session_ids": list(q.evidence_session_ids), "metadata": meta(q, f"probes[{k}]")}
        for k, q in enumerate(c.probes)
    ]
    return {"id": c.id, "speakers": list(c.speakers), "metadata": meta(c, "conversation"),
            "sessions": sessions, "probes": probes}


def _encode(value: Any, p: Path, record: str, field: str) -> Any:
    """Metadata as JSON, tagging tuples and datetimes; anything else JSON cannot hold fails."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise DatasetError(f"cannot write non-finite number {value}", path=p, record=record,
                               field=field)
        return value
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v, p, record, f"{field}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, p, record, f"{field}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise DatasetError(f"metadata keys must be strings, got {bad[0]!r}", path=p,
                               record=record, field=field)
        return {k: _encode(v, p, record, f"{field}.{k}") for k, v in value.items()}
    raise DatasetError(f"cannot write a {type(value).__name__} value", path=p, record=record,
                       field=field)


def _utc(value: datetime) -> str:
    return as_utc(value).isoformat().replace("+00:00", "Z")


def _dumps(obj: Any, indent: int | None = None) -> str:
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, indent=indent)
