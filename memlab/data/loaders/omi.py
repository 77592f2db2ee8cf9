"""OMI transcripts: transcript segments split into conversations by OMI's silence rules.

`OMI <https://github.com/BasedHardware/omi>`_ streams speech as transcript segments
``{text, is_user, speaker_id, start, end}`` and closes a *conversation* after a stretch of
silence; that closed conversation is what it summarises and mines for memories. This loader
replays a recorded stream the same way, so each OMI conversation becomes one memlab
``Session`` (``seeds/omi-memory-extraction-qa.md`` describes the backend behaviour followed).

Usage::

    memlab.load_dataset("omi", path="transcripts.json", probes_path="probes.jsonl",
                        conversation_timeout=120, user_name="User", started_at=None)

A worked example (two users, four days, 32 turns, 8 probes) is ``tests/data/omi/``.

**Transcript file.** ``.jsonl`` / ``.ndjson`` is read as JSON Lines, anything else as one
JSON document. It holds either

- *one bare stream*: a list of segments (JSON array, or one segment per JSONL line), or
- *streams*: objects ``{"id" or "uid", "started_at", "user_name", "conversation_timeout",
  "segments": [...]}`` (a single object, a JSON array of them, or one per JSONL line).
  Only ``segments`` is required. One stream becomes one memlab ``Conversation`` whose id
  is ``id``, else ``uid``, else ``stream-<index>`` (a bare stream is ``stream-0``).

A *segment* has ``text`` (string, stripped), ``is_user`` (boolean), ``start`` and ``end``
(seconds from the stream's start, ``0 <= start <= end``), optional ``speaker_id``
(integer; when absent it is read from OMI's ``speaker: "SPEAKER_NN"``, else 0 as in OMI)
and optional ``id``. ``{"type": "stop_conversation"}`` (OMI's websocket stop message) is
a *marker*, not a turn: it ends the current conversation. Segment starts must not decrease.

**Turns.** ``is_user`` -> speaker = the user name (``user_name`` option, or the stream's
``user_name``; empty means ``"User"`` as in OMI) and role ``user``; otherwise speaker
``"Speaker <speaker_id>"`` and role ``other``, exactly OMI's ``segments_as_string``; text
that strips to nothing stays an (empty) turn, as OMI keeps it. Turn id =
the segment's ``id``, else ``seg-<i>`` where ``i`` is its position in the stream's segment
list (markers count, so ``seg-5`` is ``segments[5]``). ``at`` = stream ``started_at`` +
``start`` seconds; ``started_at`` is ISO-8601 (naive = UTC), default the ``started_at``
option, else 1970-01-01T00:00:00Z — never the current time (such a stream is reported in
``Dataset.issues``). Turn metadata keeps ``start``,
``end``, ``speaker_id`` and ``is_user``.

**Conversations (sessions).** A new session starts when the silence before a segment —
its ``start`` minus the latest ``end`` heard so far in the session — is **at least** the
timeout (OMI finalises once ``seconds_since_last_segment >= timeout``; its
``gap_splits(seconds, timeout)`` is ``seconds >= timeout``), or after a stop marker.
Overlapping speech (negative gap) never splits. Session ids are ``<conversation>-c1``,
``-c2``, ...; ``started_at`` = first turn's ``at``; metadata ``finished_at`` (last end) and
``ended_by`` (``timeout``, ``stop_conversation`` or ``end_of_stream``). The timeout follows
OMI's ``/v4/listen`` rules (see :func:`effective_timeout`): default 120 s, ``-1`` = 4 h,
below 120 s -> 120 s, above 4 h -> 4 h; a stream's own ``conversation_timeout`` overrides the
option, and each conversation's metadata records the timeout it was split with.

**Probes file** (``probes_path``; :mod:`memlab.data.probes_file`): one object per
question, ``{"id", "conversation_id" (the stream; may be left out when there is one),
"question", "answer", "evidence_turn_ids", "asked_at", "category" (default ``"omi"``),
"abstention"}``; strict: an unknown evidence id or stream, a duplicate id, or an
``asked_at`` before an evidence turn is an error.
Without ``probes_path`` conversations have no probes. Every error names file, record
(index, or ``line N`` for JSONL, plus the id when known) and field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from memlab.data.checks import check_dataset
from memlab.data.fields import (
    Fields,
    as_utc,
    located,
    open_path,
    parse_iso,
)
from memlab.data.probes_file import attach_probes, records
from memlab.data.schema import Conversation, DataIssue, Dataset, Role, Session, Turn
from memlab.errors import ConfigError, DatasetError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_TIMEOUT = 120
MAX_TIMEOUT = 4 * 60 * 60
STOP_MARKER = "stop_conversation"
MAX_SECONDS = 3.2e9  # ~100 years of offsets from the stream's start
_SPEAKER = re.compile(r"SPEAKER_(\d+)")


def effective_timeout(conversation_timeout: float) -> float:
    """The silence (seconds) after which OMI closes a conversation.

    Follows OMI's ``routers/transcribe.py``::

        # Max: 4h, min 2m
        conversation_creation_timeout = conversation_timeout
        if conversation_creation_timeout == -1:
            conversation_creation_timeout = 4 * 60 * 60
        if conversation_creation_timeout < 120:
            conversation_creation_timeout = 120

    plus the 4-hour maximum its comment and API documentation state (the snippet itself
    does not enforce it; OMI's later ``MAX_CONVERSATION_TIMEOUT_SECONDS`` is 4 h). Other
    negative values therefore become 120, as in OMI.
    """
    if isinstance(conversation_timeout, bool) or not isinstance(conversation_timeout, int | float):
        raise ConfigError(f"conversation_timeout must be a number of seconds, "
                          f"got {conversation_timeout!r}")
    if not math.isfinite(conversation_timeout):
        raise ConfigError(f"conversation_timeout must be finite, got {conversation_timeout!r}")
    value = MAX_TIMEOUT if conversation_timeout == -1 else conversation_timeout
    return min(max(value, MIN_TIMEOUT), MAX_TIMEOUT)


@located
def load_omi(
    path: str | Path,
    probes_path: str | Path | None = None,
    conversation_timeout: float = 120,
    user_name: str = "User",
    started_at: str | datetime | None = None,
) -> Dataset:
    """Load OMI transcript streams (and optionally probes) as a memlab Dataset."""
    timeout = effective_timeout(conversation_timeout)
    if not isinstance(user_name, str):
        raise ConfigError(f"user_name must be a string, got {user_name!r}")
    default_start = _option_start(started_at)
    path = open_path(path)
    streams = _streams(path)
    conversations = [_conversation(stream, timeout, user_name or "User", default_start)
                     for stream in streams]
    _check_unique_ids(conversations, path)
    if probes_path is not None:
        conversations = attach_probes(conversations, open_path(probes_path), "omi",
                                      held_by=("stream", "transcript"))
    undated = () if started_at is not None else tuple(
        DataIssue(c.id, c.id, "started_at", EPOCH.isoformat(), "dated from 1970-01-01: "
                  "no started_at (the loader's started_at option sets one)")
        for c, stream in zip(conversations, streams, strict=True)
        if stream.header is None or not stream.header.has("started_at"))
    return check_dataset(Dataset(
        name="omi",
        conversations=tuple(conversations),
        source=str(path),
        issues=undated,
        metadata={"conversation_timeout": timeout,
                  "probes_path": None if probes_path is None else str(probes_path)},
    ), path)


# --- reading the transcript file ---------------------------------------------------------


@dataclass(frozen=True)
class _Stream:
    """One stream's raw parts: its header (None for a bare list) and its segment views."""

    index: int
    header: Fields | None
    segments: list[Fields]


@dataclass(frozen=True)
class _Segment:
    id: str
    text: str
    is_user: bool
    speaker_id: int
    start: float
    end: float


def _is_stream(raw: Any) -> bool:
    return isinstance(raw, dict) and "segments" in raw


def _streams(path: Path) -> list[_Stream]:
    items = records(path)
    if not items:
        raise DatasetError("no transcript segments or streams", path=path)
    streams = _is_stream(items[0][1])
    for label, raw in items:
        if streams and isinstance(raw, dict) and not _is_stream(raw) \
                and not _SEGMENT_KEYS & (set(raw) - {"id"}):  # a stream short of segments
            raise DatasetError(f"missing required field (record {items[0][0]} is a stream; "
                               "a file holds streams or bare segments, not both)",
                               path=path, record=label, field="segments")
        if _is_stream(raw) != streams:
            raise DatasetError("mixes stream objects (with 'segments') and bare segments",
                               path=path, record=label)
    if not streams:
        return [_Stream(0, None, [Fields(raw, path=path, record=label) for label, raw in items])]
    out = []
    for index, (label, raw) in enumerate(items):
        header = Fields(raw, path=path, record=label)
        header.near_misses(_STREAM_KEYS)
        if header.has("id") or header.has("uid"):
            key = "id" if header.has("id") else "uid"
            header = Fields(raw, path=path, record=f"{label} ({header.get(key, (str, int))})")
        segments = header.children("segments")
        if not segments:
            raise header.error("a stream needs at least one segment", field="segments")
        out.append(_Stream(index, header, segments))
    return out


_STREAM_KEYS = {"id", "uid", "started_at", "user_name", "conversation_timeout", "segments"}
_SEGMENT_KEYS = {"id", "text", "is_user", "speaker_id", "speaker", "start", "end", "type"}


def _segment(f: Fields, index: int) -> _Segment | None:
    """One segment, or None for a stop marker."""
    f.near_misses(_SEGMENT_KEYS)
    if f.has("type"):
        kind = f.get("type", str)
        if kind != STOP_MARKER:
            raise f.error(f"unknown type {kind!r}; the only marker is {STOP_MARKER!r}",
                          field=f.where("type"))
        return None
    start, end = _seconds(f, "start"), _seconds(f, "end")
    if end < start:
        raise f.error(f"end {end} is before start {start}", field=f.where("end"))
    return _Segment(
        id=str(f.get("id", (str, int))) if f.has("id") else f"seg-{index}",
        text=f.get("text", str).strip(),
        is_user=f.get("is_user", bool),
        speaker_id=_speaker_id(f),
        start=start,
        end=end,
    )


def _seconds(f: Fields, key: str) -> float:
    value = float(f.get(key, (int, float)))
    if not math.isfinite(value) or value < 0 or value > MAX_SECONDS:
        raise f.error(f"expected a finite number of seconds >= 0, got {value}", field=f.where(key))
    return value


def _speaker_id(f: Fields) -> int:
    """``speaker_id``, else the number in OMI's ``speaker: "SPEAKER_NN"``, else 0."""
    value = f.get("speaker_id", (int, type(None)), None)
    if value is not None:
        if value < 0:
            raise f.error(f"expected a speaker number >= 0, got {value}",
                          field=f.where("speaker_id"))
        return int(value)
    if f.has("speaker"):
        label = f.get("speaker", str)
        match = _SPEAKER.fullmatch(label)
        if not match:
            raise f.error(f"expected 'SPEAKER_<n>', got {label!r}", field=f.where("speaker"))
        return int(match.group(1))
    return 0


# --- building conversations --------------------------------------------------------------


def _conversation(stream: _Stream, timeout: float, user_name: str,
                  default_start: datetime) -> Conversation:
    header = stream.header
    conv_id, start_at = f"stream-{stream.index}", default_start
    if header is not None:
        for key in ("uid", "id"):  # id wins over uid
            if header.has(key):
                conv_id = str(header.get(key, (str, int)))
                if not conv_id.strip():
                    raise header.error("expected a non-empty id", field=key)
        start_at = header.datetime("started_at", parse_iso, default_start)
        user_name = header.get("user_name", str, user_name) or "User"
        if header.has("conversation_timeout"):
            timeout = _stream_timeout(header)
    segments = _parse_segments(stream.segments)
    try:
        sessions = _sessions(conv_id, segments, timeout, user_name, start_at)
    except OverflowError:  # started_at + a segment's seconds past year 9999
        message = (f"started_at {start_at.isoformat()} plus the segments' seconds is past the "
                   "last date Python can hold (year 9999)")
        if header is not None:
            raise header.error(message, field="started_at") from None
        raise stream.segments[0].error(message, field="start") from None
    speakers = dict.fromkeys(t.speaker for s in sessions for t in s.turns)
    return Conversation(
        id=conv_id, speakers=tuple(speakers), sessions=sessions, probes=(),
        metadata={"format": "omi", "started_at": start_at, "conversation_timeout": timeout,
                  "user_name": user_name},
    )


def _stream_timeout(header: Fields) -> float:
    raw = header.get("conversation_timeout", (int, float))
    try:
        return effective_timeout(raw)
    except ConfigError as exc:
        raise header.error(str(exc), field="conversation_timeout") from None


def _parse_segments(views: list[Fields]) -> list[_Segment | None]:
    """Segments in order, checking ids are unique and starts never decrease."""
    out: list[_Segment | None] = []
    seen: set[str] = set()
    previous: float | None = None
    for index, f in enumerate(views):
        seg = _segment(f, index)
        out.append(seg)
        if seg is None:
            continue
        if seg.id in seen:
            raise f.error(f"duplicate segment id {seg.id!r}", field=f.where("id"))
        seen.add(seg.id)
        if previous is not None and seg.start < previous:
            raise f.error(f"start {seg.start} is before the previous segment's start "
                          f"{previous}; segments must be in time order", field=f.where("start"))
        previous = seg.start
    return out


def _sessions(conv_id: str, segments: list[_Segment | None], timeout: float, user_name: str,
              start_at: datetime) -> tuple[Session, ...]:
    """Group segments into OMI conversations: split on silence >= timeout or a stop marker."""
    groups: list[tuple[list[_Segment], str]] = []
    current: list[_Segment] = []
    last_end = 0.0
    for seg in segments:
        if seg is None or (current and seg.start - last_end >= timeout):
            if current:
                groups.append((current, STOP_MARKER if seg is None else "timeout"))
            current = []
            if seg is None:
                continue
        last_end = max(last_end, seg.end) if current else seg.end
        current.append(seg)
    if current:
        groups.append((current, "end_of_stream"))
    return tuple(_session(f"{conv_id}-c{n}", group, ended_by, user_name, start_at)
                 for n, (group, ended_by) in enumerate(groups, start=1))


def _session(session_id: str, group: list[_Segment], ended_by: str, user_name: str,
             start_at: datetime) -> Session:
    turns = tuple(_turn(seg, session_id, user_name, start_at) for seg in group)
    finished = start_at + timedelta(seconds=max(seg.end for seg in group))
    return Session(id=session_id, started_at=turns[0].at, turns=turns,
                   metadata={"ended_by": ended_by, "finished_at": finished})


def _turn(seg: _Segment, session_id: str, user_name: str, start_at: datetime) -> Turn:
    speaker = user_name if seg.is_user else f"Speaker {seg.speaker_id}"
    return Turn(
        id=seg.id, session_id=session_id, speaker=speaker,
        role=Role.USER if seg.is_user else Role.OTHER, text=seg.text,
        at=start_at + timedelta(seconds=seg.start),
        metadata={"start": seg.start, "end": seg.end, "speaker_id": seg.speaker_id,
                  "is_user": seg.is_user},
    )


def _check_unique_ids(conversations: Iterable[Conversation], path: Path) -> None:
    seen: set[str] = set()
    for index, conv in enumerate(conversations):
        if conv.id in seen:
            raise DatasetError(f"duplicate conversation id {conv.id!r}", path=path,
                               record=index, field="id")
        seen.add(conv.id)


def _option_start(started_at: str | datetime | None) -> datetime:
    if started_at is None:
        return EPOCH
    if isinstance(started_at, datetime):
        return as_utc(started_at)
    if isinstance(started_at, str):
        try:
            return as_utc(parse_iso(started_at))
        except ValueError as exc:
            raise ConfigError(f"started_at: unparseable date {started_at!r} ({exc})") from None
    raise ConfigError(f"started_at must be an ISO-8601 string or datetime, got {started_at!r}")
