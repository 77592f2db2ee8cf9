"""The ONNX Runtime backends of the bundled MiniLM against the torch model it came from."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from memlab.chunkers import registry as chunkers
from memlab.data.schema import Dataset
from memlab.embed import registry
from memlab.embed.sentence_transformer import SentenceTransformerEmbedder
from memlab.errors import ConfigError
from memlab.retrieval import build_strategy


def test_backend_is_a_parameter_and_part_of_the_cache_key() -> None:
    torch_id = SentenceTransformerEmbedder(backend="torch").model_id
    assert "+" not in torch_id  # torch keeps the ids its cached vectors were stored under
    onnx = registry.build("sentence-transformers")  # ONNX fp32 is the default
    int8 = registry.build("sentence-transformers", {"backend": "onnx-int8"})
    assert onnx.params()["backend"] == "onnx"
    assert onnx.model_id == f"{torch_id}+onnx-v2"
    assert int8.model_id == f"{torch_id}+onnx-int8-v2"
    with pytest.raises(ConfigError, match="backend 'tensorrt' is not known; valid choices: torch, "
                                          "onnx, onnx-int8"):
        registry.build("sentence-transformers", {"backend": "tensorrt"}).encode(["hi"])


@pytest.fixture(scope="module")
def turns(locomo_dataset: Dataset) -> list[str]:
    """500 distinct real LoCoMo turns (captions included), spread over all conversations."""
    texts = list(dict.fromkeys(t.full_text for c in locomo_dataset for t in c.turns()))
    return texts[:: len(texts) // 500][:500]


@pytest.mark.slow
def test_onnx_vectors_match_torch_on_500_locomo_turns(turns: list[str]) -> None:
    reference = SentenceTransformerEmbedder(backend="torch").encode(turns)
    fp32 = SentenceTransformerEmbedder(backend="onnx").encode(turns)
    int8 = SentenceTransformerEmbedder(backend="onnx-int8").encode(turns)
    assert fp32.shape == int8.shape == reference.shape == (500, 384)
    np.testing.assert_allclose(np.linalg.norm(fp32, axis=1), 1.0, rtol=1e-5)
    cosine = (fp32 * reference).sum(axis=1)
    assert cosine.min() >= 0.99, f"worst fp32 cosine {cosine.min():.4f}"
    assert cosine.mean() >= 0.9999
    lossy = (int8 * reference).sum(axis=1)  # the option's measured loss (README)
    assert 0.98 <= lossy.mean() < 0.9999 and lossy.min() >= 0.95


@pytest.mark.slow
def test_onnx_encodes_each_distinct_text_once_in_input_order(turns: list[str]) -> None:
    embedder = SentenceTransformerEmbedder(backend="onnx")
    texts = [turns[3], turns[0], turns[3], turns[250], turns[0]]
    batch = embedder.encode(texts)
    alone = np.stack([embedder.encode([t])[0] for t in texts])
    np.testing.assert_allclose(batch, alone, atol=1e-5)
    np.testing.assert_array_equal(batch[0], batch[2])
    assert embedder.encode([]).shape == (0, 384)


def recall_at_10(dataset: Dataset, embedder: str | dict[str, Any],
                 cache: str) -> tuple[int, int]:
    """(answerable probes of conversation 0 with an evidence turn in the top 10, probes)
    under ``embedder``: a spec, or the bundled MiniLM's backend by name."""
    conversation = dataset.conversations[0]
    chunker = chunkers.build("turn")
    if isinstance(embedder, str):
        embedder = {"name": "sentence-transformers", "params": {"backend": embedder}}
    strategy: Any = build_strategy({"name": "dense", "params": {"cache": cache,
                                                                "embedder": embedder}})
    strategy.index([u for s in conversation.sessions for u in chunker.split(s, conversation)])
    found = total = 0
    for probe in conversation.probes:
        if probe.abstention or not probe.evidence_turn_ids:
            continue
        hits = strategy.search(probe.question, 10, as_of=probe.asked_at, probe=probe)
        total += 1
        found += any(set(probe.evidence_turn_ids) & set(h.unit.source_turn_ids) for h in hits)
    return found, total


@pytest.mark.slow
def test_onnx_keeps_locomo_recall_at_10_on_one_conversation(locomo_dataset: Dataset,
                                                            tmp_path) -> None:
    cache = str(tmp_path / "embeddings.sqlite")
    torch_found, total = recall_at_10(locomo_dataset, "torch", cache)
    onnx_found, onnx_total = recall_at_10(locomo_dataset, "onnx", cache)
    assert total == onnx_total > 100
    assert onnx_found == torch_found
    assert torch_found / total > 0.5  # MiniLM finds evidence for most probes


@pytest.mark.slow
def test_an_ensemble_of_two_backends_averages_their_cosines_on_real_turns(
        turns: list[str], locomo_dataset: Dataset, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MEMLAB_CACHE_DIR", str(tmp_path))
    parts = [{"name": "sentence-transformers", "params": {"backend": b}}
             for b in ("onnx", "onnx-int8")]
    ensemble = registry.build("ensemble", {"embedders": parts, "weights": [2, 1]})
    texts = turns[:200]
    vectors = ensemble.encode(texts)
    assert vectors.shape == (200, 768)
    fp32 = SentenceTransformerEmbedder(backend="onnx").encode(texts)
    int8 = SentenceTransformerEmbedder(backend="onnx-int8").encode(texts)
    np.testing.assert_allclose(vectors @ vectors.T, (2 * fp32 @ fp32.T + int8 @ int8.T) / 3,
                               atol=1e-5)
    int8_id = SentenceTransformerEmbedder(backend="onnx-int8").model_id
    assert ensemble.model_id == (f"ensemble(2 x {SentenceTransformerEmbedder().model_id}, "
                                 f"1 x {int8_id})")
    spec = {"name": "ensemble", "params": {"embedders": parts}}
    found, total = recall_at_10(locomo_dataset, spec, str(tmp_path / "e.sqlite"))
    assert (found, total) == (79, 150)  # exact; fp32 alone finds 80, int8 alone 75
