"""LongMemEval-style haystacks from any dataset: each history padded with other
conversations' sessions up to a target length in Qwen tokens.

LongMemEval's S and M files bury each question's evidence sessions among unrelated
chat sessions (~115k tokens of history in S). :func:`build_haystack` does the same for
any loaded dataset, so one question set gives a retrieval curve over history length:

- each conversation keeps all of its own sessions, turns, ids and probes (every
  evidence reference stays valid);
- distractor sessions come from *other* conversations (never a copy of one of the
  conversation's own sessions: the same turns, or the same id with at least half of its
  turn texts in common - LongMemEval reuses a session's id across questions, while
  LoCoMo and memlab's own sets number sessions per conversation, so ``session_3`` of
  another conversation is another session; never the same text twice), drawn in an order that
  depends only on ``seed`` and the conversation id, and added while the history stays
  within ``tokens`` Qwen tokens (``Speaker: text`` per turn, as the turn chunker shows
  them);
- each distractor is moved in time into the conversation's span, from ``lead_days``
  before its first session to just before its earliest probe's ``asked_at`` (so the
  padding is visible to every probe and nothing is placed past ``as_of``); its turns
  keep their offsets from its start;
- distractor sessions and turns get new ids (``hs:<source conversation>/<id>``), their
  turns drop dataset flags such as ``has_answer`` and record their source in metadata
  (``haystack_source``), and the sessions are merged with the own ones by start time.

Configs ask for it as a dataset option: ``dataset.params.haystack: {tokens: 115000,
seed: 0}`` (``tokens`` may be written ``115k``).
"""

from __future__ import annotations

import random
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from memlab.data.schema import Conversation, Dataset, Session, Turn
from memlab.errors import ConfigError
from memlab.tokens import count_tokens

#: Prefix of every distractor session and turn id.
PREFIX = "hs:"
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*$")


def parse_tokens(value: Any, where: str = "tokens") -> int:
    """``115000``, ``"115k"`` or ``"1.5M"`` as a token count (> 0)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _SIZE.match(str(value)) if isinstance(value, str | float) else None
    if match is None or float(match.group(1)) <= 0:
        raise ConfigError(f"{where}: expected a positive token count such as 115000 or "
                          f"115k, got {value!r}")
    scale = {"": 1, "k": 1_000, "m": 1_000_000}[match.group(2).lower()]
    return round(float(match.group(1)) * scale)


@dataclass(frozen=True)
class _Candidate:
    """A session of some conversation that may pad another one."""

    conversation_id: str
    session: Session
    tokens: int
    text_key: int


def session_tokens(session: Session) -> int:
    """Qwen tokens of a session as ``Speaker: text`` lines, one per turn."""
    return sum(count_tokens(f"{t.speaker}: {t.full_text}") for t in session.turns)


def history_tokens(conversation: Conversation) -> int:
    return sum(session_tokens(s) for s in conversation.sessions)


def build_haystack(dataset: Dataset, tokens: int | str, seed: int = 0,
                   lead_days: float = 30.0,
                   conversations: Collection[str] | None = None) -> Dataset:
    """``dataset`` with each conversation padded to at most ``tokens`` Qwen tokens of
    history by distractor sessions of the other conversations (see the module doc).
    ``conversations`` pads only those (a sample's); the others stay as loaded and
    still lend their sessions. A conversation's padding does not depend on which others
    are padded."""
    target = parse_tokens(tokens, "dataset.params.haystack.tokens")
    if lead_days < 0:
        raise ConfigError(f"dataset.params.haystack.lead_days: must be >= 0, got {lead_days}")
    pool = [_Candidate(c.id, s, session_tokens(s), _text_key(s))
            for c in dataset for s in c.sessions]
    padded = tuple(c if conversations is not None and c.id not in conversations
                   else _pad(c, pool, target, seed, lead_days) for c in dataset)
    options = {"tokens": target, "seed": seed, "lead_days": lead_days}
    return Dataset(name=dataset.name, conversations=padded, source=dataset.source,
                   issues=dataset.issues,
                   metadata={**dataset.metadata, "haystack": options})


def _text_key(session: Session) -> int:
    return hash(tuple((t.speaker, t.text) for t in session.turns))


def _same_session(own: Session | None, other: Session) -> bool:
    """Is ``other`` (a session with the id of ``own``) a version of the same session: at
    least half of the shorter one's turn texts in common?"""
    if own is None:
        return False
    mine, theirs = {t.text for t in own.turns}, {t.text for t in other.turns}
    return 2 * len(mine & theirs) >= min(len(mine), len(theirs))


def _pad(conversation: Conversation, pool: list[_Candidate], target: int, seed: int,
         lead_days: float) -> Conversation:
    own = {s.id: s for s in conversation.sessions}
    seen = {_text_key(s) for s in conversation.sessions}
    total = history_tokens(conversation)
    rng = random.Random(f"{seed}:{conversation.id}")
    order = list(range(len(pool)))
    rng.shuffle(order)
    chosen: list[_Candidate] = []
    for index in order:
        if total >= target:
            break
        candidate = pool[index]
        if (candidate.conversation_id == conversation.id or candidate.text_key in seen
                or total + candidate.tokens > target
                or _same_session(own.get(candidate.session.id), candidate.session)):
            continue
        chosen.append(candidate)
        seen.add(candidate.text_key)
        total += candidate.tokens
    if not chosen:
        return conversation
    start, end = _span(conversation, lead_days)
    moved = [_move(c, _start_time(rng, start, end, c.session)) for c in chosen]
    sessions = sorted([(s.started_at, 0, n, s) for n, s in enumerate(conversation.sessions)]
                      + [(s.started_at, 1, n, s) for n, s in enumerate(moved)],
                      key=lambda row: row[:3])
    speakers = list(conversation.speakers)
    speakers += sorted({t.speaker for s in moved for t in s.turns} - set(speakers))
    metadata = {**conversation.metadata, "haystack_tokens": total,
                "haystack_distractors": len(moved)}
    return replace(conversation, sessions=tuple(row[3] for row in sessions),
                   speakers=tuple(speakers), metadata=MappingProxyType(metadata))


def _span(conversation: Conversation, lead_days: float) -> tuple[datetime, datetime]:
    """Where distractors may start: from ``lead_days`` before the first session to a
    minute before the earliest question (the last session when there is none)."""
    first = conversation.sessions[0].started_at if conversation.sessions else None
    asked = [p.asked_at for p in conversation.probes]
    end = (min(asked) if asked else conversation.sessions[-1].started_at) - timedelta(minutes=1)
    start = (first or end) - timedelta(days=lead_days)
    return start, max(end, start)


def _start_time(rng: random.Random, start: datetime, end: datetime, session: Session
                ) -> datetime:
    """A start in [start, end - the session's own duration], to the second."""
    duration = max((t.at for t in session.turns), default=session.started_at) - session.started_at
    latest = max(end - max(duration, timedelta(0)), start)
    seconds = int((latest - start).total_seconds())
    return start + timedelta(seconds=rng.randint(0, seconds))


def _move(candidate: _Candidate, start: datetime) -> Session:
    """The session re-dated to ``start`` under a distractor id, its turns flagged."""
    session = candidate.session
    shift = start - session.started_at
    sid = f"{PREFIX}{candidate.conversation_id}/{session.id}"
    turns = tuple(Turn(id=f"{PREFIX}{candidate.conversation_id}/{t.id}", session_id=sid,
                       speaker=t.speaker, role=t.role, text=t.text, at=t.at + shift,
                       metadata=_distractor_metadata(t.metadata, candidate.conversation_id))
                  for t in session.turns)
    return Session(id=sid, started_at=start, turns=turns,
                   metadata=MappingProxyType({"haystack": True,
                                              "source_conversation": candidate.conversation_id,
                                              "source_session": session.id}))


def _distractor_metadata(metadata: Mapping[str, Any], source: str) -> Mapping[str, Any]:
    """Keep what describes the turn (an image caption); drop the source's evidence flags."""
    kept = {k: v for k, v in metadata.items() if k == "image_caption"}
    return MappingProxyType({**kept, "haystack_source": source})


def haystack_option(value: Any) -> dict[str, Any]:
    """``dataset.params.haystack`` checked: ``{tokens, seed, lead_days}``."""
    where = "dataset.params.haystack"
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping {{tokens: 115000, seed: 0}}, "
                          f"got {value!r}")
    unknown = set(value) - {"tokens", "seed", "lead_days"}
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {sorted(unknown)}; "
                          "takes tokens, seed, lead_days")
    if "tokens" not in value:
        raise ConfigError(f"{where}.tokens: required (the history length in Qwen tokens)")
    seed = value.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"{where}.seed: expected an integer, got {seed!r}")
    lead = value.get("lead_days", 30.0)
    if isinstance(lead, bool) or not isinstance(lead, int | float):
        raise ConfigError(f"{where}.lead_days: expected a number, got {lead!r}")
    return {"tokens": parse_tokens(value["tokens"], f"{where}.tokens"), "seed": seed,
            "lead_days": float(lead)}
