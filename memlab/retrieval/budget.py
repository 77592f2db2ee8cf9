"""Budget-aware selection: fill a memory-token budget with as much evidence as it holds.

The headline metric (``budget_evidence_recall@B``) shows the reader the ranking's longest
prefix that fits ``B`` tokens. A plain ranking wastes that budget: overlapping windows
repeat turns, and one long unit ends the prefix although smaller ones would still fit.
This wrapper takes any base ranking (its best ``candidates``) and, in rank order:

1. re-packages hits turn by turn (:mod:`memlab.retrieval.turns`): a turn already shown is
   never shown again, and the turns chosen in one session are merged into contiguous
   spans (overlapping or adjacent windows become one unit, one line per turn);
2. adds up to ``neighbors`` turns on each side of a hit (the reply to a question, the
   question to an answer) when hit and neighbours fit, for hits ranked below
   ``neighbor_ranks`` (all if None); a hit that only fits alone is taken alone;
3. skips a hit that does not fit and keeps going, so later, smaller hits fill the budget;
4. after the budget, lists the remaining hits' unseen turns as further spans (ranks past
   the budget, for recall@k and larger budgets), never repeating a turn.

With ``granularity: turn`` the hits are first split into their turns, each scored by the
reciprocal ranks (``rrf_k``) of the hits holding it, so overlapping windows vote for the
turns they share and packing picks turns, not whole windows.

With ``focus`` (a strategy over single turns, e.g. ``dense``, indexed on the units' turns)
a hit of several turns shows only its ``focus_turns`` turns that ``focus`` ranks best among
its top ``focus_candidates`` turns (turns it did not rank come last, in session order), plus
any ``neighbors``: the hit's rank still comes from ``base`` (a window's context helps rank
it), but fewer of its tokens go to turns the question is not about, so more hits fit.

With ``speaker_from`` (an integer), a question naming exactly one of the speakers of the
indexed turns (:mod:`memlab.retrieval.speakers`; ``aliases`` adds words naming one) shows,
for each hit ranked ``speaker_from`` or lower (0-based), only that speaker's turns of it
(all of them when it has none): a question about a person is answered by what they said
(on LoCoMo, 96 % of the evidence turns of questions naming one speaker are that speaker's),
so the other side's turns spend budget on context and fewer hits fit. The best hits above
that rank keep all their turns (the question an answer replies to). The ranking is the
base's; only what each hit shows changes — the reader sees less of the other side.

Spans come in the rank of their best hit; a span's ``score`` is that hit's base score, so
scores are not monotone and ``threshold`` (on the base's scale) filters the final spans.
A span equal to an indexed unit is that unit; otherwise a ``window`` unit with id
``{session}/span/{first turn}..{last turn}`` and ``at`` the newest of its turns' known
times — never after ``as_of``, since only turns of units visible at ``as_of`` are used.
Token counts are exact Qwen counts of the span texts (what the metric counts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cached_property
from typing import ClassVar

import numpy as np

from memlab.chunkers.base import MemoryUnit
from memlab.data.schema import Probe
from memlab.errors import check_choice, check_number
from memlab.metrics.budget import text_tokens
from memlab.retrieval.base import Hit
from memlab.retrieval.speakers import SpeakerNames, check_aliases, line_speaker
from memlab.retrieval.turn_costs import TurnCosts
from memlab.retrieval.turns import TurnCatalog, TurnIndex, turn_lines
from memlab.retrieval.wrap import BaseSpec, Wrapper
from memlab.spec import Component
from memlab.store.codec import at_micros
from memlab.tokens import DEFAULT_TOKENIZER, check_tokenizer

GRANULARITIES = ("hit", "turn")


def turn_hits(hits: list[Hit], catalog: TurnCatalog, rrf_k: int) -> list[Hit]:
    """The turns of ``hits`` as one-turn hits, scored ``sum of 1 / (rrf_k + rank)`` over
    the hits holding them (a turn inside two good windows beats a window's edge turn);
    hits not made of whole turns keep their own reciprocal rank. Ties: first seen."""
    score: dict[str, float] = {}
    whole: dict[str, Hit] = {}
    for rank, hit in enumerate(hits, start=1):
        part = 1.0 / (rrf_k + rank)
        unit = hit.unit
        if turn_lines(unit) is None or unit.source_turn_ids[0] not in catalog.where:
            whole[unit.id] = hit
            score[unit.id] = score.get(unit.id, 0.0) + part
            continue
        for tid in unit.source_turn_ids:
            score["\0" + tid] = score.get("\0" + tid, 0.0) + part
    order = sorted(score, key=lambda key: -score[key])  # stable: first seen wins ties
    return [Hit(_turn_unit(key[1:], catalog) if key[0] == "\0" else whole[key].unit,
                score[key]) for key in order]


def _turn_unit(tid: str, catalog: TurnCatalog) -> MemoryUnit:
    session = catalog.where[tid][0]
    return MemoryUnit(f"{session}/span/{tid}..{tid}", catalog.line[tid], "turn", (tid,),
                      session, catalog.known_at[tid])


class BudgetStrategy(Wrapper, Component):
    """Any base ranking packed into a token budget: merged spans, neighbours, no repeats."""

    nested: ClassVar[Mapping[str, str]] = {"base": "retrieval", "focus": "retrieval"}

    composes_units = True  # hits may be new span units, not indexed ones

    def __init__(
        self,
        k: int | None = None,
        threshold: float | None = None,
        base: BaseSpec = "hybrid",
        budget: int = 1000,
        candidates: int = 100,
        neighbors: int = 0,
        neighbor_ranks: int | None = None,
        granularity: str = "hit",
        rrf_k: int = 60,
        focus: BaseSpec | None = None,
        focus_turns: int = 1,
        focus_candidates: int = 200,
        speaker_from: int | None = None,
        aliases: Mapping[str, Sequence[str]] | None = None,
        tokenizer: str = DEFAULT_TOKENIZER,
    ) -> None:
        self.k = k
        self.threshold = threshold
        self.base = base
        self.budget = budget
        self.candidates = candidates
        self.neighbors = neighbors
        self.neighbor_ranks = neighbor_ranks
        self.granularity = granularity
        self.rrf_k = rrf_k
        self.focus = focus
        self.focus_turns = focus_turns
        self.focus_candidates = focus_candidates
        self.speaker_from = speaker_from
        self.aliases = aliases
        self.tokenizer = tokenizer

    def check_params(self) -> None:
        check_number("budget: budget", self.budget, low=0, integer=True)
        check_number("budget: neighbors", self.neighbors, low=0, integer=True)
        check_choice("budget: granularity", self.granularity, GRANULARITIES)
        check_number("budget: speaker_from", self.speaker_from, low=0, integer=True,
                     optional=True)
        check_aliases("budget", self.aliases)
        for name in ("focus_turns", "focus_candidates"):
            check_number(f"budget: {name}", getattr(self, name), low=1, integer=True)
        check_tokenizer("budget: tokenizer", self.tokenizer)

    @cached_property
    def catalog(self) -> TurnCatalog:
        return TurnCatalog()

    @cached_property
    def costs(self) -> TurnCosts:
        return TurnCosts(self.tokenizer)

    @cached_property
    def span_units(self) -> dict[tuple[str, int, int], MemoryUnit]:
        """(session, first, last position) -> the unit showing those turns (``_Packer``'s
        memo across searches; emptied when the turns change)."""
        return {}

    @cached_property
    def unit_cores(self) -> dict[tuple[str, str | None], list[int]]:
        """(unit id, speaker trimmed to or None) -> session positions of the turns a hit
        of that unit shows without ``focus`` (``_Packer``'s memo across searches; emptied
        when the turns change)."""
        return {}

    @cached_property
    def speakers(self) -> SpeakerNames:
        """The speakers of the catalogued turns, to find the one a question names."""
        return SpeakerNames(self.aliases)

    @cached_property
    def said_by(self) -> dict[str, str | None]:
        """Turn id -> its speaker (None: no ``Speaker:`` prefix), with ``speaker_from``."""
        return {}

    @cached_property
    def turn_index(self) -> TurnIndex | None:
        """``focus`` over the units' single turns (None without ``focus``)."""
        return None if self.focus is None else TurnIndex(self.focus, self.catalog)

    def index(self, units: Sequence[MemoryUnit], vectors: np.ndarray | None = None) -> None:
        """Index the base; catalogue the turns and count their tokens now (not at the
        first search)."""
        super().index(units, vectors)
        self.catalog.add(units)
        if not self.catalog.fresh:
            self.catalog.refresh()
            self.costs = TurnCosts(self.tokenizer)  # lines may have changed: count anew
            self.span_units, self.unit_cores = {}, {}
            self.costs.update(self.catalog)
            if self.speaker_from is not None:
                self.said_by = {tid: line_speaker(line)
                                for tid, line in self.catalog.line.items()}
                self.speakers.add(self.said_by.values())
        if self.turn_index is not None:
            self.turn_index.add(units)

    def prepare_index(self) -> None:
        super().prepare_index()
        if self.turn_index is not None:
            self.turn_index.prepare()

    def search(self, query: str, k: int | None = None, as_of: datetime | None = None, *,
               probe: Probe | None = None) -> list[Hit]:
        limit, hits = self.candidates_for(query, k, as_of, probe, self.candidates)
        self.catalog.refresh()
        if self.granularity == "turn":
            hits = turn_hits(hits, self.catalog, self.rrf_k)
        focus = None
        if self.turn_index is not None:
            found = self.turn_index.search(query, self.focus_candidates, as_of, probe)
            focus = {hit.unit.source_turn_ids[0]: rank for rank, hit in enumerate(found)}
        named = self.speakers.named(query) if self.speaker_from is not None else []
        packer = _Packer(self, hits, None if as_of is None else at_micros(as_of), focus,
                         named[0] if len(named) == 1 else None)
        out = packer.pack(limit)
        if self.threshold is not None:
            out = [h for h in out if h.score >= self.threshold]
        return out if limit is None else out[:limit]


class _Packer:
    """One search's selection: chosen turn positions per session, with their ranks."""

    def __init__(self, owner: BudgetStrategy, hits: list[Hit], as_of_us: int | None,
                 focus: dict[str, int] | None = None, speaker: str | None = None) -> None:
        self.owner = owner
        self.focus = focus  # turn id -> rank among the focus strategy's turns
        self.speaker = speaker  # the one speaker the question names, with speaker_from
        self.catalog = owner.catalog
        self.hits = hits
        self.as_of_us = as_of_us
        self.chosen: dict[str, dict[int, int]] = {}  # session -> position -> rank
        self.cost: dict[str, int] = {}
        self.used = 0
        self.whole: list[tuple[int, MemoryUnit]] = []  # (rank, unit) of undecomposable hits
        self.cores: dict[int, list[int]] = {}  # rank -> positions of the hit's turns shown

    def pack(self, limit: int | None = None) -> list[Hit]:
        """The packed spans in rank order, then the leftovers' spans; with ``limit``, the
        leftovers stop once ``limit`` spans pass the owner's ``threshold`` (the search
        keeps no more)."""
        left: list[int] = []
        for rank, hit in enumerate(self.hits):
            if not self._take(rank, hit):
                left.append(rank)
        packed = self._spans(self.chosen) + self.whole
        packed.sort(key=lambda pair: pair[0])
        want = None if limit is None else limit - sum(self._kept(r) for r, _ in packed)
        extra = self._leftovers(left, want)
        return [Hit(unit, self.hits[rank].score) for rank, unit in packed + extra]

    def _kept(self, rank: int) -> bool:
        """Whether spans of the hit of ``rank`` (which carry its score) pass the owner's
        threshold."""
        threshold = self.owner.threshold
        return threshold is None or self.hits[rank].score >= threshold

    def _take(self, rank: int, hit: Hit) -> bool:
        """Add the hit (with neighbours if they fit) within the budget; False if not."""
        unit = hit.unit
        if not self.catalog.decomposable(unit):
            cost = text_tokens(unit.text, self.owner.tokenizer)
            if self.used + cost > self.owner.budget:
                return False
            self.used += cost
            self.whole.append((rank, unit))
            return True
        session = unit.session_id
        have = self.chosen.get(session, {})
        core = self._core(unit, rank)
        new = [p for p in core if p not in have]
        if not new:
            return True
        order = self.catalog.sessions[session]
        floor = self.owner.costs.floor(session, [order[p] for p in new])
        if self.used + floor > self.owner.budget:
            return False  # not even its own new turns fit (exact: costs are additive)
        ranks = self.owner.neighbor_ranks
        trials = [new]
        if self.owner.neighbors and (ranks is None or rank < ranks):
            trials.insert(0, new + self._neighbours(session, core, have))
        for positions in trials:
            trial = {**have, **dict.fromkeys(positions, rank)}
            cost = self._session_cost(session, trial)
            if self.used - self.cost.get(session, 0) + cost <= self.owner.budget:
                self.used += cost - self.cost.get(session, 0)
                self.cost[session] = cost
                self.chosen[session] = trial
                return True
        return False

    def _core(self, unit: MemoryUnit, rank: int) -> list[int]:
        """Session positions of the turns of ``unit`` (the hit of ``rank``) to show: all
        of them, or with ``focus`` the best ``focus_turns`` (in session order); from
        ``speaker_from`` on, only those of the speaker the question names, if any.
        Memoised per hit (a hit left out of the budget is looked at again for the
        leftovers) and, without ``focus``, per unit and speaker across searches."""
        known = self.cores.get(rank)
        if known is None:
            trim = self.speaker is not None and rank >= (self.owner.speaker_from or 0)
            speaker = self.speaker if trim else None
            if self.focus is None:
                memo = self.owner.unit_cores
                key = (unit.id, speaker)
                known = memo.get(key)
                if known is None:
                    known = memo[key] = self._find_core(unit, speaker)
            else:
                known = self._find_core(unit, speaker)
            self.cores[rank] = known
        return known

    def _find_core(self, unit: MemoryUnit, speaker: str | None) -> list[int]:
        where = self.catalog.where
        tids = unit.source_turn_ids
        keep = self.owner.focus_turns
        focus = self.focus
        if focus is not None and len(tids) > keep:
            unranked = len(focus)
            tids = tuple(sorted(tids, key=lambda t: (focus.get(t, unranked), where[t][1]))
                         [:keep])
        if speaker is not None:
            said_by = self.owner.said_by
            tids = tuple(t for t in tids if said_by.get(t) == speaker) or tids
        return sorted(where[t][1] for t in tids)

    def _neighbours(self, session: str, core: list[int], have: dict[int, int]) -> list[int]:
        order = self.catalog.sessions[session]
        n = self.owner.neighbors
        out: list[int] = []
        for p in range(min(core) - n, max(core) + n + 1):
            if (0 <= p < len(order) and p not in have and p not in core and p not in out
                    and self.catalog.visible(order[p], self.as_of_us)):
                out.append(p)
        return out

    def _session_cost(self, session: str, positions: dict[int, int]) -> int:
        """Tokens of the session's chosen turns as spans (run counts are memoised)."""
        order = self.catalog.sessions[session]
        costs = self.owner.costs
        return sum(costs.span_cost(self.catalog, session, order, run)
                   for run in _runs(sorted(positions)))

    def _text(self, order: list[str], run: list[int]) -> str:
        return "\n".join(self.catalog.line[order[p]] for p in run)

    def _spans(self, chosen: dict[str, dict[int, int]]) -> list[tuple[int, MemoryUnit]]:
        out = []
        for session, positions in chosen.items():
            order = self.catalog.sessions[session]
            for run in _runs(sorted(positions)):
                out.append((min(positions[p] for p in run), self._unit(session, order, run)))
        return out

    def _unit(self, session: str, order: list[str], run: list[int]) -> MemoryUnit:
        """The unit showing the session's turns at ``run``: an indexed unit of exactly
        those turns, or a span unit; memoised until the turns change (searches show the
        same spans again and again)."""
        key = (session, run[0], run[-1])
        made = self.owner.span_units.get(key)
        if made is not None:
            return made
        tids = tuple(order[p] for p in run)
        made = self.catalog.exact.get(tids)
        if made is None:
            when = self.catalog.known_at[max(tids, key=self.catalog.known.__getitem__)]
            made = MemoryUnit(f"{session}/span/{tids[0]}..{tids[-1]}",
                              self._text(order, run), "window", tids, session, when)
        self.owner.span_units[key] = made
        return made

    def _leftovers(self, ranks: list[int], want: int | None = None
                   ) -> list[tuple[int, MemoryUnit]]:
        """Hits past the budget: their turns not shown yet, as spans in rank order; with
        ``want``, only until ``want`` of them pass the threshold (the rest is cut)."""
        seen = {s: dict(p) for s, p in self.chosen.items()}
        shown_whole = {u.id for _, u in self.whole}
        out: list[tuple[int, MemoryUnit]] = []
        kept = 0
        for rank in ranks:
            if want is not None and kept >= want:
                break
            before = len(out)
            unit = self.hits[rank].unit
            if not self.catalog.decomposable(unit):
                if unit.id not in shown_whole:
                    shown_whole.add(unit.id)
                    out.append((rank, unit))
            else:
                session = unit.session_id
                have = seen.setdefault(session, {})
                fresh = [p for p in self._core(unit, rank) if p not in have]  # sorted
                have.update(dict.fromkeys(fresh, rank))
                order = self.catalog.sessions[session]
                out.extend((rank, self._unit(session, order, run)) for run in _runs(fresh))
            if self._kept(rank):
                kept += len(out) - before
        return out


def _runs(positions: list[int]) -> list[list[int]]:
    """Sorted positions cut into runs of consecutive ones."""
    runs: list[list[int]] = []
    for p in positions:
        if runs and runs[-1][-1] == p - 1:
            runs[-1].append(p)
        else:
            runs.append([p])
    return runs
