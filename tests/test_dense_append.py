"""``dense`` with an HNSW index grows the graph when units are only appended after the
newest ones (the live agent's add path) and rebuilds it for any other change."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from memlab.chunkers.base import MemoryUnit
from memlab.embed import normalize_rows
from memlab.retrieval.dense import DenseStrategy

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def clustered(n: int, dim: int, seed: int = 0, centres: int = 300) -> np.ndarray:
    """Unit vectors around random centres, ~100 a centre as in test_retrieval's 20,000
    (what perturbed real embeddings look like; denser clusters need a wider beam)."""
    rng = np.random.default_rng(seed)
    middles = normalize_rows(rng.standard_normal((centres, dim)))
    picks = rng.integers(0, centres, n)
    noise = 0.5 / math.sqrt(dim) * rng.standard_normal((n, dim))
    return normalize_rows(middles[picks] + noise).astype(np.float32)


def units(start: int, stop: int, minutes: float = 0.0) -> list[MemoryUnit]:
    return [MemoryUnit(f"u{i}", f"unit {i}", "turn", (f"t{i}",), "s",
                       T0 + timedelta(minutes=i + minutes)) for i in range(start, stop)]


def hnsw(dim: int = 512, **params: int) -> DenseStrategy:
    return DenseStrategy(embedder={"name": "hash", "params": {"dim": dim}}, k=10, cache=False,
                         index="faiss-hnsw", index_params={"exact_below": 0, **params})


@pytest.mark.slow  # builds and grows a 30,000-row graph: ~40 s on a loaded 2-core machine
def test_appended_chunks_grow_the_graph_with_recall_and_a_valid_ladder() -> None:
    n, dim = 30_000, 64
    vectors = clustered(n, dim)
    exact = DenseStrategy(embedder="hash", k=10)
    grown = hnsw()
    for start in range(0, n, 6_000):  # 5 chunks, each searched before the next arrives
        stop = start + 6_000
        grown.index(units(start, stop), vectors[start:stop])
        assert len(grown.ranked_vector(vectors[0], 10, None)[0]) == 10
    exact.index(units(0, n), vectors)
    ann = grown._ann
    assert ann is not None and grown.ann_builds == 1  # built at 6,000 rows, then appended
    # copies at twice the ladder floor (4,096) and doubling; each holds its time prefix
    assert [size for size, _ in ann._indexes] == [8_192, 16_384, 30_000]
    assert [index.ntotal for _, index in ann._indexes] == [8_192, 16_384, 30_000]
    queries = clustered(300, dim, seed=1)
    for visible in (n, 12_000, 3_000):  # all, 40 % (the 16,384 copy), 10 % (below a copy)
        cut = None if visible == n else T0 + timedelta(minutes=visible - 1)
        found = 0
        for query in queries:
            want = set(exact.ranked_vector(query, 10, cut)[0].tolist())
            got = grown.ranked_vector(query, 10, cut)[0].tolist()
            assert len(got) == 10 and max(got) < visible  # nothing from the future
            found += len(want & set(got))
        assert found / 3_000 >= 0.98, visible


def test_only_a_pure_append_skips_the_rebuild() -> None:
    vectors = clustered(6_000, 16)
    strategy = hnsw(dim=16, ladder_min=1_000)
    strategy.index(units(0, 5_000), vectors[:5_000])
    strategy.prepare_index()
    assert strategy.ann_builds == 1

    def indexed() -> int:
        strategy.prepare_index()
        assert strategy._ann is not None
        return strategy._ann.size

    strategy.index(units(5_000, 5_100), vectors[5_000:5_100])  # newer than every unit
    assert (indexed(), strategy.ann_builds) == (5_100, 1)
    same_time = [replace(u, id=f"{u.id}b") for u in units(5_099, 5_100)]
    strategy.index(same_time, vectors[5_100:5_101])  # ties the newest: sorts after it
    assert (indexed(), strategy.ann_builds) == (5_101, 1)
    tagged = [replace(u, metadata={"consolidated": True}) for u in units(10, 20)]
    strategy.index(tagged, vectors[10:20])  # same vectors and times, new metadata
    assert (indexed(), strategy.ann_builds) == (5_101, 1)
    strategy.index(units(5_101, 5_102, minutes=-3_000), vectors[5_101:5_102])  # mid-table
    assert (indexed(), strategy.ann_builds) == (5_102, 2)
    strategy.index(units(30, 31), vectors[5_102:5_103])  # an indexed unit re-embedded
    assert (indexed(), strategy.ann_builds) == (5_102, 3)
    changed = [replace(u, text="new text") for u in units(40, 41)]
    strategy.index(changed)  # new text: embedded (by the hash embedder) and rebuilt
    assert (indexed(), strategy.ann_builds) == (5_102, 4)
    assert strategy.search("new text", 1)[0].unit.id == "u40"
    strategy.index(units(5_102, 5_200), vectors[5_102:5_200])
    assert (indexed(), strategy.ann_builds) == (5_200, 4)


def test_ivf_indexes_are_rebuilt_on_append() -> None:
    vectors = clustered(3_000, 16)
    strategy = DenseStrategy(embedder="hash", k=10, index="faiss-ivf",
                             index_params={"exact_below": 0})
    strategy.index(units(0, 2_000), vectors[:2_000])
    strategy.prepare_index()
    strategy.index(units(2_000, 3_000), vectors[2_000:])
    strategy.prepare_index()
    assert strategy.ann_builds == 2
