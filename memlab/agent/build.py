"""Building the agent: experiment config + settings -> LLM, memory spec, per-user memories.

The experiment config is validated exactly as ``python -m memlab.eval`` validates it.
Settings override only what they name; each override is listed in ``agent.overrides``
(and ``/status``). Every user's memory is built from the same spec with two things
filled in: the store (``memory.store`` from the settings, else the SQLite archival file;
namespace = user id, whatever the config says - the agent's memory always persists) and,
when the spec leaves ``llm`` unset, the agent's own model (one backend for chat and
consolidation). An architecture without a store (``flat``) is rebuilt from the
conversation log, in order and with the original timestamps, when the user is first seen
after a start.
"""

from __future__ import annotations

import copy
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memlab.agent.settings import AgentSettings, load_settings
from memlab.data.schema import Role, Session, Turn
from memlab.errors import ConfigError
from memlab.eval.config import ExperimentConfig, load_config
from memlab.spec import spec_parts

if TYPE_CHECKING:
    from memlab.agent.agent import MemoryAgent

#: settings.model.type -> (parameter for model.name, for context_window, for host)
_MODEL_KEYS: dict[str, tuple[str, str | None, str | None]] = {
    "llamacpp": ("model_path", "n_ctx", None),
    "ollama": ("model", "num_ctx", "host"),
    "openai": ("model", None, "base_url"),
    "mock": ("model", None, None),
}


def from_config(source: str | Path | dict[str, Any] | ExperimentConfig | None = None, *,
                data_dir: str | Path | None = None, settings: AgentSettings | None = None,
                llm: Any = None) -> MemoryAgent:
    """The live agent for an experiment config (default ``experiments/agent.yaml``).

    ``settings`` default to :func:`~memlab.agent.settings.load_settings` (file named by
    ``$MEMLAB_SERVE_CONFIG``, then environment). ``llm`` replaces the configured model
    (tests pass a mock). ``data_dir`` wins over the settings.
    """
    from memlab.agent.agent import MemoryAgent

    settings = settings or load_settings()
    if data_dir is not None:
        settings = settings.model_copy(update={"memory": settings.memory.model_copy(
            update={"data_dir": str(data_dir)})})
    config = source if isinstance(source, ExperimentConfig) else load_config(
        source if source is not None else settings.experiment)
    if config.answer is None:
        raise ConfigError(f"config '{config.name}' has no answer section: the agent needs "
                          "answer.llm and answer.template to chat")
    overrides: dict[str, Any] = {}
    config = _apply_model(config, settings, overrides)
    memory_spec = _memory_spec(config, settings, overrides)
    if llm is None:
        from memlab.llm import build_llm

        llm = build_llm(config.answer.llm.model_dump())  # type: ignore[union-attr]
    else:
        overrides["llm"] = type(llm).__name__
    return MemoryAgent(config, settings, llm, memory_spec, overrides)


def _apply_model(config: ExperimentConfig, settings: AgentSettings,
                 overrides: dict[str, Any]) -> ExperimentConfig:
    """The config with ``settings.model`` folded into ``answer``."""
    model = settings.model
    answer = config.answer
    assert answer is not None
    backend = model.type or answer.llm.name
    params = dict(answer.llm.params) if backend == answer.llm.name else {}
    name_key, window_key, host_key = _MODEL_KEYS.get(backend, ("model", None, None))
    for key, value in ((name_key, model.name), (window_key, model.context_window),
                       (host_key, model.host)):
        if key is not None and value is not None:
            params[key] = value
    if backend != answer.llm.name or params != answer.llm.params:
        overrides["answer.llm"] = {"name": backend, "params": params}
    update: dict[str, Any] = {"llm": answer.llm.model_copy(update={"name": backend,
                                                                   "params": params})}
    if model.max_tokens is not None:
        update["max_answer_tokens"] = model.max_tokens
        overrides["answer.max_answer_tokens"] = model.max_tokens
    return config.model_copy(update={"answer": answer.model_copy(update=update)})


def _memory_spec(config: ExperimentConfig, settings: AgentSettings,
                 overrides: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The memory's resolved ``(name, params)`` with the settings' overrides applied."""
    from memlab.memory import registry
    from memlab.spec import resolve

    resolved = resolve("memory", config.memory, template_dirs=tuple(config.template_dirs))
    name, params = resolved["name"], copy.deepcopy(resolved["params"])
    accepted = {p.name for p in registry.params(name)}
    for key in ("top_k", "relevance_threshold"):
        value = getattr(settings.retrieval, key)
        if value is not None:
            if key not in accepted:
                raise ConfigError(f"settings retrieval.{key}: memory '{name}' has no {key}")
            params[key] = overrides[f"memory.{key}"] = value
    embedding = settings.model.embedding_model
    if embedding:
        embedder = _embedder(embedding, settings)
        if not _set_embedders(params, embedder):
            raise ConfigError(f"settings model.embedding_model: memory '{name}' embeds nothing")
        overrides["embedding_model"] = embedder
    return name, params


def _set_embedders(params: dict[str, Any], embedder: dict[str, Any]) -> int:
    """Replace every embedder in a resolved params tree (nested strategies included);
    returns how many were replaced."""
    replaced = 0
    for key, value in params.items():
        if key == "embedder":
            params[key] = dict(embedder)
            replaced += 1
        elif isinstance(value, dict):
            inner = value["params"] if isinstance(value.get("params"), dict) else value
            replaced += _set_embedders(inner, embedder)
    return replaced


def _embedder(model: str, settings: AgentSettings) -> dict[str, Any]:
    """``hash``; an Ollama model when the backend is Ollama; else sentence-transformers."""
    if model == "hash":
        return {"name": "hash", "params": {}}
    if settings.model.type == "ollama":
        params: dict[str, Any] = {"model": model}
        if settings.model.host:
            params["host"] = settings.model.host
        return {"name": "ollama", "params": params}
    return {"name": "sentence-transformers", "params": {"model": model}}


def open_memory(agent: MemoryAgent, user_id: str) -> Any:
    """The user's memory, reloaded from the store or rebuilt from the log."""
    from memlab.memory import registry

    name, params = agent.memory_name, dict(agent.memory_params)
    accepted = {p.name for p in registry.params(name)}
    if "store" in accepted:
        params["store"] = user_store(agent.settings, user_id)
    if "llm" in accepted and params.get("llm") is None:
        params["llm"] = agent.llm
    memory = registry.build(name, params)
    if "store" not in accepted:
        replay_log(agent, memory, user_id)
    return memory


def user_store(settings: AgentSettings, user_id: str) -> dict[str, Any]:
    """The store spec of ``user_id``'s memory: ``memory.store`` or the archival file."""
    if settings.memory.store is None:
        return {"name": "sqlite", "params": {"path": str(settings.archival_path()),
                                             "namespace": user_id}}
    name, params = spec_parts("store", settings.memory.store)
    return {"name": name, "params": {**params, "namespace": user_id}}


def replay_log(agent: MemoryAgent, memory: Any, user_id: str) -> None:
    """Feed the user's logged sessions into a memory that keeps nothing on disk."""
    sessions: dict[str, list[dict[str, Any]]] = {}
    for row in agent.log.messages(user_id):
        sessions.setdefault(row["session_id"], []).append(row)
    for session_id, rows in sessions.items():
        turns = tuple(
            Turn(f"{session_id}:t{n}", session_id,
                 "assistant" if row["role"] == "assistant" else user_id,
                 Role.ASSISTANT if row["role"] == "assistant" else Role.USER,
                 row["content"], datetime.fromisoformat(row["at"]))
            for n, row in enumerate(rows, start=1))
        memory.ingest(Session(session_id, turns[0].at, turns))
