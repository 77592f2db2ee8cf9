"""Context budget: fit memory into the window under a declared policy, and say what was cut.

A prompt is fixed parts (instructions, question, dates) plus memory items in rank order.
The limit is ``context_window - answer_budget`` tokens. :func:`fit_context` renders the
prompt with the items a policy keeps, counts it exactly, and returns the kept items, the
dropped ones and the counts; nothing is ever cut without a record. When even the prompt
without any memory does not fit, it raises :class:`ContextOverflowError`.

Policies:

- ``drop_lowest_rank`` (default): keep the longest prefix of the ranking that fits.
- ``truncate_oldest``: drop the oldest items first (by ``times``, else each item's ``at``),
  keeping the rest in rank order; suits recency-ordered memory such as a chat buffer.
  Items of the same time go lowest rank first, except when the items are already in time
  order (a whole conversation, whose turns share their session's time): then the oldest
  items are dropped as a prefix, so the reader never sees a hole inside a session.
- ``error``: keep everything or raise — for runs that must never trim.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Generic, TypeVar

from memlab.errors import ConfigError, MemlabError
from memlab.llm.base import Message
from memlab.llm.chatml import count_chat_tokens
from memlab.tokens import count_tokens

T = TypeVar("T")
POLICIES = ("drop_lowest_rank", "truncate_oldest", "error")


class ContextOverflowError(MemlabError):
    """The prompt does not fit the context window and the policy cannot make it fit."""


@dataclass(frozen=True)
class Dropped(Generic[T]):
    rank: int  # position in the ranking given to fit_context (0 = best)
    item: T
    tokens: int  # tokens of the item's own text


@dataclass(frozen=True)
class BudgetResult(Generic[T]):
    """What fit: ``kept`` items (rank order), ``dropped`` ones, and the counts."""

    kept: list[T]
    dropped: list[Dropped[T]]
    messages: list[Message]
    prompt_tokens: int
    limit: int
    policy: str
    fixed_tokens: int

    @property
    def trimmed(self) -> bool:
        return bool(self.dropped)

    def record(self) -> dict[str, Any]:
        """Plain data for a run's per-item log."""
        return {
            "policy": self.policy, "limit": self.limit, "prompt_tokens": self.prompt_tokens,
            "fixed_tokens": self.fixed_tokens, "kept": len(self.kept),
            "dropped": len(self.dropped), "dropped_ranks": [d.rank for d in self.dropped],
            "dropped_tokens": sum(d.tokens for d in self.dropped),
        }


def item_text(item: Any) -> str:
    return item if isinstance(item, str) else str(getattr(item, "text", item))


def fit_context(
    render: Callable[[Sequence[T]], Sequence[Message]],
    items: Sequence[T],
    *,
    context_window: int,
    answer_budget: int,
    policy: str = "drop_lowest_rank",
    counter: Callable[[Sequence[Message]], int] | None = None,
    times: Sequence[Any] | None = None,
) -> BudgetResult[T]:
    """Render ``items`` (best first) into messages that fit ``context_window - answer_budget``.

    ``render(kept_items)`` builds the full prompt; ``counter(messages)`` counts it (default:
    exact Qwen ChatML count). ``times`` gives each item's time for ``truncate_oldest``.
    """
    if policy not in POLICIES:
        raise ConfigError(f"unknown context policy {policy!r}; choose one of {', '.join(POLICIES)}")
    limit = context_window - answer_budget
    if limit <= 0:
        raise ConfigError(f"answer_budget {answer_budget} leaves no room in a "
                          f"{context_window}-token window")
    count = counter or count_chat_tokens
    items = list(items)
    fixed = count(render([]))
    if fixed > limit:
        raise ContextOverflowError(
            f"the prompt without any memory is {fixed} tokens, over the limit of {limit} "
            f"({context_window} window - {answer_budget} for the answer)")
    order = _drop_order(policy, items, times)
    kept_count = _largest_fit(render, items, order, count, limit)
    if policy == "error" and kept_count < len(items):
        total = count(render(items))
        raise ContextOverflowError(
            f"the prompt with all {len(items)} memory items is {total} tokens, over the "
            f"limit of {limit}, and the context policy is 'error'")
    dropped_ranks = set(order[: len(items) - kept_count])
    kept = [item for rank, item in enumerate(items) if rank not in dropped_ranks]
    messages = list(render(kept))
    dropped = [Dropped(rank, items[rank], count_tokens(item_text(items[rank])))
               for rank in sorted(dropped_ranks)]
    return BudgetResult(kept=kept, dropped=dropped, messages=messages,
                        prompt_tokens=count(messages), limit=limit, policy=policy,
                        fixed_tokens=fixed)


def _drop_order(policy: str, items: list[Any], times: Sequence[Any] | None) -> list[int]:
    """Ranks in the order the policy gives items up."""
    if policy != "truncate_oldest":
        return list(range(len(items) - 1, -1, -1))  # lowest rank first
    if times is None:
        missing = [i for i, item in enumerate(items) if getattr(item, "at", None) is None]
        if missing:
            raise ConfigError(f"policy 'truncate_oldest' needs a time per item: pass times= "
                              f"or items with an 'at' attribute (item {missing[0]} has none)")
        times = [item.at for item in items]
    if len(times) != len(items):
        raise ConfigError(f"times has {len(times)} entries for {len(items)} items")
    if all(a <= b for a, b in pairwise(times)):
        # items already in time order (full context, a chat buffer): that order is finer
        # than the times (a conversation's turns share their session's), so drop a prefix
        return list(range(len(items)))
    return sorted(range(len(items)), key=lambda i: (times[i], -i))  # oldest, then worst


def _largest_fit(render: Callable[[Sequence[Any]], Sequence[Message]], items: list[Any],
                 order: list[int], count: Callable[[Sequence[Message]], int],
                 limit: int) -> int:
    """How many items can stay, dropping in ``order``; binary search over the count."""

    def fits(keep: int) -> bool:
        gone = set(order[: len(items) - keep])
        return count(render([it for r, it in enumerate(items) if r not in gone])) <= limit

    low, high = 0, len(items)  # fits(0) holds (checked by the caller)
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low
