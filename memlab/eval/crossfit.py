"""Choosing a grid cell on held-out parts of a split (``crossfit SWEEP [SWEEP ...]``).

A sweep that scores every cell of a grid (a strategy, a weight, ...) on each part of a
split of the conversations - the folds of ``dataset.probes.split: {folds: N, fold: i}``,
or its ``dev`` and ``test`` parts - says honestly how good "the best cell" is only if each
part is scored with the cell chosen on the *other* parts. For each part this picks the
cell with the best mean metric over the other parts' probes (ties go to ``prefer``, then to
the first cell in name order) and pools the held-out rows: the cross-fitted number, with a
bootstrap CI, and its paired difference from a ``baseline`` cell. The best cell's own
pooled mean (chosen after seeing every part) is shown beside it: the gap is what choosing
on the scored probes would have added.

A run's part comes from its ``config.resolved.yaml`` (``dataset.probes.split``); its cell
is its grid label with the words that name the part taken out (``fold1``, ``dev``,
``test``, ``fold=2``: ``fold2,weight=0.3`` and ``dense-test`` are the cells
``weight=0.3`` and ``dense``), or with what ``part_words`` matches.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from memlab.errors import ConfigError
from memlab.eval.compare import run_items
from memlab.eval.report import find_runs as report_runs
from memlab.eval.sweep import variant_label
from memlab.files import read_yaml
from memlab.metrics.stats import bootstrap_ci, paired_compare, values_of

PART_WORDS = r"fold\d+|fold=\d+|dev|test|part=(dev|test)"


@dataclass
class PartRun:
    """One run: the part of the split it scored and the grid cell it ran."""

    path: Path
    part: str
    cell: str
    rows: list[dict[str, Any]] = field(repr=False)
    split: str  # the split without its part: the same for every run crossfit pools


def find_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Finished run directories (:func:`memlab.eval.report.find_runs`): each path is one, or
    a sweep directory holding some. A run still going is left out (its items are partial)."""
    found: list[Path] = []
    for given in map(Path, paths):
        inside = report_runs([given]) if given.exists() else []
        if not inside:
            raise ConfigError(f"{given}: neither a run directory nor a sweep directory "
                              "holding finished runs (metrics.json)")
        found += inside
    return found


def read_run(path: Path, part_words: str = PART_WORDS) -> PartRun:
    """The run at ``path`` with its part (from its resolved split) and cell (its label)."""
    config_path = path / "config.resolved.yaml"
    if not config_path.is_file():
        raise ConfigError(f"{path}: not a run directory (no config.resolved.yaml)")
    config = read_yaml(config_path)
    split = ((config.get("dataset") or {}).get("probes") or {}).get("split")
    if not split:
        raise ConfigError(f"{path}: scored on no part of a split (dataset.probes.split is "
                          "not set): crossfit needs each cell run on every part of one "
                          "split (folds, or dev and test)")
    part = (f"fold {split['fold']} of {split['folds']}" if split.get("folds")
            else str(split["part"]))
    family = {k: v for k, v in split.items() if k not in ("part", "fold")}
    return PartRun(path, part, cell_of(variant_label(str(config.get("name", ""))),
                                       part_words), run_items(path),
                   json.dumps(family, sort_keys=True))


def cell_of(label: str, part_words: str = PART_WORDS) -> str:
    """``label`` without the words that name the part (``fold1,weight=0.3`` ->
    ``weight=0.3``; ``dense-test`` -> ``dense``); ``(all)`` if nothing is left."""
    try:
        pattern = re.compile(part_words)
    except re.error as exc:
        raise ConfigError(f"crossfit: --part-words {part_words!r} is not a regular "
                          f"expression: {exc}") from None
    kept = []
    for piece in label.split(","):
        words = [w for w in piece.split("-") if not pattern.fullmatch(w)]
        if words:
            kept.append("-".join(words))
    return ",".join(kept) or "(all)"


def crossfit(paths: Sequence[str | Path], metric: str, *, lower_is_better: bool = False,
             prefer: str | None = None, baseline: str | None = None,
             part_words: str = PART_WORDS, seed: int = 0) -> dict[str, Any]:
    """The held-out choice of a cell for each part, and the cross-fitted result (see the
    module docstring); plain data, for printing or ``--json``."""
    runs = [read_run(p, part_words) for p in find_runs(paths)]
    grid = _grid(runs)
    parts = sorted({r.part for r in runs})
    if len(parts) < 2:
        raise ConfigError(f"crossfit: every run scored the same part ({parts[0]}); it needs "
                          "each cell on two or more parts of a split")
    cells = sorted(grid)
    for name, what in ((prefer, "--prefer"), (baseline, "--baseline")):
        if name is not None and name not in grid:
            raise ConfigError(f"crossfit: {what} {name!r} is not a cell; the cells are "
                              f"{', '.join(cells)}")
    sign = -1.0 if lower_is_better else 1.0
    table = {c: {p: _mean(grid[c][p].rows, metric) for p in parts} for c in cells}
    choices, held_out = [], []
    for part in parts:
        others = {c: _mean([row for p in parts if p != part for row in grid[c][p].rows],
                           metric) for c in cells}
        best = max(cells, key=lambda c: (sign * others[c]["mean"], c == prefer,
                                         -cells.index(c)))
        choices.append({"part": part, "chosen": best, "on_other_parts": others[best]["mean"],
                        "held_out": table[best][part], "run": str(grid[best][part].path)})
        held_out += grid[best][part].rows
    values, _ = values_of(held_out, metric)
    low, high = bootstrap_ci(values, seed=seed)
    pooled = {c: _mean([row for p in parts for row in grid[c][p].rows], metric)
              for c in cells}
    in_sample = max(cells, key=lambda c: (sign * pooled[c]["mean"], c == prefer,
                                          -cells.index(c)))
    result: dict[str, Any] = {
        "metric": metric, "lower_is_better": lower_is_better, "parts": parts,
        "table": {c: {**table[c], "all": pooled[c]} for c in cells}, "choices": choices,
        "crossfit": {"mean": float(values.mean()), "n": int(values.size), "ci_low": low,
                     "ci_high": high},
        "best_in_sample": {"cell": in_sample, **pooled[in_sample]}, "baseline": None}
    if baseline is not None:
        base_rows = [row for p in parts for row in grid[baseline][p].rows]
        result["baseline"] = {"cell": baseline, **paired_compare(
            base_rows, held_out, metric, seed=seed).as_dict()}
    return result


def _grid(runs: list[PartRun]) -> dict[str, dict[str, PartRun]]:
    other = next((r for r in runs if r.split != runs[0].split), None)
    if other is not None:
        raise ConfigError(f"crossfit: {runs[0].path} and {other.path} come from different "
                          f"splits ({runs[0].split} and {other.split}); pool the parts of one")
    grid: dict[str, dict[str, PartRun]] = {}
    for run in runs:
        seen = grid.setdefault(run.cell, {}).get(run.part)
        if seen is not None:
            raise ConfigError(f"crossfit: {seen.path} and {run.path} are both cell "
                              f"{run.cell!r} on {run.part}; give one sweep, or name the "
                              "words of a label that say the part with --part-words")
        grid[run.cell][run.part] = run
    parts = {r.part for r in runs}
    for cell, by_part in grid.items():
        missing = sorted(parts - set(by_part))
        if missing:
            raise ConfigError(f"crossfit: cell {cell!r} has no run on {', '.join(missing)} "
                              f"(it has {', '.join(sorted(by_part))}); every cell needs "
                              "every part")
    return grid


def _mean(rows: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    values, _ = values_of(rows, metric)
    if values.size == 0:
        raise ConfigError(f"crossfit: no probe of these runs has {metric!r}")
    return {"mean": float(np.mean(values)), "n": int(values.size)}
