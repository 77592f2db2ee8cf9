"""Small helpers the notebooks share: environment, printable paths, MLflow tables, plots.

The notebooks call the harness's public functions (``evaluate``, ``sweep``, ``report``,
``compare_runs``); this module only holds what a notebook needs around them: offline
defaults, paths printed relative to the project (outputs are committed), MLflow's
``search_runs`` table with memlab's metric names restored, and three figures drawn on a
given matplotlib Axes (sessions over time, a Pareto scatter, a heatmap).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from memlab.cache import cache_root
from memlab.data.paths import PROJECT_ROOT
from memlab.data.schema import Dataset

#: Environment defaults for notebooks; variables already set (e.g. by the tests) win.
ENV_DEFAULTS = {
    "HF_HUB_OFFLINE": "1",                # models load from disk, never from a hub
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # no weight-loading bars in committed outputs
}


def setup() -> dict[str, str]:
    """Apply :data:`ENV_DEFAULTS` and say where runs, MLflow and caches go (printable)."""
    from memlab.eval.tracking import tracking_uri

    for key, val in ENV_DEFAULTS.items():
        os.environ.setdefault(key, val)
    # Without ipywidgets, tqdm.auto falls back to text bars with a warning naming its file.
    warnings.filterwarnings("ignore", message="IProgress not found")
    return {"runs": display_path(runs_dir()), "mlflow": display_uri(tracking_uri()),
            "cache": display_path(cache_root())}


def runs_dir() -> Path:
    """Where ``evaluate`` puts run directories when no ``out`` is given."""
    return Path(os.environ.get("MEMLAB_RUNS_DIR", PROJECT_ROOT / "runs"))


def display_path(path: str | Path) -> str:
    """``path`` relative to the project (``runs/x``, ``../shared/datasets``) or to ``~``.

    Committed notebook outputs must not name the machine's absolute paths.
    """
    p = Path(path).expanduser().absolute()
    for base, prefix in ((PROJECT_ROOT, ""), (PROJECT_ROOT.parent, "../"),
                         (Path.home(), "~/")):
        if p.is_relative_to(base):
            rel = p.relative_to(base).as_posix()
            return (prefix + rel if rel != "." else prefix.rstrip("/") or ".")
    return str(p)


def display_uri(uri: str) -> str:
    """A tracking URI with its local path shown by :func:`display_path`."""
    for scheme in ("sqlite:///", "file://"):
        if uri.startswith(scheme):
            return scheme + display_path(uri.removeprefix(scheme))
    return uri


def metric_name(mlflow_column: str) -> str:
    """memlab's spelling of an MLflow metric key: ``turn.recall_any_at_5`` -> ``@5``."""
    return re.sub(r"_at_(\d+)", r"@\1", mlflow_column)


def tidy_runs(runs: Any, run_dirs: Iterable[str | Path] | None = None) -> Any:
    """``mlflow.search_runs`` output with memlab metric names, optionally only some runs.

    ``run_dirs`` keeps the runs whose ``memlab.run_dir`` tag names one of them (e.g. the
    ``dir`` column of a sweep's table); rows run oldest first (a sweep's order) and a
    printable ``run_dir`` column is added.
    """
    frame = runs.rename(columns={c: metric_name(c) for c in runs.columns
                                 if c.startswith("metrics.")})
    tag = "tags.memlab.run_dir"
    if run_dirs is not None:
        wanted = {str(Path(d).resolve()) for d in run_dirs}
        frame = frame[frame[tag].isin(wanted)]
    frame = frame.sort_values("start_time", kind="stable").copy()  # oldest first
    frame.insert(0, "run_dir", [display_path(d) for d in frame[tag]])
    return frame.reset_index(drop=True)


def per_category(runs: Any, metric: str,
                 label: Sequence[str] = ("params.memory.params.chunker.name",
                                          "params.memory.params.retrieval.name")
                 ) -> Any:
    """One row per run, one column per probe category (``all`` first) of ``metric``.

    ``runs`` is a :func:`tidy_runs` table; rows are labelled by the ``label`` columns
    joined with " / "; categories where no run has a value are dropped.
    """
    import pandas as pd

    overall = f"metrics.{metric}"
    prefix = overall + "."
    categories = sorted(c.removeprefix(prefix) for c in runs.columns if c.startswith(prefix)
                        and c.removeprefix(prefix) not in ("ci_low", "ci_high"))
    labels = [" / ".join(str(runs.at[i, c]) for c in label) for i in runs.index]
    columns = {"all": runs[overall]} | {cat: runs[prefix + cat] for cat in categories}
    table = pd.DataFrame({k: v.to_numpy(dtype=float) for k, v in columns.items()},
                         index=labels)
    return table.dropna(axis=1, how="all")


def _axes(ax: Any, size: tuple[float, float]) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=size)[1]


def plot_sessions(dataset: Dataset, ax: Any = None, title: str = "") -> Any:
    """Sessions over time, one row per conversation (dot area ~ turns; x = probes asked)."""
    ax = _axes(ax, (8, 0.45 * len(dataset) + 1.6))
    names = [c.id for c in dataset]
    for row, conversation in enumerate(dataset):
        starts = [s.started_at for s in conversation.sessions]
        sizes = [4 + 2 * len(s.turns) for s in conversation.sessions]
        ax.scatter(starts, [row] * len(starts), s=sizes, alpha=0.6, color="#4C72B0",
                   label="session (area ~ turns)" if row == 0 else None)
        asked = sorted({p.asked_at for p in conversation.probes})
        ax.scatter(asked, [row] * len(asked), marker="x", color="#C44E52", s=18,
                   label="probe asked" if row == 0 else None)
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_xlabel("date (UTC)")
    ax.set_ylabel("conversation")
    ax.set_title(title or f"{dataset.name}: sessions over time")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.figure.autofmt_xdate()
    return ax


def plot_pareto(labels: Sequence[str], costs: Sequence[float], scores: Sequence[float],
                *, xlabel: str, ylabel: str, title: str, ax: Any = None) -> Any:
    """Score vs cost per configuration, with the Pareto front (cheaper and better)."""
    from memlab.eval.plots import pareto_front

    labels, costs, scores = list(labels), list(costs), list(scores)
    ax = _axes(ax, (7.5, 4.8))
    front = pareto_front(list(zip(costs, scores, strict=True)))
    ax.scatter(costs, scores, color="#4C72B0", zorder=3)
    ax.plot([costs[i] for i in front], [scores[i] for i in front], color="#C44E52",
            drawstyle="steps-post", label="Pareto front", zorder=2)
    by_cost = sorted(range(len(costs)), key=lambda i: (costs[i], scores[i]))
    for place, i in enumerate(by_cost):  # labels of neighbours in x go above / below
        ax.annotate(labels[i], (costs[i], scores[i]), fontsize=7, textcoords="offset points",
                    xytext=(4, 3 if place % 2 == 0 else -9),
                    fontweight="bold" if i in front else "normal")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="lower right")
    return ax


def plot_rates(rates: Any, by: str, *, title: str, xlabel: str, ax: Any = None,
               ylabel: str = "failure rate (share of scored probes, 0–1)") -> Any:
    """Failure rates per group (a :func:`memlab.eval.analysis.failure_rates` table) with
    their 95 % CIs as error bars, ``n`` above each bar and the overall rate dashed."""
    rows = rates[(rates[by] != "all") & (rates["n"] > 0)]
    overall = rates[rates[by] == "all"].iloc[0]
    ax = _axes(ax, (max(5.0, 1.1 * len(rows) + 1.5), 3.8))
    labels = [str(v) for v in rows[by]]
    err = [rows["rate"] - rows["ci_low"], rows["ci_high"] - rows["rate"]]
    bars = ax.bar(labels, rows["rate"], yerr=err, capsize=4, color="#C44E52", alpha=0.8,
                  label="failure rate, 95 % bootstrap CI")
    for bar, n in zip(bars, rows["n"], strict=True):
        ax.annotate(f"n={n}", (bar.get_x() + bar.get_width() / 2, 0.02), ha="center",
                    fontsize=7, color="white")
    ax.axhline(overall["rate"], color="#333", linestyle="--", linewidth=1,
               label=f"all probes ({overall['rate']:.2f})")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=20)
    ax.legend(loc="upper right", fontsize=8)
    return ax


def plot_heatmap(table: Any, *, label: str, title: str, xlabel: str, ylabel: str,
                 ax: Any = None, vmin: float = 0.0, vmax: float = 1.0) -> Any:
    """A DataFrame of scores as an annotated heatmap (rows x columns), with a colour bar."""
    ax = _axes(ax, (1.2 * len(table.columns) + 3, 0.4 * len(table) + 1.8))
    image = ax.imshow(table.to_numpy(dtype=float), vmin=vmin, vmax=vmax, cmap="viridis",
                      aspect="auto")
    ax.set_xticks(range(len(table.columns)), [str(c) for c in table.columns], rotation=30,
                  ha="right")
    ax.set_yticks(range(len(table.index)), [str(i) for i in table.index])
    for (r, c), val in _cells(table):
        ax.text(c, r, "–" if val != val else f"{val:.2f}", ha="center", va="center",
                fontsize=7, color="white" if val == val and val < (vmin + vmax) / 2
                else "black")
    ax.figure.colorbar(image, ax=ax, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return ax


def _cells(table: Any) -> Iterable[tuple[tuple[int, int], float]]:
    values = table.to_numpy(dtype=float)
    for r in range(values.shape[0]):
        for c in range(values.shape[1]):
            yield (r, c), float(values[r, c])
