"""Settings of the live agent and its server: a JSON file shaped like the Letta seed's
``letta_config.json``, then environment variables, then command-line flags.

The file (every key optional)::

    {
      "experiment": "experiments/agent.yaml",
      "model": {"type": "ollama", "name": "qwen3:4b", "context_window": 8192,
                "max_tokens": 256, "host": "http://127.0.0.1:11434",
                "embedding_model": "all-minilm", "embedding_dim": 384},
      "memory": {"data_dir": "data/memlab", "max_open_users": 64,
                 "archival": {"type": "sqlite", "path": "data/memlab/archival.db"},
                 "store": null},
      "retrieval": {"top_k": 3, "relevance_threshold": 0.5},
      "server": {"host": "127.0.0.1", "port": 8888, "api_key": null,
                 "max_body_bytes": 65536, "max_import_bytes": 33554432,
                 "body_timeout": 30, "stream_keepalive": 15}
    }

The experiment config (YAML, validated like any evaluation config) names the memory
architecture, the answer model and the chat template: it is the configuration that was
evaluated. ``memory.store``, when set, is the store spec every user's memory uses instead
of the SQLite archival file (namespace = user id), e.g. ``{"name": "pgvector", "params":
{"dsn": "postgresql://memlab@db:5432/memlab"}}`` so several server processes share one
PostgreSQL. The ``model`` and ``retrieval`` keys, when set, override it (and ``/status``
lists every override). Relative paths in the file are relative to the file's folder.

Environment variables (they win over the file):

=============================  ==========================================
``MEMLAB_SERVE_CONFIG``        path of the JSON file
``MEMLAB_AGENT_CONFIG``        ``experiment``
``MEMLAB_DATA_DIR``            ``memory.data_dir``
``MEMLAB_ARCHIVAL_PATH``       ``memory.archival.path``
``MEMLAB_MAX_OPEN_USERS``      ``memory.max_open_users`` (default 64)
``MEMLAB_STORE``               ``memory.store`` (a store name; ``pgvector`` reads
                               ``MEMLAB_PG_DSN``)
``MEMLAB_MODEL_BACKEND``       ``model.type`` (llamacpp, ollama, openai, mock)
``MEMLAB_MODEL``               ``model.name``
``MEMLAB_MODEL_HOST``          ``model.host`` (Ollama also reads ``OLLAMA_HOST``)
``MEMLAB_CONTEXT_WINDOW``      ``model.context_window``
``MEMLAB_MAX_TOKENS``          ``model.max_tokens``
``MEMLAB_EMBEDDING_MODEL``     ``model.embedding_model``
``MEMLAB_TOP_K``               ``retrieval.top_k``
``MEMLAB_RELEVANCE_THRESHOLD`` ``retrieval.relevance_threshold``
``MEMLAB_HOST``                ``server.host``
``MEMLAB_PORT``                ``server.port``
``MEMLAB_API_KEY``             ``server.api_key``
``MEMLAB_MAX_BODY_BYTES``      ``server.max_body_bytes``
``MEMLAB_MAX_IMPORT_BYTES``    ``server.max_import_bytes`` (``POST /users/{id}/import``,
                               default 32 MiB)
``MEMLAB_BODY_TIMEOUT``        ``server.body_timeout`` (seconds, default 30)
``MEMLAB_STREAM_KEEPALIVE``    ``server.stream_keepalive`` (seconds, default 15)
=============================  ==========================================
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from memlab.data.paths import PROJECT_ROOT
from memlab.errors import ConfigError

DEFAULT_EXPERIMENT = PROJECT_ROOT / "experiments" / "agent.yaml"

#: Environment variable -> dotted settings key.
ENV_VARS: dict[str, str] = {
    "MEMLAB_AGENT_CONFIG": "experiment",
    "MEMLAB_DATA_DIR": "memory.data_dir",
    "MEMLAB_ARCHIVAL_PATH": "memory.archival.path",
    "MEMLAB_MAX_OPEN_USERS": "memory.max_open_users",
    "MEMLAB_STORE": "memory.store",
    "MEMLAB_MODEL_BACKEND": "model.type",
    "MEMLAB_MODEL": "model.name",
    "MEMLAB_MODEL_HOST": "model.host",
    "MEMLAB_CONTEXT_WINDOW": "model.context_window",
    "MEMLAB_MAX_TOKENS": "model.max_tokens",
    "MEMLAB_EMBEDDING_MODEL": "model.embedding_model",
    "MEMLAB_TOP_K": "retrieval.top_k",
    "MEMLAB_RELEVANCE_THRESHOLD": "retrieval.relevance_threshold",
    "MEMLAB_HOST": "server.host",
    "MEMLAB_PORT": "server.port",
    "MEMLAB_API_KEY": "server.api_key",
    "MEMLAB_MAX_BODY_BYTES": "server.max_body_bytes",
    "MEMLAB_MAX_IMPORT_BYTES": "server.max_import_bytes",
    "MEMLAB_BODY_TIMEOUT": "server.body_timeout",
    "MEMLAB_STREAM_KEEPALIVE": "server.stream_keepalive",
}
_PATH_KEYS = ("experiment", "memory.data_dir", "memory.archival.path")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSettings(_Strict):
    type: Literal["llamacpp", "ollama", "openai", "mock"] | None = None
    name: str | None = None
    context_window: int | None = Field(default=None, ge=256)
    max_tokens: int | None = Field(default=None, ge=1)
    host: str | None = None
    embedding_model: str | None = None
    embedding_dim: int | None = Field(default=None, ge=1, description="informational")


class ArchivalSettings(_Strict):
    type: Literal["sqlite"] = "sqlite"
    path: str | None = None


class MemorySettings(_Strict):
    data_dir: str | None = None
    max_open_users: int = Field(default=64, ge=1, description="memories held open at "
                                "once (each holds SQLite file descriptors); others reopen")
    archival: ArchivalSettings = Field(default_factory=ArchivalSettings)
    store: str | dict[str, Any] | None = None


class RetrievalSettings(_Strict):
    top_k: int | None = Field(default=None, ge=0)
    relevance_threshold: float | None = None


class ServerSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8888, ge=0, le=65535)
    api_key: str | None = None
    max_body_bytes: int = Field(default=65536, ge=1024)
    max_import_bytes: int = Field(default=32 << 20, ge=1024, description="the body limit "
                                  "of POST /users/{user_id}/import (a whole history)")
    body_timeout: float = Field(default=30.0, gt=0, description="seconds to wait for the "
                                "rest of a request body before a 408")
    stream_keepalive: float = Field(default=15.0, gt=0, description="seconds without an "
                                    "event after which POST /chat/stream sends a comment "
                                    "line (': keepalive'), so proxies keep the connection "
                                    "open through a long prefill")


class AgentSettings(_Strict):
    """Everything the agent and server read from the file, the environment and flags."""

    experiment: str = str(DEFAULT_EXPERIMENT)
    model: ModelSettings = Field(default_factory=ModelSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)

    def data_dir(self) -> Path:
        """``memory.data_dir``, else ``$XDG_DATA_HOME/memlab/agent``."""
        if self.memory.data_dir:
            return Path(self.memory.data_dir).expanduser()
        root = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        return Path(root).expanduser() / "memlab" / "agent"

    def archival_path(self) -> Path:
        path = self.memory.archival.path
        return Path(path).expanduser() if path else self.data_dir() / "archival.db"


def load_settings(path: str | Path | None = None, *, env: dict[str, str] | None = None,
                  overrides: dict[str, Any] | None = None) -> AgentSettings:
    """Settings from ``path`` (or ``$MEMLAB_SERVE_CONFIG``), environment, then ``overrides``
    (dotted keys, e.g. ``{"server.port": 9000}``)."""
    env = dict(os.environ if env is None else env)
    path = path or env.get("MEMLAB_SERVE_CONFIG") or None
    raw: dict[str, Any] = {}
    where = "settings"
    if path is not None:
        raw, where = _read(Path(path)), str(path)
        _resolve_paths(raw, Path(path).parent)
    for var, key in ENV_VARS.items():
        if env.get(var, "") != "":
            _set(raw, key, env[var])
    for key, value in (overrides or {}).items():
        if value is not None:
            _set(raw, key, value)
    try:
        return AgentSettings.model_validate(raw)
    except ValidationError as exc:
        problems = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(f"{where}: invalid agent settings:\n" + "\n".join(problems)) from None


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: settings file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object at the top level")
    return data


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    for key in _PATH_KEYS:
        value = _get(raw, key)
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            _set(raw, key, str(base / value))


def _get(raw: dict[str, Any], key: str) -> Any:
    node: Any = raw
    for part in key.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _set(raw: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"settings: cannot set {key}: {part} is not an object")
        node = child
    node[parts[-1]] = value
