"""Repeated runs of one config, the answer model's seed varied (``run --repeats N``).

One run cannot show how much of a score is luck when the reader samples (``temperature``
above 0, as Qwen3's thinking mode recommends) or its server is not deterministic. Run ``i``
answers with ``answer.llm.params.seed = seed + i`` (``seed``: the config's, else the
backend's default), into ``OUT/seed-S``; each is an ordinary run directory (resumable,
tracked, comparable), and ``OUT/repeats.json`` holds every metric's mean, standard deviation
(n - 1), minimum and maximum over the runs. With MLflow on, the runs are children of one
parent ``<name> (repeats)`` that carries each headline metric's ``.mean`` and ``.sd`` and
``repeats.json``. Retrieval, the judge and the cache keys of other
calls are unchanged, so only what the seed moves can move. A greedy llama.cpp reader
(``temperature: 0``) answers the same whatever the seed: the spread is then 0 by
construction, and a note says so.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memlab.errors import ConfigError, check_number
from memlab.eval.config import ExperimentConfig, load_config, override_list
from memlab.eval.mlflow_runs import GroupMirror
from memlab.eval.run import RunResult, default_run_dir, evaluate
from memlab.eval.summary import HEADLINE
from memlab.metrics import mlflow_key


@dataclass
class RepeatResult:
    """The config's name, the runs (in seed order), where they live, and each metric's
    spread over them."""

    name: str
    out_dir: Path
    runs: list[RunResult]
    spread: dict[str, dict[str, float]]
    notes: list[str] = field(default_factory=list)


def evaluate_repeats(config: ExperimentConfig | str | Path | dict[str, Any], runs: int, *,
                     out: str | Path | None = None, overrides: Sequence[str] | None = None,
                     workers: int | None = None, progress: bool = True,
                     track: bool | None = None, executor: Any = None,
                     retry_errors: bool = False) -> RepeatResult:
    """``runs`` runs of ``config``, answer seeds ``seed``, ``seed + 1``, ... (see the module
    doc); re-using ``out`` resumes every run (``retry_errors``: its failed probes too)."""
    from memlab.components import registry

    check_number("repeats", runs, low=2, integer=True)
    if not isinstance(config, ExperimentConfig):
        config = load_config(config, override_list(overrides))
    if config.answer is None:
        raise ConfigError(f"{config.name}: retrieval only - every repeat would give the same "
                          "numbers; repeats vary the answer model's seed (add an answer:)")
    llm = config.answer.llm
    defaults = {p.name: p.default for p in registry("llm").params(llm.name)}
    if "seed" not in defaults:
        raise ConfigError(f"llm '{llm.name}' takes no seed; its repeats could not differ")
    params = {**defaults, **llm.params}
    base = int(params["seed"])
    notes = []
    if llm.name == "llamacpp" and float(params.get("temperature", 0.0)) == 0.0:
        notes.append("temperature 0: llama.cpp answers greedily, the same whatever the seed, "
                     "so the spread is 0 by construction (set answer.llm.params.temperature)")
    out_dir = Path(out) if out is not None else default_run_dir(config)
    results = []
    dataset = config.dataset.load()  # once; its name (not the loader's) names the experiment
    with GroupMirror(config, dataset.name, track, "repeats") as mirror:
        for seed in range(base, base + runs):
            variant = config.model_copy(deep=True)
            assert variant.answer is not None
            variant.answer.llm.params["seed"] = seed
            variant.name = f"{config.name}[seed={seed}]"
            results.append(evaluate(variant, out=out_dir / f"seed-{seed}", workers=workers,
                                    progress=progress, track=False, executor=executor,
                                    dataset=dataset, retry_errors=retry_errors))
            mirror.submit(results[-1].run_dir)
    spread = metric_spread([r.summary for r in results])
    saved = out_dir / "repeats.json"
    saved.write_text(json.dumps({
        "config": config.name, "runs": [{"seed": base + i, "run_dir": str(r.run_dir)}
                                        for i, r in enumerate(results)],
        "spread": spread, "notes": notes}, indent=2) + "\n", encoding="utf-8")
    mirror.finish([saved], {mlflow_key(f"{name}.{stat}"): values[stat]
                            for name, values in spread.items() if name in HEADLINE
                            for stat in ("mean", "sd")})
    return RepeatResult(config.name, out_dir, results, spread, notes)


def metric_spread(summaries: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per metric scored in every run: mean, sd (n - 1), min and max of the runs' means."""
    out = {}
    names = set.intersection(*(set(s["metrics"]) for s in summaries)) if summaries else set()
    for name in sorted(names):
        values = [s["metrics"][name].get("all", {}).get("mean") for s in summaries]
        if any(v is None for v in values):
            continue
        out[name] = {"mean": statistics.fmean(values),
                     "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                     "min": min(values), "max": max(values), "runs": len(values)}
    return out


def render_spread(result: RepeatResult) -> str:
    """The headline metrics' spread over the runs, as a plain-text table."""
    rows = [(n, result.spread[n]) for n in HEADLINE if n in result.spread]
    width = max([len(n) for n, _ in rows] + [10])
    lines = [f"{'metric':<{width}}  {'mean':>7}  {'sd':>7}  {'min':>7}  {'max':>7}  runs"]
    lines += [f"{n:<{width}}  {s['mean']:>7.3f}  {s['sd']:>7.3f}  {s['min']:>7.3f}  "
              f"{s['max']:>7.3f}  {s['runs']:>4}" for n, s in rows]
    return "\n".join(lines + [f"note: {n}" for n in result.notes])
