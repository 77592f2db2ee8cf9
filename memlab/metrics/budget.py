"""Recall within a memory-token budget: the fair comparison across unit sizes.

``recall@k`` flatters big units (one whole-session unit "covers" dozens of turns), so the
headline retrieval metric asks what the model could actually be shown: walk the ranked
units in order, adding each unit's exact Qwen token count (``memlab.tokens.count_tokens``
of its text; separators and prompt framing are not counted), and **stop at the first unit
that does not fit** in B tokens. Later, smaller units are not used to fill the gap: the
context is the ranking's longest prefix that fits, which is what a prompt builder that
keeps rank order would show. A first unit larger than B leaves an empty context
(recall 0, not excluded).

Per budget B, at turn and session level (coverage and evidence as in
:mod:`memlab.metrics.retrieval`):

- ``budget_recall_any@B``: 1.0 if any evidence item is covered by the units that fit;
- ``budget_evidence_recall@B``: LoCoMo's fraction of evidence covered by them.

``BudgetScores.exhausted[B]`` is True when every retrieved unit fit, i.e. the ranking ran
out before the budget did: retrieve more units for that B to be measured fully.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from memlab.metrics.retrieval import (
    LEVELS,
    Coverage,
    Evidence,
    as_coverages,
    exclusion_reason,
    first_ranks,
)
from memlab.tokens import DEFAULT_TOKENIZER, count_tokens

if TYPE_CHECKING:
    from memlab.data.schema import Probe

BUDGETS = (250, 500, 1000, 2000)
METRICS = ("budget_recall_any", "budget_evidence_recall")


@dataclass(frozen=True)
class BudgetScores:
    """Budget metrics of one probe, with how many units and tokens each budget took."""

    values: dict[str, float | None]
    units: dict[int, int]
    tokens: dict[int, int]
    exhausted: dict[int, bool]
    excluded: str | None = None


def text_tokens(text: str, model: str = DEFAULT_TOKENIZER) -> int:
    """Exact Qwen token count of ``text`` (cached: units are scored many times)."""
    return _cached_count(text, model)


@lru_cache(maxsize=1 << 17)
def _cached_count(text: str, model: str) -> int:
    return count_tokens(text, model)


def unit_tokens(item: Any, model: str = DEFAULT_TOKENIZER) -> int:
    """Token count of a Hit's / MemoryUnit's / items-row dict's ``text``."""
    unit = getattr(item, "unit", item)
    text = getattr(unit, "text", None)
    if text is None:
        text = unit.get("text", "")
    return _cached_count(text, model)


def prefix_within(tokens: Sequence[int], budget: int) -> int:
    """How many leading units fit in ``budget`` tokens (stop at the first that does not)."""
    used = 0
    for i, n in enumerate(tokens):
        if used + n > budget:
            return i
        used += n
    return len(tokens)


def metric_names(budgets: Sequence[int] = BUDGETS) -> list[str]:
    return [f"{level}.{m}@{b}" for level in LEVELS for m in METRICS for b in budgets]


def score_budget(
    hits: Sequence[Any],
    probe: Probe,
    *,
    budgets: Sequence[int] = BUDGETS,
    tokens: Sequence[int] | None = None,
    turn_sessions: Mapping[str, str] | None = None,
    include_abstention: bool = False,
    model: str = DEFAULT_TOKENIZER,
    first: Mapping[str, Mapping[str, int]] | None = None,
) -> BudgetScores:
    """Budget recall of one probe's ranked ``hits``; ``tokens`` overrides the counts;
    ``first`` is what ``score_retrieval(..., first_out=...)`` found for the same hits."""
    counts = list(tokens) if tokens is not None else [unit_tokens(h, model) for h in hits]
    if len(counts) != len(hits):
        raise ValueError(f"{len(counts)} token counts for {len(hits)} hits")
    units = {b: prefix_within(counts, b) for b in budgets}
    used = {b: sum(counts[: units[b]]) for b in budgets}
    exhausted = {b: units[b] == len(counts) for b in budgets}
    reason = exclusion_reason(probe, include_abstention)
    if reason is not None:
        return BudgetScores(dict.fromkeys(metric_names(budgets)), units, used, exhausted, reason)
    covers = as_coverages(hits, turn_sessions)
    values = budget_values(covers, Evidence.of(probe, turn_sessions), units, first)
    return BudgetScores(values, units, used, exhausted)


def budget_values(covers: Sequence[Coverage], evidence: Evidence,
                  units: Mapping[int, int],
                  first: Mapping[str, Mapping[str, int]] | None = None
                  ) -> dict[str, float | None]:
    """Any- and fraction-recall over the first ``units[B]`` coverages, per budget B.

    ``first`` (per level, each evidence id's first rank, as ``evidence_scores`` hands
    out through ``first_out``) saves scanning the ranking again.
    """
    out: dict[str, float | None] = {}
    for level in LEVELS:
        turn = level == "turn"
        wanted = set(evidence.turns if turn else evidence.sessions)
        fraction = evidence.turns if turn else evidence.session_fraction_items()
        if first is not None and (level in first or not wanted):
            level_first = first.get(level, {})
        else:
            ranked = [c.turns if turn else c.sessions for c in covers]
            level_first = first_ranks(ranked, wanted.union(fraction)) if wanted else {}
        for b, fit in units.items():
            if not wanted:
                out[f"{level}.budget_recall_any@{b}"] = None
                out[f"{level}.budget_evidence_recall@{b}"] = None
                continue
            inside = {e for e, rank in level_first.items() if rank <= fit}
            out[f"{level}.budget_recall_any@{b}"] = float(bool(wanted & inside))
            out[f"{level}.budget_evidence_recall@{b}"] = (
                sum(e in inside for e in fraction) / len(fraction) if fraction else 0.0)
    return {name: out[name] for name in metric_names(tuple(units))}
