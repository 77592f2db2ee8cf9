"""Retrieval metrics over a ranked list of memory units, at turn and session level.

A retrieved unit *covers* every turn in its ``source_turn_ids`` and its session (plus the
session of each covered turn, when a turn -> session map is given), so a window or a
whole-session unit counts every turn it holds. Rank positions are units: ``@k`` means the
top k units, whatever their size (see :mod:`memlab.metrics.budget` for the fair,
size-aware comparison).

Definitions (LongMemEval, xiaowu0162/LongMemEval ``src/retrieval/eval_utils.py``):

- ``recall_any@k`` / ``recall_all@k`` (``evaluate_retrieval``, l. 24-29): 1.0 if any / all
  of the distinct evidence items are covered by the top k units.
- ``ndcg_any@k`` (``dcg``/``ndcg``, l. 4-21): binary relevance per rank position, a unit
  being relevant when it covers at least one evidence item; LongMemEval's discount
  ``rel[0] + sum(rel[i] / log2(i + 1))`` for 0-based i >= 1 (so positions 1 and 2 are
  both undiscounted); ideal DCG from *all* relevant units of the corpus, truncated at k.
  Pass ``corpus`` (every unit in memory) to count them exactly; without it memlab uses
  ``max(#evidence items, #relevant units retrieved)``, which equals LongMemEval at turn
  level with one-turn units and keeps nDCG <= 1 otherwise.
- Session level from turn-level results (``evaluate_retrieval_turn2session``, l. 32-46):
  k is widened one unit at a time until the top k units cover k distinct sessions (or
  the list ends), and every session metric, its ideal DCG included, uses the widened k.
  memlab applies this to any unit kind; it is a no-op for one-session units.
- ``evidence_recall@k``, LoCoMo's fraction (snap-research/LoCoMo
  ``task_eval/evaluation.py`` l. 251-257): the share of the probe's evidence turn ids
  found in the retrieved context (an observation unit holding several dia_ids adds all
  of them to that context: ``task_eval/gpt_utils.py``, ``get_rag_context``). At session
  level LoCoMo counts, per evidence *turn*, whether its session was retrieved (l. 255);
  memlab does the same when every evidence turn's session is known (pass
  ``turn_sessions``), else it takes the share of evidence sessions.

Probes without evidence are excluded, not scored: LoCoMo appends 1 for them (l. 260)
and LongMemEval drops ``_abs`` probes from its averages (``run_retrieval.py``, ``main``);
memlab returns None for every metric and says why (``RetrievalScores.excluded``).
Abstention probes are excluded by default (LongMemEval); ``include_abstention=True``
scores LoCoMo's category 5 as LoCoMo does. A level without evidence (turn ids but no
session ids, or the reverse) is None at that level only.

The caller must retrieve at least max(ks) units: ``@k`` for a k beyond the list is
computed on the whole list. For speed, compute each unit's :func:`coverage` once per
conversation and pass the ``Coverage`` objects instead of hits.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from memlab.data.schema import Probe

KS = (1, 3, 5, 10, 20, 30, 50)  # LongMemEval reports 1, 3, 5, 10, 30, 50
LEVELS = ("turn", "session")
METRICS = ("recall_any", "recall_all", "ndcg_any", "evidence_recall")


@dataclass(frozen=True, slots=True)
class Coverage:
    """What one retrieved unit covers: dataset turn ids and session ids."""

    turns: frozenset[str]
    sessions: frozenset[str]


@dataclass(frozen=True, slots=True)
class Evidence:
    """A probe's evidence; ``turn_sessions`` maps each evidence turn to its session."""

    turns: tuple[str, ...]
    sessions: tuple[str, ...]
    turn_sessions: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, probe: Probe, turn_sessions: Mapping[str, str] | None = None) -> Evidence:
        known = {t: turn_sessions[t] for t in probe.evidence_turn_ids
                 if turn_sessions and t in turn_sessions}
        return cls(tuple(probe.evidence_turn_ids), tuple(probe.evidence_session_ids), known)

    def session_fraction_items(self) -> tuple[str, ...]:
        """Per evidence turn its session (LoCoMo l. 255), else the evidence sessions."""
        if self.turns and all(t in self.turn_sessions for t in self.turns):
            return tuple(self.turn_sessions[t] for t in self.turns)
        return self.sessions


@dataclass(frozen=True)
class RetrievalScores:
    """Every retrieval metric of one probe (None = not applicable) and why excluded."""

    values: dict[str, float | None]
    excluded: str | None = None


def coverage(item: Any, turn_sessions: Mapping[str, str] | None = None) -> Coverage:
    """Coverage of a Hit, a MemoryUnit, an items.jsonl dict, or a Coverage (returned as is)."""
    if type(item) is Coverage:
        return item
    unit = getattr(item, "unit", item)
    turns = getattr(unit, "source_turn_ids", None)  # attribute first: isinstance is slow
    if turns is not None:
        sessions = {unit.session_id}
    else:
        turns = tuple(unit.get("source_turn_ids", unit.get("turn_ids", ())))
        sessions = set(unit.get("session_ids", ()))
        sessions.add(unit.get("session_id", ""))
    if turn_sessions:
        sessions.update([turn_sessions[t] for t in turns if t in turn_sessions])
    sessions.discard("")
    sessions.discard(None)
    return Coverage(frozenset(turns), frozenset(sessions))


def as_coverages(items: Sequence[Any], turn_sessions: Mapping[str, str] | None = None
                 ) -> Sequence[Coverage]:
    """:func:`coverage` of each item (``items`` itself when they all are Coverages)."""
    if all(type(item) is Coverage for item in items):
        return items
    return [coverage(item, turn_sessions) for item in items]


class CorpusIndex:
    """Which corpus units cover each id, per level, so the ideal-DCG size of a probe
    (units covering any evidence id) costs O(evidence) instead of a corpus scan. Build it
    once per memory state and pass it as ``corpus``."""

    def __init__(self, covers: Iterable[Coverage]) -> None:
        self._units: dict[str, dict[str, set[int]]] = {"turn": {}, "session": {}}
        for n, cover in enumerate(covers):
            for level, ids in (("turn", cover.turns), ("session", cover.sessions)):
                index = self._units[level]
                for i in ids:
                    index.setdefault(i, set()).add(n)

    def relevant(self, level: str, evidence: Collection[str]) -> int:
        """Units covering at least one of ``evidence`` at ``level``."""
        index = self._units[level]
        return len(set().union(*(index.get(e, ()) for e in set(evidence))))

    def first_ranks(self, level: str, rank_of: Mapping[int, int],
                    wanted: Collection[str]) -> dict[str, int]:
        """For each wanted id, the best 1-based rank among the ranked units covering it
        (``rank_of``: corpus position -> rank); ids no ranked unit covers are left out."""
        index = self._units[level]
        first: dict[str, int] = {}
        for item in wanted:
            ranks = [rank_of[n] for n in index.get(item, ()) if n in rank_of]
            if ranks:
                first[item] = min(ranks)
        return first

    def relevant_ranks(self, level: str, rank_of: Mapping[int, int],
                       wanted: Collection[str]) -> list[int]:
        """Ranks (ascending) of the ranked units covering at least one wanted id."""
        index = self._units[level]
        found = {rank_of[n] for item in set(wanted) for n in index.get(item, ())
                 if n in rank_of}
        return sorted(found)


def metric_names(ks: Sequence[int] = KS) -> list[str]:
    """``turn.recall_any@1`` ... ``session.evidence_recall@50``, in a stable order."""
    return [f"{level}.{m}@{k}" for level in LEVELS for m in METRICS for k in ks]


def exclusion_reason(probe: Probe, include_abstention: bool = False) -> str | None:
    """Why ``probe`` gets no retrieval metrics: ``"abstention"``, ``"no evidence"``, None."""
    if probe.abstention and not include_abstention:
        return "abstention"
    if not probe.evidence_turn_ids and not probe.evidence_session_ids:
        return "no evidence"
    return None


def score_retrieval(
    hits: Sequence[Any],
    probe: Probe,
    *,
    ks: Sequence[int] = KS,
    turn_sessions: Mapping[str, str] | None = None,
    corpus: Sequence[Any] | CorpusIndex | None = None,
    include_abstention: bool = False,
    positions: Sequence[int] | None = None,
    first_out: dict[str, dict[str, int]] | None = None,
) -> RetrievalScores:
    """All turn- and session-level metrics of one probe's ranked ``hits`` (best first).

    ``corpus`` (every unit in memory, or a prebuilt CorpusIndex of them) sizes the ideal
    DCG; without it, the retrieved list does. ``positions`` and ``first_out``: see
    :func:`evidence_scores`.
    """
    reason = exclusion_reason(probe, include_abstention)
    if reason is not None:
        return RetrievalScores(dict.fromkeys(metric_names(ks)), reason)
    covers = as_coverages(hits, turn_sessions)
    if corpus is not None and not isinstance(corpus, CorpusIndex):
        corpus = CorpusIndex(coverage(u, turn_sessions) for u in corpus)
    return RetrievalScores(evidence_scores(covers, Evidence.of(probe, turn_sessions), ks,
                                           corpus, positions, first_out))


def evidence_scores(
    covers: Sequence[Coverage],
    evidence: Evidence,
    ks: Sequence[int] = KS,
    corpus: Sequence[Coverage] | CorpusIndex | None = None,
    positions: Sequence[int] | None = None,
    first_out: dict[str, dict[str, int]] | None = None,
) -> dict[str, float | None]:
    """Metrics of ranked coverages against ``evidence`` at both levels.

    ``positions`` (with a CorpusIndex ``corpus``): each ranked unit's position in the
    corpus, all distinct. The scores are then read off the corpus index (which units
    cover each evidence id) instead of scanning the ranking — the same numbers, several
    times faster. ``first_out`` receives, per level, each evidence id's first rank.
    """
    if corpus is not None and not isinstance(corpus, CorpusIndex):
        corpus = CorpusIndex(corpus)
    rank_of = None
    if positions is not None and isinstance(corpus, CorpusIndex):
        rank_of = {n: rank for rank, n in enumerate(positions, 1)}
        if len(rank_of) != len(covers):
            rank_of = None  # a unit ranked twice: scan the ranking
    out: dict[str, float | None] = {}
    for level in LEVELS:
        turn = level == "turn"
        wanted = evidence.turns if turn else evidence.sessions
        fraction = evidence.turns if turn else evidence.session_fraction_items()
        values: dict[str, float] = {}
        if wanted and rank_of is not None and corpus is not None:
            first = corpus.first_ranks(level, rank_of, set(wanted).union(fraction))
            relevant = corpus.relevant_ranks(level, rank_of, wanted)
            distinct = _distinct_prefix([c.sessions for c in covers]) if not turn else None
            values = _values_at_k(first, set(wanted), list(fraction), ks, relevant,
                                  corpus.relevant(level, wanted), len(covers), distinct)
            if first_out is not None:
                first_out[level] = first
        elif wanted:
            ranked = [c.turns if turn else c.sessions for c in covers]
            n_relevant = None if corpus is None else corpus.relevant(level, wanted)
            first, relevant = _scan(ranked, set(wanted), list(fraction))
            values = _values_at_k(first, set(wanted), list(fraction), ks, relevant, n_relevant,
                                  len(ranked), _distinct_prefix(ranked) if not turn else None)
            if first_out is not None:
                first_out[level] = first
        for name, key in _level_names(level, tuple(ks)):
            out[name] = values.get(key)
    return out


@lru_cache(maxsize=64)
def _level_names(level: str, ks: tuple[int, ...]) -> tuple[tuple[str, str], ...]:
    """(``level.metric@k``, ``metric@k``) in output order (formatted once, not per probe)."""
    return tuple((f"{level}.{m}@{k}", f"{m}@{k}") for m in METRICS for k in ks)


def level_scores(
    ranked: Sequence[Collection[str]],
    evidence: Collection[str],
    ks: Sequence[int] = KS,
    *,
    widen: bool = False,
    n_relevant: int | None = None,
    fraction_of: Sequence[str] | None = None,
) -> dict[str, float]:
    """``recall_any``, ``recall_all``, ``ndcg_any``, ``evidence_recall`` at every k.

    ``ranked`` holds the ids each unit covers at one level; ``widen`` applies
    LongMemEval's session rule; ``fraction_of`` is the id list LoCoMo's fraction counts
    (default: ``evidence``).
    """
    wanted = set(evidence)
    if not wanted:
        raise ValueError("level_scores needs at least one evidence id")
    fraction = list(evidence) if fraction_of is None else list(fraction_of)
    first, relevant = _scan(ranked, wanted, fraction)
    return _values_at_k(first, wanted, fraction, ks, relevant, n_relevant, len(ranked),
                        _distinct_prefix(ranked) if widen else None)


def _scan(ranked: Sequence[Collection[str]], wanted: set[str], fraction: list[str]
          ) -> tuple[dict[str, int], list[int]]:
    """One pass over the ranking: each wanted / fraction id's first rank, and the ranks
    (ascending) of the units covering a wanted id."""
    targets = wanted.union(fraction)
    first: dict[str, int] = {}
    relevant: list[int] = []
    for rank, ids in enumerate(ranked, 1):
        hit = targets.intersection(ids)
        if hit:
            for item in hit:
                first.setdefault(item, rank)
            if not wanted.isdisjoint(hit):
                relevant.append(rank)
    return first, relevant


def _values_at_k(first: Mapping[str, int], wanted: set[str], fraction: list[str],
                 ks: Sequence[int], relevant: list[int], n_relevant: int | None,
                 n_ranked: int, distinct: list[int] | None) -> dict[str, float]:
    """The four metrics at every k from each id's first rank and the ascending ranks of
    the relevant units; ``distinct`` (session level) widens k."""
    discounts = _discounts(n_ranked)
    gains = [0.0] * (n_ranked + 1)  # DCG of the top r units, summed in rank order
    gain, last = 0.0, 0
    for rank in relevant:
        gains[last:rank] = [gain] * (rank - last)
        gain += discounts[rank]
        last = rank
    gains[last:] = [gain] * (n_ranked + 1 - last)
    total_relevant = max(len(wanted) if n_relevant is None else n_relevant, len(relevant))
    out: dict[str, float] = {}
    for k, (any_key, all_key, ndcg_key, fraction_key) in zip(ks, _k_names(tuple(ks)),
                                                             strict=True):
        kk = k if distinct is None else widen_k(distinct, k)
        found = [first.get(e, math.inf) <= kk for e in wanted]
        out[any_key] = float(any(found))
        out[all_key] = float(all(found))
        ideal = _ideal_dcg(min(total_relevant, kk))
        out[ndcg_key] = gains[min(kk, n_ranked)] / ideal if ideal else 0.0
        hits = sum(first.get(e, math.inf) <= kk for e in fraction)
        out[fraction_key] = hits / len(fraction) if fraction else 0.0
    return out


@lru_cache(maxsize=64)
def _k_names(ks: tuple[int, ...]) -> tuple[tuple[str, str, str, str], ...]:
    return tuple((f"recall_any@{k}", f"recall_all@{k}", f"ndcg_any@{k}",
                  f"evidence_recall@{k}") for k in ks)


def first_ranks(ranked: Sequence[Collection[str]], wanted: Collection[str]) -> dict[str, int]:
    """For each wanted id, the 1-based rank of the first unit covering it."""
    wanted = set(wanted)
    first: dict[str, int] = {}
    for rank, ids in enumerate(ranked, 1):
        for item in wanted.intersection(ids):
            first.setdefault(item, rank)
    return first


def widen_k(distinct_prefix: Sequence[int], k: int) -> int:
    """LongMemEval's effective k: grow k until the top k cover k distinct sessions.

    ``distinct_prefix[i]`` is the number of distinct sessions in the top i+1 units. Like
    LongMemEval's loop, the result may exceed the list length by one when the whole list
    covers fewer than k sessions.
    """
    n = len(distinct_prefix)
    effective = k
    while effective <= n and distinct_prefix[effective - 1] < k:
        effective += 1
    return effective


def _distinct_prefix(ranked: Sequence[Collection[str]]) -> list[int]:
    seen: set[str] = set()
    counts = []
    for ids in ranked:
        seen.update(ids)
        counts.append(len(seen))
    return counts


def _discount(position: int) -> float:
    """LongMemEval's DCG weight of a 1-based rank: 1 at ranks 1 and 2, then 1/log2(rank)."""
    return 1.0 if position == 1 else 1.0 / math.log2(position)


_DISCOUNTS: list[float] = [0.0, 1.0]


def _discounts(n: int) -> list[float]:
    """``_discount`` of ranks 0..n (index 0 unused), grown on demand."""
    while len(_DISCOUNTS) <= n:
        _DISCOUNTS.append(_discount(len(_DISCOUNTS)))
    return _DISCOUNTS


@lru_cache(maxsize=4096)
def _ideal_dcg(n: int) -> float:
    return math.fsum(_discounts(n)[1 : n + 1])


# Single-metric forms, handy in notebooks and tests (one k, plain id collections).
def recall_any(ranked: Sequence[Collection[str]], evidence: Collection[str], k: int) -> float:
    return level_scores(ranked, evidence, (k,))[f"recall_any@{k}"]


def recall_all(ranked: Sequence[Collection[str]], evidence: Collection[str], k: int) -> float:
    return level_scores(ranked, evidence, (k,))[f"recall_all@{k}"]


def ndcg_any(ranked: Sequence[Collection[str]], evidence: Collection[str], k: int,
             n_relevant: int | None = None) -> float:
    return level_scores(ranked, evidence, (k,), n_relevant=n_relevant)[f"ndcg_any@{k}"]


def evidence_recall(ranked: Sequence[Collection[str]], evidence: Sequence[str],
                    k: int) -> float:
    """LoCoMo's fraction: share of ``evidence`` (repeats count) covered by the top k."""
    return level_scores(ranked, evidence, (k,))[f"evidence_recall@{k}"]
