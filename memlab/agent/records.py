"""The agent's errors and the plain-data shapes it returns (memories, history, status)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from memlab.chunkers.base import MemoryUnit
from memlab.errors import MemlabError
from memlab.retrieval.base import Hit

if TYPE_CHECKING:
    from memlab.agent.agent import MemoryAgent


class InvalidRequest(MemlabError):
    """The caller asked for something the agent cannot do (HTTP 422)."""


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
    except (InvalidRequest, BackendUnavailable):
        raise
    except MemlabError as exc:
        raise BackendUnavailable(str(exc), backend=backend) from exc


def tier(unit: MemoryUnit) -> str:
    """Which memory a unit belongs to: ``core``/``recall``/``archival``, else its kind."""
    if unit.kind == "core":
        return "core"
    if unit.kind == "turn":
        return "recall"
    return str(unit.metadata.get("tier") or unit.kind)


def hit_record(hit: Hit) -> dict[str, Any]:
    """A retrieved memory as the API returns it."""
    unit = hit.unit
    return {"id": unit.id, "content": unit.text, "memory_type": tier(unit), "kind": unit.kind,
            "score": round(float(hit.score), 6), "timestamp": unit.at.isoformat(),
            "source_turn_ids": list(unit.source_turn_ids)}


def history_rows(units: Iterable[MemoryUnit]) -> list[dict[str, str]]:
    """Recall turns as chat messages (their text without the speaker prefix)."""
    rows = []
    for unit in units:
        role = "assistant" if unit.metadata.get("role") == "assistant" else "user"
        rows.append({"role": role, "content": str(unit.metadata.get("turn_text", unit.text))})
    return rows


def status(agent: MemoryAgent) -> dict[str, Any]:
    """What ``GET /status`` shows: config, model and whether its backend answers, memory."""
    from memlab.agent.build import user_store

    answer = agent.config.answer
    assert answer is not None
    return {
        "status": "ok",
        "uptime_seconds": round(time.time() - agent.started, 3),
        "process": os.getpid(),
        "config": agent.config.name,
        "experiment": agent.settings.experiment,
        "overrides": agent.overrides,
        "model": {"backend": answer.llm.name, "params": _jsonable(agent.llm.params()),
                  "max_tokens": answer.max_answer_tokens, "template": answer.template.name},
        "backend": backend_health(agent),
        "memory": {"architecture": agent.memory_name,
                   "params": _jsonable(agent.memory_params),
                   "data_dir": str(agent.data_dir),
                   "archival_path": str(agent.settings.archival_path()),
                   "store": user_store(agent.settings, "")["name"],
                   "users": len(agent.users()), "messages": agent.log.count()},
    }


def backend_health(agent: MemoryAgent) -> dict[str, Any]:
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
