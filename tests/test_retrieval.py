"""Retrieval strategies: one conformance test over all, hand-checked maths, real recall."""

from __future__ import annotations

import atexit
import functools
import math
import random
import shutil
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import memlab
from memlab.chunkers import registry as chunkers
from memlab.chunkers.base import MemoryUnit
from memlab.data.schema import Probe
from memlab.embed import normalize_rows
from memlab.embed.hashing import HashEmbedder
from memlab.errors import ConfigError, UnknownComponentError
from memlab.retrieval import Hit, Retriever, build_strategy, registry
from memlab.retrieval.dense import DenseStrategy
from memlab.retrieval.full_context import FullContextStrategy
from memlab.retrieval.hybrid import rrf_scores, weighted_scores
from memlab.retrieval.ranking import select_top
from memlab.tokens import count_tokens

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
AS_OF = T0 + timedelta(days=10)
QUERY = "where did Maria move for her new job"
PAST = [
    "Maria said the weather was nice",
    "Maria adopted a cat called Miso",
    "Maria is learning Portuguese",
    "Maria cooked pasta for her friends",
    "Maria moved her desk near the window",
    "Maria started a new job at the bank",
    "Maria visited her parents",
    "Maria bought a bicycle",
]
FUTURE = ["Maria will move to Lisbon for her new job", "where did Maria move for her new job"]


def make_units() -> list[MemoryUnit]:
    """Future units first, so that ignoring ``as_of`` could not go unnoticed."""
    future = [MemoryUnit(f"f{i}", text, "turn", (f"t{8 + i}",), "s2",
                         AS_OF + timedelta(days=1 + i)) for i, text in enumerate(FUTURE)]
    past = [MemoryUnit(f"p{i}", text, "turn", (f"t{i}",), "s1", T0 + timedelta(days=i))
            for i, text in enumerate(PAST)]
    return future + past


PROBE = Probe(id="q1", question=QUERY, answer="Lisbon",
              evidence_turn_ids=("t1", "t5", "t6", "t7", "t8"), evidence_session_ids=("s1",),
              category="single-hop", asked_at=AS_OF)


def fast_params(name: str, **extra: Any) -> dict[str, Any]:
    """Registry defaults, except that any embedder is the hashing test double."""
    names = {p.name for p in registry.params(name)}
    params: dict[str, Any] = {}
    if "embedder" in names:
        params["embedder"] = "hash"
    if "dense" in names:
        params["dense"] = {"embedder": "hash"}
    if "base" in names:
        params["base"] = {"name": "dense", "params": {"embedder": "hash"}}
    if "llm" in names:  # the scripted model, never the real one, in conformance tests
        params["llm"] = {"name": "mock", "params": {"responses": {"bank": "yes"},
                                                    "default": "no"}}
    if "budget" in names:  # a budget these tiny units overflow: packed spans and the rest
        params["budget"] = 30
    if name == "cross_encoder":  # its default model needs the network: a real one on disk
        params["model"] = _cross_encoder_folder()
    return {**params, **extra}


@functools.lru_cache(maxsize=1)
def _cross_encoder_folder() -> str:
    """A real CrossEncoder (bundled MiniLM + seeded one-logit head), built once per session
    and removed when the session ends (88 MB a run otherwise left in the temp folder)."""
    from memlab.testing.cross_encoder import minilm_cross_encoder

    folder = Path(tempfile.mkdtemp(prefix="memlab-cross-encoder-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return str(minilm_cross_encoder(folder))


def build(name: str, units: list[MemoryUnit] | None = None, **extra: Any) -> Retriever:
    strategy = registry.build(name, fast_params(name, **extra))
    strategy.index(make_units() if units is None else units)
    return strategy


def composes_units(strategy: Any) -> bool:
    """Whether a strategy's hits may be new units made of indexed turns (``budget``)."""
    return bool(getattr(strategy, "composes_units", False))


def visible_turns(units: Sequence[MemoryUnit]) -> set[str]:
    return {t for u in units if u.at <= AS_OF for t in u.source_turn_ids}


def ids(hits: Sequence[Hit]) -> list[str]:
    return [h.unit.id for h in hits]


@pytest.fixture(autouse=True)
def _private_cache(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEMLAB_CACHE_DIR", str(tmp_path / "cache"))


def test_registry_lists_every_strategy() -> None:
    assert registry.names() == ["bm25", "budget", "cross_encoder", "dense", "full_context",
                                "hierarchical", "hybrid", "keys", "llm_rerank", "mmr",
                                "multigrain", "none", "oracle", "prf", "query_rewrite",
                                "recency", "speaker_prior", "time_aware"]


@pytest.mark.parametrize("name", registry.names())
def test_conformance(name: str) -> None:
    units = make_units()
    strategy = build(name, units)
    assert isinstance(strategy, Retriever)
    params = strategy.params()
    assert params["threshold"] is None and "k" in params
    expected = 0 if name == "none" else 3

    hits = strategy.search(QUERY, 3, as_of=AS_OF, probe=PROBE)
    if composes_units(strategy):  # spans of indexed turns: merged neighbours count once
        assert 1 <= len(hits) <= expected
        assert all(set(h.unit.source_turn_ids) <= visible_turns(units) for h in hits)
    else:
        assert len(hits) == expected  # as_of filters first: 3 older units still come back
        assert all(any(h.unit is u for u in units) for h in hits)
    assert all(isinstance(h, Hit) and isinstance(h.score, float) for h in hits)
    assert all(h.unit.at <= AS_OF for h in hits)
    assert len(strategy.search(QUERY, 1, as_of=AS_OF, probe=PROBE)) == min(1, expected)
    assert strategy.search(QUERY, 0, as_of=AS_OF, probe=PROBE) == []
    assert strategy.search(QUERY, 3, as_of=T0 - timedelta(days=1), probe=PROBE) == []
    if name != "none":  # without as_of, the best-matching future units do appear
        unlimited = strategy.search(QUERY, 10, probe=PROBE)
        assert {"t8", "t9"} & {t for h in unlimited for t in h.unit.source_turn_ids}

    again = build(name)
    assert again.search(QUERY, 3, as_of=AS_OF, probe=PROBE) == hits
    assert strategy.search(QUERY, 3, as_of=AS_OF, probe=PROBE) == hits
    strategy.index(units)  # re-indexing the same units (what a memory does) changes nothing
    assert strategy.search(QUERY, 3, as_of=AS_OF, probe=PROBE) == hits
    halves = registry.build(name, fast_params(name))
    halves.index(units[:5])
    halves.index(units[5:])
    assert halves.search(QUERY, 3, as_of=AS_OF, probe=PROBE) == hits


@pytest.mark.parametrize("name", registry.names())
def test_conformance_threshold(name: str) -> None:
    hits = build(name).search(QUERY, 10, as_of=AS_OF, probe=PROBE)
    if name == "none":
        assert build(name, threshold=-1e9).search(QUERY, 10, as_of=AS_OF) == []
        return
    scores = sorted((h.score for h in hits), reverse=True)
    cut = scores[1]
    kept = build(name, threshold=cut).search(QUERY, 10, as_of=AS_OF, probe=PROBE)
    assert kept and all(h.score >= cut for h in kept)
    assert {h.unit.id for h in kept} == {h.unit.id for h in hits if h.score >= cut}
    above = build(name, threshold=scores[0] + 1.0)
    assert above.search(QUERY, 10, as_of=AS_OF, probe=PROBE) == []


@pytest.mark.parametrize("name", registry.names())
def test_conformance_default_k_and_insertion_order(name: str) -> None:
    default_k = {p.name: p.default for p in registry.params(name)}["k"]
    hits = build(name).search(QUERY, None, as_of=AS_OF, probe=PROBE)
    limit = len(PAST) if default_k is None else default_k
    if name == "oracle":
        limit = 4  # t1, t5, t6, t7 are older than AS_OF; t8 is not
    wanted = 0 if name == "none" else min(limit, len(PAST))
    if composes_units(build(name)):
        assert 1 <= len(hits) <= wanted
    else:
        assert len(hits) == wanted
    shuffled = make_units()
    random.Random(7).shuffle(shuffled)
    mixed = registry.build(name, fast_params(name))
    mixed.index(shuffled)
    got = mixed.search(QUERY, 3, as_of=AS_OF, probe=PROBE)
    assert all(h.unit.at <= AS_OF for h in got)


def test_scores_run_best_first_except_mmr_pick_order() -> None:
    for name in registry.names():
        scores = [h.score for h in build(name).search(QUERY, 8, as_of=AS_OF, probe=PROBE)]
        if name not in ("mmr", "budget"):  # pick order; budget: packing order
            assert scores == sorted(scores, reverse=True), name


def test_unknown_strategy_and_bad_params_are_clear() -> None:
    with pytest.raises(UnknownComponentError, match="Did you mean 'hybrid'"):
        registry.build("hybird")
    with pytest.raises(ConfigError, match="valid parameters: k, threshold"):
        registry.build("bm25", {"top_k": 3})
    with pytest.raises(ConfigError, match="needs a 'name'"):
        build_strategy({"params": {}})
    with pytest.raises(ConfigError, match="valid choices: rrf, weighted"):
        build("hybrid", fusion="borda").search(QUERY, 3)
    with pytest.raises(ConfigError, match="valid choices: exact, faiss"):
        build("dense", index="annoy").search(QUERY, 3)
    with pytest.raises(ConfigError, match="k must be a non-negative integer"):
        build("bm25").search(QUERY, -1)


# ---------------------------------------------------------------- exact, hand-checked maths


class LookupEmbedder:
    """Fixed vectors per text, so cosine scores are known by hand."""

    cheap = True
    model_id = "lookup"

    def __init__(self, table: dict[str, Sequence[float]]) -> None:
        self.table = table
        self.calls = 0

    def params(self) -> dict[str, Any]:
        return {}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        return normalize_rows(np.asarray([self.table[t] for t in texts], dtype=np.float32))


def unit(uid: str, text: str, days: float = 0.0) -> MemoryUnit:
    return MemoryUnit(uid, text, "turn", (uid,), "s", T0 + timedelta(days=days))


def test_select_top_breaks_ties_by_unit_order_at_the_cut() -> None:
    scores = np.array([0.5, 0.9, 0.5, 0.5, 0.9, 0.1])
    keys = np.array([5, 4, 3, 2, 1, 0])
    assert select_top(scores, keys, 3).tolist() == [4, 1, 3]
    assert select_top(scores, keys, None, threshold=0.5).tolist() == [4, 1, 3, 2, 0]


def test_bm25_scores_match_the_lucene_formula_by_hand() -> None:
    docs = ["apple banana apple", "apple banana", "apple cherry", "cherry grape"]
    strategy = registry.build("bm25", {"k": None})
    strategy.index([unit(f"d{i}", d) for i, d in enumerate(docs)])
    hits = strategy.search("banana", None)
    n, df, k1, b, avgdl = 4, 2, 1.5, 0.75, 9 / 4
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))

    def score(tf: int, dl: int) -> float:
        return idf * tf / (tf + k1 * (1 - b + b * dl / avgdl))

    assert ids(hits) == ["d1", "d0"]  # d2 and d3 share no term: never returned
    assert [h.score for h in hits] == pytest.approx([score(1, 2), score(1, 3)], rel=1e-6)


def test_bm25_stems_and_drops_stopwords() -> None:
    strategy = registry.build("bm25", {"k": None})
    strategy.index([unit("a", "She was hiking with the dogs"), unit("b", "the and of it")])
    assert ids(strategy.search("hikes dog", None)) == ["a"]
    assert strategy.search("the of", None) == []
    plain = registry.build("bm25", {"k": None, "stemmer": None})
    plain.index([unit("a", "She was hiking with the dogs")])
    assert plain.search("hikes dog", None) == []


def hybrid_fixture(fusion: str, **extra: Any) -> Retriever:
    """BM25 ranks a > b > c (d shares no word); cosine ranks d (0.9) > c (0.6) > b (0.3) > a (0)."""
    texts = {"q": "banana split", "a": "banana split banana split", "b": "banana split recipe",
             "c": "banana", "d": "dessert"}
    vectors = {texts["q"]: [1.0, 0.0],
               texts["a"]: [0.0, 1.0],
               texts["b"]: [0.3, math.sqrt(1 - 0.09)],
               texts["c"]: [0.6, 0.8],
               texts["d"]: [0.9, math.sqrt(1 - 0.81)]}
    strategy = registry.build("hybrid", {"fusion": fusion, "k": None, **extra,
                                         "dense": {"embedder": LookupEmbedder(vectors)}})
    strategy.index([unit(u, texts[u]) for u in "abcd"])
    return strategy


def test_rrf_fusion_by_hand() -> None:
    assert rrf_scores([["a", "b"], ["b", "c"]], 60) == pytest.approx(
        {"a": 1 / 61, "b": 1 / 62 + 1 / 61, "c": 1 / 62})
    hybrid = hybrid_fixture("rrf")
    bm25, dense = hybrid.parts
    assert ids(bm25.search("banana split", None)) == ["a", "b", "c"]
    assert ids(dense.search("banana split", None)) == ["d", "c", "b", "a"]
    expected = {"a": 1 / 61 + 1 / 64, "b": 1 / 62 + 1 / 63, "c": 1 / 63 + 1 / 62,
                "d": 1 / 61}
    hits = hybrid.search("banana split")
    assert ids(hits) == ["a", "b", "c", "d"]  # b and c tie exactly: unit order decides
    assert [h.score for h in hits] == pytest.approx([expected[i] for i in ids(hits)])


def test_weighted_fusion_by_hand() -> None:
    assert weighted_scores([[("a", 4.0), ("b", 2.0)], [("b", 0.5), ("c", 0.5)]],
                           [0.25, 0.75]) == pytest.approx({"a": 0.25, "b": 0.75, "c": 0.75})
    hybrid = hybrid_fixture("weighted", alpha=0.5)
    bm25_scores = {h.unit.id: h.score for h in hybrid.parts[0].search("banana split", None)}
    hi, lo = bm25_scores["a"], bm25_scores["c"]
    bm25_norm = {u: (s - lo) / (hi - lo) for u, s in bm25_scores.items()}
    dense_norm = {"d": 1.0, "c": (0.6 - 0) / 0.9, "b": 0.3 / 0.9, "a": 0.0}
    expected = {u: 0.5 * dense_norm[u] + 0.5 * bm25_norm.get(u, 0.0) for u in "abcd"}
    hits = hybrid.search("banana split")
    assert [h.score for h in hits] == pytest.approx(sorted(expected.values(), reverse=True),
                                                    rel=1e-5)
    assert ids(hits) == sorted(expected, key=lambda u: -expected[u])


def test_recency_halves_the_score_every_half_life() -> None:
    vectors = {"now": [1.0, 0.0], "old": [0.8, 0.6], "older": [0.8, 0.6], "fresh": [0.8, 0.6],
               "away": [-0.5, math.sqrt(0.75)]}
    strategy = registry.build("recency", {"half_life_days": 30.0, "k": None, "base": {
        "name": "dense", "params": {"embedder": LookupEmbedder(vectors)}}})
    strategy.index([unit("older", "older", 0), unit("old", "old", 30), unit("fresh", "fresh", 60),
                    unit("away", "away", 60)])
    hits = strategy.search("now", as_of=T0 + timedelta(days=60))
    assert ids(hits) == ["fresh", "old", "older", "away"]
    assert [h.score for h in hits] == pytest.approx([0.8, 0.4, 0.2, 0.0], rel=1e-6)
    later = strategy.search("now", as_of=T0 + timedelta(days=90))
    assert [h.score for h in later] == pytest.approx([0.4, 0.2, 0.1, 0.0], rel=1e-6)


def test_mmr_trades_a_near_duplicate_for_a_different_unit() -> None:
    vectors = {"q": [1.0, 0.0, 0.0],
               "a": [1.0, 0.0, 0.0],
               "a2": [0.95, math.sqrt(1 - 0.95**2), 0.0],
               "b": [0.7, 0.0, math.sqrt(1 - 0.49)]}
    embedder = LookupEmbedder(vectors)
    units = [unit("a", "a"), unit("a2", "a2"), unit("b", "b")]
    mmr = registry.build("mmr", {"embedder": embedder, "lambda_mult": 0.5, "k": 2})
    mmr.index(units)
    # step 1: a (0.5 * 1.0); step 2: a2 = 0.5*0.95 - 0.5*0.95 = 0 = 0.5*0.7 - 0.5*0.7 = b,
    # an exact tie that unit order breaks (a2 was indexed first)
    assert ids(mmr.search("q")) == ["a", "a2"]
    diverse = registry.build("mmr", {"embedder": embedder, "lambda_mult": 0.3, "k": 2})
    diverse.index(units)
    # step 2: a2 = 0.3*0.95 - 0.7*0.95 = -0.38; b = 0.3*0.7 - 0.7*0.7 = -0.28 -> b wins
    hits = diverse.search("q")
    assert ids(hits) == ["a", "b"]
    assert [h.score for h in hits] == pytest.approx([1.0, 0.7], rel=1e-6)  # relevance
    plain = registry.build("mmr", {"embedder": embedder, "lambda_mult": 1.0, "k": 2})
    plain.index(units)
    assert ids(plain.search("q")) == ["a", "a2"]  # lambda 1 is plain dense ranking


def test_full_context_keeps_the_newest_units_within_the_token_budget() -> None:
    texts = ["Caroline: I went to a LGBTQ support group yesterday.",
             "Melanie: That sounds so meaningful, how did it feel?",
             "Caroline: Honestly it was empowering and a little scary.",
             "Melanie: I painted a sunrise over the lake last week.",
             "Caroline: I want to work in counseling someday."]
    units = [unit(f"u{i}", t, i) for i, t in enumerate(texts)]
    counts = [count_tokens(t) for t in texts]
    budget = sum(counts[2:4]) + 1  # the newest two visible at day 3 fit; a third does not
    strategy = FullContextStrategy(max_tokens=budget)
    strategy.index(list(reversed(units)))
    hits = strategy.search("anything", as_of=T0 + timedelta(days=3))
    assert ids(hits) == ["u2", "u3"]  # time order, oldest first
    assert [h.score for h in hits] == [1.0, 1.0]
    trim = strategy.last_trim
    assert trim is not None and trim.trimmed
    assert (trim.visible_units, trim.kept_units, trim.kept_tokens) == (4, 2, sum(counts[2:4]))
    everything = FullContextStrategy(max_tokens=None)
    everything.index(units)
    assert ids(everything.search("x")) == ["u0", "u1", "u2", "u3", "u4"]
    assert everything.last_trim is not None and not everything.last_trim.trimmed
    assert everything.last_trim.visible_tokens == sum(counts)
    assert ids(everything.search("x", 2)) == ["u3", "u4"]


def test_oracle_needs_a_probe_and_returns_only_visible_evidence() -> None:
    oracle = build("oracle")
    with pytest.raises(ConfigError, match="needs probe="):
        oracle.search(QUERY, 3)
    assert ids(oracle.search(QUERY, None, as_of=AS_OF, probe=PROBE)) == ["p1", "p5", "p6", "p7"]
    assert ids(oracle.search(QUERY, None, probe=PROBE)) == ["f0", "p1", "p5", "p6", "p7"]
    sessions_only = Probe(id="q2", question="?", answer="", evidence_turn_ids=(),
                          evidence_session_ids=("s2",), category="x", asked_at=AS_OF)
    assert ids(oracle.search("?", None, probe=sessions_only)) == ["f0", "f1"]
    abstain = Probe(id="q3", question="?", answer="", evidence_turn_ids=(),
                    evidence_session_ids=(), category="x", asked_at=AS_OF, abstention=True)
    assert oracle.search("?", None, probe=abstain) == []


# ---------------------------------------------------------------- dense: vectors and faiss


def test_dense_takes_precomputed_vectors_and_embeds_only_new_units() -> None:
    units = make_units()
    table = {u.text: HashEmbedder().encode([u.text])[0] for u in units}
    table[QUERY] = HashEmbedder().encode([QUERY])[0]
    embedder = LookupEmbedder(table)
    given = DenseStrategy(embedder=embedder)
    given.index(units, HashEmbedder().encode([u.text for u in units]))
    assert embedder.calls == 0
    reference = build("dense")
    assert given.search(QUERY, 3, AS_OF) == reference.search(QUERY, 3, AS_OF)

    class Counting(HashEmbedder):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[str] = []

        def encode(self, texts: Sequence[str]) -> np.ndarray:
            self.seen.extend(texts)
            return super().encode(texts)

    counting = Counting()
    dense = DenseStrategy(embedder=counting)
    dense.index(units[:4])
    dense.index(units)  # a memory re-indexes everything it holds
    changed = MemoryUnit("p0", "Maria said it rained", "turn", ("t0",), "s1", T0)
    dense.index([changed])
    assert counting.seen == [u.text for u in units] + ["Maria said it rained"]


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around 200 random centres (what perturbed real embeddings look like)."""
    rng = np.random.default_rng(seed)
    centres = normalize_rows(rng.standard_normal((200, dim)))
    picks = rng.integers(0, 200, n)
    return normalize_rows(centres[picks] + 0.5 / math.sqrt(dim) * rng.standard_normal((n, dim)))


@pytest.mark.parametrize("index", ["faiss-ivf", "faiss-hnsw"])
def test_faiss_recall_at_10_against_exact_and_no_future_leakage(index: str) -> None:
    n, dim = 20_000, 64
    vectors = clustered(n, dim)
    units = [MemoryUnit(f"u{i}", f"unit {i}", "turn", (f"t{i}",), "s",
                        T0 + timedelta(minutes=i)) for i in range(n)]
    exact = DenseStrategy(embedder="hash", k=10)
    approx = DenseStrategy(embedder="hash", k=10, index=index,
                           index_params={"exact_below": 0})
    exact.index(units, vectors)
    approx.index(units, vectors)
    queries = clustered(300, dim, seed=1)  # 300: recall of 100 queries varies by +-0.005
    found = 0
    for q in queries:
        want = set(exact.ranked_vector(q, 10, None)[0].tolist())
        found += len(want & set(approx.ranked_vector(q, 10, None)[0].tolist()))
    assert found / 3000 >= 0.98
    cut = T0 + timedelta(minutes=n // 2)
    for q in queries[:20]:
        rows, _ = approx.ranked_vector(q, 10, cut)
        assert len(rows) == 10
        assert all(approx.table.sorted_units[r].at <= cut for r in rows)


@pytest.mark.parametrize("fraction", [0.5, 0.1])
def test_hnsw_recall_at_10_under_the_as_of_filter(fraction: float) -> None:
    """Filtered HNSW searches the smallest prefix copy holding the visible units and widens
    its beam by at most 2x: recall holds under as_of."""
    n, dim = 20_000, 64
    vectors = clustered(n, dim)
    units = [MemoryUnit(f"u{i}", f"unit {i}", "turn", (f"t{i}",), "s",
                        T0 + timedelta(minutes=i)) for i in range(n)]
    exact = DenseStrategy(embedder="hash", k=10)
    approx = DenseStrategy(embedder="hash", k=10, index="faiss-hnsw",
                           index_params={"exact_below": 0})
    exact.index(units, vectors)
    approx.index(units, vectors)
    cut = T0 + timedelta(minutes=int(n * fraction) - 1)
    found = 0
    for q in clustered(100, dim, seed=2):
        want = set(exact.ranked_vector(q, 10, cut)[0].tolist())
        got = approx.ranked_vector(q, 10, cut)[0].tolist()
        assert max(got) < n * fraction
        found += len(want & set(got))
    assert found / 1000 >= 0.98
    assert approx._ann is not None
    size = min(s for s in [*approx._ann.ladder_sizes(n), n] if s >= n * fraction)
    assert approx._ann.beam(10, int(n * fraction)) == math.ceil(256 * size / (n * fraction))


# ---------------------------------------------------------------- acceptance: synthetic data


@pytest.fixture(scope="module")
def synthetic() -> Any:
    return memlab.load_dataset("synthetic")


def evidence_recall_at_5(dataset: Any, spec: dict[str, Any]) -> tuple[int, int]:
    """(probes with an evidence turn in the top 5, answerable probes), turn chunker."""
    chunker = chunkers.build("turn")
    found = total = 0
    for conversation in dataset:
        strategy = build_strategy(spec)
        strategy.index([u for s in conversation.sessions for u in chunker.split(s, conversation)])
        for probe in conversation.probes:
            if probe.abstention:
                continue
            hits = strategy.search(probe.question, 5, as_of=probe.asked_at, probe=probe)
            total += 1
            found += any(set(probe.evidence_turn_ids) & set(h.unit.source_turn_ids)
                         for h in hits)
    return found, total


def test_synthetic_recall_at_5_bm25_oracle_none(synthetic: Any) -> None:
    assert evidence_recall_at_5(synthetic, {"name": "bm25"}) == (30, 44)
    assert evidence_recall_at_5(synthetic, {"name": "oracle"}) == (44, 44)
    assert evidence_recall_at_5(synthetic, {"name": "none"}) == (0, 44)


@pytest.mark.slow
def test_synthetic_recall_at_5_dense_and_hybrid_with_minilm(synthetic: Any, tmp_path) -> None:
    cache = str(tmp_path / "minilm.sqlite")
    dense = {"name": "dense", "params": {"cache": cache}}
    assert evidence_recall_at_5(synthetic, dense) == (44, 44)
    hybrid = {"name": "hybrid", "params": {"dense": {"cache": cache}}}
    assert evidence_recall_at_5(synthetic, hybrid) == (38, 44)
    weighted = {"name": "hybrid", "params": {"fusion": "weighted", "dense": {"cache": cache}}}
    assert evidence_recall_at_5(synthetic, weighted) == (43, 44)
