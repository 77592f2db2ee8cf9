"""Plots of one run and of an experiment's runs (matplotlib, headless-safe)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Metric shown in per-category bars, first one present wins.
BAR_METRICS = ("judge", "locomo_f1", "turn.budget_evidence_recall@1000", "turn.recall_any@5")


def standalone_figure(width: float, height: float) -> tuple[Any, Any]:
    """A standalone Figure and Axes: never touches pyplot's global backend or state,
    so saving plots from a run does not disturb inline plots in a notebook."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.subplots()


def category_bars(summary: dict[str, Any], path: Path, title: str = "") -> Path | None:
    """Headline metric per category with 95 % bootstrap CIs as error bars."""
    metric = next((m for m in BAR_METRICS if m in summary["metrics"]), None)
    if metric is None:
        return None
    groups = {k: v for k, v in summary["metrics"][metric].items() if v["mean"] is not None}
    if not groups:
        return None
    names = list(groups)
    means = [groups[n]["mean"] for n in names]
    err = [[m - groups[n]["ci_low"] for n, m in zip(names, means, strict=True)],
           [groups[n]["ci_high"] - m for n, m in zip(names, means, strict=True)]]
    fig, ax = standalone_figure(max(5, 1.1 * len(names)), 3.6)
    ax.bar(names, means, yerr=err, capsize=4,
           color=["#555" if n == "all" else "#4C72B0" for n in names])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"{metric} (0–1)", fontsize=8)
    ax.set_xlabel("probe category")
    ax.set_title(title or f"{metric} by category (95% bootstrap CI)", fontsize=9)
    ax.tick_params(axis="x", rotation=30)
    fig.subplots_adjust(left=0.12, right=0.98, top=0.9, bottom=0.3)
    fig.savefig(path, dpi=110)
    return path


def latency_hist(items: Sequence[dict[str, Any]], path: Path, title: str = "") -> Path | None:
    """Distribution of per-probe latency for each phase, in milliseconds: one outline
    per phase over log-spaced bins (phases differ by orders of magnitude)."""
    import numpy as np

    phases = sorted({p for row in items for p in row.get("latency_seconds", {})})
    values = {}
    for phase in phases:
        ms = np.asarray([row["latency_seconds"][phase] * 1000 for row in items
                         if row.get("latency_seconds", {}).get(phase)], dtype=float)
        if ms.size:
            values[phase] = ms
    if not values:
        return None
    low = min(float(v.min()) for v in values.values())
    high = max(float(v.max()) for v in values.values())
    edges = np.geomspace(low, high * 1.000001 if high > low else low * 2, 41)
    fig, ax = standalone_figure(6, 3.6)
    for phase, ms in values.items():
        counts, _ = np.histogram(ms, bins=edges)
        ax.stairs(counts, edges, label=f"{phase} (n={ms.size})", linewidth=1.5)
    ax.set_xscale("log")
    ax.minorticks_off()  # minor log ticks cost more to draw than the rest of the plot
    ax.set_xlabel("latency per probe (ms, log scale)")
    ax.set_ylabel("probes")
    ax.set_title(title or "Latency per phase", fontsize=9)
    ax.legend(fontsize=8)
    fig.subplots_adjust(left=0.12, right=0.97, top=0.9, bottom=0.15)
    fig.savefig(path, dpi=110)
    return path


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated by any other (fewer tokens, higher accuracy)."""
    front = []
    for i, (cost, score) in enumerate(points):
        dominated = any(c <= cost and s >= score and (c, s) != (cost, score)
                        for j, (c, s) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def pareto_plot(labels: Sequence[str], tokens: Sequence[float], scores: Sequence[float],
                path: Path, metric: str, title: str = "") -> Path:
    """Accuracy vs mean prompt tokens per probe across runs, with the Pareto front (a log
    token axis when the runs' costs span more than 20x, e.g. no memory vs full context)."""
    points = list(zip(tokens, scores, strict=True))
    front = pareto_front(points)
    fig, ax = standalone_figure(6.4, 4.2)
    ax.scatter(tokens, scores, color="#4C72B0", zorder=3)
    ax.plot([tokens[i] for i in front], [scores[i] for i in front], color="#C44E52",
            drawstyle="steps-post", label="Pareto front", zorder=2)
    for label, x, y in zip(labels, tokens, scores, strict=True):
        ax.annotate(label, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if min(tokens) > 0 and max(tokens) > 20 * min(tokens):
        ax.set_xscale("log")
    ax.set_xlabel("tokens per probe (mean Qwen tokens: prompt, or memory if retrieval-only)")
    ax.set_ylabel(f"{metric} (0–1)")
    ax.set_title(title or f"{metric} vs prompt tokens")
    ax.legend(loc="best")
    ax.margins(x=0.08, y=0.08)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # labels near the edge stay in
    return path
