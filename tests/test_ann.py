"""faiss indexes of ``dense``: the HNSW prefix ladder keeps recall under ``as_of`` on real
MiniLM vectors, and built indexes are cached by a digest of the vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from memlab.data.schema import Dataset
from memlab.embed import CachedEmbedder
from memlab.embed.sentence_transformer import SentenceTransformerEmbedder
from memlab.errors import ConfigError
from memlab.retrieval import ann
from memlab.retrieval.ann import STORAGES, FaissIndex


def exact_top(vectors: np.ndarray, query: np.ndarray, visible: int) -> set[int]:
    return set(np.argsort(-(vectors[:visible] @ query), kind="stable")[:10].tolist())


def recall(index: FaissIndex, vectors: np.ndarray, queries: np.ndarray,
           visible: int) -> float:
    found = 0
    for query in queries:
        rows = index.search(query, 10, visible)[0]
        assert len(rows) == 10 and int(rows.max()) < visible  # nothing from the future
        found += len(exact_top(vectors, query, visible) & set(rows.tolist()))
    return found / (10 * len(queries))


@pytest.fixture(scope="module")
def real(locomo_dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """20,000 vectors as `bench search` makes them (real MiniLM embeddings of the 5,882
    LoCoMo turns + noise, renormalised) and 100 real LoCoMo questions embedded by MiniLM.
    (With only 1,000 distinct turns, 20 noisy copies each, recall@10 at ef_search 256
    drops to 0.973: dense near-duplicate clusters need a wider beam.)"""
    from memlab.bench.search import synthesise

    texts = list(dict.fromkeys(t.full_text for c in locomo_dataset for t in c.turns()))
    questions = sorted({p.question for c in locomo_dataset for p in c.probes})
    model = CachedEmbedder(SentenceTransformerEmbedder())
    base = model.encode(texts)
    _, vectors = synthesise(20_000, [str(i) for i in range(len(base))], base, 0.5, 0)
    return vectors, model.encode(questions[:: len(questions) // 100][:100])


@pytest.mark.slow
def test_hnsw_recall_at_10_on_real_vectors_with_and_without_as_of(real) -> None:
    vectors, queries = real
    index = FaissIndex(kind="hnsw", exact_below=0)
    index.build(vectors)
    assert index.ladder_sizes(20_000) == [5_000, 10_000]
    for visible in (20_000, 10_000, 2_000):  # all, 50 % and 10 % visible
        assert recall(index, vectors, queries, visible) >= 0.98


@pytest.mark.slow
def test_ivf_recall_at_10_on_real_vectors_with_and_without_as_of(real) -> None:
    vectors, queries = real
    index = FaissIndex(kind="ivf", exact_below=0)
    index.build(vectors)
    ivf = index._indexes[0][1]
    assert ivf.nlist == 20_000 // 39 and index.nprobe == 32  # 8 * sqrt(n), <= n / 39
    # min_scan: enough cells for 2,560 rows (66 of 512); widened by sqrt(hidden fraction)
    assert [index.probes(ivf, v) for v in (20_000, 10_000, 2_000, 1)] == [66, 94, 209, 512]
    # nprobe 32 scans 0.4 % of 1M rows (recall@10 1.000 there) but 6 % of these 20k, where
    # cells cut through the copies of a turn: recall 0.92 / 0.96 / 1.00. A small index
    # needs a larger share of its cells (128 here).
    index.nprobe = 128
    assert [index.probes(ivf, v) for v in (20_000, 10_000, 2_000)] == [128, 182, 405]
    for visible in (20_000, 10_000, 2_000):  # all, 50 % and 10 % visible: nprobe widened
        assert recall(index, vectors, queries, visible) >= 0.98


def test_ivf_storages_rank_alike_and_a_bad_one_is_named() -> None:
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((8_000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[:40] + 0.05 * rng.standard_normal((40, 32)).astype(np.float32)
    found = {}
    for storage in STORAGES:
        index = FaissIndex(kind="ivf", storage=storage, exact_below=0)
        index.build(vectors)
        built = index._indexes[0][1]
        assert built.ntotal == 8_000
        assert type(built).__name__ == ("IndexIVFFlat" if storage == "flat"
                                        else "IndexIVFScalarQuantizer")
        found[storage] = [index.search(q, 10, 4_000)[0] for q in queries]
        assert all(len(rows) == 10 and rows.max() < 4_000 for rows in found[storage])
    same = np.mean([len(set(a.tolist()) & set(b.tolist())) / 10
                    for a, b in zip(found["fp16"], found["flat"], strict=True)])
    assert same >= 0.99  # float16 keeps float32's ranking; sq8 may differ a little
    with pytest.raises(ConfigError, match="storage 'pq' is not known; valid: fp16, flat, sq8"):
        FaissIndex(storage="pq")


def test_ladder_copies_hold_time_prefixes_and_the_beam_widens_at_most_twice() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((12_000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = FaissIndex(kind="hnsw", exact_below=0, ladder_min=1_000)
    index.build(vectors)
    assert index.ladder_sizes(12_000) == [1_500, 3_000, 6_000]
    assert [size for size, _ in index._indexes] == [1_500, 3_000, 6_000, 12_000]
    assert [i.ntotal for _, i in index._indexes] == [1_500, 3_000, 6_000, 12_000]
    assert index.beam(10, 12_000) == 256 and index.beam(10, 6_000) == 256
    assert index.beam(10, 3_001) == 512  # searched in the 6,000-row copy: half visible
    assert index.beam(10, 500) == 768  # below the smallest copy: widened, capped at 2,048
    assert recall(index, vectors, vectors[:50] + 0.01, 3_001) >= 0.98
    flat = FaissIndex(kind="hnsw", exact_below=0, ladder=False)
    assert flat.ladder_sizes(12_000) == []


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_built_indexes_are_cached_by_a_digest_of_vectors_and_parameters(
        kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMLAB_CACHE_DIR", str(tmp_path))
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((6_000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    first = FaissIndex(kind=kind, exact_below=0, ladder_min=1_000, cache=True)
    first.build(vectors)
    folders = sorted((tmp_path / "faiss").iterdir())
    assert len(folders) == 1 and folders[0].name.startswith(f"{kind}-{ann.CACHE_VERSION}-")
    again = FaissIndex(kind=kind, exact_below=0, ladder_min=1_000, cache=True)
    again.build(vectors)  # read back, not built: the same graph answers the same
    assert [s for s, _ in again._indexes] == [s for s, _ in first._indexes]
    for query in vectors[:20]:
        for visible in (6_000, 2_500):
            got, want = again.search(query, 10, visible), first.search(query, 10, visible)
            np.testing.assert_array_equal(got[0], want[0])
            assert set(got[0].tolist()) <= set(range(visible))
    wider = FaissIndex(kind=kind, exact_below=0, ladder_min=1_000, cache=True, ef_search=512,
                       nprobe=8)  # search-time settings share the built index
    wider.build(vectors)
    assert len(list((tmp_path / "faiss").iterdir())) == 1
    changed = vectors.copy()
    changed[0, 0] += 0.5
    FaissIndex(kind=kind, exact_below=0, ladder_min=1_000, cache=True).build(changed)
    FaissIndex(kind=kind, exact_below=0, ladder_min=2_000, cache=True).build(vectors)
    assert len(list((tmp_path / "faiss").iterdir())) == 3
