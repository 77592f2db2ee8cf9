"""Response cache: the key holds everything that changes the output; hits are fast and marked."""

from __future__ import annotations

import multiprocessing
import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from memlab.errors import ConfigError
from memlab.llm.base import Completion, Message
from memlab.llm.cache import CachedLLM, ResponseCache, cache_key, key_material
from memlab.llm.llamacpp import LlamaCppLLM
from memlab.llm.mock import MockLLM
from memlab.llm.models import EMBEDDED_QWEN, ensure_embedded_model
from memlab.llm.ollama import OllamaLLM
from memlab.llm.openai import OpenAICompatLLM

CHAT = [{"role": "system", "content": "Answer from memory."},
        {"role": "user", "content": "What did Melanie paint?"}]


class Pinned:
    """An LLM whose identity is set by the test (to vary only the digest)."""

    backend = "pinned"

    def __init__(self, model: str = "qwen", digest: str = "aaa", fail: bool = False) -> None:
        self.model, self.digest, self.fail, self.calls = model, digest, fail, 0

    def params(self) -> dict[str, Any]:
        return {"model": self.model}

    def cache_identity(self, **overrides: Any) -> dict[str, Any]:
        return {"backend": self.backend, "model": self.model, "digest": self.digest,
                "params": {"temperature": 0.0, **overrides}}

    def generate(self, messages: Sequence[Message], **overrides: Any) -> Completion:
        self.calls += 1
        return Completion(text="" if self.fail else f"answer {self.calls}", prompt_tokens=5,
                          completion_tokens=2, seconds=0.5, model=self.model,
                          digest=self.digest, error="boom" if self.fail else None)


def test_key_material_holds_backend_model_digest_params_and_messages() -> None:
    identity = LlamaCppLLM().cache_identity(max_tokens=32)
    material = key_material(identity, CHAT)
    assert material["backend"] == "llamacpp"
    assert material["model"] == EMBEDDED_QWEN.name
    assert material["digest"] == EMBEDDED_QWEN.sha256
    assert material["messages"] == CHAT
    assert material["params"] == {
        "n_ctx": 8192, "n_batch": 512, "temperature": 0.0, "top_p": 1.0,
        "top_k": 40, "min_p": 0.0, "repeat_penalty": 1.0, "seed": 0, "max_tokens": 32}


@pytest.mark.parametrize(
    ("factory", "changes"),
    [
        (LlamaCppLLM, {"model_name": "renamed", "n_ctx": 4096, "n_batch": 256,
                       "temperature": 0.7, "top_p": 0.9, "top_k": 20, "min_p": 0.05,
                       "repeat_penalty": 1.1, "seed": 1, "max_tokens": 12}),
        (lambda **kw: OpenAICompatLLM(model="qwen", **kw),
         {"base_url": "http://other:8000/v1", "digest": "abc", "temperature": 0.5,
          "top_p": 0.5, "seed": 3, "max_tokens": 5}),
    ],
)
def test_every_output_parameter_changes_the_key(factory: Any, changes: dict[str, Any]) -> None:
    base = cache_key(factory().cache_identity(), CHAT)
    for name, value in changes.items():
        assert cache_key(factory(**{name: value}).cache_identity(), CHAT) != base, name
    assert cache_key(factory(timeout=1.0).cache_identity(), CHAT) == base
    other = [CHAT[0], {"role": "user", "content": "What did Melanie paint? "}]
    assert cache_key(factory().cache_identity(), other) != base
    assert cache_key(factory().cache_identity(), [{**m, "role": "user"} for m in CHAT]) != base


def test_llamacpp_transport_params_do_not_change_the_key(tmp_path: Path) -> None:
    base = cache_key(LlamaCppLLM().cache_identity(), CHAT)
    assert cache_key(LlamaCppLLM(n_threads=1, timeout=5).cache_identity(), CHAT) == base
    # the same weights under another path: the digest, not the path, identifies them
    alias = tmp_path / "alias.gguf"
    alias.symlink_to(ensure_embedded_model(progress=False))
    renamed = LlamaCppLLM(model_path=str(alias), model_name=EMBEDDED_QWEN.name)
    assert cache_key(renamed.cache_identity(), CHAT) == base


def test_hit_is_marked_and_model_messages_overrides_miss(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    first = CachedLLM(MockLLM(responses=["Paris"], model="a"), cache)
    c1 = first.generate(CHAT)
    c2 = first.generate(CHAT)
    assert (c1.cached, c2.cached, c2.text) == (False, True, "Paris")
    assert c2.metadata["generation_seconds"] == c1.seconds
    assert c2.metadata["cache_key"] == c1.metadata["cache_key"]
    assert (first.hits, first.misses) == (1, 1)
    other_model = CachedLLM(MockLLM(responses=["Rome"], model="b"), cache)
    assert other_model.generate(CHAT).text == "Rome"  # not model a's answer
    assert not first.generate(CHAT[1:]).cached
    assert not first.generate(CHAT, temperature=0.5).cached  # overrides are part of the key
    assert len(cache) == 4


def test_same_name_other_digest_misses(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    assert not CachedLLM(Pinned(digest="aaa"), cache).generate(CHAT).cached
    assert CachedLLM(Pinned(digest="aaa"), cache).generate(CHAT).cached
    assert not CachedLLM(Pinned(digest="bbb"), cache).generate(CHAT).cached
    assert not CachedLLM(Pinned(digest="aaa"), cache).generate(CHAT, temperature=0.3).cached


def test_modes_and_failures(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    read_only = CachedLLM(Pinned(), path, mode="read")
    assert not read_only.generate(CHAT).cached and len(read_only.cache) == 0
    CachedLLM(Pinned(), path, mode="readwrite").generate(CHAT)
    assert read_only.generate(CHAT).cached
    off = CachedLLM(Pinned(), path, mode="off")
    assert not off.generate(CHAT).cached and off.llm.calls == 1
    failing = CachedLLM(Pinned(fail=True, model="f"), path)
    assert failing.generate(CHAT).error == "boom"
    assert failing.generate(CHAT).error == "boom" and failing.llm.calls == 2  # never stored
    with pytest.raises(ConfigError, match="cache mode"):
        CachedLLM(Pinned(), path, mode="write")  # type: ignore[arg-type]


def test_entries_persist_and_record_their_request(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    c = CachedLLM(Pinned(), path).generate(CHAT)
    reopened = ResponseCache(path)
    stored = reopened.get(c.metadata["cache_key"])
    assert stored is not None and stored.text == "answer 1" and stored.digest == "aaa"
    request = reopened.request(c.metadata["cache_key"])
    assert request is not None
    assert request["model"] == "qwen" and request["digest"] == "aaa"
    assert request["messages"] == CHAT


def test_unknown_identity_passes_the_call_through(tmp_path: Path) -> None:
    llm = OllamaLLM(host="127.0.0.1:9", retries=0)  # nothing listens on port 9
    c = CachedLLM(llm, tmp_path / "c.sqlite").generate(CHAT)
    assert not c.ok and "ollama serve" in c.error and not c.cached


def _writer(args: tuple[str, int, int]) -> int:
    path, worker, count = args
    cache = ResponseCache(path)
    for i in range(count):
        material = {"backend": "w", "model": f"m{worker}", "digest": "d", "params": {},
                    "messages": [{"role": "user", "content": str(i)}]}
        done = Completion(text=f"{worker}-{i}", prompt_tokens=i, completion_tokens=1,
                          seconds=0.0, model=f"m{worker}")
        cache.put(f"{worker}-{i}", material, done)
        shared = replace(done, text="shared")
        cache.put(f"shared-{i}", material, shared)  # every worker writes these keys too
        assert cache.get(f"{worker}-{i}") is not None
    return count


def test_concurrent_writers_from_processes_do_not_corrupt(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        written = pool.map(_writer, [(path, w, 150) for w in range(4)])
    assert written == [150] * 4
    cache = ResponseCache(path)
    assert len(cache) == 4 * 150 + 150
    for worker in range(4):
        stored = cache.get(f"{worker}-149")
        assert stored is not None and stored.text == f"{worker}-149"
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# ---------------------------------------------------------------- with the real model


@pytest.fixture(scope="session")
def qwen() -> LlamaCppLLM:
    llm = LlamaCppLLM(max_tokens=24)
    llm.llama()  # load once; later instances with these settings share it
    return llm


@pytest.mark.slow
def test_real_model_second_call_is_a_fast_hit(qwen: LlamaCppLLM, tmp_path: Path) -> None:
    cached = CachedLLM(qwen, tmp_path / "c.sqlite")
    chat = [{"role": "user", "content": f"Name three colours. ({tmp_path.name})"}]
    first = cached.generate(chat, max_tokens=10)
    second = cached.generate(chat, max_tokens=10)
    assert first.ok and not first.cached and first.text
    assert second.cached and second.text == first.text
    assert second.prompt_tokens == first.prompt_tokens and second.digest == EMBEDDED_QWEN.sha256
    changed = cached.generate(chat, max_tokens=6)
    assert not changed.cached and changed.completion_tokens <= 6
    other = CachedLLM(LlamaCppLLM(max_tokens=24, top_k=1), cached.cache)
    assert not other.generate(chat, max_tokens=6).cached
