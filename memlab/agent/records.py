"""The agent's errors and the plain-data shapes it returns (memories, history, status)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from memlab.chunkers.base import MemoryUnit
from memlab.data.schema import Role, Session, Turn
from memlab.errors import MemlabError, StorageError
from memlab.retrieval.base import Hit

MEMORY_TYPES = ("core", "recall", "archival")
USER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
DEFAULT_USER = "default"


def session_from_rows(session_id: str, user_id: str, rows: Sequence[dict[str, Any]]
                      ) -> Session:
    """Logged chat messages (``role``, ``content``, ISO ``at``) as one session of the user
    (assistant turns spoken by ``assistant``) with their original times."""
    turns = tuple(
        Turn(f"{session_id}:t{n}", session_id,
             "assistant" if row["role"] == "assistant" else user_id,
             Role.ASSISTANT if row["role"] == "assistant" else Role.USER,
             row["content"], datetime.fromisoformat(row["at"]))
        for n, row in enumerate(rows, start=1))
    return Session(session_id, turns[0].at, turns)


def check_user(user_id: str | None) -> str:
    """A valid user id (letters, digits, ``_.@-``; at most 64 characters)."""
    user_id = DEFAULT_USER if user_id is None else user_id
    if not isinstance(user_id, str) or not USER_ID.match(user_id):
        raise InvalidRequest(f"user_id must be 1-64 characters of letters, digits and _.@- "
                             f"starting with a letter or digit, got {user_id!r}")
    return user_id


class InvalidRequest(MemlabError):
    """The caller asked for something the agent cannot do (HTTP 422)."""


class MemoryNotFound(InvalidRequest):
    """The user has no memory with the id asked for (HTTP 404)."""


class BackendUnavailable(MemlabError):
    """The model (or embedding) backend failed or cannot be reached (HTTP 503)."""

    def __init__(self, reason: str, *, backend: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.backend = backend


@contextmanager
def llm_errors(backend: str) -> Iterator[None]:
    """Backend failures inside memory work (an embedder down, a bad setup) become
    :class:`BackendUnavailable` with their message; the agent's own errors pass."""
    try:
        yield
    except (InvalidRequest, BackendUnavailable, StorageError):
        raise
    except MemlabError as exc:
        raise BackendUnavailable(str(exc), backend=backend) from exc


def tier(unit: MemoryUnit, tiers: bool = True) -> str:
    """Which memory a unit belongs to: ``core``/``recall``/``archival``, else its kind. A
    memory without tiers (``flat``, ``tiers=False``) holds only searchable ``archival``
    memories."""
    if not tiers:
        return "archival"
    if unit.kind == "core":
        return "core"
    if unit.kind == "turn":
        return "recall"
    return str(unit.metadata.get("tier") or unit.kind)


def hit_record(hit: Hit, tiers: bool = True) -> dict[str, Any]:
    """A retrieved memory as the API returns it (``tiers``: see :func:`tier`)."""
    unit = hit.unit
    return {"id": unit.id, "content": unit.text, "memory_type": tier(unit, tiers),
            "kind": unit.kind,
            "score": round(float(hit.score), 6), "timestamp": unit.at.isoformat(),
            "source_turn_ids": list(unit.source_turn_ids)}


def history_rows(units: Iterable[MemoryUnit]) -> list[dict[str, str]]:
    """Recall turns as chat messages (their text without the speaker prefix)."""
    rows = []
    for unit in units:
        role = "assistant" if unit.metadata.get("role") == "assistant" else "user"
        rows.append({"role": role, "content": str(unit.metadata.get("turn_text", unit.text))})
    return rows


def status(agent: Any) -> dict[str, Any]:
    """What ``GET /status`` shows: config, model and whether its backend answers, memory."""
    from memlab.agent.build import user_store

    answer = agent.config.answer
    assert answer is not None
    backend = backend_health(agent)
    store = store_health(agent)
    problems = ([f"model backend: {backend['detail']}"] if backend["reachable"] is False
                else []) + ([f"memory store: {store['detail']}"] if not store["ok"] else [])
    return {
        "status": "degraded" if problems else "ok",
        "problems": problems,
        "uptime_seconds": round(time.time() - agent.started, 3),
        "process": os.getpid(),
        "config": agent.config.name,
        "experiment": agent.settings.experiment,
        "overrides": agent.overrides,
        "model": {"backend": answer.llm.name, "params": _jsonable(agent.llm.params()),
                  "max_tokens": answer.max_answer_tokens, "template": answer.template.name,
                  "embedded": agent.overrides.get("embedded_model")},
        "backend": backend,
        "memory": {"architecture": agent.memory_name,
                   "params": _jsonable(agent.memory_params),
                   "data_dir": str(agent.data_dir),
                   "archival_path": str(agent.settings.archival_path()),
                   "store": user_store(agent.settings, "")["name"],
                   "store_ok": store["ok"],
                   "users": len(agent.users()), "messages": agent.log.count()},
    }


def store_health(agent: Any) -> dict[str, Any]:
    """Whether the shared store (pgvector) answers: its write counter is read, which needs
    a connection; the local SQLite store has nothing to reach."""
    try:
        agent.store_version()
    except MemlabError as exc:
        return {"ok": False, "detail": str(exc)}
    return {"ok": True, "detail": "ok"}


def backend_health(agent: Any) -> dict[str, Any]:
    """Whether the model backend answers, without generating (servers are asked for the
    model; the embedded model reports whether it is loaded)."""
    check = getattr(agent.llm, "check", None)
    if check is None:
        return {"reachable": None, "detail": "embedded or scripted backend: nothing to reach"}
    try:
        check()
    except MemlabError as exc:
        return {"reachable": False, "detail": str(exc)}
    return {"reachable": True, "detail": "ok"}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    params = getattr(value, "params", None)
    return {"name": type(value).__name__,
            "params": _jsonable(params()) if callable(params) else {}}
