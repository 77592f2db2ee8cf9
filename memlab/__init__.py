"""memlab: measure how well a long-term conversational memory lets a local Qwen recall.

The public entry points (what the CLI and the notebooks call) are re-exported here;
heavy dependencies are imported lazily:

>>> import memlab
>>> memory = memlab.build("experiments/quickstart.yaml")          # the config's memory
>>> strategy = memlab.build("retrieval", {"name": "bm25", "params": {"k1": 1.2}})
>>> memlab.resolve("retrieval", "bm25")["params"]["k1"]            # every default filled in
1.5
>>> result = memlab.evaluate("experiments/quickstart.yaml")        # python -m memlab.eval run
>>> spread = memlab.repeat("experiments/quickstart.yaml", 3).spread # run --repeats 3
>>> table = memlab.sweep("experiments/locomo-retrieval.yaml")      # python -m memlab.eval sweep
>>> tuned = memlab.tune("experiments/locomo-tune.yaml")            # python -m memlab.eval tune
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from memlab.data import load_dataset
from memlab.errors import ConfigError, DatasetError, MemlabError, UnknownComponentError

if TYPE_CHECKING:
    from memlab.eval.run import RunResult

__version__ = "0.1.0"


def build(target: Any, spec: Any = None) -> Any:
    """A component: ``build(kind, spec)`` with a registry name, ``{name, params}`` or an
    instance; or, given only an experiment config (path, dict or ExperimentConfig),
    the fresh memory that config describes (what the harness replays each conversation
    through)."""
    if spec is not None:
        from memlab.spec import build as build_component

        return build_component(str(target), spec)
    from memlab.eval.config import ExperimentConfig, load_config
    from memlab.eval.replay import build_memory

    if isinstance(target, str) and not Path(target).suffix:
        raise ConfigError(f"build({target!r}) needs a spec: build(kind, spec), or pass a "
                          "config file / dict to build its memory")
    config = target if isinstance(target, ExperimentConfig) else load_config(target)
    return build_memory(config)


def resolve(kind: str, spec: Any) -> dict[str, Any]:
    """The full spec of a component: every default filled in, nested ones resolved."""
    from memlab.spec import resolve as resolve_component

    return resolve_component(kind, spec)


def evaluate(config: Any, **options: Any) -> RunResult:
    """Run one experiment (``python -m memlab.eval run``); see memlab.eval.run.evaluate."""
    from memlab.eval.run import evaluate as run

    return run(config, **options)


def repeat(config: Any, runs: int, **options: Any) -> Any:
    """Run a config ``runs`` times with the answer model's seed varied (``python -m
    memlab.eval run --repeats N``); returns a :class:`memlab.eval.repeat.RepeatResult`
    whose ``spread`` holds each metric's mean, sd, min and max over the runs."""
    from memlab.eval.repeat import evaluate_repeats

    return evaluate_repeats(config, runs, **options)


def sweep(config: Any, **options: Any) -> Any:
    """Run every variant of a config's grid (``python -m memlab.eval sweep``); returns the
    report table."""
    from memlab.eval.sweep import sweep as run_sweep

    return run_sweep(config, **options)


def tune(config: Any, **options: Any) -> Any:
    """Tune a config's ``tune.space`` on dev conversations and score the best on test
    (``python -m memlab.eval tune``); returns a :class:`memlab.eval.tune_report.TuneResult`."""
    from memlab.eval.tune import tune as run_tune

    return run_tune(config, **options)


def scale(config: Any, tokens: Any, **options: Any) -> Any:
    """A config's strategies at several history lengths (``python -m memlab.eval scale``);
    returns the table."""
    from memlab.eval.scale import scale as run_scale

    return run_scale(config, tokens, **options)


__all__ = [
    "ConfigError",
    "DatasetError",
    "MemlabError",
    "UnknownComponentError",
    "__version__",
    "build",
    "evaluate",
    "load_dataset",
    "repeat",
    "resolve",
    "scale",
    "sweep",
    "tune",
]
