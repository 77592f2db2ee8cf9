"""``json_schema``: a per-call parameter of every backend that holds the reply to a JSON
schema (llama.cpp grammar, Ollama ``format``, OpenAI-style ``response_format``); a call
without it keeps the cache key it always had."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from memlab.errors import ConfigError
from memlab.llm.cache import CachedLLM, ResponseCache
from memlab.llm.common import resolve_generation
from memlab.llm.llamacpp import LlamaCppLLM
from memlab.llm.ollama import OllamaLLM
from memlab.llm.openai import OpenAICompatLLM
from memlab.testing import FakeOllama

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"facts": {"type": "array", "maxItems": 2, "items": {
        "type": "object", "properties": {"fact": {"type": "string"},
                                         "turns": {"type": "array", "items": {"type": "integer"},
                                                   "minItems": 1, "maxItems": 3}},
        "required": ["fact", "turns"], "additionalProperties": False}}},
    "required": ["facts"], "additionalProperties": False}
CHAT = [{"role": "system", "content": "List facts the speaker said about herself as JSON: "
                                      '{"facts": [{"fact": ..., "turns": [turn numbers]}]}.'},
        {"role": "user", "content": "[1] Anna: I adopted a cat named Miso last Sunday.\n"
                                    "[2] Ben: Where from?\n[3] Anna: The shelter on Pine "
                                    "Street. I also started learning the cello."}]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOllama]:
    with FakeOllama() as fake:
        yield fake


def _last(server: FakeOllama, path: str) -> dict[str, Any]:
    return next(body for _, p, body in reversed(server.requests) if p == path)


def test_json_schema_is_an_optional_per_call_parameter_of_every_backend() -> None:
    defaults = {"temperature": 0.0, "max_tokens": 8}
    assert resolve_generation("x", defaults, {"json_schema": None}) == defaults
    assert resolve_generation("x", defaults, {"json_schema": SCHEMA})["json_schema"] == SCHEMA
    with pytest.raises(ConfigError, match="json_schema must be a JSON schema"):
        resolve_generation("x", defaults, {"json_schema": ["not", "a", "schema"]})
    with pytest.raises(ConfigError, match="json_schema is not JSON"):
        resolve_generation("x", defaults, {"json_schema": {"type": "object", "x": {1, 2}}})
    with pytest.raises(ConfigError, match=r"per-call parameters: json_schema, max_tokens, "
                                          r"temperature"):
        resolve_generation("x", defaults, {"grammar": "root ::= x"})
    with pytest.raises(ConfigError, match="schema_format 'xml' is not known"):
        OpenAICompatLLM(schema_format="xml").check_params()


def test_a_call_without_a_schema_keeps_its_cache_key_and_one_with_it_gets_its_own(
        tmp_path: Any) -> None:
    llm = LlamaCppLLM(max_tokens=8)
    plain = llm.cache_identity()
    assert "json_schema" not in plain["params"] and llm.cache_identity(json_schema=None) == plain
    assert llm.cache_identity(json_schema=SCHEMA)["params"]["json_schema"] == SCHEMA
    remote = OpenAICompatLLM(model="m", digest="d")
    assert "schema_format" not in remote.cache_identity()["params"]  # transport only
    cached = CachedLLM(remote, cache=ResponseCache(tmp_path / "r.sqlite"))
    keys = {json.dumps(cached.identity(**o), sort_keys=True)
            for o in ({}, {"json_schema": None}, {"json_schema": SCHEMA})}
    assert len(keys) == 2


def test_ollama_sends_the_schema_as_format(server: FakeOllama) -> None:
    llm = OllamaLLM(host=server.url, max_tokens=16)
    assert llm.generate(CHAT, json_schema=SCHEMA).ok
    assert _last(server, "/api/chat")["format"] == SCHEMA
    assert llm.generate(CHAT).ok
    assert "format" not in _last(server, "/api/chat")


def test_openai_compatible_servers_get_response_format_in_either_form(
        server: FakeOllama) -> None:
    base = f"{server.url}/v1"
    assert OpenAICompatLLM(base_url=base, model="qwen3:4b").generate(CHAT, json_schema=SCHEMA).ok
    assert _last(server, "/v1/chat/completions")["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "reply", "schema": SCHEMA,
                                               "strict": True}}
    OpenAICompatLLM(base_url=base, model="qwen3:4b", schema_format="json_object").generate(
        CHAT, json_schema=SCHEMA)
    assert _last(server, "/v1/chat/completions")["response_format"] == {
        "type": "json_object", "schema": SCHEMA}
    OpenAICompatLLM(base_url=base, model="qwen3:4b").generate(CHAT)
    assert "response_format" not in _last(server, "/v1/chat/completions")


@pytest.mark.slow
def test_the_embedded_qwen_replies_valid_json_under_the_schema() -> None:
    """The 0.5B, free, wraps its JSON in a code fence and pads it; held to the schema by
    llama.cpp's grammar it writes exactly one valid object with at most two facts."""
    llm = LlamaCppLLM(max_tokens=160)
    c = llm.generate(CHAT, json_schema=SCHEMA)
    assert c.ok, c.error
    reply = json.loads(c.text)
    jsonschema.validate(reply, SCHEMA)
    assert c.metadata["finish_reason"] == "stop"


@pytest.mark.slow
def test_the_embedded_qwen_decides_memory_updates_under_the_decision_schema() -> None:
    """``extracted``'s update step with ``structured``: the 0.5B's reply is one valid
    decision the Decider reads (no fallback), acting on the memory it names."""
    from datetime import UTC, datetime

    from memlab.chunkers.base import MemoryUnit
    from memlab.memory.decisions import Decider, decision_schema

    day = datetime(2023, 5, 1, tzinfo=UTC)
    shown = [MemoryUnit("m1/v1", "Lives in Paris with her two cats", "fact", ("t1",), "s1", day),
             MemoryUnit("m2/v1", "Works as a nurse at the city hospital", "fact", ("t2",), "s1",
                        day)]
    decision = Decider(LlamaCppLLM(), structured=True)._ask(
        "Quit the hospital job to study law", day, [(shown[0], 0.7), (shown[1], 0.65)])
    assert decision.by == "llm", decision.record
    jsonschema.validate(json.loads(decision.record["raw"]), decision_schema(2))
    assert decision.event in ("UPDATE", "DELETE") and decision.target is shown[1]
