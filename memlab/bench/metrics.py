"""``python -m memlab.bench metrics``: what scoring every LoCoMo probe costs.

Each of the 1,986 probes gets a planted ranking of 50 turn units of its conversation
(``memlab.testing.rankings``) and is scored the way the harness scores it: every answer
scorer (the question as a wrong but word-sharing answer), every retrieval metric at every
k (both the ranking scan and the corpus-index path the harness uses), every budget, and
the run summary (means + bootstrap CIs per category). CPU seconds of this process, best
of ``--repeat``, so a busy second core moves the figures little.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

from memlab.bench import count
from memlab.bench.eval import _print


def _best(work: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.process_time()
        work()
        times.append(time.process_time() - start)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m memlab.bench metrics", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=count, default=3, help="best of N (default 3)")
    args = parser.parse_args(argv)
    from memlab.data import load_dataset
    from memlab.eval.summary import summarize_run
    from memlab.metrics import registry
    from memlab.metrics.budget import score_budget
    from memlab.metrics.retrieval import score_retrieval
    from memlab.testing.rankings import indexed_rankings, planted_rankings

    work = planted_rankings(load_dataset("locomo"))
    scorers = {name: registry.build(name) for name in registry.names()}
    scorers["locomo_f1"].score("warm up", "nltk")  # nltk's import is not scoring
    prepared = indexed_rankings(work)  # token counts (memoised) are not scoring either

    def answers() -> None:
        for item in work:
            for scorer in scorers.values():
                scorer.score(item.probe.question, item.probe.answer, item.probe)

    def scan() -> None:
        for r in prepared:
            score_retrieval(r.ranked, r.item.probe, turn_sessions=r.item.turn_sessions,
                            corpus=r.corpus)

    rows_out: list[dict[str, Any]] = []

    def indexed() -> None:
        rows_out.clear()
        for r in prepared:
            probe, turn_sessions = r.item.probe, r.item.turn_sessions
            first: dict[str, dict[str, int]] = {}
            values = score_retrieval(r.ranked, probe, turn_sessions=turn_sessions,
                                     corpus=r.corpus, positions=r.positions,
                                     first_out=first).values
            budget = score_budget(r.ranked, probe, tokens=r.tokens,
                                  turn_sessions=turn_sessions, first=first).values
            rows_out.append({"probe_id": probe.id, "category": probe.category,
                             "metrics": {**values, **budget}})

    def budgets() -> None:
        for r in prepared:
            score_budget(r.ranked, r.item.probe, tokens=r.tokens,
                         turn_sessions=r.item.turn_sessions)

    n = len(work)
    timings = [("answer scorers (all registered)", _best(answers, args.repeat)),
               ("retrieval metrics, ranking scan", _best(scan, args.repeat)),
               ("budget metrics, ranking scan", _best(budgets, args.repeat)),
               ("retrieval + budget, corpus index (harness)", _best(indexed, args.repeat))]
    timings.append(("run summary (means + 1,000-resample CIs)",
                    _best(lambda: summarize_run(rows_out), args.repeat)))
    rows = [(name, f"{seconds:.3f} s  ({1000 * seconds / n:.3f} ms/probe)")
            for name, seconds in timings]
    _print(f"memlab.bench metrics: {n:,} LoCoMo probes, 50 ranked turn units each, "
           f"CPU seconds (best of {args.repeat}), {os.cpu_count()} cores", rows)
    return 0
