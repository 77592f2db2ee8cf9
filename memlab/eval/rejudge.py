"""Re-judging and re-scoring a finished run's answers, without answering again.

``rejudge(run_dir, judge)`` reads a run's ``items.jsonl``, judges every answer with another
judge and writes a new run directory whose items differ from the source's only in the
judge fields (``judge_record``, ``metrics.judge``, ``latency_seconds.judge``);
``rescore(run_dir, scorers)`` does the same for answer scorers (``metrics.<scorer>``,
``latency_seconds.score``). The new run names its source in ``metrics.json``
(``source_run``) and, when tracked, in MLflow tags, so two judges can be compared on
identical answers (``python -m memlab.eval compare``).
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from memlab.contracts import check_score
from memlab.data.schema import Probe
from memlab.errors import ConfigError
from memlab.eval import items as item_file
from memlab.eval.config import ExperimentConfig, JudgeSpec, load_config
from memlab.eval.judge_check import default_template
from memlab.eval.run import RunResult, prepare_run_dir
from memlab.eval.summary import summarize_run
from memlab.files import read_yaml
from memlab.metrics.judge import Judge


def rejudge(run_dir: str | Path, judge: JudgeSpec, *, out: str | Path | None = None,
            track: bool = True, template: str | None = None) -> RunResult:
    """A new run: ``run_dir``'s answers judged by ``judge``."""
    from memlab.eval.answer import LLMJudge

    source, config = _source(run_dir)
    if template is not None:
        judge = judge.model_copy(update={"template": template})
    config = _renamed(config, "rejudge", judge=judge)
    checker: Judge = LLMJudge(judge, config)

    def update(row: dict[str, Any], probe: Probe) -> None:
        start = time.perf_counter()
        verdict = checker.judge(probe, row["answer"])
        row["judge_record"] = verdict["judge_record"]
        row["metrics"]["judge"] = verdict["judge_score"]
        row["latency_seconds"]["judge"] = round(time.perf_counter() - start, 6)

    return _derive(source, config, update, out, track, kind="rejudge")


def rescore(run_dir: str | Path, scorers: Sequence[str], *, out: str | Path | None = None,
            track: bool = True) -> RunResult:
    """A new run: ``run_dir``'s answers scored again by ``scorers`` (added or replaced)."""
    from memlab.metrics import registry

    source, config = _source(run_dir)
    built = {name: registry.build(name) for name in scorers}
    config = _renamed(config, "rescore",
                      scorers=list(dict.fromkeys([*config.scorers, *scorers])))

    def update(row: dict[str, Any], probe: Probe) -> None:
        start = time.perf_counter()
        for name, scorer in built.items():
            row["metrics"][name] = check_score(name, scorer.score(row["answer"],
                                                                  probe.answer, probe))
        row["latency_seconds"]["score"] = round(time.perf_counter() - start, 6)

    return _derive(source, config, update, out, track, kind="rescore")


def default_judge_template(run_dir: str | Path) -> str:
    """The judge template of ``run_dir``'s config, else its dataset's usual one."""
    _, config = _source(run_dir)
    if config.judge is not None:
        return config.judge.template
    return default_template(config.dataset.name) or JudgeSpec().template


def _source(run_dir: str | Path) -> tuple[Path, ExperimentConfig]:
    source = Path(run_dir)
    for name in ("config.resolved.yaml", "items.jsonl"):
        if not (source / name).is_file():
            raise ConfigError(f"{source}: not a finished run directory (no {name})")
    if (source / "metrics.json").is_file() is False:
        raise ConfigError(f"{source}: the run has no metrics.json; finish it first")
    raw = read_yaml(source / "config.resolved.yaml")
    config = load_config(raw)
    if config.answer is None:
        raise ConfigError(f"{source}: a retrieval-only run has no answers to judge or score")
    return source, config


def _renamed(config: ExperimentConfig, kind: str, **update: Any) -> ExperimentConfig:
    return config.model_copy(update={"name": f"{config.name}+{kind}", **update})


def _derive(source: Path, config: ExperimentConfig,
            update: Callable[[dict[str, Any], Probe], None], out: str | Path | None,
            track: bool, kind: str) -> RunResult:
    from memlab.eval.judge_check import check_for_run

    run_dir = prepare_run_dir(config, out)
    dataset = config.dataset.load()
    check = check_for_run(config, dataset, run_dir) if config.judge is not None else None
    rows = [copy.deepcopy(row) for row in item_file.read_items(source / "items.jsonl")]
    for row in rows:
        if not row.get("error") and row.get("answer") is not None:
            update(row, probe_of(row))
    (run_dir / "items.jsonl").unlink(missing_ok=True)  # a derived run is rewritten whole
    with item_file.ItemWriter(run_dir / "items.jsonl") as writer:
        writer.write_all(rows)
    if (source / "memory.jsonl").is_file():
        shutil.copyfile(source / "memory.jsonl", run_dir / "memory.jsonl")
    summary = summarize_run(rows, seed=config.seed,
                            memory=item_file.read_items(run_dir / "memory.jsonl"),
                            prices=config.prices.model_dump())
    summary.update({"config_name": config.name, "dataset": dataset.name,
                    "source_run": str(source.resolve()), "derived_by": kind})
    if check is not None:
        summary["judge_check"] = check
    _write(run_dir, "metrics.json", summary)
    _copy_environment(source, run_dir, rows)
    result = RunResult(run_dir, config, summary, _rows=rows)
    if track and config.tracking.mlflow:
        from memlab.eval.tracking import log_run

        result.mlflow_run_id = log_run(run_dir, pareto=False)
    return result


def probe_of(row: dict[str, Any]) -> Probe:
    """The probe an item row was written for (all a judge or scorer reads of it)."""
    return Probe(id=row["probe_id"], question=row["question"], answer=row["gold"],
                 evidence_turn_ids=tuple(row.get("evidence_turn_ids") or ()),
                 evidence_session_ids=tuple(row.get("evidence_session_ids") or ()),
                 category=row["category"], asked_at=datetime.fromisoformat(row["asked_at"]),
                 abstention=bool(row.get("abstention")), category_id=row.get("category_id"))


def _copy_environment(source: Path, run_dir: Path, rows: list[dict[str, Any]]) -> None:
    from memlab.eval.environment import environment

    previous = {}
    if (source / "environment.json").is_file():
        previous = json.loads((source / "environment.json").read_text(encoding="utf-8"))
    digests = dict(previous.get("model_digests", {}))
    for row in rows:
        record = row.get("judge_record") or {}
        if record.get("model") and record.get("digest"):
            digests[record["model"]] = record["digest"]
    _write(run_dir, "environment.json", {**environment(digests),
                                         "source_environment": previous or None})


def _write(run_dir: Path, name: str, data: dict[str, Any]) -> None:
    (run_dir / name).write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n",
                                encoding="utf-8")
