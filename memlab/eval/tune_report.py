"""A finished tune: its result record, table, ``tune.json``, plot and MLflow parent."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from memlab.errors import ConfigError, did_you_mean
from memlab.metrics.stats import metric_column, unpaired_difference


def score_of(summary: dict[str, Any], metric: str) -> float:
    """A run's mean of ``metric`` (the tune's objective); unknown or empty is an error."""
    metrics = summary["metrics"]
    if metric not in metrics:
        close = did_you_mean(metric, metrics, n=3)
        hint = f"; {close}" if close else ""
        raise ConfigError(f"tune.metric: the runs have no metric {metric!r}{hint}")
    mean = metrics[metric]["all"]["mean"]
    if mean is None:
        raise ConfigError(f"tune.metric: no probe of the dev conversations has {metric!r}")
    return float(mean)


@dataclass
class TuneResult:
    """What ``tune`` found: the best parameters, their dev and test scores, every trial."""

    name: str
    metric: str
    direction: str
    out: Path
    best_trial: int
    best_params: dict[str, Any]
    dev_conversations: list[str]
    test_conversations: list[str]
    dev: dict[str, Any]
    test: dict[str, Any]
    difference: dict[str, Any]
    trials: list[dict[str, Any]]
    mlflow: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_runs(cls, name: str, spec: Any, study: Any, params: dict[str, Any],
                  dev: list[str], test: list[str], dev_run: Any, test_run: Any,
                  out: Path) -> TuneResult:
        metric = spec.metric
        values = {split: _values(run, metric) for split, run in
                  (("dev", dev_run), ("test", test_run))}
        diff = unpaired_difference(values["dev"], values["test"], seed=spec.seed)
        return cls(name, metric, spec.direction, out, study.best_trial.number, params, dev,
                   test, _split(dev_run, metric, dev), _split(test_run, metric, test),
                   diff, _trials(study))

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["out"] = str(self.out)
        return data

    def table(self) -> str:
        """The printed summary: best parameters, dev and test scores, test − dev [CI]."""
        n_done = sum(t["state"] == "COMPLETE" for t in self.trials)
        lines = [f"{self.name}: {n_done} trials on dev, best trial {self.best_trial} "
                 f"({self.direction} {self.metric})", "",
                 f"{'parameter':<48} best value"]
        lines += [f"{key:<48} {_short(value)}" for key, value in self.best_params.items()]
        d = self.difference
        lines += ["", f"{'split':<6} {'conversations':>13} {'scored':>7} {'mean':>7} "
                  f"{'95% CI':>17}"]
        for split in ("dev", "test"):
            s = getattr(self, split)
            lines.append(f"{split:<6} {len(s['conversations']):>13} {s['n']:>7} "
                         f"{s['mean']:>7.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]")
        lines += ["", f"test - dev: {d['mean_diff']:+.3f} [{d['ci_low']:+.3f}, "
                  f"{d['ci_high']:+.3f}] (unpaired bootstrap over probes, 95%)",
                  f"tune directory: {self.out}"]
        if self.mlflow.get("parent_run_id"):
            lines.append(f"MLflow parent run: {self.mlflow['parent_run_id']}")
        return "\n".join(lines)


def _values(run: Any, metric: str) -> Any:
    import numpy as np

    column = metric_column([row for row in run.items() if not row.get("error")], metric)
    return column[~np.isnan(column)]  # NaN: the metric does not apply to the probe


def _split(run: Any, metric: str, conversations: list[str]) -> dict[str, Any]:
    stats = run.summary["metrics"][metric]["all"]
    return {"conversations": conversations, "mean": stats["mean"], "ci_low": stats["ci_low"],
            "ci_high": stats["ci_high"], "n": stats["n"], "probes": run.summary["probes"],
            "probe_conversations": sorted({row["conversation_id"] for row in run.items()}),
            "run_dir": str(run.run_dir)}


def _trials(study: Any) -> list[dict[str, Any]]:
    return [{"number": t.number, "state": t.state.name, "value": t.value,
             "params": dict(t.params), "run_dir": t.user_attrs.get("run_dir"),
             "error": t.user_attrs.get("error"),
             "seconds": t.duration.total_seconds() if t.duration else None}
            for t in study.get_trials(deepcopy=False)]


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def write_result(result: TuneResult) -> Path:
    """``OUT/tune.json`` (atomically) and ``OUT/history.png``."""
    path = result.out / "tune.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result.as_dict(), indent=2, sort_keys=True, default=str) + "\n",
                   encoding="utf-8")
    os.replace(tmp, path)
    history_plot(result, result.out / "history.png")
    return path


def history_plot(result: TuneResult, path: Path, ax: Any = None) -> Any:
    """Each trial's dev score, the best so far, and the final dev and test scores."""
    from memlab.eval.plots import standalone_figure

    fig = None
    if ax is None:
        fig, ax = standalone_figure(6.4, 3.6)
    done = [t for t in result.trials if t["state"] == "COMPLETE"]
    xs = [t["number"] for t in done]
    ys = [t["value"] for t in done]
    pick = max if result.direction == "maximize" else min
    best = [pick(ys[: i + 1]) for i in range(len(ys))]
    ax.scatter(xs, ys, s=14, color="#4C72B0", label="trial (dev)")
    ax.step(xs, best, where="post", color="#333", label="best so far (dev)")
    ax.axhline(result.test["mean"], color="#C44E52", linestyle="--",
               label=f"best config on test ({result.test['mean']:.3f})")
    ax.set_xlabel("trial")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel(result.metric, fontsize=8)
    ax.set_title(f"{result.name}: tuned on dev, scored on test", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    if fig is not None:
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    return ax


def log_parent(client: Any, parent: str, result: TuneResult) -> None:
    """The tune's outcome on its MLflow parent run: best parameters as params, dev/test
    scores and their difference as metrics, ``tune.json`` and the history plot."""
    from mlflow.entities import Metric, Param

    from memlab.eval.tracking import param_value

    params = [Param(f"best.{key}", param_value(value)) for key, value in result.best_params.items()]
    params += [Param("tune.metric", result.metric), Param("tune.direction", result.direction),
               Param("tune.dev", ",".join(result.dev_conversations)),
               Param("tune.test", ",".join(result.test_conversations))]
    d = result.difference
    values = {"dev": result.dev["mean"], "test": result.test["mean"],
              "test_minus_dev": d["mean_diff"], "test_minus_dev.ci_low": d["ci_low"],
              "test_minus_dev.ci_high": d["ci_high"], "best_trial": result.best_trial,
              "trials": sum(t["state"] == "COMPLETE" for t in result.trials)}
    metrics = [Metric(k, float(v), 0, 0) for k, v in values.items()]
    existing = client.get_run(parent).data.params
    client.log_batch(parent, params=[p for p in params if p.key not in existing],
                     metrics=metrics)
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("tune.json", "history.png"):
            source = result.out / name
            if source.exists():
                target = Path(tmp) / name
                target.write_bytes(source.read_bytes())
                client.log_artifact(parent, str(target))
    client.set_terminated(parent)
