"""``scale``: a config's strategies (its grid) scored at several history lengths.

Each length is a haystack (:mod:`memlab.data.haystack`): every selected conversation's
history padded with other conversations' sessions to that many Qwen tokens. Each
(length, grid variant) pair is a normal run directory, ``OUT/<tokens>/<variant>``
(re-running resumes), whose config records ``dataset.params.haystack``. The result is a
table (``scale.csv``, ``scale.json``) and ``scale.png``: each metric against history
length, one line per strategy. Runs are mirrored to MLflow under one parent run.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from memlab.data.haystack import build_haystack, haystack_option, history_tokens, parse_tokens
from memlab.errors import ConfigError, MemlabWarning
from memlab.eval.config import apply_override, expand_grid, override_list, read_raw
from memlab.eval.mlflow_runs import GroupMirror

#: What the table and plot show unless told otherwise (LongMemEval's session metrics).
DEFAULT_METRICS = ("session.recall_any@5", "session.recall_all@5")


def scale(config: str | Path | dict[str, Any], tokens: Sequence[int | str], *,
          out: str | Path | None = None, overrides: Sequence[str] | None = None,
          metrics: Sequence[str] = DEFAULT_METRICS, seed: int | None = None,
          track: bool | None = None, progress: bool = True) -> Any:
    """Evaluate each grid variant at each history length; returns the table (pandas).

    ``seed`` (default: the config's ``dataset.params.haystack.seed``, else 0) fixes the
    distractors; ``out`` defaults to ``runs/<name>/scale``.
    """
    import pandas as pd

    raw, _ = read_raw(config)
    for item in override_list(overrides):
        apply_override(raw, item)
    sizes = sorted({parse_tokens(t, "--tokens") for t in tokens})
    if not sizes:
        raise ConfigError("scale: give at least one history length (--tokens 10k,30k)")
    params = (raw.get("dataset") or {}).get("params") or {}
    option = haystack_option({"tokens": sizes[0], **(params.get("haystack") or {}),
                              **({} if seed is None else {"seed": seed})})
    base = expand_grid(_with_haystack(raw, sizes[0], option))
    spec = base[0].dataset
    unpadded = {k: v for k, v in spec.params.items() if k != "haystack"}
    loaded = spec.model_copy(update={"params": unpadded}).load()
    from memlab.eval.select import select_probes

    wanted = {c.id for c, _ in select_probes(loaded, spec.probes)}
    out_dir = Path(out) if out is not None else _default_out(base[0].name)
    shortest = min(history_tokens(c) for c in loaded if c.id in wanted)
    rows = []
    with GroupMirror(base[0], loaded.name, track, "scale") as mirror:
        for size in sizes:
            if size <= shortest:
                warnings.warn(f"scale: {size:,} tokens is no longer than the shortest history "
                              f"({shortest:,}): none is padded, so its rows are the unpadded "
                              "histories' (a flat curve)", MemlabWarning, stacklevel=2)
            dataset = build_haystack(loaded, size, option["seed"], option["lead_days"],
                                     conversations=wanted)
            length = _mean_length(dataset, wanted)
            if length < SHORT * size:
                warnings.warn(f"scale: at {size:,} tokens the histories average "
                              f"{length:,.0f}: the other conversations' sessions ran out "
                              "(a larger dataset pads further)", MemlabWarning, stacklevel=2)
            for variant in expand_grid(_with_haystack(raw, size, option)):
                rows.append(_evaluate(variant, dataset, out_dir, size, length, metrics,
                                      progress, mirror))
    table = pd.DataFrame(rows)
    _write(table, out_dir, list(metrics), base[0].name.split("[", 1)[0])
    mirror.finish([out_dir / "scale.csv", out_dir / "scale.png"])
    return table


#: A length reached below this share of the target is reported as a warning.
SHORT = 0.9


def _with_haystack(raw: dict[str, Any], size: int, option: dict[str, Any]) -> dict[str, Any]:
    import copy

    data = copy.deepcopy(raw)
    dataset = data.setdefault("dataset", {})
    params = dataset.setdefault("params", {}) or {}
    dataset["params"] = params
    params["haystack"] = {**option, "tokens": size}
    return data


def _default_out(name: str) -> Path:
    from memlab.eval.notebook import runs_dir
    from memlab.eval.sweep import slug

    return runs_dir() / slug(name.split("[", 1)[0]) / "scale"


def _mean_length(dataset: Any, wanted: set[str]) -> float:
    lengths = [history_tokens(c) for c in dataset if c.id in wanted]
    return sum(lengths) / len(lengths) if lengths else 0.0


def strategy_label(name: str) -> str:
    """``cfg[bm25]`` -> ``bm25``: the grid label of a variant (its name without one)."""
    match = re.search(r"\[(.*)\]$", name)
    return match.group(1) if match else name


def _evaluate(variant: Any, dataset: Any, out_dir: Path, size: int, length: float,
              metrics: Sequence[str], progress: bool, mirror: GroupMirror) -> dict[str, Any]:
    from memlab.eval.run import evaluate
    from memlab.eval.sweep import slug

    label = strategy_label(variant.name)
    result = evaluate(variant, out=out_dir / str(size) / slug(label), track=False,
                      progress=progress, dataset=dataset)
    mirror.submit(result.run_dir)
    summary = result.summary["metrics"]
    row: dict[str, Any] = {"strategy": label, "tokens": size,
                           "history_tokens": round(length), "probes": result.summary["probes"]}
    for metric in metrics:
        if metric not in summary:
            raise ConfigError(f"scale: the runs have no metric {metric!r} (e.g. "
                              f"{', '.join(sorted(summary)[:4])})")
        stats = summary[metric]["all"]
        row[metric] = stats["mean"]
        row[f"{metric}.ci_low"], row[f"{metric}.ci_high"] = stats["ci_low"], stats["ci_high"]
    row["search_p50_ms"] = _ms(result.summary, "search", "p50")
    row["run_dir"] = str(result.run_dir)
    return row


def _ms(summary: dict[str, Any], phase: str, stat: str) -> float | None:
    value = (summary.get("latency_seconds", {}).get(phase) or {}).get(stat)
    return None if value is None else round(1000 * value, 3)


def _write(table: Any, out_dir: Path, metrics: list[str], name: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "scale.csv", index=False)
    (out_dir / "scale.json").write_text(
        json.dumps(table.to_dict(orient="records"), indent=2, default=str) + "\n",
        encoding="utf-8")
    scale_plot(table, metrics, out_dir / "scale.png", name)


def scale_plot(table: Any, metrics: Sequence[str], path: Path | None = None,
               title: str = "", axes: Sequence[Any] | None = None) -> Any:
    """Each metric against history length (log x), one line per strategy, with CIs."""
    from memlab.eval.plots import standalone_figure

    fig = None
    if axes is None:
        fig, _ = standalone_figure(4.2 * len(metrics), 3.6)
        fig.clear()
        axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics, strict=True):
        for strategy, rows in table.groupby("strategy", sort=False):
            rows = rows.sort_values("tokens")
            err = [rows[metric] - rows[f"{metric}.ci_low"],
                   rows[f"{metric}.ci_high"] - rows[metric]]
            ax.errorbar(rows["tokens"], rows[metric], yerr=err, marker="o", capsize=3,
                        label=str(strategy))
        ax.set_xscale("log")
        sizes = sorted(set(table["tokens"]))
        ax.set_xticks(sizes, [f"{v / 1000:g}k" for v in sizes])
        ax.minorticks_off()
        ax.set_xlabel("history length (Qwen tokens)")
        ax.set_ylabel(metric, fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower left")
    if fig is not None:
        fig.suptitle(title or "recall against history length", fontsize=9)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=110)
    return axes
