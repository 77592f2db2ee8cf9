"""``sweep``: run every combination of a config's ``grid:`` and tabulate the results."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from memlab.eval.config import expand_grid, override_list


def sweep(config: str | Path | dict[str, Any], *, out: str | Path | None = None,
          overrides: Sequence[str] | None = None, workers: int | None = None,
          track: bool | None = None, progress: bool = True, executor: Any = None,
          only: Sequence[str] | None = None, retry_errors: bool = False) -> Any:
    """Evaluate each grid variant (each in its own run directory); returns a report table.

    ``only`` keeps the variants with these grid labels (``cases`` labels, or ``key=value``
    for other axes, ``key`` the last part of a dotted key; see :func:`select_variants`), in
    the order given: e.g. the expensive cases of a sweep first. ``retry_errors``: resuming
    ``out``, each run's failed probes (LLM errors) are run again.

    Finished runs are mirrored into MLflow by a background process while the next
    variant replays; the sweep returns once every run is logged. With an ``executor``
    (a :class:`memlab.eval.ray_executor.RayExecutor`, entered) every variant's tasks are
    submitted at once, one driver thread per variant writing its run directory.
    """
    from memlab.errors import MemlabError
    from memlab.eval.report import report
    from memlab.eval.run import evaluate
    from memlab.eval.tracking import BackgroundLogger, NotLoggedError

    variants = expand_grid(config, override_list(overrides))
    if only:
        variants = select_variants(variants, [only] if isinstance(only, str) else only)
    datasets = _datasets(variants)
    outs = [None if out is None else Path(out) / slug(v.name) for v in variants]
    dirs = []
    with BackgroundLogger() as logger:
        if executor is None:
            results: Iterable[Any] = (
                evaluate(v, out=o, workers=workers, track=False, progress=progress,
                         dataset=d, retry_errors=retry_errors)
                for v, o, d in zip(variants, outs, datasets, strict=True))
        else:
            with ThreadPoolExecutor(max_workers=max(1, len(variants))) as pool:
                futures = [pool.submit(evaluate, v, out=o, track=False, progress=False,
                                       dataset=d, executor=executor,
                                       retry_errors=retry_errors)
                           for v, o, d in zip(variants, outs, datasets, strict=True)]
                results = [future.result() for future in futures]
        for n, (variant, result) in enumerate(zip(variants, results, strict=True), 1):
            if variant.tracking.mlflow if track is None else track:
                # the across-runs Pareto plot once, at the end, over every logged run
                logger.submit(result.run_dir, pareto=n == len(variants))
            dirs.append(result.run_dir)
        try:
            logger.wait()
        except MemlabError as exc:  # the runs are complete: the table goes with the error
            raise NotLoggedError(str(exc), report(dirs)) from exc
    return report(dirs)


def variant_label(name: str) -> str:
    """The grid label of a variant's name (``name[label]``), or the name itself."""
    match = re.search(r"\[(.*)\]$", name)
    return match.group(1) if match else name


def select_variants(variants: Sequence[Any], only: Sequence[str]) -> list[Any]:
    """The variants ``only`` names, in that order, each once (ConfigError if a name matches
    none, naming the labels the grid has).

    A name is a whole grid label (``dev,depth=3``), or some of its comma-separated parts:
    ``dev`` names every variant of the ``dev`` case, ``dev,weight=0.1`` the ``dev``
    variants with that value, in grid order.
    """
    from memlab.errors import ConfigError

    by_label = {variant_label(v.name): v for v in variants}
    picked: dict[str, Any] = {}
    unknown = []
    for name in only:
        matches = [name] if name in by_label else _partial_matches(name, list(by_label))
        if not matches:
            unknown.append(name)
        for label in matches:
            picked.setdefault(label, by_label[label])
    if unknown:
        raise ConfigError(f"--only {', '.join(unknown)}: no such grid case; the grid has: "
                          f"{', '.join(by_label)}")
    return list(picked.values())


def _partial_matches(name: str, labels: Sequence[str]) -> list[str]:
    """Labels holding every comma-separated part of ``name`` among their own parts."""
    wanted = set(name.split(","))
    return [label for label in labels if wanted <= set(label.split(","))]


def _datasets(variants: Sequence[Any]) -> list[Any]:
    """Each variant's dataset, loaded once per distinct dataset spec."""
    loaded: dict[str, Any] = {}
    out = []
    for variant in variants:
        spec = variant.dataset
        key = json.dumps([spec.name, spec.path, spec.params], sort_keys=True, default=str)
        if key not in loaded:
            loaded[key] = spec.load()
        out.append(loaded[key])
    return out


def slug(name: str) -> str:
    """``name`` as a safe directory name (runs of other characters become ``_``)."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", name).strip("_")
