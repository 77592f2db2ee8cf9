"""An on-disk response cache, and ``CachedLLM``, the wrapper that consults it.

The key is the sha256 of a canonical JSON of everything that changes the output: backend
name, model name **and** weights digest (lm-evaluation-harness once keyed on the prompt
only, so a second model silently got the first model's answers), every generation
parameter after per-call overrides, and the full messages. Transport settings (host,
timeout, retries) are left out: they do not change the answer.

Storage is one SQLite file in WAL mode: many processes of a run may read and write it at
once; each write is one short transaction, and a busy database is waited for, not failed.
Failed calls are never stored, nor are empty answers (an HTTP 200 with no text is a
glitch more often than an answer; replaying it forever would hide it), and a stored empty
answer is generated again.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Literal

from memlab.errors import ConfigError, MemlabError
from memlab.llm.base import Completion, Message
from memlab.llm.models import cache_root

CacheMode = Literal["off", "read", "readwrite"]
MODES = ("off", "read", "readwrite")
KEY_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    digest TEXT NOT NULL,
    request TEXT NOT NULL,
    completion TEXT NOT NULL,
    created_at REAL NOT NULL
)
"""


def default_cache_path() -> Path:
    return cache_root() / "llm" / "responses.sqlite"


def key_material(identity: dict[str, Any], messages: Sequence[Message]) -> dict[str, Any]:
    """The dict that is hashed: identity (backend, model, digest, params) plus messages."""
    return {
        "v": KEY_VERSION,
        "backend": identity["backend"],
        "model": identity["model"],
        "digest": identity["digest"],
        "params": identity["params"],
        "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
    }


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False, default=str)


def cache_key(identity: dict[str, Any], messages: Sequence[Message]) -> str:
    return hashlib.sha256(canonical_json(key_material(identity, messages)).encode()).hexdigest()


class ResponseCache:
    """Completions by key in one SQLite file; safe across threads and processes."""

    def __init__(self, path: str | Path | None = None, timeout: float = 60.0) -> None:
        self.path = Path(path).expanduser() if path else default_cache_path()
        self.timeout = timeout
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "timeout": self.timeout}  # connections stay per process

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self.timeout = state["path"], state["timeout"]
        self._local = threading.local()

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(_SCHEMA)
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def get(self, key: str) -> Completion | None:
        row = self._connection().execute(
            "SELECT completion FROM responses WHERE key = ?", (key,)).fetchone()
        return _completion_from_json(row[0]) if row else None

    def put(self, key: str, material: dict[str, Any], completion: Completion) -> None:
        """Store ``completion`` under ``key`` (the first writer of a key wins)."""
        self._connection().execute(
            "INSERT OR IGNORE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key, material["backend"], material["model"], material["digest"],
             canonical_json(material), json.dumps(asdict(completion), default=str),
             time.time()),
        )

    def request(self, key: str) -> dict[str, Any] | None:
        """The key material stored with ``key`` (to see what an entry was made from)."""
        row = self._connection().execute(
            "SELECT request FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def __len__(self) -> int:
        return int(self._connection().execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            conn.close()
        self._local.conn = None


def _completion_from_json(text: str) -> Completion:
    return Completion(**json.loads(text))


class CachedLLM:
    """Wraps any LLM with a ResponseCache; hits come back with ``cached=True``.

    ``mode``: ``off`` (always generate), ``read`` (use stored answers, store nothing new),
    ``readwrite`` (use and store). On a hit ``seconds`` is the lookup time and the original
    generation time is in ``metadata["generation_seconds"]``.
    """

    def __init__(self, llm: Any, cache: ResponseCache | str | Path | None = None,
                 mode: CacheMode = "readwrite") -> None:
        if mode not in MODES:
            raise ConfigError(f"cache mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.llm = llm
        self.cache = cache if isinstance(cache, ResponseCache) else ResponseCache(cache)
        self.mode = mode
        self.hits = 0
        self.misses = 0

    def params(self) -> dict[str, Any]:
        return dict(self.llm.params())

    def __getattr__(self, name: str) -> Any:
        """Everything else (``check``, ``count_prompt_tokens``, …) is the wrapped LLM's."""
        if name == "llm" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.llm, name)

    def identity(self, **overrides: Any) -> dict[str, Any]:
        """backend, model, digest and params of the wrapped LLM for these overrides."""
        own = getattr(self.llm, "cache_identity", None)
        if own is not None:
            return dict(own(**overrides))
        params = {**self.llm.params(), **overrides}
        return {"backend": getattr(self.llm, "backend", type(self.llm).__name__),
                "model": str(params.get("model", "")), "digest": "", "params": params}

    def generate(self, messages: Sequence[Message], **overrides: Any) -> Completion:
        """The stored answer, or the wrapped LLM's (stored). ``on_token`` (a streaming
        callback, no part of the key) goes to the wrapped LLM; a hit sends nothing to it,
        and the caller shows the whole text."""
        streaming = {"on_token": overrides.pop("on_token")} if "on_token" in overrides else {}
        if self.mode == "off":
            return self.llm.generate(messages, **overrides, **streaming)
        start = time.perf_counter()
        try:
            material = key_material(self.identity(**overrides), messages)
        except MemlabError:  # identity unknown (server down…): the call records the error
            return self.llm.generate(messages, **overrides, **streaming)
        key = hashlib.sha256(canonical_json(material).encode()).hexdigest()
        stored = self.cache.get(key)
        if stored is not None and stored.text.strip():
            self.hits += 1
            meta = {**stored.metadata, "generation_seconds": stored.seconds, "cache_key": key}
            return replace(stored, cached=True, seconds=time.perf_counter() - start,
                           metadata=meta)
        self.misses += 1
        completion = self.llm.generate(messages, **overrides, **streaming)
        if self.mode == "readwrite" and completion.ok and completion.text.strip():
            self.cache.put(key, material, completion)
        return replace(completion, metadata={**completion.metadata, "cache_key": key})
