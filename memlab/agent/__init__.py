"""The live memory agent (the Letta seed's ``LettaOllamaAgent``) built from memlab parts.

>>> agent = from_config("experiments/agent.yaml", data_dir="data/memlab")  # doctest: +SKIP
>>> agent.chat("Remember that I like Python", user_id="alice").message  # doctest: +SKIP

``from_config`` reads an experiment config (the evaluated configuration) and the
settings file / environment (:mod:`memlab.agent.settings`); ``python -m memlab.serve``
puts the agent behind an HTTP API.
"""

from __future__ import annotations

from memlab.agent.agent import MEMORY_TYPES, ChatReply, MemoryAgent, from_config
from memlab.agent.records import BackendUnavailable, InvalidRequest, MemoryNotFound
from memlab.agent.settings import AgentSettings, load_settings

__all__ = [
    "MEMORY_TYPES",
    "AgentSettings",
    "BackendUnavailable",
    "ChatReply",
    "InvalidRequest",
    "MemoryAgent",
    "MemoryNotFound",
    "from_config",
    "load_settings",
]
