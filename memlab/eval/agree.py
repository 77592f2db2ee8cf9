"""Do two probe sets rank the same configurations alike? (``agree SWEEP_A SWEEP_B``)

A sweep scored on a benchmark's own questions (A) and the same sweep scored on other
questions about the same kind of history (B: probes an LLM wrote with ``python -m
memlab.data probes``, another benchmark's, a subset) each give every configuration a
mean. :func:`agreement` matches the two sweeps' runs by their grid label and reports:

- Kendall's tau between the configurations' means on A and on B, with a bootstrap 95 %
  CI over B's probes (A's means held fixed: A is the reference);
- B's own consistency: tau between the means on two random halves of B's probes (median
  over ``n_halves`` splits) - the agreement B could reach with itself at half its size;
- A subsampled to B's size: tau between A's means on a random sample of ``len(B)`` of A's
  probes and A's means on all of them (median and 95 % range) - how far a sample that
  large of A's own questions agrees with A.

If tau(A, B) is near B's own consistency, B ranks configurations as well as its size
allows; if it is far below A's subsample, B's questions measure something else.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from memlab.errors import ConfigError
from memlab.eval.compare import run_items
from memlab.eval.report import find_runs
from memlab.eval.summary import HEADLINE
from memlab.metrics.stats import value


def agreement(sweep_a: str | Path | Sequence[str | Path],
              sweep_b: str | Path | Sequence[str | Path],
              metric: str = HEADLINE[0], *, category_a: str | None = None,
              category_b: str | None = None, n_boot: int = 2000, n_halves: int = 500,
              seed: int = 0) -> dict[str, Any]:
    """Rank agreement of the configurations two sweeps share (see the module doc)."""
    from scipy.stats import kendalltau

    a = _scores(sweep_a, metric, category_a)
    b = _scores(sweep_b, metric, category_b)
    labels = sorted(set(a) & set(b))
    if len(labels) < 3:
        raise ConfigError(
            f"agree: the sweeps share {len(labels)} configuration label(s) "
            f"({', '.join(labels) or 'none'}); a rank agreement needs at least 3 - run the "
            f"same grid on both probe sets (A has {', '.join(sorted(a)) or 'no runs'})")
    matrix_a, n_a = _matrix(a, labels, "A")
    matrix_b, n_b = _matrix(b, labels, "B")
    means_a, means_b = matrix_a.mean(1), matrix_b.mean(1)

    def tau(x: np.ndarray, y: np.ndarray) -> float:
        return float(kendalltau(x, y).statistic)

    rng = np.random.default_rng(seed)
    boots = [tau(means_a, matrix_b[:, rng.integers(0, n_b, n_b)].mean(1))
             for _ in range(n_boot)]
    halves = []
    for _ in range(n_halves):
        order = rng.permutation(n_b)
        halves.append(tau(matrix_b[:, order[: n_b // 2]].mean(1),
                          matrix_b[:, order[n_b // 2:]].mean(1)))
    size = min(n_b, n_a)
    subsample = [tau(means_a, matrix_a[:, rng.choice(n_a, size, replace=False)].mean(1))
                 for _ in range(n_halves)]
    return {
        "metric": metric, "category_a": category_a, "category_b": category_b,
        "n_a": n_a, "n_b": n_b, "configurations": len(labels),
        "rows": [{"label": label, "mean_a": round(float(x), 4), "mean_b": round(float(y), 4)}
                 for label, x, y in sorted(zip(labels, means_a, means_b, strict=True),
                                           key=lambda r: -r[1])],
        "tau": _round(tau(means_a, means_b)), "tau_ci": _range(boots),
        "tau_b_halves": _round(float(np.nanmedian(halves))),
        "tau_a_subsample": _round(float(np.nanmedian(subsample))),
        "tau_a_subsample_range": _range(subsample), "subsample_size": size,
    }


def render_agreement(result: dict[str, Any]) -> str:
    """The agreement as a short text table."""
    def ci(v: list[float] | None) -> str:
        return "-" if v is None else f"[{v[0]:.3f}, {v[1]:.3f}]"

    cat_a = f" ({result['category_a']})" if result["category_a"] else ""
    cat_b = f" ({result['category_b']})" if result["category_b"] else ""
    width = max(len(r["label"]) for r in result["rows"])
    lines = [f"{result['metric']}: A{cat_a} n = {result['n_a']}, B{cat_b} n = "
             f"{result['n_b']}, {result['configurations']} configurations",
             f"{'configuration':<{width}}  {'A':>7}  {'B':>7}"]
    lines += [f"{r['label']:<{width}}  {r['mean_a']:7.3f}  {r['mean_b']:7.3f}"
              for r in result["rows"]]
    lines += [f"Kendall tau A vs B: {result['tau']:.3f} {ci(result['tau_ci'])} "
              "(bootstrap over B's probes)",
              f"B half vs half: {result['tau_b_halves']:.3f} (median)",
              f"A sampled to {result['subsample_size']} probes vs all of A: "
              f"{result['tau_a_subsample']:.3f} {ci(result['tau_a_subsample_range'])}"]
    return "\n".join(lines)


def _scores(paths: str | Path | Sequence[str | Path], metric: str,
            category: str | None) -> dict[str, dict[Any, float]]:
    """Per run label, the metric's value per probe (probes without a value left out)."""
    runs = find_runs([paths] if isinstance(paths, str | Path) else list(paths))
    if not runs:
        raise ConfigError(f"agree: no run directories under {paths}")
    out: dict[str, dict[Any, float]] = {}
    for run in runs:
        label = _label(run)
        if label in out:
            raise ConfigError(f"agree: two runs under {paths} are labelled {label!r}")
        rows = [r for r in run_items(run) if category is None or r.get("category") == category]
        scores = {r.get("probe_id"): value(r, metric) for r in rows}
        out[label] = {p: float(v) for p, v in scores.items() if v is not None}
    return out


def _label(run: Path) -> str:
    """A run's grid label: ``bm25`` of ``locomo-retrieval-sota[bm25]``, else its name."""
    name = str(json.loads((run / "metrics.json").read_text()).get("config_name") or run.name)
    return name[name.index("[") + 1: -1] if name.endswith("]") and "[" in name else name


def _matrix(scores: dict[str, dict[Any, float]], labels: list[str],
            side: str) -> tuple[np.ndarray, int]:
    """Configurations x probes, on the probes every configuration scored."""
    common = set.intersection(*(set(scores[label]) for label in labels))
    if len(common) < 2:
        raise ConfigError(f"agree: the runs of {side} share {len(common)} scored probe(s); "
                          "check the metric and the category")
    probes = sorted(common, key=str)
    return np.array([[scores[label][p] for p in probes] for label in labels]), len(probes)


def _round(x: float) -> float | None:
    return None if np.isnan(x) else round(x, 4)


def _range(values: list[float]) -> list[float] | None:
    kept = np.array([v for v in values if not np.isnan(v)])
    if not len(kept):
        return None
    return [round(float(np.percentile(kept, q)), 4) for q in (2.5, 97.5)]
