"""budget's ``speaker_from``: a question naming one speaker is shown that speaker's turns of
each hit; speaker names read from the lines; hand-checked packing, no look past ``as_of``,
clear errors, and exact recall on a real LoCoMo conversation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from memlab.chunkers.base import MemoryUnit
from memlab.data.schema import Dataset
from memlab.errors import ConfigError
from memlab.retrieval import build_strategy
from memlab.retrieval.budget import BudgetStrategy
from memlab.retrieval.speakers import SpeakerNames, line_speaker
from memlab.testing.rankings import FixedRanking, assert_exact_budget_recall

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _private_cache(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEMLAB_CACHE_DIR", str(tmp_path / "cache"))


def windows() -> list[MemoryUnit]:
    """4-turn windows (stride 2) over one session of Ann and Bob, one a day."""
    text = [f"{'Ann' if i % 2 == 0 else 'Bob'}: sentence number {i}" for i in range(10)]
    return [MemoryUnit(f"s/window/{n}", "\n".join(text[start:start + 4]), "window",
                       tuple(f"t{i}" for i in range(start, start + 4)), "s",
                       T0 + timedelta(days=n))
            for n, start in enumerate(range(0, 7, 2))]


def budget(order: list[str], speaker_from: int | None, tokens: int = 10_000,
           **params) -> BudgetStrategy:
    strategy = BudgetStrategy(base=FixedRanking(order), budget=tokens,
                              speaker_from=speaker_from, **params)
    strategy.index(windows())
    return strategy


def shown(hits) -> list[tuple[str, ...]]:
    return [h.unit.source_turn_ids for h in hits]


def test_hits_show_the_named_speakers_turns_from_speaker_from_on() -> None:
    order = ["s/window/3", "s/window/0"]
    # off: whole windows (t6-t9, then t0-t3)
    assert shown(budget(order, None).search("What did Bob say?")) == [
        ("t6", "t7", "t8", "t9"), ("t0", "t1", "t2", "t3")]
    # from 0: Bob's turns only (odd), each run of one turn its own span
    assert shown(budget(order, 0).search("What did Bob say?")) == [
        ("t7",), ("t9",), ("t1",), ("t3",)]
    # from 1: the best hit whole, then Bob's turns; "ann's" names Ann (even turns)
    assert shown(budget(order, 1).search("what about bob")) == [
        ("t6", "t7", "t8", "t9"), ("t1",), ("t3",)]
    assert shown(budget(order, 1).search("Ann's sentence?")) == [
        ("t6", "t7", "t8", "t9"), ("t0",), ("t2",)]
    # no one or both named: whole windows
    for query in ("What was said?", "What did Ann tell Bob?", "Annabel?"):
        assert shown(budget(order, 0).search(query)) == shown(
            budget(order, None).search(query))


def test_fewer_tokens_a_hit_let_more_hits_into_the_budget() -> None:
    order = ["s/window/0", "s/window/2", "s/window/3"]
    whole = budget(order, None, tokens=0)
    one_window = sum(whole.costs.alone[f"t{i}"] for i in range(4))
    tokens = one_window + 4
    plain = budget(order, None, tokens=tokens).search("Bob?", k=None)
    trimmed = budget(order, 0, tokens=tokens).search("Bob?", k=None)
    # the budget holds one whole window; Bob's half of three windows fits in it
    assert sum(whole.costs.alone[t] for t in ("t1", "t3", "t5", "t7")) <= tokens
    assert shown(plain)[0] == ("t0", "t1", "t2", "t3")
    assert {t for ids in shown(trimmed)[:4] for t in ids} == {"t1", "t3", "t5", "t7"}


def test_never_shows_a_turn_known_after_as_of() -> None:
    strategy = budget(["s/window/3", "s/window/1", "s/window/0"], 0)
    for day in range(4):
        as_of = T0 + timedelta(days=day)
        for hit in strategy.search("What did Ann say?", k=None, as_of=as_of):
            assert hit.unit.at <= as_of
    assert shown(strategy.search("What did Ann say?", as_of=T0)) == [("t0",), ("t2",)]


def test_speaker_names_and_aliases() -> None:
    names = SpeakerNames({"user": ["I", "my", "me"]})
    names.add(line_speaker(line) for line in ["user: my dog is Rex", "assistant: nice",
                                              "Jon Smith: hi", "no speaker"])
    assert list(names.patterns) == ["user", "assistant", "Jon Smith"]
    assert names.named("What is my dog called?") == ["user"]
    assert names.named("What did jon say to the ASSISTANT?") == ["assistant", "Jon Smith"]
    assert names.named("What did Jonas say?") == []
    assert line_speaker("Gina: hello: there") == "Gina"
    assert line_speaker("no speaker here") is None
    strategy = budget(["s/window/0"], 0, aliases={"Ann": ["she"]})
    assert shown(strategy.search("What did she say?")) == [("t0",), ("t2",)]


def test_bad_speaker_from_is_named() -> None:
    for value in (-1, "1", True):
        with pytest.raises(ConfigError, match="speaker_from must be an integer >= 0"):
            build_strategy({"name": "budget", "params": {"speaker_from": value}}).search("q", 1)
    for aliases in ({"user": "I"}, ["I"], {"user": [1]}):
        with pytest.raises(ConfigError, match="aliases must map a speaker to a list"):
            build_strategy({"name": "budget", "params": {"speaker_from": 0,
                                                         "aliases": aliases}}).search("q", 1)


@pytest.mark.slow  # embeds conv-26's windows with MiniLM
def test_exact_budget_recall_on_locomo_conv_26(locomo_dataset: Dataset) -> None:
    conversation = locomo_dataset.conversations[0]
    assert conversation.id == "conv-26"
    weighted = {"name": "hybrid", "params": {"fusion": "weighted", "alpha": 0.4}}
    spec = {"name": "budget", "params": {"speaker_from": 1, "base": {
        "name": "time_aware", "params": {"base": weighted}}}}
    assert_exact_budget_recall(conversation, spec, 128.75)  # base (no speaker_from): 120.25
