"""``tune``: search a config's ``tune.space`` with Optuna on dev conversations, then
score the chosen configuration on the disjoint test conversations.

A best configuration found on the probes it is scored on overstates itself; here every
trial sees only the dev conversations, and the test score (with the test − dev
difference and its unpaired bootstrap CI) says how much of the gain was tuned to them.
Each trial is a normal run directory (``OUT/trials/NNN``) replayed by
:func:`memlab.eval.run.evaluate` with the shared caches; the study lives in
``OUT/study.db`` (Optuna, SQLite), so a tune that was stopped resumes where it was.
MLflow gets one parent run (``<name> (tune)``) with a child per trial plus the final dev
and test runs; ``OUT/tune.json`` holds everything the table shows.
"""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from memlab.data.schema import Dataset
from memlab.errors import ConfigError, MemlabError, check_number, did_you_mean
from memlab.eval.config import (
    ExperimentConfig,
    apply_override,
    load_config,
    override_list,
    read_raw,
    set_dotted,
)
from memlab.eval.lock import unlock_run_dir
from memlab.eval.tune_report import TuneResult, log_parent, score_of, write_result
from memlab.eval.tune_space import (
    Dimension,
    TuneSpec,
    dimensions,
    parse_tune,
    split_conversations,
)


def tune_plan(config: str | Path | dict[str, Any], overrides: Sequence[str] | None = None,
              trials: int | None = None) -> tuple[dict[str, Any], str, TuneSpec,
                                                  list[Dimension], ExperimentConfig]:
    """A tune config read and checked without running anything: ``(raw config without
    tune/grid, where, tune spec, its dimensions, the base config)``; ConfigError names
    what is wrong (also what ``validate`` runs on a config with a ``tune:`` section)."""
    raw, where = read_raw(config)
    for item in override_list(overrides):
        apply_override(raw, item)
    if "tune" not in raw:
        raise ConfigError(f"{where}: no tune section (tune: {{space: ..., dev: [...]}})")
    if raw.get("grid"):
        raise ConfigError(f"{where}: grid: and tune: do not mix; put the choices in "
                          "tune.space")
    spec = parse_tune(raw.pop("tune"), where)
    raw.pop("grid", None)
    if trials is not None:
        check_number("trials", trials, low=1, integer=True)
        spec = spec.model_copy(update={"trials": trials})
    dims = dimensions(spec.space, where)
    base = load_config(raw)
    _check_keys(raw, dims, where)
    _check_metric(spec.metric, base, dims, where)
    for chosen in ("conversations", "split"):
        if getattr(base.dataset.probes, chosen) is not None:
            raise ConfigError(f"{where}: dataset.probes.{chosen} is set; tune chooses the "
                              "conversations itself (tune.dev / tune.test / tune.split)")
    return raw, where, spec, dims, base


def _check_metric(metric: str, base: ExperimentConfig, dims: list[Dimension],
                  where: str) -> None:
    """``tune.metric`` must be a name the trials can score (a typo found before trial 0,
    not after it); a space that varies the scorers or the judge is not checked."""
    from memlab.eval.replay import produced_metrics

    if any(d.key.split(".")[0] in ("scorers", "judge") for d in dims):
        return
    known = produced_metrics(base)
    if metric not in known:
        hint = did_you_mean(metric, known, n=3)
        raise ConfigError(f"{where}: tune.metric {metric!r} is not a metric this config "
                          "scores" + (f"; {hint}" if hint else " (its retrieval metrics, "
                          "token-budget metrics, scorers and judge)"))


def tune(config: str | Path | dict[str, Any], *, out: str | Path | None = None,
         overrides: Sequence[str] | None = None, trials: int | None = None,
         track: bool | None = None, progress: bool = True) -> TuneResult:
    """Run (or resume) the tune a config's ``tune:`` section declares; see the module doc.

    ``trials`` overrides ``tune.trials`` (the total, completed trials of a resumed study
    count); ``track=False`` skips MLflow.
    """
    raw, where, spec, dims, base = tune_plan(config, overrides, trials)
    dataset = base.dataset.load()
    dev, test = split_conversations(spec, [c.id for c in dataset], where)
    out_dir = Path(out) if out is not None else _default_out(base.name)
    study = _open_study(out_dir, spec, raw, where)
    mlflow = base.tracking.mlflow if track is None else track
    session = _Session(raw, base.name, spec, dims, dataset, out_dir, study, progress)
    with _Logger(mlflow, study, base, dataset.name) as logger:
        session.run_trials(dev, logger)
        result = session.finish(dev, test, logger)
    result.mlflow = logger.parent_info()
    write_result(result)
    if logger.parent is not None:
        log_parent(logger.client, logger.parent, result)
    return result


def _default_out(name: str) -> Path:
    from memlab.eval.notebook import runs_dir
    from memlab.eval.sweep import slug

    return runs_dir() / slug(name) / "tune"


def _check_keys(raw: dict[str, Any], dims: list[Dimension], where: str) -> None:
    """Each space key, set to one of its values, still gives a valid config."""
    for dim in dims:
        variant = copy.deepcopy(raw)
        try:
            set_dotted(variant, dim.key, dim.example())
            load_config(variant)
        except ConfigError as exc:
            detail = str(exc).replace("<config>: ", "")
            raise ConfigError(f"{where}: tune.space.{dim.key}: setting it to "
                              f"{dim.example()!r} gives an invalid config: {detail}") from None


def variant(raw: dict[str, Any], params: dict[str, Any], conversations: list[str],
            name: str) -> Any:
    """The validated config of one trial: ``params`` set, only ``conversations`` probed."""
    data = copy.deepcopy(raw)
    for key, value in params.items():
        set_dotted(data, key, copy.deepcopy(value))
    set_dotted(data, "dataset.probes.conversations", list(conversations))
    data["name"] = name
    return load_config(data)


def _fingerprint(spec: TuneSpec, raw: dict[str, Any]) -> str:
    """What must not change between a study and its resumption (trials may grow)."""
    data = {"config": raw, "tune": spec.model_dump(exclude={"trials"})}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _open_study(out_dir: Path, spec: TuneSpec, raw: dict[str, Any], where: str) -> Any:
    """The Optuna study in ``OUT/study.db``: new, or resumed if it is the same tune."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out_dir.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name="memlab-tune", storage=f"sqlite:///{out_dir / 'study.db'}",
        sampler=optuna.samplers.TPESampler(seed=spec.seed), direction=spec.direction,
        load_if_exists=True)
    fingerprint = _fingerprint(spec, raw)
    known = study.user_attrs.get("memlab.fingerprint")
    if known is None:
        study.set_user_attr("memlab.fingerprint", fingerprint)
        study.set_user_attr("memlab.tune_id", uuid.uuid4().hex)
        study.set_user_attr("memlab.logged", [])
    elif known != fingerprint:
        raise ConfigError(f"{where}: {out_dir} holds a tune of a different config or space; "
                          "resuming it would mix trials. Choose another --out directory.")
    _requeue_interrupted(study)
    return study


def _requeue_interrupted(study: Any) -> None:
    """Trials left running by a stopped tune fail, and their parameters run again."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        study.enqueue_trial(trial.params, skip_if_exists=True)


class _Session:
    """The trial loop and the final dev / test evaluations of one tune."""

    def __init__(self, raw: dict[str, Any], name: str, spec: TuneSpec, dims: list[Dimension],
                 dataset: Dataset, out_dir: Path, study: Any, progress: bool) -> None:
        self.raw, self.name, self.spec, self.dims = raw, name, spec, dims
        self.dataset, self.out_dir, self.study, self.progress = dataset, out_dir, study, progress

    def run_trials(self, dev: list[str], logger: _Logger) -> None:
        from optuna.trial import TrialState

        from memlab.eval.run import evaluate

        while len(self.study.get_trials(states=(TrialState.COMPLETE,))) < self.spec.trials:
            trial = self.study.ask()
            params = {dim.key: dim.suggest(trial) for dim in self.dims}
            run_dir = self.out_dir / "trials" / f"{trial.number:03d}"
            trial.set_user_attr("run_dir", str(run_dir))
            try:
                config = variant(self.raw, params, dev, f"{self.name}[trial={trial.number}]")
                result = evaluate(config, out=run_dir, track=False, progress=self.progress,
                                  dataset=self.dataset)
            except MemlabError as exc:  # a combination the components refuse
                unlock_run_dir(run_dir)
                trial.set_user_attr("error", str(exc))
                self.study.tell(trial, state=TrialState.FAIL)
                self._check_failures()
                continue
            self.study.tell(trial, score_of(result.summary, self.spec.metric))
            logger.submit(run_dir, role="trial", label=f"trial {trial.number}")

    def _check_failures(self) -> None:
        from optuna.trial import TrialState

        failed = self.study.get_trials(states=(TrialState.FAIL,))
        done = self.study.get_trials(states=(TrialState.COMPLETE,))
        if len(failed) >= 5 and not done:
            raise MemlabError(f"the first {len(failed)} trials all failed; last: "
                              f"{failed[-1].user_attrs.get('error')}")

    def best_params(self) -> dict[str, Any]:
        best = self.study.best_trial
        return {dim.key: dim.config_value(best.params[dim.key]) for dim in self.dims}

    def finish(self, dev: list[str], test: list[str], logger: _Logger) -> TuneResult:
        """The best trial's configuration evaluated on dev and on test."""
        from memlab.eval.run import evaluate

        params = self.best_params()
        folder = self.out_dir / f"best-{self.study.best_trial.number:03d}"
        runs = {}
        for split, conversations in (("dev", dev), ("test", test)):
            config = variant(self.raw, params, conversations, f"{self.name}[best,{split}]")
            runs[split] = evaluate(config, out=folder / split, track=False,
                                   progress=self.progress, dataset=self.dataset)
            logger.submit(runs[split].run_dir, role=split, label=f"best on {split}")
        return TuneResult.from_runs(self.name, self.spec, self.study, params, dev, test,
                                    runs["dev"], runs["test"], self.out_dir)


class _Logger:
    """MLflow for a tune: a parent run, trials and final runs as its children (mirrored
    by the sweeps' background logger), tagged with their role once logged."""

    def __init__(self, enabled: bool, study: Any, base: Any, dataset_name: str) -> None:
        self.enabled, self.study, self.base = enabled, study, base
        self.dataset_name = dataset_name
        self.labels: dict[str, tuple[str, str]] = {}
        self.client: Any = None
        self.parent: str | None = None
        self.children: dict[str, str] = {}
        self._logger: Any = None

    def __enter__(self) -> _Logger:
        if self.enabled:
            from memlab.eval.tracking import BackgroundLogger

            self.client, self.parent = self._parent()
            self._logger = BackgroundLogger()
            self._logger.sweep = self.study.user_attrs["memlab.tune_id"]
        return self

    def _parent(self) -> tuple[Any, str]:
        from memlab.eval.mlflow_runs import group_parent

        return group_parent(self.base.tracking, self.dataset_name,
                            self.study.user_attrs["memlab.tune_id"], f"{self.base.name} (tune)",
                            "tune")

    def submit(self, run_dir: Path, *, role: str, label: str) -> None:
        logged = set(self.study.user_attrs.get("memlab.logged", []))
        if self._logger is None or str(run_dir) in logged:
            return  # a resumed tune logs each run directory once
        self.labels[str(run_dir)] = (role, label)
        self._logger.submit(run_dir, pareto=False)

    def parent_info(self) -> dict[str, Any]:
        return {"parent_run_id": self.parent, "children": self.children}

    def __exit__(self, *exc: object) -> None:
        if self._logger is None:
            return
        done = self._logger.wait()
        for run_dir, run_id in done.items():
            role, label = self.labels[run_dir]
            self.client.set_tag(run_id, "memlab.tune.role", role)
            self.client.set_tag(run_id, "mlflow.runName", label)
            self.children[run_id] = label
        self.study.set_user_attr("memlab.logged", sorted(
            set(self.study.user_attrs.get("memlab.logged", [])) | set(done)))
