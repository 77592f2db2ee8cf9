"""Embedders: the hashing double, the persistent cache, Ollama (fake server), real MiniLM."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from memlab.embed import (
    CachedEmbedder,
    EmbeddingCache,
    build_embedder,
    default_cache_path,
    normalize_rows,
    registry,
)
from memlab.embed.cache import maybe_cached
from memlab.embed.hashing import HashEmbedder
from memlab.errors import ConfigError, MemlabError, UnknownComponentError
from memlab.spec import problems, resolve
from memlab.testing import FakeOllama
from memlab.testing.embedders import CountingEmbedder

TEXTS = ["I adopted a dog named Rex.", "We went hiking in the Alps.", "Rex loves the park."]


def test_registry_lists_every_embedder() -> None:
    assert registry.names() == ["ensemble", "hash", "ollama", "sentence-transformers", "st"]
    assert {p.name for p in registry.params("sentence-transformers")} == {
        "model", "device", "batch_size", "backend"}


def test_ensemble_cosine_is_the_weighted_mean_of_its_parts_cached_one_by_one(
        tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MEMLAB_CACHE_DIR", str(tmp_path))
    small, large = HashEmbedder(dim=64), HashEmbedder(dim=256)
    counting = {"name": "ensemble", "params": {
        "embedders": [CountingEmbedder(small), CountingEmbedder(large)], "weights": [1, 3]}}
    ensemble = build_embedder(counting)
    vectors = ensemble.encode(TEXTS)
    assert vectors.shape == (3, 320)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    a, b = small.encode(TEXTS), large.encode(TEXTS)
    np.testing.assert_allclose(vectors @ vectors.T, 0.25 * (a @ a.T) + 0.75 * (b @ b.T),
                               atol=1e-6)
    assert ensemble.model_id == "ensemble(1 x hash:blake2b-v2:64, 3 x hash:blake2b-v2:256)"
    again = build_embedder(counting)  # a new ensemble: its parts' vectors come from the cache
    np.testing.assert_array_equal(again.encode(TEXTS), vectors)
    assert [len(p.embedder.calls) for p in again.parts] == [1, 1]  # type: ignore[attr-defined]
    assert [p.misses for p in again.parts] == [0, 0]  # type: ignore[attr-defined]
    # a run records each part in full (defaults and model id), and names a bad part's place
    resolved = resolve("embedder", {"name": "ensemble", "params": {"embedders": ["hash", {
        "name": "hash", "params": {"dim": 8}}]}})
    assert resolved["params"]["embedders"] == [
        {"name": "hash", "params": {"dim": 512}, "identity": {"model_id": "hash:blake2b-v2:512"}},
        {"name": "hash", "params": {"dim": 8}, "identity": {"model_id": "hash:blake2b-v2:8"}}]
    assert resolved["identity"]["model_id"] == ("ensemble(1 x hash:blake2b-v2:512, "
                                                "1 x hash:blake2b-v2:8)")
    assert problems("embedder", {"name": "ensemble", "params": {"embedders": ["hash", "hsah"]}},
                    "dense.embedder")[0].startswith(
        "dense.embedder.params.embedders[1].name: unknown embedder 'hsah'")
    uncached = build_embedder({"name": "ensemble", "params": {
        "embedders": [CountingEmbedder(small), CountingEmbedder(large)], "cache": False}})
    uncached.encode(TEXTS)
    uncached.encode(TEXTS)
    assert [len(p.calls) for p in uncached.parts] == [2, 2]  # type: ignore[attr-defined]
    for params, message in [({"embedders": ["hash"]}, "at least two embedders"),
                            ({"embedders": ["hash", "hash"], "weights": [1]}, "2 embedders"),
                            ({"embedders": ["hash", "hash"], "weights": [1, -1]}, ">= 0")]:
        with pytest.raises(ConfigError, match=message):
            build_embedder({"name": "ensemble", "params": params}).encode(TEXTS)


def test_hash_embedder_is_normalised_deterministic_and_word_based() -> None:
    a = HashEmbedder().encode(TEXTS)
    b = HashEmbedder().encode(TEXTS)
    assert a.dtype == np.float32 and a.shape == (3, 512)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(a, b)
    sims = a @ a.T
    assert sims[0, 2] > sims[0, 1]  # "Rex" is shared by texts 0 and 2 only
    assert HashEmbedder(dim=64).model_id != HashEmbedder().model_id


def test_hash_embedder_gives_empty_text_a_zero_vector() -> None:
    vectors = HashEmbedder(dim=8).encode(["", "!!"])
    np.testing.assert_array_equal(vectors, np.zeros((2, 8), dtype=np.float32))


def test_normalize_rows_keeps_zero_rows_and_rejects_vectors() -> None:
    out = normalize_rows(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    with pytest.raises(ValueError, match="2-D"):
        normalize_rows(np.ones(3))


def test_build_embedder_from_name_spec_and_instance() -> None:
    assert isinstance(build_embedder("hash"), HashEmbedder)
    assert build_embedder({"name": "hash", "params": {"dim": 16}}).params() == {"dim": 16}
    instance = HashEmbedder(dim=4)
    assert build_embedder(instance) is instance
    with pytest.raises(UnknownComponentError, match="Did you mean 'hash'"):
        build_embedder("hsah")
    with pytest.raises(ConfigError, match="unknown key"):
        build_embedder({"name": "hash", "dim": 4})


def test_default_cache_path_follows_memlab_cache_dir(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEMLAB_CACHE_DIR", str(tmp_path))
    assert default_cache_path() == tmp_path / "embeddings.sqlite"


def test_second_pass_makes_zero_model_calls(tmp_path: Path) -> None:
    model = CountingEmbedder(HashEmbedder())
    cached = CachedEmbedder(model, tmp_path / "emb.sqlite")
    first = cached.encode([*TEXTS, TEXTS[0]])
    assert model.calls == [TEXTS]  # one call, duplicates sent once
    second = cached.encode(TEXTS)
    assert len(model.calls) == 1  # the second pass never reached the model
    np.testing.assert_array_equal(second, first[:3])
    np.testing.assert_array_equal(first, HashEmbedder().encode([*TEXTS, TEXTS[0]]))
    assert (cached.hits, cached.misses) == (4, 3)


def test_cache_survives_reopening_and_only_misses_reach_the_model(tmp_path: Path) -> None:
    path = tmp_path / "emb.sqlite"
    CachedEmbedder(CountingEmbedder(HashEmbedder()), path).encode(TEXTS[:2])
    model = CountingEmbedder(HashEmbedder())
    CachedEmbedder(model, EmbeddingCache(path)).encode(TEXTS)
    assert model.calls == [[TEXTS[2]]]


def test_cache_key_includes_the_model_id(tmp_path: Path) -> None:
    path = tmp_path / "emb.sqlite"
    CachedEmbedder(CountingEmbedder(HashEmbedder(), "model-a@1"), path).encode(TEXTS)
    other = CountingEmbedder(HashEmbedder(), "model-a@2")  # same name, new weights
    CachedEmbedder(other, path).encode(TEXTS)
    assert other.calls == [TEXTS]
    assert EmbeddingCache(path).count() == 6
    assert EmbeddingCache(path).count("model-a@1") == 3


def test_cheap_embedders_skip_the_cache(tmp_path: Path) -> None:
    assert isinstance(maybe_cached(HashEmbedder(), tmp_path / "x.sqlite"), HashEmbedder)
    wrapped = maybe_cached(CountingEmbedder(HashEmbedder()), tmp_path / "x.sqlite")
    assert isinstance(wrapped, CachedEmbedder)
    assert maybe_cached(wrapped) is wrapped


def _fill_cache(path: str, start: int) -> int:
    cached = CachedEmbedder(HashEmbedder(dim=32), path)
    for i in range(start, start + 200, 20):
        cached.encode([f"text number {j}" for j in range(i, i + 20)])
    return cached.misses


def test_cache_is_safe_with_concurrent_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite")
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:  # overlapping ranges: texts 100..199 are written by both
        misses = pool.starmap(_fill_cache, [(path, 0), (path, 100)])
    assert sum(misses) >= 300
    assert EmbeddingCache(path).count() == 300
    got = CachedEmbedder(CountingEmbedder(HashEmbedder(dim=32)), path)
    vectors = got.encode([f"text number {j}" for j in range(300)])
    assert got.misses == 0
    np.testing.assert_array_equal(
        vectors, HashEmbedder(dim=32).encode([f"text number {j}" for j in range(300)]))


def test_ollama_embedder_against_fake_server(tmp_path: Path) -> None:
    with FakeOllama() as server:
        embedder = registry.build("ollama", {"model": "all-minilm", "host": server.url,
                                             "batch_size": 2})
        vectors = embedder.encode(TEXTS)
        assert vectors.shape == (3, 384) and vectors.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
        embeds = [body for _, path, body in server.requests if path == "/api/embed"]
        assert [body["input"] for body in embeds] == [TEXTS[:2], TEXTS[2:]]
        digest = server.state.models["all-minilm:latest"].digest
        assert embedder.model_id == f"ollama:all-minilm@{digest[:16]}"
        again = CachedEmbedder(embedder, tmp_path / "c.sqlite")
        np.testing.assert_allclose(again.encode(TEXTS), vectors, rtol=1e-6)
        before = len(server.requests)
        again.encode(TEXTS)
        assert len(server.requests) == before


def test_ollama_host_comes_from_the_environment(monkeypatch) -> None:
    with FakeOllama() as server:
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        assert registry.build("ollama", {"model": "all-minilm"}).encode(["hi"]).shape == (1, 384)


def test_ollama_missing_model_and_unreachable_server_are_clear_errors() -> None:
    with FakeOllama() as server:
        missing = registry.build("ollama", {"model": "nomic-embed-text", "host": server.url})
        with pytest.raises(MemlabError, match="ollama pull nomic-embed-text"):
            missing.encode(["hi"])
        url = server.url
    gone = registry.build("ollama", {"model": "all-minilm", "host": url, "timeout": 2.0})
    with pytest.raises(MemlabError, match=f"Ollama at {url} is unreachable"):
        gone.encode(["hi"])


@pytest.mark.slow
def test_bundled_minilm_loads_offline_and_ranks_paraphrases(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    embedder = registry.build("sentence-transformers")
    vectors = embedder.encode([
        "I adopted a puppy last weekend.",
        "Last weekend I got a new young dog.",
        "The quarterly tax filing is due in April.",
    ])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    paraphrase, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert paraphrase > 0.6 > 0.2 > unrelated
    assert embedder.model_id.startswith(
        "sentence-transformers:sentence-transformers/all-MiniLM-L6-v2@")
    assert embedder.model_id.endswith("+onnx-v2")  # the default backend
    assert len(embedder.model_id.rsplit("@", 1)[1].split("+")[0]) == 16


def _legacy_file(path: Path, model_id: str, texts: list[str]) -> np.ndarray:
    """A cache file in the first layout (one WITHOUT ROWID table keyed by the model id's
    text), holding ``texts``' vectors as HashEmbedder gives them."""
    import sqlite3

    from memlab.embed.cache import text_key

    vectors = HashEmbedder().encode(texts)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE embeddings (model TEXT NOT NULL, text_sha256 BLOB NOT NULL, "
                     "dim INTEGER NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (model, "
                     "text_sha256)) WITHOUT ROWID")
        conn.executemany("INSERT INTO embeddings VALUES (?, ?, ?, ?)", [
            (model_id, text_key(t), int(v.shape[0]), v.astype("<f4").tobytes())
            for t, v in zip(texts, vectors, strict=True)])
    return vectors


def test_a_cache_in_the_first_layout_is_still_read_then_compacted_and_dropped(
        tmp_path: Path) -> None:
    """Upgrading loses no vector: the old table is a read fallback, new vectors go to the
    new layout, ``compact`` moves the old rows (same bytes) and ``drop`` forgets a model."""
    path = tmp_path / "emb.sqlite"
    old = _legacy_file(path, "model-a@1", TEXTS[:2])
    model = CountingEmbedder(HashEmbedder(), "model-a@1")
    first = CachedEmbedder(model, path).encode(TEXTS)
    assert model.calls == [[TEXTS[2]]]  # the two old vectors came from the old table
    np.testing.assert_array_equal(first[:2], old)
    cache = EmbeddingCache(path)
    assert cache.models() == [("model-a@1", 2, 2 * 512 * 4, True),
                              ("model-a@1", 1, 512 * 4, False)]
    assert cache.count() == 3 and cache.count("model-a@1") == 3
    before, after = cache.compact()
    assert before > 0 and after > 0
    assert cache.models() == [("model-a@1", 3, 3 * 512 * 4, False)]
    again = CountingEmbedder(HashEmbedder(), "model-a@1")
    np.testing.assert_array_equal(CachedEmbedder(again, EmbeddingCache(path)).encode(TEXTS),
                                  first)
    assert again.calls == []
    CachedEmbedder(CountingEmbedder(HashEmbedder(), "model-b@1"), path).encode(TEXTS[:1])
    assert EmbeddingCache(path).drop(["model-a@1"]) == 3
    assert [m[:2] for m in EmbeddingCache(path).models()] == [("model-b@1", 1)]
    fresh = CountingEmbedder(HashEmbedder(), "model-a@1")
    CachedEmbedder(fresh, EmbeddingCache(path)).encode(TEXTS)
    assert fresh.calls == [TEXTS]  # dropped: embedded again


def test_a_reader_survives_another_process_compacting_the_file(tmp_path: Path) -> None:
    path = tmp_path / "emb.sqlite"
    _legacy_file(path, "model-a@1", TEXTS)
    reader = EmbeddingCache(path)
    assert len(reader.get_many("model-b@1", [b"x" * 32])) == 0  # opened: the old table seen
    EmbeddingCache(path).compact()  # "another process"
    model = CountingEmbedder(HashEmbedder(), "model-a@1")
    texts = [*TEXTS, "a text no layout holds"]  # looked for in the dropped table too
    np.testing.assert_array_equal(CachedEmbedder(model, reader).encode(texts),
                                  HashEmbedder().encode(texts))
    assert model.calls == [texts[-1:]]  # the others came from the new layout


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_a_model_path_with_no_folder_names_the_path_and_how_models_are_trained(
        monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    from memlab.embed.sentence_transformer import SentenceTransformerEmbedder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the Hub id below is not looked up online

    missing = "runs/embedders/not-trained-yet"
    embedder = SentenceTransformerEmbedder(model=missing, backend=backend)
    with pytest.raises(ConfigError, match=r"no model folder at 'runs/embedders/not-trained-yet'"
                       r".*train-embedder"):
        embedder.encode(["hello"])
    # a Hub id (owner/name) is not a path: it is looked up as before
    hub = SentenceTransformerEmbedder(model="someone/some-model", backend=backend)
    with pytest.raises(MemlabError) as info:
        hub.encode(["hello"])
    assert "no model folder" not in str(info.value)


def test_validate_notes_a_model_folder_not_trained_yet(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from memlab.eval.cli import main

    config = tmp_path / "c.yaml"
    trained = tmp_path / "trained"
    (trained / "ready").mkdir(parents=True)
    dense = {"name": "dense", "params": {"embedder": {"name": "sentence-transformers",
                                                      "params": {"model": "x"}}}}
    config.write_text(yaml.safe_dump({
        "name": "c", "dataset": {"name": "synthetic"}, "grid": {"cases": [
            {"label": label, "retrieval": {**dense, "params": {"embedder": {
                "name": "sentence-transformers", "params": {"model": str(trained / label)}}}}}
            for label in ("ready", "later")]}}))
    assert main(["validate", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "ok: c[ready] (synthetic, retrieval only; 48 of 48 probes)"
    assert lines[1] == "ok: c[later] (synthetic, retrieval only; 48 of 48 probes)"
    assert lines[2] == (f"  note: no model folder at '{trained / 'later'}' yet (`python -m "
                        "memlab.eval train-embedder CONFIG --only CASE` writes it)")
    assert len(lines) == 3


def test_validate_notes_an_embedded_model_that_is_not_installed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    from memlab.eval.cli import main
    from memlab.llm import models

    monkeypatch.setattr(models, "model_available", lambda name: name != "qwen2.5-coder-1.5b")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "name": "c", "dataset": {"name": "synthetic"},
        "answer": {"llm": {"name": "llamacpp", "params": {"model": "qwen2.5-coder-1.5b"}}},
        "judge": {"llm": {"name": "llamacpp"}}}))  # the 0.5B: installed with memlab
    assert main(["validate", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["ok: c (synthetic, answers with llamacpp; 48 of 48 probes)",
                     "  note: the embedded model qwen2.5-coder-1.5b is not installed here: "
                     "every answer not already in the cache will fail; install it with "
                     + models.install_command(models.catalog_model("qwen2.5-coder-1.5b"))]
