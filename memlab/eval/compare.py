"""Paired comparison of two runs on the probes both answered (``compare RUN_A RUN_B``).

Cross-fitting pools several pairs: ``compare A1 B1 A2 B2`` compares A1 + A2 with B1 + B2,
each pair on its own probes (e.g. each half of a split scored with a model trained on the
other half), so one CI covers all of them. A probe may appear in one pair only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from memlab.errors import ConfigError
from memlab.eval.items import read_items
from memlab.eval.summary import HEADLINE
from memlab.metrics.stats import paired_compare


def run_items(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "items.jsonl"
    if not Path(run_dir).is_dir():
        raise ConfigError(f"{run_dir}: no such run directory" if not Path(run_dir).exists()
                          else f"{run_dir}: not a run directory (a file; give its folder)")
    if not path.exists():
        inside = sorted(p.parent for p in Path(run_dir).glob("**/items.jsonl"))
        hint = (f"; it holds {len(inside)} run directories, e.g. {inside[0]}" if inside
                else "")
        raise ConfigError(f"{run_dir}: not a run directory (no items.jsonl){hint}")
    return [row for row in read_items(path) if not row.get("error")]


def compare_runs(run_a: str | Path, run_b: str | Path, metrics: list[str] | None = None,
                 *, seed: int = 0, by_category: bool = False) -> list[dict[str, Any]]:
    """B − A per metric with a paired bootstrap CI and paired tests, over shared probes
    (with ``by_category``, one more row per metric and probe category)."""
    return compare_pooled([(run_a, run_b)], metrics, seed=seed, by_category=by_category)


def compare_pooled(pairs: Sequence[tuple[str | Path, str | Path]],
                   metrics: list[str] | None = None, *, seed: int = 0,
                   by_category: bool = False) -> list[dict[str, Any]]:
    """:func:`compare_runs` over several (A, B) pairs pooled: A = every pair's A items, B
    = every pair's B items; each probe must belong to one pair only."""
    if not pairs:
        raise ConfigError("compare: no runs given")
    a: list[dict[str, Any]] = []
    b: list[dict[str, Any]] = []
    owner: dict[Any, str] = {}
    for run_a, run_b in pairs:
        rows_a, rows_b = run_items(run_a), run_items(run_b)
        if not {r.get("probe_id") for r in rows_a} & {r.get("probe_id") for r in rows_b}:
            raise ConfigError(
                f"{run_a} and {run_b} share no probe ({len(rows_a)} and {len(rows_b)} "
                "scored): compare pairs each probe with itself; runs on different probes "
                "(e.g. the two halves of a split) pool as pairs: compare A1 B1 A2 B2")
        for row in rows_a:
            probe = row.get("probe_id")
            if probe in owner:
                raise ConfigError(
                    f"{run_a}: probe {probe!r} is also in {owner[probe]}; pooled pairs "
                    "must score different probes (one pair per part of the split)")
            owner[probe] = str(run_a)
        a += rows_a
        b += rows_b
    present = {m for row in a for m in row.get("metrics", {})} & {
        m for row in b for m in row.get("metrics", {})}
    names = metrics or [m for m in HEADLINE if m in present]
    missing = [m for m in names if m not in present]
    if missing:
        raise ConfigError(f"compare: {', '.join(missing)} not scored in both runs; they "
                          f"share: {', '.join(sorted(present)) or 'no metric'}")
    parts: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    if by_category:
        for side, rows in enumerate((a, b)):
            for row in rows:
                parts.setdefault(str(row.get("category")), ([], []))[side].append(row)
    out = []
    for name in names:
        out.append({"category": None, **paired_compare(a, b, name, seed=seed).as_dict()})
        for category in sorted(parts):
            part_a, part_b = parts[category]
            out.append({"category": category,
                        **paired_compare(part_a, part_b, name, seed=seed).as_dict()})
    return out
