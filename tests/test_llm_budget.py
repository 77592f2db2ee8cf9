"""Context budget: what fits is kept under the declared policy, what is cut is recorded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from memlab.errors import ConfigError
from memlab.llm.base import Message
from memlab.llm.budget import ContextOverflowError, fit_context
from memlab.llm.chatml import count_chat_tokens
from memlab.tokens import count_tokens

QUESTION = "When did Melanie paint the sunrise?"


@dataclass(frozen=True)
class Unit:
    text: str
    at: datetime


def render(items: Sequence[object]) -> list[Message]:
    memory = "\n".join(f"- {getattr(i, 'text', i)}" for i in items)
    return [Message(role="system", content=f"Answer from memory.\nMemory:\n{memory}"),
            Message(role="user", content=QUESTION)]


ITEMS = [f"Memory number {i}: Melanie mentioned painting item {i} on a sunny day." for i in
         range(12)]


def test_everything_fits_under_a_large_window() -> None:
    result = fit_context(render, ITEMS, context_window=8192, answer_budget=256)
    assert result.kept == ITEMS and result.dropped == [] and not result.trimmed
    assert result.prompt_tokens == count_chat_tokens(render(ITEMS))
    assert result.record()["dropped"] == 0


def test_drop_lowest_rank_keeps_the_longest_prefix_that_fits() -> None:
    fixed = count_chat_tokens(render([]))
    six = count_chat_tokens(render(ITEMS[:6]))
    window, answer = six + 100, 100  # limit == tokens of the top six exactly
    result = fit_context(render, ITEMS, context_window=window, answer_budget=answer)
    assert result.kept == ITEMS[:6]
    assert [d.rank for d in result.dropped] == [6, 7, 8, 9, 10, 11]
    assert result.prompt_tokens == six <= result.limit == six
    assert count_chat_tokens(render(ITEMS[:7])) > result.limit
    assert result.fixed_tokens == fixed
    assert result.dropped[0].tokens == count_tokens(ITEMS[6])
    record = result.record()
    assert record["policy"] == "drop_lowest_rank"
    assert record["dropped_ranks"] == [6, 7, 8, 9, 10, 11]
    assert record["dropped_tokens"] == sum(count_tokens(t) for t in ITEMS[6:])
    assert result.messages == render(ITEMS[:6])


def test_truncate_oldest_drops_by_time_and_keeps_rank_order() -> None:
    start = datetime(2023, 5, 1, tzinfo=UTC)
    # rank order differs from time order: ranks 0..5 with days 3,0,5,1,4,2
    days = [3, 0, 5, 1, 4, 2]
    units = [Unit(ITEMS[r], start + timedelta(days=d)) for r, d in enumerate(days)]
    limit = count_chat_tokens(render([units[0], units[2], units[4], units[5]]))
    result = fit_context(render, units, context_window=limit + 50, answer_budget=50,
                         policy="truncate_oldest")
    # the two oldest (days 0 and 1: ranks 1 and 3) go; the rest stay in rank order
    assert [d.rank for d in result.dropped] == [1, 3]
    assert result.kept == [units[0], units[2], units[4], units[5]]


def test_truncate_oldest_drops_a_prefix_of_items_already_in_time_order() -> None:
    # a whole conversation: two sessions of three turns each, turns sharing their
    # session's time; the cut must take session 1 and then session 2's FIRST turn, not
    # leave a hole at the end of session 2 (what the rank tie-break did)
    first, second = datetime(2023, 5, 1, tzinfo=UTC), datetime(2023, 5, 8, tzinfo=UTC)
    units = [Unit(ITEMS[i], first if i < 3 else second) for i in range(6)]
    limit = count_chat_tokens(render(units[4:]))
    result = fit_context(render, units, context_window=limit + 50, answer_budget=50,
                         policy="truncate_oldest")
    assert [d.rank for d in result.dropped] == [0, 1, 2, 3]
    assert result.kept == units[4:]


def test_truncate_oldest_accepts_explicit_times_and_needs_them() -> None:
    result = fit_context(render, ITEMS[:4], context_window=count_chat_tokens(
        render(ITEMS[:3])) + 10, answer_budget=10, policy="truncate_oldest", times=[4, 1, 3, 2])
    assert [d.rank for d in result.dropped] == [1]
    with pytest.raises(ConfigError, match="needs a time per item"):
        fit_context(render, ITEMS[:4], context_window=100, answer_budget=10,
                    policy="truncate_oldest")


def test_error_policy_and_impossible_prompts_raise() -> None:
    fixed = count_chat_tokens(render([]))
    with pytest.raises(ContextOverflowError, match="policy is 'error'"):
        fit_context(render, ITEMS, context_window=fixed + 60, answer_budget=10, policy="error")
    with pytest.raises(ContextOverflowError, match=f"without any memory is {fixed} tokens"):
        fit_context(render, ITEMS, context_window=fixed + 10, answer_budget=20)
    with pytest.raises(ConfigError, match="unknown context policy"):
        fit_context(render, ITEMS, context_window=8192, answer_budget=10, policy="random")
    with pytest.raises(ConfigError, match="leaves no room"):
        fit_context(render, ITEMS, context_window=100, answer_budget=100)


def test_custom_counter_is_used() -> None:
    def by_chars(messages: Sequence[Message]) -> int:
        return sum(len(m["content"]) for m in messages)

    limit = by_chars(render(ITEMS[:3]))
    result = fit_context(render, ITEMS, context_window=limit + 1, answer_budget=1,
                         counter=by_chars)
    assert result.kept == ITEMS[:3] and result.prompt_tokens == limit


def test_prompt_builder_truncates_retrieved_hits_oldest_first() -> None:
    """A full-context prompt over the window drops the oldest units (by their ``at``), not
    the lowest ranked, and keeps the rest (a Hit has no ``at``: the builder reads units')."""
    from memlab.chunkers.base import MemoryUnit
    from memlab.prompts import get_template
    from memlab.prompts.builder import PromptBuilder
    from memlab.retrieval.base import Hit

    start = datetime(2023, 5, 1, tzinfo=UTC)
    # rank order is newest first, so dropping the lowest rank would keep the same hits
    hits = [Hit(MemoryUnit(id=f"u{i}", text=ITEMS[i], kind="turn", source_turn_ids=(f"D1:{i}",),
                           session_id="session_1", at=start + timedelta(days=i)), 1.0 / (1 + r))
            for r, i in enumerate([5, 0, 7, 2, 9, 4])]
    template = get_template("answer_short")
    whole = count_chat_tokens(template.render(memories=hits, question=QUESTION).messages)
    builder = PromptBuilder(template, context_window=whole - 40 + 16, max_memory_tokens=10_000,
                            max_answer_tokens=16, trim_policy="truncate_oldest")
    _, fitted = builder.build(hits, question=QUESTION)
    dropped = [d.item.unit.id for d in fitted.dropped]
    assert dropped and set(dropped) <= {"u0", "u2"}
    assert "u0" in dropped  # the oldest goes first
    assert [h.unit.id for h in fitted.kept] == [h.unit.id for h in hits if h.unit.id not in dropped]
