"""A run's dataset in MLflow: a run input, and an evaluation dataset of its probes.

The run input names the dataset file (its path as the source, the first 16 hex digits
of the file's sha256 as MLflow's digest, the full sha256 and the probe selection as
input tags) and holds the selected probes' table schema and row count, so the runs
table's Dataset column shows it and can be filtered by it. The probes themselves
(question and conversation as inputs, the gold answer as the expectation) go into an
MLflow evaluation dataset of the experiment, once per file digest and selection, which
fills the experiment's Datasets page.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

#: Inputs logged and evaluation datasets present, in this process: (uri, run or
#: experiment id, name@sha256).
_SEEN: set[tuple[str, str, str]] = set()


def dataset_path(config: dict[str, Any]) -> Path | None:
    """The file the run read: ``dataset.path`` or its loader's default path."""
    from memlab.data import registry

    spec = config.get("dataset") or {}
    if spec.get("path"):
        return Path(spec["path"]).expanduser().resolve()
    try:
        defaults = {p.name: p.default for p in registry.params(str(spec.get("name")))}
    except Exception:  # an unknown loader: the run directory still names the dataset
        return None
    return Path(defaults["path"]).resolve() if defaults.get("path") else None


def selection(config: dict[str, Any]) -> dict[str, Any]:
    """The probe selection (``dataset.probes``) without unset fields."""
    probes = (config.get("dataset") or {}).get("probes") or {}
    return {k: v for k, v in sorted(probes.items()) if v is not None}


def dataset_name(dataset: str, config: dict[str, Any]) -> str:
    """``locomo`` for every probe, ``locomo[sample=100,seed=0,stratify=category]`` else."""
    chosen = selection(config)
    if not set(chosen) - {"seed", "stratify"}:  # no subset: seed and stratify do nothing
        return dataset
    return f"{dataset}[{','.join(f'{k}={_short(v)}' for k, v in chosen.items())}]"


def log_dataset(client: Any, run_ids: Sequence[str], experiment_id: str, dataset: str,
                config: dict[str, Any], items: list[dict[str, Any]],
                recorded: dict[str, str] | None = None) -> str:
    """Log the run's dataset as an input of each of ``run_ids`` (the run, and its sweep's
    parent the first time) and make sure the experiment's evaluation dataset exists;
    returns the dataset's MLflow name. ``recorded``: the file and sha256 the run itself
    recorded (``environment.json``), which win over hashing the file now (it may have
    changed since)."""
    import pandas as pd
    from mlflow.data.pandas_dataset import from_pandas
    from mlflow.entities import DatasetInput, InputTag

    path = dataset_path(config)
    if recorded and recorded.get("sha256"):
        path, sha = Path(recorded["file"]), str(recorded["sha256"])
    else:
        sha = file_sha256(str(path), *_stat(path)) if path is not None and path.is_file() \
            else ""
    name = dataset_name(dataset, config)
    frame = pd.DataFrame([_probe(row) for row in items])
    with warnings.catch_warnings():  # a local path matches two equivalent source kinds
        warnings.simplefilter("ignore", UserWarning)
        data = from_pandas(frame, source=str(path or dataset), name=name,
                           digest=sha[:16] or None, targets="gold" if len(frame) else None)
    tags = {"mlflow.data.context": "eval", "memlab.file_sha256": sha,
            "memlab.source_path": str(path or ""), "memlab.probes": str(len(items)),
            "memlab.selection": json.dumps(selection(config), sort_keys=True)}
    entry = DatasetInput(data._to_mlflow_entity(), [InputTag(k, v) for k, v in tags.items()])
    for run_id in run_ids:
        key = (str(client.tracking_uri), run_id, f"{name}@{sha}")
        if key not in _SEEN:
            client.log_inputs(run_id, datasets=[entry])
            _SEEN.add(key)
    _evaluation_dataset(client, experiment_id, name, items, tags)
    return name


def _evaluation_dataset(client: Any, experiment_id: str, name: str,
                        items: list[dict[str, Any]], tags: dict[str, str]) -> None:
    """The experiment's evaluation dataset ``name`` with the run's probes (created once)."""
    from mlflow.genai.datasets import create_dataset, search_datasets

    key = (str(client.tracking_uri), experiment_id, f"{name}@{tags['memlab.file_sha256']}")
    if key in _SEEN:
        return
    found = [d for d in search_datasets(experiment_ids=[experiment_id],
                                        filter_string=f"name = '{_quote(name)}'",
                                        max_results=50)
             if (d.tags or {}).get("memlab.file_sha256") == tags["memlab.file_sha256"]]
    if not found:
        created = create_dataset(name=name, experiment_id=[experiment_id],
                                 tags={k: v for k, v in tags.items()
                                       if k != "mlflow.data.context"})
        created.merge_records([_record(row) for row in items])
    _SEEN.add(key)


def _probe(row: dict[str, Any]) -> dict[str, Any]:
    return {"probe_id": row.get("probe_id"), "conversation_id": row.get("conversation_id"),
            "category": row.get("category"), "asked_at": row.get("asked_at"),
            "question": row.get("question"), "gold": _text(row.get("gold"))}


def _record(row: dict[str, Any]) -> dict[str, Any]:
    return {"inputs": {"question": row.get("question"),
                       "conversation_id": row.get("conversation_id"),
                       "asked_at": row.get("asked_at"), "probe_id": row.get("probe_id")},
            "expectations": {"expected_response": _text(row.get("gold"))},
            "tags": {"category": str(row.get("category"))}}


@lru_cache(maxsize=16)
def file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of the file at ``path`` (cached per size and mtime: a sweep hashes once)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stat(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _short(value: Any) -> str:
    if isinstance(value, dict):  # a split: part:test;dev_fraction:0.5;seed:0
        return ";".join(f"{k}:{v}" for k, v in value.items() if v is not None)
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def _quote(text: str) -> str:
    return text.replace("'", "\\'")
