"""``memlab.evaluate(config)``: a run directory first, MLflow mirrors it afterwards.

The run directory holds ``config.resolved.yaml``, ``environment.json``, ``items.jsonl``
(one row per probe, appended as conversations finish) and ``metrics.json``. Re-running
into the same directory resumes: finished probes are skipped, so a killed run loses at
most the conversation in flight and ends with the same ``metrics.json``;
``retry_errors=True`` (``--retry-errors``) also runs the probes that failed again. A run
directory is locked while a process works in it (:mod:`memlab.eval.lock`).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from memlab.data.paths import PROJECT_ROOT
from memlab.data.schema import Conversation, Dataset, Probe
from memlab.errors import ConfigError, MemlabError, check_number
from memlab.eval import items as item_file
from memlab.eval.config import ExperimentConfig, load_config, override_list, resolved_dict
from memlab.eval.environment import environment
from memlab.eval.lock import lock_run_dir, unlock_run_dir
from memlab.eval.replay import ConversationRun, replay_conversation
from memlab.eval.select import select_probes
from memlab.eval.summary import summarize_run
from memlab.files import read_json, read_yaml
from memlab.spec import describe_differences


@dataclass
class RunResult:
    """A finished run: where it lives, its summary and (if tracked) its MLflow run id."""

    run_dir: Path
    config: ExperimentConfig
    summary: dict[str, Any]
    mlflow_run_id: str | None = None
    _rows: list[dict[str, Any]] | None = field(default=None, repr=False, compare=False)

    def items(self) -> list[dict[str, Any]]:
        """The rows of ``items.jsonl`` (read once; a run directory is not edited after)."""
        if self._rows is None:
            self._rows = item_file.read_items(self.run_dir / "items.jsonl")
        return self._rows

    def to_frame(self, backend: str = "pandas") -> Any:
        """One row per probe, metrics as columns (``metrics.turn.recall_any@5`` ...)."""
        from memlab.eval.frames import items_frame

        return items_frame(self.items(), backend=backend)


def evaluate(config: ExperimentConfig | str | Path | dict[str, Any], *,
             out: str | Path | None = None, overrides: Sequence[str] | None = None,
             workers: int | None = None, progress: bool = True,
             track: bool | None = None, pareto: bool = True,
             dataset: Dataset | None = None, retry_errors: bool = False,
             executor: Any = None) -> RunResult:
    """Run one experiment and return its summary (``python -m memlab.eval run``).

    ``pareto=False`` skips the across-runs Pareto plot (a sweep draws it once, at the
    end); ``dataset`` is the already loaded ``config.dataset`` (a sweep loads it once).
    ``retry_errors`` runs again the probes whose rows hold an error (the new rows win;
    how many is recorded as ``retried_errors`` in ``metrics.json``); ``executor`` (e.g.
    :class:`memlab.eval.ray_executor.RayExecutor`, entered) replays the conversations
    instead of this process or its pool.
    """
    if not isinstance(config, ExperimentConfig):
        config = load_config(config, override_list(overrides))
    if config.grid:
        raise ConfigError(f"{config.name} has a grid ({', '.join(config.grid)}): `sweep` "
                          "runs its variants "
                          "(`--only LABEL` picks some); `run` takes a config without one")
    if workers is not None:
        check_number("workers", workers, low=1, integer=True)
        config = config.model_copy(update={"workers": workers})
    if dataset is None:
        dataset = config.dataset.load()
    elif not isinstance(dataset, Dataset):
        raise ConfigError(f"dataset= takes a loaded Dataset (memlab.load_dataset(...)), got "
                          f"{type(dataset).__name__} {dataset!r:.40}; to choose a dataset by "
                          "name, set dataset.name in the config")
    pairs = select_probes(dataset, config.dataset.probes)
    run_dir = prepare_run_dir(config, out)  # after the data: a bad file leaves no stub
    judge_check = _check_judge(config, dataset, run_dir)  # before any answer is judged
    all_rows = item_file.repair(run_dir / "items.jsonl")  # the finished probes' rows
    item_file.repair(run_dir / "memory.jsonl")  # appended to again: no cut-off line left
    _record_start(run_dir, config, len(all_rows))
    failed = {row["probe_id"] for row in _ordered(all_rows, pairs) if row.get("error")}
    done = {row["probe_id"] for row in all_rows} - (failed if retry_errors else set())
    todo = _pending(dataset, pairs, done)
    digests: dict[str, str] = {}
    all_rows += _replay_all(config, todo, run_dir, len(pairs) - len(done & _ids(pairs)),
                            progress, digests, _counts(all_rows, done), executor)
    if retry_errors and failed:
        all_rows = item_file.compact(run_dir / "items.jsonl")  # the new rows replace them
    rows = _ordered(all_rows, pairs)
    summary = summarize_run(rows, seed=config.seed,
                            memory=_memory_rows(run_dir, {c.id for c, _ in pairs}),
                            prices=config.prices.model_dump())
    summary["config_name"] = config.name
    summary["dataset"] = dataset.name
    summary["retried_errors"] = len(failed) if retry_errors else 0
    summary["dataset_issues"] = _issue_counts(dataset, pairs)
    if judge_check is not None:
        summary["judge_check"] = judge_check
    _write_json(run_dir / "metrics.json", summary)
    _record_environment(run_dir, digests)
    result = RunResult(run_dir, config, summary, _rows=all_rows)
    try:
        if config.tracking.mlflow if track is None else track:
            result.mlflow_run_id = _mirror(result, pareto)
    finally:
        unlock_run_dir(run_dir)
    return result


def _mirror(result: RunResult, pareto: bool) -> str:
    """Log the finished run to MLflow; whatever fails there becomes a NotLoggedError that
    carries the result (the run directory is complete either way)."""
    from memlab.eval.tracking import NotLoggedError, log_run

    try:
        return log_run(result.run_dir, pareto=pareto)
    except Exception as exc:  # MLflow, the network, pyarrow...: the mirror only
        raise NotLoggedError(
            f"the run is complete in {result.run_dir}, but logging it to MLflow failed "
            f"({type(exc).__name__}: {exc}); once that is mended, `python -m memlab.eval "
            f"log {result.run_dir}` mirrors it", result) from exc


def _issue_counts(dataset: Dataset, pairs: Sequence[tuple[Conversation, Probe]]
                  ) -> dict[str, int]:
    """What the loader repaired, dropped or kept in the conversations the run scores, by
    action (``split``, ``kept: asked before evidence``, ...; ``Dataset.issues`` lists them)."""
    chosen = {c.id for c, _ in pairs}
    return dict(sorted(Counter(i.action for i in dataset.issues
                               if i.conversation_id in chosen).items()))


#: Run directories opened in this process, latest last (what an interrupt names).
OPENED: list[Path] = []


def prepare_run_dir(config: ExperimentConfig, out: str | Path | None) -> Path:
    """Create (or reopen, to resume) the run directory and write the resolved config."""
    run_dir = Path(out) if out is not None else default_run_dir(config)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"the run directory {run_dir} is a file")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file there or above it, no permission, a read-only disk
        raise ConfigError(f"cannot make the run directory {run_dir}: "
                          f"{exc.strerror or exc} ({exc.filename or run_dir})") from None
    lock_run_dir(run_dir)
    tree = resolved_dict(config)
    resolved = yaml.safe_dump(tree, sort_keys=True, allow_unicode=True)
    path = run_dir / "config.resolved.yaml"
    if path.exists() and path.read_text(encoding="utf-8") != resolved:
        shown = describe_differences(_results_part(read_yaml(path)), _results_part(tree))
        if shown:
            raise ConfigError(
                f"{run_dir} holds a run of a different config ({shown}); resuming it "
                "would mix results. Choose another --out directory.")
    path.write_text(resolved, encoding="utf-8")
    OPENED.append(run_dir)
    return run_dir


#: Config keys that change how a run goes, not what it computes: a run may resume with
#: other values (the record keeps the latest).
_NOT_RESULTS = ("workers", "tracking", "description", "fail_on_error", "prices")


def _results_part(tree: Any, top: bool = True) -> Any:
    """A resolved config without what cannot change the items: :data:`_NOT_RESULTS`, and
    where a template file was read from (its name and sha256 stay)."""
    if isinstance(tree, dict):
        return {k: _results_part(v, False) for k, v in tree.items()
                if not (top and k in _NOT_RESULTS)
                and not (k == "path" and "sha256" in tree)}
    if isinstance(tree, list):
        return [_results_part(v, False) for v in tree]
    return tree


def default_run_dir(config: ExperimentConfig) -> Path:
    """``$MEMLAB_RUNS_DIR`` (default ``runs/``) / the config's name / a UTC timestamp."""
    base = Path(os.environ.get("MEMLAB_RUNS_DIR", PROJECT_ROOT / "runs"))
    safe = re.sub(r"[^A-Za-z0-9_.=-]+", "_", config.name).strip("_") or "run"
    return base / safe / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def _ids(pairs: Sequence[tuple[Conversation, Probe]]) -> set[str]:
    return {p.id for _, p in pairs}


def _pending(dataset: Dataset, pairs: Sequence[tuple[Conversation, Probe]],
             done: set[str]) -> list[tuple[Conversation, list[Probe]]]:
    """Conversations with their unfinished selected probes, in dataset order."""
    by_conversation: dict[str, list[Probe]] = {}
    for conversation, probe in pairs:
        if probe.id not in done:
            by_conversation.setdefault(conversation.id, []).append(probe)
    return [(c, by_conversation[c.id]) for c in dataset if c.id in by_conversation]


def _counts(rows: list[dict[str, Any]], done: set[str]) -> dict[str, int]:
    """Finished probes per conversation (a resumed conversation's memory.jsonl row
    counts them with the probes it runs now)."""
    ids = {row["probe_id"]: row["conversation_id"] for row in rows if row["probe_id"] in done}
    return dict(Counter(ids.values()))


def _replay_all(config: ExperimentConfig, todo: list[tuple[Conversation, list[Probe]]],
                run_dir: Path, n_probes: int, progress: bool, digests: dict[str, str],
                earlier: dict[str, int], executor: Any = None) -> list[dict[str, Any]]:
    """Replay pending conversations (in a pool when workers > 1), appending items;
    returns the appended rows as ``items.jsonl`` holds them and fills ``digests``;
    ``earlier`` counts each conversation's probes finished before."""
    appended: list[dict[str, Any]] = []
    errors = 0
    written = 0
    ingest_calls = ingest_errors = 0
    n_sessions = sum(len(c.sessions) for c, _ in todo)
    ingest = tqdm(total=n_sessions, desc=f"{config.name}: ingest", unit="session",
                  disable=not progress or n_probes == 0, position=0)
    bar = tqdm(total=n_probes, desc=f"{config.name}: probes", unit="probe",
               disable=not progress or n_probes == 0, position=1)
    with item_file.ItemWriter(run_dir / "items.jsonl") as writer, \
            item_file.ItemWriter(run_dir / "memory.jsonl") as memory_log:
        for run in _runs(config, todo, lambda: ingest.update(1), executor):
            record = run.memory_record()  # first: a resumed conversation rewrites it
            record["probes"] += earlier.get(run.conversation_id, 0)
            memory_log.write(record)
            appended += writer.write_all(run.items)
            digests.update(run.model_digests)
            written += len(run.items)
            errors += sum(bool(row.get("error")) for row in run.items)
            ingest_calls += run.ingest["calls"]
            ingest_errors += run.ingest["errors"]
            bar.update(len(run.items))
            bar.set_postfix(errors=errors, ingest_errors=ingest_errors)
            stop = _stop_reason(config, run_dir, written, errors, ingest_calls, ingest_errors,
                                run.ingest)
            if stop:
                ingest.close()
                bar.close()
                raise MemlabError(f"stopped: {stop}. Finished items are kept in "
                                  f"{run_dir / 'items.jsonl'} (and {run_dir / 'memory.jsonl'}).")
    ingest.close()
    bar.close()
    stop = _stop_reason(config, run_dir, written, errors, ingest_calls, ingest_errors, {},
                        final=True)  # a short run whose probes all failed is no success
    if stop:
        raise MemlabError(f"failed: {stop}. The items are kept in {run_dir / 'items.jsonl'}; "
                          "--retry-errors runs the failed probes again.")
    return appended


def _stop_reason(config: ExperimentConfig, run_dir: Path, written: int, errors: int,
                 calls: int, ingest_errors: int, last: dict[str, Any],
                 final: bool = False) -> str:
    """Why the run must stop (``fail_on_error`` passed by probes or by ingest LLM calls);
    mid-run only once 5 probes are in, at the end (``final``) whatever their number."""
    limit = config.fail_on_error
    if written and (written >= 5 or final) and errors / written > limit:
        return (f"{errors} of {written} probes failed (fail_on_error={limit}); "
                f"first error: {_first_error(run_dir)}")
    if calls and ingest_errors / calls > limit and (calls >= 5 or ingest_errors == calls):
        first = (last.get("error_messages") or ["?"])[0]
        return (f"{ingest_errors} of {calls} LLM calls made while ingesting failed "
                f"(fail_on_error={limit}); e.g. {first}")
    return ""


def _runs(config: ExperimentConfig, todo: list[tuple[Conversation, list[Probe]]],
          on_session: Callable[[], object] | None = None,
          executor: Any = None) -> Iterator[ConversationRun]:
    if executor is not None:
        yield from executor.runs(config, todo, on_session)
        return
    if config.workers <= 1 or len(todo) <= 1:
        answerer = build_answerer(config)
        for conversation, probes in todo:
            yield replay_conversation(config, conversation, probes, answerer, on_session)
        return
    with ProcessPoolExecutor(max_workers=config.workers, mp_context=get_context("spawn")) as pool:
        runs = pool.map(_replay_in_worker, [(config, c, p) for c, p in todo])
        try:
            for (conversation, _), run in zip(todo, runs, strict=True):
                if on_session is not None:  # a worker's sessions show when it ends
                    for _ in conversation.sessions:
                        on_session()
                yield run
        except ConfigError as exc:
            if not _known_here(str(exc)):
                raise
            raise ConfigError(
                f"{exc}\n- in a worker process (workers: {config.workers}), which starts "
                "fresh: a component registered only in this process is unknown there; list "
                "its module under plugins: in the config (or in MEMLAB_PLUGINS), or run "
                "with workers: 1") from None


def _known_here(message: str) -> bool:
    """Whether an "unknown <kind> 'name'" error names a component this process knows."""
    from memlab.components import REGISTRIES, registry

    for match in re.finditer(r"unknown ([a-z ]+?) '([^']+)'", message):
        said, name = match.groups()
        for kind in REGISTRIES:
            try:
                found = registry(kind)
            except (ImportError, AttributeError):
                continue
            if (said.startswith(kind) or said.startswith(found.kind)) and name in found:
                return True
    return False


def _replay_in_worker(job: tuple[ExperimentConfig, Conversation, list[Probe]]
                      ) -> ConversationRun:
    from memlab.plugins import import_plugins

    config, conversation, probes = job
    import_plugins(config.plugins)  # a fresh process: the config's own components
    return replay_conversation(config, conversation, probes, build_answerer(config))


def build_answerer(config: ExperimentConfig) -> Any:
    """The :class:`~memlab.eval.answer.Answerer` for ``config`` (None for retrieval-only runs)."""
    if config.answer is None:
        return None
    from memlab.eval.answer import Answerer

    return Answerer(config)


def _ordered(rows: list[dict[str, Any]], pairs: Sequence[tuple[Conversation, Probe]]
             ) -> list[dict[str, Any]]:
    """Selected probes' rows in selection order (the latest row wins for a probe id)."""
    by_id = {row["probe_id"]: row for row in rows}
    return [by_id[p.id] for _, p in pairs if p.id in by_id]


def _memory_rows(run_dir: Path, conversations: set[str]) -> list[dict[str, Any]]:
    """The latest ``memory.jsonl`` row of each selected conversation."""
    latest = {row["conversation_id"]: row
              for row in item_file.read_items(run_dir / "memory.jsonl")}
    return [row for cid, row in sorted(latest.items()) if cid in conversations]


def _check_judge(config: ExperimentConfig, dataset: Dataset,
                 run_dir: Path) -> dict[str, Any] | None:
    """The judge's agreement on labelled cases (cached calls), written to the run and
    warned about on stderr when below the threshold; None without a judge."""
    if config.judge is None:
        return None
    from memlab.eval.judge_check import check_for_run

    return check_for_run(config, dataset, run_dir)


def _first_error(run_dir: Path) -> str:
    for row in item_file.read_items(run_dir / "items.jsonl"):
        if row.get("error"):
            return f"{row['probe_id']}: {row['error']}"
    return "?"


def _record_start(run_dir: Path, config: ExperimentConfig, rows: int) -> None:
    """``environment.json`` at the start of each segment of the run (the first, and each
    resume): the git state then, and the dataset's files with their sha256. A resume on
    changed dataset files is refused (results would mix); on other code it is noted."""
    import sys

    from memlab.eval.environment import dataset_files

    path = run_dir / "environment.json"
    previous = read_json(path, "the run's environment") if path.exists() else {}
    data = dataset_files(read_yaml(run_dir / "config.resolved.yaml"))
    before, now = _shas(previous.get("dataset")), _shas(data)
    if rows and previous.get("dataset") is not None and before != now:
        changed = sorted(key for key in {*before, *now} if before.get(key) != now.get(key))
        raise ConfigError(f"{run_dir}: the dataset changed since this run started "
                          f"({', '.join(f'dataset.{k}' for k in changed)}: another file or "
                          "sha256); resuming would mix results of two datasets. Choose "
                          "another --out directory.")
    fresh = environment(previous.get("model_digests"))
    git = fresh["git"]
    segments = list(previous.get("segments") or (
        [{"git": previous["git"], "rows_before": 0}] if previous.get("git") else []))
    first = segments[0]["git"] if segments else git
    if rows and (git.get("commit") != first.get("commit") or git.get("dirty")):
        print(f"note: resuming {run_dir} at commit {str(git.get('commit'))[:12]}"
              f"{' (uncommitted changes)' if git.get('dirty') else ''}; it started at "
              f"{str(first.get('commit'))[:12]}: environment.json lists each segment's code",
              file=sys.stderr)
    segments.append({"started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                     "git": git, "rows_before": rows})
    _write_json(path, {**previous, **fresh, "git": first, "segments": segments,
                       "dataset": data})


def _shas(record: dict[str, Any] | None) -> dict[str, str]:
    """``{file key: sha256}`` of a recorded ``dataset`` entry."""
    return {k: v.get("sha256") for k, v in ((record or {}).get("files") or {}).items()}


def _record_environment(run_dir: Path, digests: dict[str, str]) -> None:
    """``environment.json`` at the end: packages, machine, and the digests of every model
    the run used (LLMs from their files, embedders from their resolved identity)."""
    path = run_dir / "environment.json"
    previous = read_json(path, "the run's environment") if path.exists() else {}
    tree = read_yaml(run_dir / "config.resolved.yaml")
    merged = {**previous.get("model_digests", {}), **_embedder_ids(tree), **digests}
    fresh = environment(merged)
    _write_json(path, {**previous, **fresh, "git": previous.get("git", fresh["git"])})


def _embedder_ids(tree: Any) -> dict[str, str]:
    """``{component name: model_id}`` of every resolved identity in a config tree."""
    found: dict[str, str] = {}
    if isinstance(tree, dict):
        identity = tree.get("identity")
        if isinstance(identity, dict) and identity.get("model_id") and tree.get("name"):
            found[f"{tree['name']}:{tree.get('params', {}).get('model', '')}"] = str(
                identity["model_id"])
        for value in tree.values():
            found.update(_embedder_ids(value))
    elif isinstance(tree, list):
        for value in tree:
            found.update(_embedder_ids(value))
    return found


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n",
                   encoding="utf-8")
    os.replace(tmp, path)
