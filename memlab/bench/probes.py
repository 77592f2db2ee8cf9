"""``python -m memlab.bench probes CONFIG``: search time per probe of each retrieval case.

For every grid case of a sweep config (``--only`` picks some), each conversation's memory is
built as the harness builds it — every session ingested, search indexes prepared, the
questions' embeddings warmed — and each probe is searched as the harness searches it
(``asked_at`` order, ``as_of = asked_at``, depth ``max(k, depth)``). Only the search is
timed, two ways: the CPU time of the searching thread (``time.thread_time``: what the code
costs; another job on the machine barely moves it) and wall time. Building the memory is
not timed; its embeddings come from the embedding cache, so run the config once (``run`` or
``sweep``) first or the first pass embeds everything. Strategies that call an LLM at query
time (``llm_rerank``, ``query_rewrite``) include those calls unless they are cached. Each
case starts with the time reader's memo of parsed questions empty, as a run of its own does
(in one sweep process, later cases would find their questions' dates parsed).

Dataset iteration (``dataset.probes``) is the config's; ``--conversations`` keeps the first N
conversations for a quick look. ``--repeat N`` searches each conversation's probes N times
over (dates parsed anew each pass) and times each probe by its median: one slow moment of
a shared machine then moves no probe. A fixed workload is timed before and after the
cases ("machine reference"): on a shared host the same code runs up to ~1.7x slower at
times, and the reference shows when.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from memlab.bench import count
from memlab.eval.config import ExperimentConfig


def time_searches(config: ExperimentConfig, dataset: Any,
                  conversations: int | None = None, repeat: int = 1) -> dict[str, Any]:
    """Per-probe search times (ms) of ``config`` over ``dataset``'s selected probes: with
    ``repeat`` > 1 each conversation's probes are searched that many times over (the time
    reader's memo emptied before each pass) and each probe's time is its median."""
    from memlab.eval.replay import loaded_memory
    from memlab.eval.run import _pending
    from memlab.eval.select import select_probes
    from memlab.retrieval import timeref

    todo = _pending(dataset, select_probes(dataset, config.dataset.probes), set())
    cpu: list[float] = []
    wall: list[float] = []
    depth = max(config.k or 0, config.depth)
    for conversation, probes in todo[:conversations]:
        memory = loaded_memory(config, conversation, [p.question for p in probes])
        ordered = sorted(probes, key=lambda p: (p.asked_at, p.id))
        passes = np.empty((repeat, 2, len(ordered)))
        for r in range(repeat):
            timeref._parse.cache_clear()  # every pass parses its questions' dates anew
            for i, probe in enumerate(ordered):
                start_cpu, start_wall = time.thread_time(), time.perf_counter()
                memory.search(probe.question, depth, probe.asked_at, probe=probe)
                passes[r, 0, i] = (time.thread_time() - start_cpu) * 1000
                passes[r, 1, i] = (time.perf_counter() - start_wall) * 1000
        median = np.median(passes, axis=0)
        cpu.extend(median[0].tolist())
        wall.extend(median[1].tolist())
    return {"probes": len(cpu), "cpu_ms": cpu, "wall_ms": wall}


def reference_ms(rounds: int = 5) -> float:
    """CPU ms of a fixed pure-Python workload (dict and sort work like a search's),
    median of ``rounds``: printed before and after the cases, so a table measured while
    the machine runs slower (a shared host) can be told from a slower code change."""
    import random

    rng = random.Random(0)
    words = [f"w{rng.randrange(5000)}" for _ in range(20000)]
    times = []
    for _ in range(rounds):
        start = time.thread_time()
        counts: dict[str, int] = {}
        for word in words:
            counts[word] = counts.get(word, 0) + 1
        sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        sorted(rng.random() for _ in range(20000))
        times.append((time.thread_time() - start) * 1000)
    return float(np.median(times))


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "max": float("nan")}
    array = np.asarray(values)
    return {"p50": float(np.percentile(array, 50)), "p95": float(np.percentile(array, 95)),
            "max": float(array.max())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m memlab.bench probes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="an experiment config (its grid cases are timed)")
    parser.add_argument("--only", action="append", default=[], metavar="LABEL",
                        help="time only these grid cases (repeatable)")
    parser.add_argument("--set", action="append", default=[], dest="overrides",
                        metavar="KEY=VALUE", help="override a config key (as for run)")
    parser.add_argument("--conversations", type=count, default=None,
                        help="only the first N conversations with selected probes")
    parser.add_argument("--repeat", type=count, default=1,
                        help="search every probe N times (dates parsed anew each pass) and "
                             "time each by its median: steadier on a shared machine")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    from memlab.eval.config import expand_grid
    from memlab.eval.sweep import _datasets, select_variants, variant_label

    variants = expand_grid(args.config, args.overrides)
    if args.only:
        variants = select_variants(variants, args.only)
    rows: list[dict[str, Any]] = []
    before = reference_ms()
    print(f"machine reference (fixed workload, CPU ms): {before:.2f} before the cases")
    print(f"{'case':<40} {'probes':>6}  {'CPU p50':>8} {'CPU p95':>8} {'CPU max':>8}  "
          f"{'wall p50':>8} {'wall p95':>8}   (ms per search)")
    for variant, dataset in zip(variants, _datasets(variants), strict=True):
        timed = time_searches(variant, dataset, args.conversations, args.repeat)
        cpu, wall = _stats(timed["cpu_ms"]), _stats(timed["wall_ms"])
        label = variant_label(variant.name)
        rows.append({"case": label, "probes": timed["probes"], "repeat": args.repeat,
                     "cpu_ms": cpu, "wall_ms": wall})
        print(f"{label:<40} {timed['probes']:>6}  {cpu['p50']:>8.2f} {cpu['p95']:>8.2f} "
              f"{cpu['max']:>8.2f}  {wall['p50']:>8.2f} {wall['p95']:>8.2f}", flush=True)
    after = reference_ms()
    print(f"machine reference (fixed workload, CPU ms): {after:.2f} after the cases")
    if args.json is not None:
        args.json.write_text(json.dumps(
            {"reference_ms": {"before": before, "after": after}, "rows": rows}, indent=2)
            + "\n")
    return 0
