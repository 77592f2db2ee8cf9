"""``sweep``: run every combination of a config's ``grid:`` and tabulate the results."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from memlab.eval.config import expand_grid


def sweep(config: str | Path | dict[str, Any], *, out: str | Path | None = None,
          overrides: Sequence[str] | None = None, workers: int | None = None,
          track: bool | None = None, progress: bool = True) -> Any:
    """Evaluate each grid variant (each in its own run directory); returns a report table.

    Finished runs are mirrored into MLflow by a background process while the next
    variant replays; the sweep returns once every run is logged.
    """
    from memlab.data import load_dataset
    from memlab.eval.report import report
    from memlab.eval.run import evaluate
    from memlab.eval.tracking import BackgroundLogger

    dirs = []
    variants = expand_grid(config, list(overrides or []))
    datasets: dict[str, Any] = {}  # variants sharing a dataset spec share the loaded data
    with BackgroundLogger() as logger:
        for n, variant in enumerate(variants, 1):
            spec = variant.dataset
            key = json.dumps([spec.name, spec.path, spec.params], sort_keys=True, default=str)
            if key not in datasets:
                datasets[key] = load_dataset(spec.name, path=spec.path, **spec.params)
            run_out = None if out is None else Path(out) / _slug(variant.name)
            result = evaluate(variant, out=run_out, workers=workers, track=False,
                              progress=progress, dataset=datasets[key])
            if variant.tracking.mlflow if track is None else track:
                # the across-runs Pareto plot once, at the end, over every logged run
                logger.submit(result.run_dir, pareto=n == len(variants))
            dirs.append(result.run_dir)
        logger.wait()
    return report(dirs)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", name).strip("_")
