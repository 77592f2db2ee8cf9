"""Exact Qwen token counts of runs of consecutive turns, from per-turn counts.

``budget`` packs spans of turns (lines joined by ``"\\n"``) and must count each candidate
span exactly as the metric will. Tokenising every candidate span again costs most of a
search; but Qwen's pre-tokenizer cuts the text after a newline that is followed by a
letter, so a span's count is the sum of its lines' counts, each but the last counted
with its newline. That holds for a pair of neighbouring lines when
``count(a + "\\n" + b) == count(a + "\\n") + count(b)`` — checked for every neighbouring
pair when the turns are indexed (an index-time cost) — and then for any run of them. A
run crossing a pair that fails the check is tokenised whole, so counts stay exact.
"""

from __future__ import annotations

from memlab.metrics.budget import text_tokens
from memlab.retrieval.turns import TurnCatalog


class TurnCosts:
    """Per-turn token counts of a catalog's turns, and exact run counts from them."""

    def __init__(self, tokenizer: str) -> None:
        self.tokenizer = tokenizer
        self.with_newline: dict[str, int] = {}  # count(line + "\n")
        self.alone: dict[str, int] = {}  # count(line)
        self.clean: dict[str, bool] = {}  # the boundary after this turn splits cleanly
        #: sessions whose every run costs the sum of its turns' counts (all boundaries
        #: clean) and where a newline never lowers a count: there, adding turns to a
        #: selection costs at least their ``alone`` counts (:meth:`floor`)
        self.additive: set[str] = set()
        self.spans: dict[tuple[str, int, int], int] = {}  # (session, first, last) -> tokens

    def update(self, catalog: TurnCatalog) -> None:
        """Count the catalog's turns not counted yet (and the boundaries next to them)."""
        for order in catalog.sessions.values():
            for i, tid in enumerate(order):
                line = catalog.line[tid]
                if tid not in self.alone:
                    self.alone[tid] = text_tokens(line, self.tokenizer)
                    self.with_newline[tid] = text_tokens(line + "\n", self.tokenizer)
                if i + 1 < len(order) and tid not in self.clean:
                    after = catalog.line[order[i + 1]]
                    joined = text_tokens(line + "\n" + after, self.tokenizer)
                    self.clean[tid] = joined == self.with_newline[tid] + text_tokens(
                        after, self.tokenizer)
        self.additive = {session for session, order in catalog.sessions.items()
                         if all(self.clean[t] for t in order[:-1])
                         and all(self.with_newline[t] >= self.alone[t] for t in order)}

    def floor(self, session: str, tids: list[str]) -> int:
        """A lower bound on what adding the turns ``tids`` to any selection of the
        session's turns costs: the sum of their counts alone if the session is additive
        (a run costs ``with_newline`` of each turn but the last, ``alone`` of the last,
        and ``with_newline >= alone``), else 0."""
        if session not in self.additive:
            return 0
        return sum(self.alone[t] for t in tids)

    def span_cost(self, catalog: TurnCatalog, session: str, order: list[str],
                  run: list[int]) -> int:
        """:meth:`run_cost` of the session's turns at ``run`` (``order`` is the session's
        turn order), memoised: the counts of a catalog's turns never change (a catalog
        that changes gets a new ``TurnCosts``)."""
        key = (session, run[0], run[-1])
        cost = self.spans.get(key)
        if cost is None:
            cost = self.spans[key] = self.run_cost(catalog, order, run)
        return cost

    def run_cost(self, catalog: TurnCatalog, order: list[str], run: list[int]) -> int:
        """Tokens of the lines at consecutive positions ``run`` of a session joined by
        newlines: summed from the per-turn counts, or counted whole where unsure."""
        tids = [order[p] for p in run]
        known = all(t in self.alone for t in tids)
        if known and all(self.clean.get(t, False) for t in tids[:-1]):
            return sum(self.with_newline[t] for t in tids[:-1]) + self.alone[tids[-1]]
        return text_tokens("\n".join(catalog.line[t] for t in tids), self.tokenizer)
