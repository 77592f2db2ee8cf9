"""A probes file: hand-written questions about conversations a loader read (the OMI and
agent loaders' ``probes_path``). JSON array or JSONL, one object per question::

    {"id": "p-01", "conversation_id": "ana", "question": "...", "answer": "...",
     "evidence_turn_ids": ["m12"], "asked_at": "2025-11-19T12:00:00Z",
     "category": "knowledge-update", "abstention": false}

``conversation_id`` may be left out when there is one conversation; ``category`` defaults
to the loader's, ``abstention`` to false; a numeric ``answer`` becomes text; other keys go
to the probe's metadata, except one that looks like a misspelt field (``categroy``,
``askedAt``: an error with "did you mean"). ``evidence_session_ids`` are derived from the
turn ids (in session order). It is strict: an unknown evidence id, an unknown
conversation, a duplicate id, or an ``asked_at`` before an evidence turn is an error naming
the file, the record (index, or ``line N`` for JSONL, plus the id) and the field.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from memlab.data.fields import Fields, jsonl_lines, open_path, parse_iso, read_json
from memlab.data.schema import Conversation, Probe, Turn
from memlab.errors import DatasetError

PROBE_KEYS = {"id", "conversation_id", "question", "answer", "evidence_turn_ids", "category",
              "asked_at", "abstention"}


def records(path: Path) -> list[tuple[str | int, Any]]:
    """Top-level records with their labels: list index, or ``line N`` for JSONL."""
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return [(f"line {n}", item) for n, item in jsonl_lines(open_path(path))]
    data = read_json(path)
    if isinstance(data, dict):
        return [(0, data)]
    if isinstance(data, list):
        return list(enumerate(data))
    raise DatasetError(f"expected a list or an object at top level, got {type(data).__name__}",
                       path=path)


def attach_probes(conversations: list[Conversation], path: Path, category: str,
                  held_by: tuple[str, str] = ("conversation", "dataset")
                  ) -> list[Conversation]:
    """``conversations`` with the probes of the file at ``path`` (``category`` for those
    that name none). ``held_by`` words the errors: what a conversation is, in what (a
    ``stream`` in the ``transcript``, a ``user`` in the ``export``)."""
    by_id = {c.id: c for c in conversations}
    turns = {c.id: {t.id: (t, n) for n, s in enumerate(c.sessions) for t in s.turns}
             for c in conversations}
    probes: dict[str, list[Probe]] = {c.id: [] for c in conversations}
    seen: set[str] = set()
    items = records(path)
    if not items:
        raise DatasetError("the probes file holds no probe (leave probes_path out for "
                           "conversations without probes)", path=path)
    for label, raw in items:
        f = Fields(raw, path=path, record=label)
        probe_id = str(f.get("id", (str, int)))
        f = Fields(raw, path=path, record=f"{label} ({probe_id})")
        f.near_misses(PROBE_KEYS)
        if probe_id in seen:
            raise f.error(f"duplicate probe id {probe_id!r}", field="id")
        seen.add(probe_id)
        conv_id = _conversation(f, by_id, held_by)
        probes[conv_id].append(_probe(f, probe_id, by_id[conv_id], turns[conv_id], category))
    return [dataclasses.replace(c, probes=tuple(probes[c.id])) for c in conversations]


def _conversation(f: Fields, by_id: dict[str, Conversation],
                  held_by: tuple[str, str]) -> str:
    unit, whole = held_by
    if not f.has("conversation_id"):
        if len(by_id) == 1:
            return next(iter(by_id))
        raise f.error(f"missing required field (the {whole} has {len(by_id)} {unit}s: "
                      f"{', '.join(by_id)})", field="conversation_id")
    conv_id = str(f.get("conversation_id", (str, int)))
    if conv_id not in by_id:
        raise f.error(f"no {unit} {conv_id!r} in the {whole} (known: {', '.join(by_id)})",
                      field="conversation_id")
    return conv_id


def _probe(f: Fields, probe_id: str, conv: Conversation,
           turns: dict[str, tuple[Turn, int]], category: str) -> Probe:
    asked_at = f.datetime("asked_at", parse_iso)
    if not f.get("question", str).strip():  # here, to name the probes file
        raise f.error(f"probe {probe_id!r} has an empty question", field="question")
    evidence = f.strings("evidence_turn_ids")
    positions = []
    for i, turn_id in enumerate(evidence):
        if turn_id not in turns:
            raise f.error(f"no turn {turn_id!r} in conversation {conv.id!r}",
                          field=f"evidence_turn_ids[{i}]")
        turn, position = turns[turn_id]
        if turn.at > asked_at:
            raise f.error(f"asked at {asked_at.isoformat()}, before evidence turn {turn_id!r} "
                          f"({turn.at.isoformat()})", field="asked_at")
        positions.append(position)
    return Probe(
        id=probe_id,
        question=f.get("question", str),
        answer=str(f.get("answer", (str, int, float))),
        evidence_turn_ids=tuple(evidence),
        evidence_session_ids=tuple(conv.sessions[n].id for n in sorted(set(positions))),
        category=f.get("category", str, category),
        asked_at=asked_at,
        abstention=f.get("abstention", bool, False),
        metadata={k: v for k, v in f.raw.items() if k not in PROBE_KEYS},
    )
