"""A table of finished runs, one row each, for ``report`` and notebooks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from memlab.errors import MemlabError, did_you_mean
from memlab.eval.summary import HEADLINE, error_counts
from memlab.files import read_json, read_yaml

#: The columns every row ends with.
_LAST = ("memory_tokens/probe", "prompt_tokens/probe", "cost_usd/probe", "dir")


def find_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Run directories (holding metrics.json) at or below ``paths``, sorted; a path that
    does not exist is an error (a typo must not read as "no runs")."""
    found: set[Path] = set()
    for p in map(Path, paths):
        if not p.exists():
            raise MemlabError(f"{p}: no such file or directory")
        if (p / "metrics.json").exists():
            found.add(p)
        elif p.is_dir():
            # MLflow's artifact copies (an mlartifacts folder below a runs folder) are not runs
            found.update(m.parent for m in p.rglob("metrics.json")
                         if "mlartifacts" not in m.relative_to(p).parts)
    return sorted(found)


def unfinished_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Run directories at or below ``paths`` that were started and never finished (a
    resolved config, no metrics.json): what :func:`find_runs` leaves out."""
    started: set[Path] = set()
    for p in map(Path, paths):
        if (p / "config.resolved.yaml").exists():
            started.add(p)
        elif p.is_dir():
            started.update(m.parent for m in p.rglob("config.resolved.yaml")
                           if "mlartifacts" not in m.relative_to(p).parts)
    return sorted(d for d in started if not (d / "metrics.json").exists())


def report(paths: Sequence[str | Path], metric: Sequence[str] | None = None,
           by_category: str | None = None) -> Any:
    """One row per run: config name, components, headline metrics (or ``metric``), tokens,
    errors; ``by_category`` adds one column per category for that metric."""
    import pandas as pd

    rows = []
    scored: set[str] = set()
    for run_dir in find_runs(paths):
        summary = read_json(run_dir / "metrics.json", "the run's summary")
        scored.update(summary["metrics"])
        config = read_yaml(run_dir / "config.resolved.yaml")
        row: dict[str, Any] = {
            "run": config["name"], "dataset": summary.get("dataset"),
            "memory": (config.get("memory") or {}).get("name", "flat"),
            "chunker": _component_name(config, "chunker"),
            "retrieval": _component_name(config, "retrieval"),
            "llm": (config.get("answer") or {}).get("llm", {}).get("name", "-"),
            "probes": summary["probes"], "errors": error_counts(summary)["probes"],
            "ingest_errors": error_counts(summary)["ingest"],
        }
        for name in metric or HEADLINE:
            stats = summary["metrics"].get(name, {}).get("all")
            if stats is not None:
                row[name] = None if stats["mean"] is None else round(stats["mean"], 4)
        if by_category is not None:
            groups = summary["metrics"].get(by_category, {})
            for group, stats in groups.items():
                if group != "all":
                    row[f"{by_category} [{group}]"] = (None if stats["mean"] is None
                                                       else round(stats["mean"], 4))
        check = summary.get("judge_check")
        if check or "judge" in row:
            row["judge_agreement"] = check["agreement"] if check else None
            row["judge_kappa"] = check["kappa"] if check else None
            row["judge_warning"] = "" if check and check["ok"] else "LOW/UNMEASURED AGREEMENT"
        for kind in ("memory", "prompt"):
            tokens = summary["tokens"].get(kind)
            row[f"{kind}_tokens/probe"] = None if not tokens else round(tokens["mean"] or 0, 1)
        if summary.get("cost_usd"):  # a priced run (prices: in its config)
            row["cost_usd/probe"] = summary["cost_usd"]["per_probe"]
        row["dir"] = str(run_dir)
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    _check_named(frame, [*(metric or []), *([by_category] if by_category else [])],
                 scored)
    # columns in one order whichever run comes first: a retrieval-only run has no answer
    # metrics, so the first answered run would otherwise add them after "dir"
    base = list(frame.columns).index("ingest_errors") + 1  # run ... ingest_errors
    middle = [c for c in frame.columns[base:] if c not in _LAST]
    named = [c for c in (metric or HEADLINE) if c in middle]
    return frame[[*frame.columns[:base], *named, *(c for c in middle if c not in named),
                  *(c for c in _LAST if c in frame.columns)]]


def _check_named(frame: Any, names: Sequence[str], scored: set[str]) -> None:
    """A MemlabError for a metric asked for by name that no run scored (a typo would
    otherwise just leave its column out)."""
    for name in names:
        if name not in scored:
            close = did_you_mean(name, scored, n=3)
            raise MemlabError(f"no run here scored {name!r}" + (
                f"; {close}" if close else
                f" ({len(frame)} run(s); each run's metrics.json lists its metrics)"))


def plot_report(table: Any, path: Path, metric: str) -> Path:
    """``metric`` against prompt tokens per probe (memory tokens per probe when no run
    that scored it was answered: retrieval-only runs), one labelled point per run of a
    :func:`report` table, with the Pareto front. A judged metric's label carries the
    judge's measured agreement (never a judged accuracy without it)."""
    from memlab.eval.plots import pareto_plot

    if metric not in table.columns:
        hint = "" if "prompt_tokens/probe" in table.columns and \
            table["prompt_tokens/probe"].notna().any() else \
            "; these runs are retrieval only: plot a retrieval metric, e.g. " \
            "--metric turn.budget_evidence_recall@1000"
        raise MemlabError(f"no run has {metric!r} (a metric is plotted only when a run "
                          f"scored it; see each run's metrics.json){hint}")
    scored = table[table[metric].notna()]
    x = "prompt_tokens/probe" if scored["prompt_tokens/probe"].notna().any() \
        else "memory_tokens/probe"
    rows = scored[scored[x].notna()]
    if rows.empty:
        raise MemlabError(f"no run has both {metric!r} and {x.replace('/', ' per ')}")
    labels = []
    repeated = rows["run"].duplicated(keep=False)
    for (_, row), twin in zip(rows.iterrows(), repeated, strict=True):
        label = f"{row['run']} · {row['retrieval']}" if twin else str(row["run"])
        agreement = row.get("judge_agreement")
        if metric == "judge":
            label += (" (judge unchecked)" if _missing(agreement)
                      else f" (judge agreement {agreement:.2f})")
        labels.append(label)
    return pareto_plot(labels, list(rows[x]), list(rows[metric]), path, metric,
                       f"{metric} vs {x.split('_')[0]} tokens per probe (each run's probes)")


def _component_name(config: dict[str, Any], key: str) -> str:
    """The name of the memory's ``chunker``/``retrieval`` ("-" if it has none); older run
    directories kept them at the top level."""
    memory = config.get("memory") or {}
    spec = (memory.get("params") or {}).get(key)
    if spec is None and memory.get("name", "flat") == "flat":
        spec = config.get(key)  # written before the memory held its components
    if isinstance(spec, dict):
        return str(spec.get("name", "-"))
    return str(spec) if spec else "-"


def to_markdown(frame: Any, columns: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured markdown table of ``frame`` (None shown as "-")."""
    names = list(columns or frame.columns)
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for record in frame[names].to_dict("records"):
        cells = ["-" if _missing(record[n]) else
                 f"{record[n]:.3f}" if isinstance(record[n], float) else str(record[n])
                 for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)
