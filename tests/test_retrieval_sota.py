"""Wrapper strategies (budget, hierarchical, time_aware, keys): hand-checked behaviour,
no look past ``as_of``, determinism, and exact recall on a real LoCoMo conversation."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from memlab.chunkers.base import MemoryUnit
from memlab.data.schema import Dataset, Probe
from memlab.errors import ConfigError
from memlab.metrics.budget import prefix_within, text_tokens
from memlab.retrieval import Hit, build_strategy
from memlab.retrieval.budget import BudgetStrategy
from memlab.retrieval.time_aware import newest_first
from memlab.retrieval.timeref import time_spans
from memlab.testing.rankings import FixedRanking, assert_exact_budget_recall

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _private_cache(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEMLAB_CACHE_DIR", str(tmp_path / "cache"))


def lines(n: int) -> list[str]:
    return [f"{'Ann' if i % 2 == 0 else 'Bob'}: sentence number {i} about topic {i}"
            for i in range(n)]


def windows(n_turns: int = 10, size: int = 4, stride: int = 2, late_from: int | None = None
            ) -> list[MemoryUnit]:
    """Windows over one session's turns t0..t{n-1}; turns from ``late_from`` on are
    dated a day later (so a window holding one is not visible on the first day)."""
    text = lines(n_turns)
    units = []
    for n, start in enumerate(range(0, n_turns, stride)):
        idx = list(range(start, min(start + size, n_turns)))
        late = late_from is not None and idx[-1] >= late_from
        units.append(MemoryUnit(f"s/window/{n}", "\n".join(text[i] for i in idx), "window",
                                tuple(f"t{i}" for i in idx), "s",
                                T0 + timedelta(days=1 if late else 0)))
        if start + size >= n_turns:
            break
    return units


def packed(order: Sequence[str], units: list[MemoryUnit], **params: Any) -> list[Hit]:
    as_of = params.pop("as_of", None)
    strategy = BudgetStrategy(base=FixedRanking(order), k=None, **params)
    strategy.index(units)
    return strategy.search("q", None, as_of=as_of)


def turns_of(hits: Sequence[Hit]) -> list[tuple[str, ...]]:
    return [h.unit.source_turn_ids for h in hits]


def test_budget_merges_overlapping_windows_and_never_repeats_a_turn() -> None:
    units = windows(12)  # w0 t0-3, w1 t2-5, w2 t4-7, w3 t6-9, w4 t8-11
    hits = packed(["s/window/0", "s/window/1", "s/window/4"], units, neighbors=0)
    assert turns_of(hits) == [("t0", "t1", "t2", "t3", "t4", "t5"), ("t8", "t9", "t10", "t11")]
    assert hits[0].unit.id == "s/span/t0..t5"
    assert hits[0].unit.text == "\n".join(lines(6))
    assert hits[1].unit is units[4]  # a span equal to an indexed unit is that unit
    joined = packed(["s/window/0", "s/window/2"], units, neighbors=0)
    assert turns_of(joined) == [tuple(f"t{i}" for i in range(8))]  # adjacent spans join
    assert [h.score for h in hits] == [1.0, 1.0 / 3]


def test_budget_adds_neighbours_when_they_fit_and_skips_what_does_not() -> None:
    units = windows()
    one = text_tokens("\n".join(lines(10)[2:6]))  # w1 alone
    with_neighbours = text_tokens("\n".join(lines(10)[1:7]))
    hits = packed(["s/window/1"], units, neighbors=1, budget=with_neighbours)
    assert turns_of(hits) == [tuple(f"t{i}" for i in range(1, 7))]
    alone = packed(["s/window/1"], units, neighbors=1, budget=with_neighbours - 1)
    assert turns_of(alone) == [("t2", "t3", "t4", "t5")]
    # w0 (rank 1) does not fit 'one - 1' tokens... nothing does; both come after the budget
    over = packed(["s/window/0", "s/window/1"], units, neighbors=0, budget=one - 1)
    assert turns_of(over) == [("t0", "t1", "t2", "t3"), ("t4", "t5")]
    counts = [text_tokens(h.unit.text) for h in over]
    assert prefix_within(counts, one - 1) == 0


def test_budget_fills_the_budget_with_a_later_smaller_hit() -> None:
    units = [*windows(), MemoryUnit("x/turn/0", "Cy: short", "turn", ("x0",), "x", T0)]
    budget = text_tokens("\n".join(lines(10)[0:4])) + text_tokens("Cy: short")
    hits = packed(["s/window/0", "s/window/2", "x/turn/0"], units, neighbors=0, budget=budget)
    assert turns_of(hits) == [("t0", "t1", "t2", "t3"), ("x0",), ("t4", "t5", "t6", "t7")]
    counts = [text_tokens(h.unit.text) for h in hits]
    assert prefix_within(counts, budget) == 2  # the packed prefix is exactly what fits


def test_budget_never_adds_a_neighbour_known_after_as_of() -> None:
    units = windows(late_from=6)  # t6.. only in windows dated a day later
    hits = packed(["s/window/2", "s/window/1"], units, neighbors=2, as_of=T0)
    shown = {t for h in hits for t in h.unit.source_turn_ids}
    # w2 (t4-7) is not visible; w1's neighbours t0, t1 are (in w0), t6, t7 are not
    assert shown == {f"t{i}" for i in range(6)} and all(h.unit.at <= T0 for h in hits)
    later = packed(["s/window/2", "s/window/1"], units, neighbors=2)
    assert {"t6", "t7"} <= {t for h in later for t in h.unit.source_turn_ids}


def test_budget_turn_granularity_ranks_shared_turns_first() -> None:
    units = windows()
    hits = packed(["s/window/0", "s/window/1"], units, neighbors=0, granularity="turn",
                  rrf_k=1, budget=text_tokens("\n".join(lines(10)[2:4])))
    assert turns_of(hits)[0] == ("t2", "t3")  # in both windows: 1/2 + 1/3 beats 1/2


def test_budget_focus_shows_each_hits_best_turns_so_more_hits_fit() -> None:
    units = windows(12)  # w0 t0-3, w1 t2-5, w2 t4-7, w3 t6-9, w4 t8-11
    text = lines(12)
    budget = text_tokens(text[1]) + text_tokens(text[9])
    plain = packed(["s/window/0", "s/window/4"], units, budget=budget)
    assert prefix_within([text_tokens(h.unit.text) for h in plain], budget) == 0  # none fit
    focus = FixedRanking(["s/turn/t9", "s/turn/t1", "s/turn/t5"])
    hits = packed(["s/window/0", "s/window/4"], units, budget=budget, focus=focus)
    assert turns_of(hits) == [("t1",), ("t9",)]  # each window's best-ranked turn
    assert hits[0].unit.text == text[1] and [h.score for h in hits] == [1.0, 0.5]
    assert prefix_within([text_tokens(h.unit.text) for h in hits], budget) == 2
    assert focus.units["s/turn/t1"].text == text[1]  # the focus indexed the single turns
    # two turns a hit: ranked ones first, then unranked ones in session order. w1 (t2-5)
    # shows t5 and t2; w2 (t4-7) t5 (already shown) and t4, which joins t5's run
    two = packed(["s/window/1", "s/window/2"], units, focus=focus, focus_turns=2)
    assert turns_of(two) == [("t2",), ("t4", "t5")]
    with pytest.raises(ConfigError, match="focus_turns must be an integer >= 1"):
        build_strategy({"name": "budget", "params": {"focus": "dense", "focus_turns": 0}}
                       ).search("q", 1)


def test_wrappers_reject_bad_params() -> None:
    with pytest.raises(ConfigError, match="valid choices: hit, turn"):
        build_strategy({"name": "budget", "params": {"granularity": "span"}}).search("q", 1)
    with pytest.raises(ConfigError, match="valid choices: sum, max"):
        build_strategy({"name": "hierarchical", "params": {"aggregate": "avg"}}).search("q", 1)
    with pytest.raises(ConfigError, match="valid choices: boost, filter"):
        build_strategy({"name": "time_aware", "params": {"mode": "cut"}}).search("q", 1)
    with pytest.raises(ConfigError, match="valid choices: user, text"):
        build_strategy({"name": "keys", "params": {"key": "facts"}}).search("q", 1)


def test_nested_specs_compose() -> None:
    spec = {"name": "budget", "params": {"base": {"name": "time_aware", "params": {
        "base": {"name": "hierarchical", "params": {"base": "bm25"}}}}}}
    strategy = build_strategy(spec)
    assert strategy.params()["base"] == spec["params"]["base"]
    strategy.index(windows())
    assert strategy.search("sentence number 3", 2, as_of=T0)


def session_units() -> list[MemoryUnit]:
    """Sessions a (two weak hits), b (one strong hit) and c."""
    def unit(uid: str, session: str) -> MemoryUnit:
        return MemoryUnit(uid, f"Ann: {uid}", "turn", (uid,), session, T0)
    return [unit("b1", "b"), unit("a1", "a"), unit("a2", "a"), unit("c1", "c")]


def hierarchical(**params: Any) -> list[str]:
    strategy = build_strategy({"name": "hierarchical", "params": {
        "base": FixedRanking(["b1", "a1", "c1", "a2"]), "k": None, "rrf_k": 1, **params}})
    strategy.index(session_units())
    return [h.unit.id for h in strategy.search("q", None)]


def test_hierarchical_ranks_sessions_then_units() -> None:
    assert hierarchical(session_weight=0.0) == ["b1", "a1", "c1", "a2"]
    # sum: a = 1/3 + 1/5 beats b = 1/2; a's units come first, in base order
    assert hierarchical(session_weight=10.0, aggregate="sum") == ["a1", "a2", "b1", "c1"]
    assert hierarchical(session_weight=10.0, aggregate="max") == ["b1", "a1", "a2", "c1"]
    assert hierarchical(session_weight=10.0, aggregate="sum", top_sessions=1) == ["a1", "a2"]
    assert hierarchical(session_weight=10.0, aggregate="sum", session_depth=2) == [
        "b1", "a1", "a2", "c1"]


def test_time_spans_read_relative_to_asked_at() -> None:
    asked = datetime(2023, 5, 25, 13, 0, tzinfo=UTC)  # a Thursday
    (tuesday,) = time_spans("What did I buy last Tuesday?", asked)
    assert (tuesday.start, tuesday.end) == (datetime(2023, 5, 23, tzinfo=UTC),
                                            datetime(2023, 5, 24, tzinfo=UTC))
    (may,) = time_spans("What did we do in May?", asked)
    assert may.start == datetime(2023, 5, 1, tzinfo=UTC) and may.end <= asked + timedelta(
        microseconds=1)  # never past asked_at
    (year,) = time_spans("Where was I in 2022?", asked)
    assert (year.start, year.end) == (datetime(2022, 1, 1, tzinfo=UTC),
                                      datetime(2023, 1, 1, tzinfo=UTC))
    assert time_spans("When did Caroline go to the support group?", asked) == ()
    assert time_spans("What may help her?", asked) == ()
    # date and period come from dateparser's own search, even for a chunk it cut too
    # long (parsed again alone, "in December 2022 after a" gave no date at all)
    (december,) = time_spans("Which activity did Sam resume in December 2022 after a long "
                             "time?", asked)
    assert december.start == datetime(2022, 12, 1, tzinfo=UTC)
    assert december.end <= datetime(2023, 1, 1, tzinfo=UTC)
    assert time_spans("What did I buy last Tuesday?", None) == ()


def test_time_spans_read_rolling_windows_and_skip_rates() -> None:
    asked = datetime(2023, 5, 30, 9, 0, tzinfo=UTC)  # a Tuesday
    end = asked + timedelta(microseconds=1)
    spans = {q: [(s.start, s.end) for s in time_spans(q, asked)] for q in (
        "How many times did I bake in the past two weeks?",
        "How many plants did I get in the last month?",
        "Which films did I watch over the last 3 months?",
        "How many babies were born in the past few months?",
        "What did I cook last month?",
        "Where was Dave in the last two weeks of August 2022?",
        "How many days a week do I attend fitness classes?",
        "I stayed in Rome for a week; how often do I run per month?",
        "Which book did I finish a week ago?")}
    assert list(spans.values()) == [
        [(datetime(2023, 5, 16, tzinfo=UTC), end)],  # a window ending when asked
        [(datetime(2023, 4, 30, tzinfo=UTC), end)],  # "the last month": 30 days
        [(datetime(2023, 3, 1, tzinfo=UTC), end)],
        [(datetime(2023, 3, 1, tzinfo=UTC), end)],  # "few" counts 3
        [(datetime(2023, 4, 1, tzinfo=UTC), datetime(2023, 5, 1, tzinfo=UTC))],  # calendar
        [(datetime(2022, 8, 1, tzinfo=UTC), datetime(2022, 9, 1, tzinfo=UTC))],  # "of"
        [],  # a rate names no time
        [],  # nor does a duration
        [(datetime(2023, 5, 22, tzinfo=UTC), datetime(2023, 5, 29, tzinfo=UTC))],
    ]


def test_time_spans_open_at_before_since_after_and_read_in_ago() -> None:
    asked = datetime(2023, 6, 22, 11, 0, tzinfo=UTC)  # a Thursday
    now = asked + timedelta(microseconds=1)
    far = datetime(1900, 1, 1, tzinfo=UTC)
    spans = {q: [(s.start, s.end) for s in time_spans(q, asked)] for q in (
        "Which relative's wedding did I go to in a week ago?",  # not a week from now
        "What did I buy before May?",
        "Which airlines did I fly with before today?",  # the whole past
        "What have I read since January?",
        "Where did I go after last Tuesday?",
        "What did I do until March 2023?",
        "What was the puppy's name I got two weeks before August 11?")}  # an offset
    assert list(spans.values()) == [
        [(datetime(2023, 6, 12, tzinfo=UTC), datetime(2023, 6, 19, tzinfo=UTC))],
        [(far, datetime(2023, 5, 1, tzinfo=UTC))],
        [(far, datetime(2023, 6, 22, tzinfo=UTC))],
        [(datetime(2023, 1, 1, tzinfo=UTC), now)],
        [(datetime(2023, 6, 21, tzinfo=UTC), now)],
        [(far, datetime(2023, 4, 1, tzinfo=UTC))],
        # the offset stays dateparser's reading (two weeks before asked, and the day)
        [(datetime(2023, 6, 5, tzinfo=UTC), datetime(2023, 6, 12, tzinfo=UTC)),
         (datetime(2022, 8, 11, tzinfo=UTC), datetime(2022, 8, 12, tzinfo=UTC))],
    ]


def dated_units() -> list[MemoryUnit]:
    days = {"mon": 0, "tue": 1, "wed": 2, "later": 9}
    return [MemoryUnit(name, f"user: I bought {name} bread", "turn", (name,), name,
                       datetime(2023, 5, 22, 12, tzinfo=UTC) + timedelta(days=d))
            for name, d in days.items()]


def time_aware(question: str, asked: datetime, **params: Any) -> list[str]:
    strategy = build_strategy({"name": "time_aware", "params": {
        "base": FixedRanking(["wed", "mon", "tue", "later"]), "k": None, "slack_days": 0.0,
        **params}})
    strategy.index(dated_units())
    probe = Probe("p", question, "", (), (), "temporal", asked)
    return [h.unit.id for h in strategy.search(question, None, asked, probe=probe)]


def test_time_aware_boosts_or_filters_the_named_day_and_never_looks_ahead() -> None:
    asked = datetime(2023, 5, 25, 13, tzinfo=UTC)
    assert time_aware("what bread did I buy last Tuesday?", asked) == ["tue", "wed", "mon"]
    assert time_aware("what bread did I buy last Tuesday?", asked, mode="filter") == ["tue"]
    assert time_aware("what bread did I buy?", asked) == ["wed", "mon", "tue"]
    assert "later" not in time_aware("what bread did I buy in May?", asked)


def test_newest_first_reorders_near_duplicates_on_their_ranks() -> None:
    units = [MemoryUnit(f"u{i}", text, "turn", (f"u{i}",), "s", T0 + timedelta(days=d))
             for i, (text, d) in enumerate([("my car is a red Ford", 0),
                                            ("the weather is nice", 5),
                                            ("my car is a blue Ford", 3)])]
    hits = [Hit(u, 1.0) for u in units]
    assert [h.unit.id for h in newest_first(hits, 0.6, 20)] == ["u2", "u1", "u0"]
    assert [h.unit.id for h in newest_first(hits, 0.9, 20)] == ["u0", "u1", "u2"]


def test_keys_match_the_user_side_and_return_the_whole_unit() -> None:
    units = [MemoryUnit("s1", "user: I adopted a dog\nassistant: dogs love parks", "session",
                        ("a", "b"), "s1", T0),
             MemoryUnit("s2", "user: parks are great\nassistant: indeed", "session",
                        ("c", "d"), "s2", T0)]
    strategy = build_strategy({"name": "keys", "params": {"base": {"name": "bm25"}}})
    strategy.index(units)
    hits = strategy.search("parks", 5)
    assert [h.unit for h in hits] == [units[1]]  # s1 says "parks" on the assistant side
    plain = build_strategy({"name": "keys", "params": {"base": "bm25", "key": "text"}})
    plain.index(units)
    assert {h.unit.id for h in plain.search("parks", 5)} == {"s1", "s2"}


def pet_units() -> list[MemoryUnit]:
    return [MemoryUnit("u0", "Ann: I adopted Rex last week", "turn", ("a",), "s", T0),
            MemoryUnit("u1", "Bob: the weather was grey", "turn", ("b",), "s", T0)]


def llm_keys(llm: Any) -> Any:
    return build_strategy({"name": "keys", "params": {"base": "bm25", "key": "llm",
                                                      "llm": llm}})


def test_llm_keys_index_extracted_facts_cached_and_accounted() -> None:
    from memlab.llm.mock import MockLLM

    script = {"adopted": "Ann has a dog named Rex.\npet, dog, animal", "weather": "grey day"}
    llm = MockLLM(script)
    strategy = llm_keys(llm)
    units = pet_units()
    strategy.index(units)
    hits = strategy.search("which animal does Ann have", 5)
    assert hits[0].unit is units[0]  # "animal" is only in the extracted key
    assert hits[0].unit.text == "Ann: I adopted Rex last week"  # the value is unchanged
    cost = strategy.ingest_cost()
    assert cost["calls"] == 2 and cost["cached_calls"] == 0
    assert cost["prompt_tokens"] > 0 and cost["completion_tokens"] > 0
    strategy.index(units)  # re-indexing the same units never calls the LLM again
    assert len(llm.calls) == 2
    again = llm_keys(MockLLM(script))  # a new process: every key comes from the cache
    again.index(units)
    assert again.ingest_cost()["calls"] == 0 and again.ingest_cost()["cached_calls"] == 2
    assert again.search("which animal does Ann have", 5) == hits


@pytest.mark.slow
def test_llm_keys_with_the_embedded_qwen(locomo_dataset: Dataset) -> None:
    from memlab.chunkers import registry as chunkers

    session = locomo_dataset.conversations[0].sessions[0]
    units = chunkers.build("window").split(session)[:2]
    # the embedded Qwen2.5-0.5B through llama.cpp; a loaded machine needs > 300 s a call
    strategy = llm_keys({"name": "llamacpp", "params": {"timeout": 1800.0}})
    strategy.index(units)
    cost = strategy.ingest_cost()
    assert cost["calls"] == 2 and cost["seconds"] > 0 and cost["completion_tokens"] > 0
    assert all(strategy.keys[u.id].startswith(u.text + "\n") for u in units)
    extracted = [strategy.keys[u.id][len(u.text) + 1:] for u in units]
    assert any(len(e) > 10 for e in extracted), strategy.records  # the 0.5B may say nothing
    hits = strategy.search("support group", 2)
    assert hits and {h.unit.id for h in hits} <= {u.id for u in units}


def rerank(llm: Any, order: Sequence[str], top_n: int = 2) -> Any:
    strategy = build_strategy({"name": "llm_rerank", "params": {
        "base": FixedRanking(order), "llm": llm, "top_n": top_n, "k": None}})
    strategy.index(pet_units())
    return strategy


def test_llm_rerank_orders_the_top_n_by_yes_and_caches_it() -> None:
    from memlab.llm.mock import MockLLM

    llm = MockLLM({"adopted": "yes"}, default="no")
    strategy = rerank(llm, ["u1", "u0"])
    hits = strategy.search("what pet does Ann have", None)
    assert [(h.unit.id, h.score) for h in hits] == [("u0", 2.0), ("u1", 1.0)]
    assert len(llm.calls) == 2
    fresh = MockLLM({"adopted": "yes"}, default="no")  # same model, new process: cached
    again = rerank(fresh, ["u1", "u0"])
    assert [h.unit.id for h in again.search("what pet does Ann have", None)] == ["u0", "u1"]
    assert fresh.calls == [] and all(r["cached"] for r in again.records)
    other = MockLLM({"weather": "yes"}, default="no")  # another model is not served u0's
    assert [h.unit.id for h in rerank(other, ["u0", "u1"]).search("q", None)] == ["u1", "u0"]
    beyond = rerank(MockLLM({"adopted": "yes"}, default="no"), ["u1", "u0"], top_n=1)
    assert [h.unit.id for h in beyond.search("what pet does Ann have", 2)] == ["u1", "u0"]


@pytest.mark.slow
def test_llm_rerank_reads_p_yes_from_the_embedded_qwen() -> None:
    strategy = rerank(None, ["u1", "u0"])
    relevant = strategy.relevance("Which dog did Ann adopt?", "Ann: I adopted Rex last week")
    other = strategy.relevance("Which dog did Ann adopt?", "Bob: the weather was grey")
    assert 0.0 <= other < relevant <= 1.0
    assert strategy.relevance("Which dog did Ann adopt?",
                              "Ann: I adopted Rex last week") == relevant  # from the cache
    assert strategy.records[-1]["cached"] and not strategy.records[0]["cached"]


# ---------------------------------------------------------------- speaker prior


def _speaker_prior(order: Sequence[str], **params: Any) -> Any:
    from memlab.retrieval.speaker_prior import SpeakerPriorStrategy

    units = [MemoryUnit(f"u{i}", line, "turn", (f"t{i}",), "s", T0 + timedelta(hours=i))
             for i, line in enumerate(lines(4))]  # Ann, Bob, Ann, Bob
    units.append(MemoryUnit("u4", "no speaker prefix here", "turn", ("t4",), "s", T0))
    strategy = SpeakerPriorStrategy(base=FixedRanking(order), k=None, **params)
    strategy.index(units)
    return strategy


def test_speaker_prior_lowers_the_other_speakers_units_for_a_question_naming_one() -> None:
    order = ["u1", "u4", "u0", "u3", "u2"]  # base scores 1, 1/2, 1/3, 1/4, 1/5
    strategy = _speaker_prior(order, weight=0.4)
    hits = strategy.search("What did Ann say about the topic?")
    # Bob's u1 (1 -> 0.4) and u3 (1/4 -> 0.1) move down; u4 has no speaker and keeps 1/2
    assert [(h.unit.id, round(h.score, 3)) for h in hits] == [
        ("u4", 0.5), ("u1", 0.4), ("u0", 0.333), ("u2", 0.2), ("u3", 0.1)]
    assert [h.unit.id for h in strategy.search("What did Ann tell Bob?")] == order  # two
    assert [h.unit.id for h in strategy.search("What was the topic?")] == order  # none
    assert [h.unit.id for h in _speaker_prior(order, weight=1.0).search("Ann?")] == order
    # an alias names a speaker; as_of is the base's (nothing later comes back)
    aliased = _speaker_prior(order, weight=0.4, aliases={"Bob": ["I", "me"]})
    assert [h.unit.id for h in aliased.search("what did I say?")][:2] == ["u1", "u4"]
    assert [h.unit.id for h in aliased.search("what did I say?", as_of=T0)] == ["u4", "u0"]


def test_speaker_prior_exact_recall_on_locomo_conv_26_turns(locomo_dataset: Dataset) -> None:
    """Turn units (a window holds both speakers, so the prior never applies to one):
    questions naming one of Caroline and Melanie find more of that speaker's turns."""
    from memlab.eval.config import load_config
    from memlab.eval.replay import replay_conversation

    conversation = locomo_dataset.conversations[0]
    measured = {}
    for label, spec in (("bm25", {"name": "bm25"}), ("prior", {
            "name": "speaker_prior", "params": {"base": "bm25", "weight": 0.5}})):
        config = load_config({"name": "t", "dataset": {"name": "locomo"},
                              "chunker": {"name": "turn"}, "retrieval": spec, "k": 10,
                              "depth": 100, "tracking": {"mlflow": False}})
        items = replay_conversation(config, conversation, conversation.probes).items
        assert not [r["error"] for r in items if r.get("error")]
        measured[label] = tuple(round(sum(r["metrics"][m] for r in items
                                          if r["metrics"].get(m) is not None), 6)
                                for m in ("turn.evidence_recall@5", "turn.recall_all@10"))
    assert measured == SPEAKER_PRIOR_CONV_26, measured


SPEAKER_PRIOR_CONV_26 = {"bm25": (66.75, 73.0), "prior": (70.25, 80.0)}


def test_only_a_turns_first_line_names_its_speaker() -> None:
    from memlab.retrieval.speaker_prior import unit_speakers

    def unit(text: str, turns: int) -> MemoryUnit:
        return MemoryUnit("u", text, "turn", tuple(f"t{i}" for i in range(turns)), "s", T0)

    assert unit_speakers(unit("assistant: Events:\nNote: 1. **Music**: more", 1)) == {
        "assistant"}
    assert unit_speakers(unit("Ann: hi\nBob: hello", 2)) == {"Ann", "Bob"}
    assert unit_speakers(unit("Ann: hi\nNote: x\nBob: hello", 2)) == frozenset()
    assert unit_speakers(unit("no prefix", 1)) == frozenset()


def test_speaker_prior_rejects_bad_params() -> None:
    from memlab.retrieval.speaker_prior import SpeakerPriorStrategy

    for params, message in (({"weight": 0}, "weight must be"), ({"weight": 1.5}, "weight"),
                            ({"aliases": {"user": "I"}}, "aliases must map")):
        with pytest.raises(ConfigError, match=message):
            SpeakerPriorStrategy(base="bm25", **params).check_params()


# ---------------------------------------------------------------- real data: LoCoMo conv-26

REAL = {  # strategy over 4-turn windows -> (sum of turn.budget_evidence_recall@1000, n)
    "bm25": ({"name": "bm25"}, 115.83333333333334),
    "budget": ({"name": "budget", "params": {"base": "bm25", "neighbors": 0}},
               118.83333333333334),
    "budget_neighbours": ({"name": "budget", "params": {"base": "bm25", "neighbors": 1}},
                          117.08333333333334),
    "hierarchical": ({"name": "hierarchical", "params": {"base": "bm25", "aggregate": "max"}},
                     114.33333333333334),
    "time_aware": ({"name": "time_aware", "params": {"base": "bm25",
                                                     "update_similarity": 0.6}},
                   117.83333333333334),
}


@pytest.mark.parametrize("label", sorted(REAL))
def test_exact_budget_recall_on_locomo_conv_26(label: str, locomo_dataset: Dataset) -> None:
    conversation = locomo_dataset.conversations[0]
    assert conversation.id == "conv-26"
    spec, expected = REAL[label]
    assert_exact_budget_recall(conversation, spec, expected)
