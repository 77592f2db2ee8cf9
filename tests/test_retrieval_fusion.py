"""Issue 13's LLM-free fusion techniques: hybrid's z-score fusion, multigrain (windows
re-scored by their best turn), pseudo-relevance feedback (prf), budget's token counts from
per-turn counts, the search indexes built before the first search; hand-checked, no look
past ``as_of``, deterministic, and exact recall on a real LoCoMo conversation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_retrieval import LookupEmbedder

from memlab.chunkers.base import MemoryUnit
from memlab.data.schema import Dataset
from memlab.errors import ConfigError
from memlab.eval.config import load_config
from memlab.eval.replay import build_memory
from memlab.metrics.budget import text_tokens
from memlab.retrieval import build_strategy
from memlab.retrieval.feedback import FeedbackStrategy
from memlab.retrieval.hybrid import weighted_scores
from memlab.retrieval.multigrain import MultiGrainStrategy
from memlab.retrieval.sentences import sentences
from memlab.retrieval.turn_costs import TurnCosts
from memlab.testing.rankings import FixedRanking, assert_exact_budget_recall

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _private_cache(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEMLAB_CACHE_DIR", str(tmp_path / "cache"))


def windows(n_turns: int = 10, late_from: int | None = None) -> list[MemoryUnit]:
    """4-turn windows (stride 2) over one session; turns from ``late_from`` on a day later."""
    text = [f"{'Ann' if i % 2 == 0 else 'Bob'}: sentence {i}" for i in range(n_turns)]
    units = []
    for n, start in enumerate(range(0, n_turns - 2, 2)):
        idx = list(range(start, min(start + 4, n_turns)))
        late = late_from is not None and idx[-1] >= late_from
        units.append(MemoryUnit(f"s/window/{n}", "\n".join(text[i] for i in idx), "window",
                                tuple(f"t{i}" for i in idx), "s",
                                T0 + timedelta(days=1 if late else 0)))
    return units


def test_weighted_zscore_divides_by_the_standard_deviation() -> None:
    # bm25 [4, 2]: minus min 2, over std 1 -> a 2, b 0; dense [0.5, 0.5]: std 0 -> 1 each
    fused = weighted_scores([[("a", 4.0), ("b", 2.0)], [("b", 0.5), ("c", 0.5)]],
                            [0.25, 0.75], norm="zscore")
    assert fused == pytest.approx({"a": 0.5, "b": 0.75, "c": 0.75})
    with pytest.raises(ConfigError, match="valid choices: minmax, zscore"):
        build_strategy({"name": "hybrid", "params": {"norm": "rank"}}).search("q", 1)


@pytest.mark.parametrize("params", [{}, {"fusion": "weighted", "alpha": 0.4},
                                    {"fusion": "weighted", "alpha": 0.5, "norm": "zscore"}])
def test_hybrid_fuses_rows_exactly_as_ids_and_falls_back_for_shared_parts(
        params: dict[str, Any]) -> None:
    from memlab.retrieval.bm25 import Bm25Strategy
    from memlab.retrieval.dense import DenseStrategy
    from memlab.retrieval.hybrid import HybridStrategy

    units = windows(30, late_from=20)
    hashing = {"name": "hash", "params": {"dim": 64}}
    rows = HybridStrategy(k=None, dense={"embedder": hashing}, **params)
    rows.index(units)
    ids = HybridStrategy(k=None, dense={"embedder": hashing}, **params)
    ids.index(units)
    ids._parts_aligned = lambda: False  # type: ignore[method-assign]
    assert rows._parts_aligned()
    for query in ("sentence 3", "Bob sentence 21", "Ann 8 sentence"):
        for as_of in (None, T0):
            want = [(h.unit.id, h.score) for h in ids.search(query, as_of=as_of)]
            assert [(h.unit.id, h.score) for h in rows.search(query, as_of=as_of)] == want
    # parts shared with another strategy, which indexed the units in another order: their
    # time-sorted views differ from the hybrid's, so the id path is taken
    bm25, dense = Bm25Strategy(k=None), DenseStrategy(k=None, embedder=hashing)
    for part in (bm25, dense):
        part.index(units[::-1])
    shared = HybridStrategy(k=None, bm25=bm25, dense=dense, **params)
    shared.index(units)
    assert not shared._parts_aligned()
    hits = shared.search("sentence 3")
    assert hits and {h.unit.id for h in hits} <= {u.id for u in units}
    # parts that also hold another strategy's units: only this hybrid's units come back,
    # ranked among themselves as if the others were not there
    other = [replace(u, id=f"x/window/{n}", session_id="x") for n, u in enumerate(units)]
    both = HybridStrategy(k=None, bm25=Bm25Strategy(k=None),
                          dense=DenseStrategy(k=None, embedder=hashing), **params)
    for part in both.parts:
        part.index(other)
    both.index(units)
    alone = HybridStrategy(k=None, dense={"embedder": hashing}, **params)
    alone.index(units)
    alone._parts_aligned = lambda: False  # type: ignore[method-assign]
    assert not both._parts_aligned()
    for query in ("sentence 3", "Bob sentence 21"):
        got = [h.unit.id for h in both.search(query)]
        assert got and all(i.startswith("s/") for i in got)
        assert got[:3] == [h.unit.id for h in alone.search(query)][:3]


def multigrain(base: Sequence[str], turns: Sequence[str], weight: float,
               units: list[MemoryUnit]) -> MultiGrainStrategy:
    strategy = MultiGrainStrategy(base=FixedRanking(base), turns=FixedRanking(turns),
                                  weight=weight, k=None)
    strategy.index(units)
    return strategy


def test_multigrain_lifts_the_window_holding_the_best_turn() -> None:
    units = windows()  # w0 t0-3, w1 t2-5, w2 t4-7, w3 t6-9
    # base: w0 > w1 > w2 (scores 1, 1/2, 1/3: normalised 1, 0.25, 0); turns: t7 (1) > t0 (0)
    strategy = multigrain(["s/window/0", "s/window/1", "s/window/2"],
                          ["s/turn/t7", "s/turn/t0"], 0.5, units)
    hits = strategy.search("q", None)
    # w0 0.5*1 + 0.5*0 = 0.5; w1 0.125; w2 0 + 0.5*1 = 0.5 (ties: base rank); w3 joins, 0.5
    assert [h.unit.id for h in hits] == ["s/window/0", "s/window/2", "s/window/3",
                                         "s/window/1"]
    assert [h.score for h in hits] == pytest.approx([0.5, 0.5, 0.5, 0.125])
    assert strategy.turn_index.strategy.units["s/turn/t0"].text == "Ann: sentence 0"
    plain = multigrain(["s/window/0", "s/window/1"], ["s/turn/t7"], 0.0, units)
    assert [h.unit.id for h in plain.search("q", None)][:2] == ["s/window/0", "s/window/1"]
    with pytest.raises(ConfigError, match=r"weight must be a number in \[0, 1\], got 2"):
        build_strategy({"name": "multigrain", "params": {"weight": 2}})


def test_multigrain_never_adds_a_window_known_after_as_of() -> None:
    units = windows(late_from=6)  # w2 (t4-7) and w3 (t6-9) are dated a day later
    strategy = multigrain(["s/window/0"], ["s/turn/t5", "s/turn/t7"], 0.5, units)
    hits = strategy.search("q", None, as_of=T0)
    # t5 was first known through w1 (visible); t7 only through w2/w3 (not yet)
    assert all(h.unit.at <= T0 for h in hits)
    assert {h.unit.id for h in hits} == {"s/window/0", "s/window/1"}
    assert strategy.turn_index.strategy.units["s/turn/t7"].at == T0 + timedelta(days=1)


def test_sentences_drop_speakers_short_pieces_and_repeats() -> None:
    text = ("user: Hi! I need tips on zero-waste living. By the way, I ran a charity yoga "
            "event that raised $600.\nassistant: Great. I need tips on zero-waste living.")
    assert sentences(text) == ["I need tips on zero-waste living.",
                               "By the way, I ran a charity yoga event that raised $600."]
    assert sentences("user: Hi! Thanks.") == ["user: Hi! Thanks."]  # nothing left: whole
    assert sentences("Ann: ok then, see you", min_words=5) == ["Ann: ok then, see you"]


def sentence_turns() -> list[MemoryUnit]:
    texts = ["user: Can you help with my resume? I saw my dentist about a toothache.",
             "user: Any hiking trails near Denver? Thanks a lot for the help.",
             "assistant: Sure, here are some trails. I saw my dentist about a toothache."]
    return [MemoryUnit(f"s/turn/{i}", text, "turn", (f"t{i}",), "s", T0 + timedelta(days=i))
            for i, text in enumerate(texts)]


def test_multigrain_sentence_grain_lifts_the_turn_holding_the_best_sentence() -> None:
    units = sentence_turns()
    strategy = MultiGrainStrategy(base=FixedRanking(["s/turn/1", "s/turn/0"]),
                                  turns=FixedRanking(["s/sentence/1", "s/sentence/2"]),
                                  grain="sentence", weight=0.5, k=None)
    strategy.index(units)
    pieces = strategy.turn_index.strategy.units
    assert {i: p.text for i, p in pieces.items()} == {
        "s/sentence/0": "Can you help with my resume?",
        "s/sentence/1": "I saw my dentist about a toothache.",
        "s/sentence/2": "Any hiking trails near Denver?",
        "s/sentence/3": "Thanks a lot for the help.",
        "s/sentence/4": "Sure, here are some trails."}
    assert strategy.turn_index.keys(units[2]) == ("s/sentence/4", "s/sentence/1")
    # base: t1 1, t0 0; sentences: dentist 1 (t0 and t2), trails 0 (t1)
    hits = strategy.search("q", None)
    assert [(h.unit.id, h.score) for h in hits] == [("s/turn/1", 0.5), ("s/turn/0", 0.5),
                                                    ("s/turn/2", 0.5)]
    # as_of day 0: the dentist sentence is known through t0; t2 (day 2) never joins
    early = strategy.search("q", None, as_of=T0)
    assert [h.unit.id for h in early] == ["s/turn/0"]
    with pytest.raises(ConfigError, match="grain 'word' is not known"):
        build_strategy({"name": "multigrain", "params": {"grain": "word"}}).search("q", 1)


def test_a_sentence_is_dated_by_the_first_unit_showing_it() -> None:
    late, early = sentence_turns()[2], sentence_turns()[0]
    strategy = MultiGrainStrategy(base=FixedRanking([]), turns=FixedRanking([]),
                                  grain="sentence", k=None)
    strategy.index([late])
    pieces = strategy.turn_index.strategy.units
    assert pieces["s/sentence/1"].at == late.at
    strategy.index([early])  # an earlier unit shows the same sentence: it is re-dated
    assert pieces["s/sentence/1"].at == early.at
    assert strategy.turn_index.holders["s/sentence/1"] == [late, early]


def _budget_over_conv_26(locomo_dataset: Dataset) -> Any:
    """budget(bm25) over conv-26's windows, every session ingested and prepared."""
    config = load_config({"name": "t", "dataset": {"name": "locomo"},
                          "chunker": {"name": "window"},
                          "retrieval": {"name": "budget", "params": {"base": "bm25"}}})
    memory: Any = build_memory(config)
    conversation = locomo_dataset.conversations[0]
    for session in conversation.sessions:
        memory.ingest(session, conversation)
    memory.prepare()
    return memory._retriever


def test_turn_costs_count_runs_exactly(locomo_dataset: Dataset) -> None:
    budget = _budget_over_conv_26(locomo_dataset)
    catalog, costs = budget.catalog, budget.costs
    assert len(costs.alone) == sum(len(order) for order in catalog.sessions.values())
    checked = 0
    for order in catalog.sessions.values():
        for start in range(0, len(order), 3):
            for length in (1, 2, 5, 17):
                run = list(range(start, min(start + length, len(order))))
                text = "\n".join(catalog.line[order[p]] for p in run)
                assert costs.run_cost(catalog, order, run) == text_tokens(text)
                checked += 1
    assert checked > 500
    # a boundary not known to split cleanly is counted whole (and still exactly)
    order = next(iter(catalog.sessions.values()))
    unsure = TurnCosts(costs.tokenizer)
    unsure.update(catalog)
    unsure.clean[order[0]] = False
    unsure.alone[order[1]] += 100  # would show if the per-turn counts were used
    text = "\n".join(catalog.line[t] for t in order[:2])
    assert unsure.run_cost(catalog, order, [0, 1]) == text_tokens(text)


def test_turn_costs_floor_never_exceeds_what_adding_turns_costs(
        locomo_dataset: Dataset) -> None:
    # budget rejects a hit without counting when even this floor does not fit: the
    # floor must be a true lower bound, or packing would change
    import random

    from memlab.retrieval.budget import _runs

    budget = _budget_over_conv_26(locomo_dataset)
    catalog, costs = budget.catalog, budget.costs
    assert len(costs.additive) > len(catalog.sessions) // 2  # the shortcut is used

    def cost(order: list[str], positions: set[int]) -> int:
        """Tokens of the chosen turns shown as spans, each span tokenised whole."""
        return sum(text_tokens("\n".join(catalog.line[order[p]] for p in run))
                   for run in _runs(sorted(positions)))

    rng = random.Random(0)
    checked = 0
    for session in sorted(costs.additive):
        order = catalog.sessions[session]
        for _ in range(20):
            have = set(rng.sample(range(len(order)), rng.randint(0, len(order) // 2)))
            new = set(rng.sample(range(len(order)), rng.randint(1, 5))) - have
            if not new:
                continue
            floor = costs.floor(session, [order[p] for p in sorted(new)])
            assert cost(order, have | new) - cost(order, have) >= floor > 0
            checked += 1
    assert checked > 200
    # a session with a boundary not known to split cleanly gets no floor
    session = next(iter(costs.additive))
    order = catalog.sessions[session]
    costs.clean[order[0]] = False
    costs.additive = set()
    costs.update(catalog)
    assert session not in costs.additive and costs.floor(session, order[:2]) == 0


def test_budget_cut_to_k_equals_the_whole_packing_cut(locomo_dataset: Dataset) -> None:
    # with k, budget stops listing leftover spans once k of them pass the threshold;
    # the first k must be those of the whole list, with and without a threshold, and a
    # search after more sessions arrive must not reuse spans memoised before
    conversation = locomo_dataset.conversations[0]
    params = {"base": {"name": "time_aware", "params": {"base": "bm25"}}, "speaker_from": 1}
    probes = [p for p in conversation.probes if p.asked_at is not None][::9]
    for threshold in (None, 0.02):
        config = load_config({"name": "t", "dataset": {"name": "locomo"},
                              "chunker": {"name": "window"}, "retrieval": {
                                  "name": "budget", "params": {**params,
                                                               "threshold": threshold}}})
        memory: Any = build_memory(config)
        for session in conversation.sessions[:10]:
            memory.ingest(session, conversation)
        memory.prepare()
        strategy = memory._retriever
        for probe in probes:
            whole = strategy.search(probe.question, None, probe.asked_at, probe=probe)
            for k in (1, 10, 40):
                assert strategy.search(probe.question, k, probe.asked_at,
                                       probe=probe) == whole[:k]
        assert strategy.span_units
        for session in conversation.sessions[10:]:
            memory.ingest(session, conversation)
        memory.prepare()
        assert not strategy.span_units  # new turns: spans are made anew
        fresh: Any = build_memory(config)
        for session in conversation.sessions:
            fresh.ingest(session, conversation)
        fresh.prepare()
        for probe in probes:
            assert strategy.search(probe.question, 30, probe.asked_at, probe=probe) == \
                fresh._retriever.search(probe.question, 30, probe.asked_at, probe=probe)


def test_prepare_builds_bm25_before_the_first_search(locomo_dataset: Dataset) -> None:
    config = load_config({"name": "t", "dataset": {"name": "locomo"},
                          "chunker": {"name": "window"}, "retrieval": {
                              "name": "budget", "params": {"base": {
                                  "name": "time_aware", "params": {"base": "bm25"}}}}})
    memory: Any = build_memory(config)
    conversation = locomo_dataset.conversations[0]
    for session in conversation.sessions[:2]:
        memory.ingest(session, conversation)
    memory.prepare()
    bm25 = memory._retriever.base_strategy.base_strategy
    assert bm25._engine is not None  # built by prepare, not by the first search


def prf_order(depth: int, weight: float, k: int | None = None) -> list[str]:
    """``a b c d`` ranked by a fixed base (scores 1, 1/2, 1/3, 1/4), then fed back."""
    vectors = {"a": [1.0, 0.0], "b": [0.0, 1.0], "c": [1.0, 0.0], "d": [0.6, 0.8]}
    units = [MemoryUnit(u, u, "turn", (u,), "s", T0) for u in "abcd"]
    strategy = build_strategy({"name": "prf", "params": {
        "base": FixedRanking(list("abcd")), "embedder": LookupEmbedder(vectors),
        "cache": False, "depth": depth, "weight": weight, "k": k}})
    strategy.index(units)
    hits = strategy.search("q")
    return [f"{h.unit.id} {h.score:.6f}" for h in hits]


def test_prf_lifts_what_resembles_the_base_best_units() -> None:
    # base min-max: a 1, b 1/3, c 1/9, d 0. depth 1: the centroid is a = (1, 0), so the
    # cosines a 1, b 0, c 1, d 0.6 (min-max the same); weight 0.5 halves and adds both.
    assert prf_order(1, 0.5) == ["a 1.000000", "c 0.555556", "d 0.300000", "b 0.166667"]
    assert [h[0] for h in prf_order(1, 0.0)] == list("abcd")  # weight 0: the base ranking
    assert [h[0] for h in prf_order(1, 1.0)] == list("acdb")  # a = c: base rank breaks it
    # depth 2: centroid (0.5, 0.5), cosines a b c 0.5, d 0.7 -> min-max 0, 0, 0, 1: d ties
    # a at 0.5 (a first, by base rank), then b 1/6, c 1/18
    assert prf_order(2, 0.5) == ["a 0.500000", "d 0.500000", "b 0.166667", "c 0.055556"]
    assert [h[0] for h in prf_order(2, 0.5, k=2)] == ["a", "d"]


def test_prf_feedback_sessions_takes_the_best_unit_of_each_first_session() -> None:
    vectors = {"a": [1.0, 0.0], "b": [1.0, 0.0], "c": [0.0, 1.0], "d": [0.6, 0.8]}
    units = [MemoryUnit(u, u, "turn", (u,), s, T0) for u, s in zip("abcd", ["s1", "s1", "s2",
                                                                         "s3"], strict=True)]

    def order(feedback: str) -> list[str]:
        strategy = build_strategy({"name": "prf", "params": {
            "base": FixedRanking(list("abcd")), "embedder": LookupEmbedder(vectors),
            "cache": False, "depth": 2, "weight": 0.5, "feedback": feedback}})
        strategy.index(units)
        return [f"{h.unit.id} {h.score:.6f}" for h in strategy.search("q")]

    # units: a and b (both s1), centroid (1, 0): cosines 1, 1, 0, 0.6
    assert order("units") == ["a 1.000000", "b 0.666667", "d 0.300000", "c 0.055556"]
    # sessions: a (s1) and c (s2), centroid (0.5, 0.5): cosines .5, .5, .5, .7 -> 0, 0, 0, 1
    assert order("sessions") == ["a 0.500000", "d 0.500000", "b 0.166667", "c 0.055556"]


def test_prf_checks_its_parameters() -> None:
    with pytest.raises(ConfigError, match=r"retrieval.params.weight: retrieval 'prf': weight "
                                          r"must be a number in \[0, 1\], got 1.5"):
        build_strategy({"name": "prf", "params": {"weight": 1.5}})
    with pytest.raises(ConfigError, match=r"prf: depth must be an integer >= 1, got 0"):
        FeedbackStrategy(depth=0, base="bm25").search("q", 1)  # built directly: first use
    with pytest.raises(ConfigError, match="prf: feedback 'turns' is not known; valid choices: "
                                          "units, sessions"):
        build_strategy({"name": "prf", "params": {"feedback": "turns"}}).search("q", 1)


def test_unit_vectors_reads_indexed_units_and_embeds_the_others() -> None:
    from memlab.retrieval.dense import DenseStrategy

    embedder = LookupEmbedder({"a": [1.0, 0.0], "b": [0.0, 1.0], "new": [0.6, 0.8],
                               "b again": [0.8, 0.6]})
    dense = DenseStrategy(embedder=embedder, cache=False)
    dense.index([MemoryUnit("a", "a", "turn", ("a",), "s", T0),
                 MemoryUnit("b", "b", "turn", ("b",), "s", T0)])
    calls = embedder.calls
    asked = [MemoryUnit("b", "b", "turn", ("b",), "s", T0),
             MemoryUnit("x", "new", "turn", ("x",), "s", T0),
             MemoryUnit("b", "b again", "turn", ("b",), "s", T0),  # same id, other text
             MemoryUnit("a", "a", "turn", ("a",), "s", T0)]
    got = dense.unit_vectors(asked)
    assert got == pytest.approx(np.asarray([[0.0, 1.0], [0.6, 0.8], [0.8, 0.6], [1.0, 0.0]]))
    assert embedder.calls == calls + 1  # the two it had not indexed, in one batch
    assert dense.unit_vectors([]).shape[0] == 0


# ---------------------------------------------------------------- real data: LoCoMo conv-26

WEIGHTED = {"name": "hybrid", "params": {"fusion": "weighted", "alpha": 0.4}}


def _budget_time(base: Any) -> dict[str, Any]:
    return {"name": "budget", "params": {"base": {"name": "time_aware",
                                                  "params": {"base": base}}}}


REAL = {  # strategy over 4-turn windows -> sum of turn.budget_evidence_recall@1000
    "hybrid_weighted": (_budget_time(WEIGHTED), 120.25),
    "hybrid_zscore": (_budget_time({"name": "hybrid", "params": {
        "fusion": "weighted", "alpha": 0.5, "norm": "zscore"}}), 122.16666666666666),
    "multigrain": (_budget_time({"name": "multigrain", "params": {
        "weight": 0.1, "base": WEIGHTED}}), 123.75),
    "multigrain_sentence": (_budget_time({"name": "multigrain", "params": {
        "weight": 0.1, "base": WEIGHTED, "grain": "sentence"}}), 120.75),
    "prf": (_budget_time({"name": "prf", "params": {"weight": 0.2, "base": WEIGHTED}}), 122.25),
}


@pytest.mark.slow  # embeds conv-26's windows (and turns) with MiniLM: ~1 min here
@pytest.mark.parametrize("label", sorted(REAL))
def test_exact_budget_recall_on_locomo_conv_26(label: str, locomo_dataset: Dataset) -> None:
    conversation = locomo_dataset.conversations[0]
    assert conversation.id == "conv-26"
    spec, expected = REAL[label]
    assert_exact_budget_recall(conversation, spec, expected)
