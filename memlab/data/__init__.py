"""Conversation data: the record types, loaders by name, and dataset locations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from memlab.data.schema import (
    Conversation,
    DataIssue,
    Dataset,
    Probe,
    Role,
    Session,
    Turn,
)
from memlab.errors import DatasetError
from memlab.registry import Registry

#: Loaders by name. Each takes ``path`` plus keyword options and returns a Dataset.
#: (Named ``registry`` like every kind's; ``memlab.data.loaders`` is the subpackage.)
registry: Registry[Dataset] = Registry("dataset loader")
registry.register("locomo", "memlab.data.loaders.locomo:load_locomo")
registry.register("longmemeval", "memlab.data.loaders.longmemeval:load_longmemeval")
registry.register("omi", "memlab.data.loaders.omi:load_omi")
registry.register("memlab", "memlab.data.loaders.native:load_native")
registry.register("synthetic", "memlab.data.loaders.native:load_synthetic")
registry.register("agent", "memlab.data.loaders.agent:load_agent")


def load_dataset(name: str, path: str | Path | None = None, **options: Any) -> Dataset:
    """Load a dataset with the loader registered as ``name``.

    ``haystack={"tokens": 115000, "seed": 0}`` (any loader) pads each history with other
    conversations' sessions to that many Qwen tokens (:mod:`memlab.data.haystack`).

    >>> ds = load_dataset("locomo", path="../shared/datasets/locomo10.json")  # doctest: +SKIP
    """
    params = dict(options)
    haystack = params.pop("haystack", None)
    if path is not None:
        params["path"] = path
    for param in registry.params(name):  # a flag given as "yes" would read as true
        value = params.get(param.name)
        if param.annotation == "bool" and param.name in params and not isinstance(value, bool):
            from memlab.errors import ConfigError

            raise ConfigError(f"dataset '{name}': {param.name} must be true or false, got "
                              f"{value!r}")
    try:
        dataset = registry.build(name, params)
    except DatasetError as exc:
        looks = sniff_format(exc.path) if exc.path else None
        if looks is not None and looks != name:
            exc.reason += (f" (this file looks like the {looks!r} format: load it with the "
                           f"{looks!r} loader)")
            exc.args = (exc._render(),)
        raise
    if haystack is None:
        return dataset
    from memlab.data.haystack import build_haystack, haystack_option

    return build_haystack(dataset, **haystack_option(haystack))


#: Keys that only one format's first record has (searched in the file's first 64 KiB).
_SIGNATURES = (
    ("agent", ('"format": "memlab-agent-export"', '"format":"memlab-agent-export"')),
    ("memlab", ('"format": "memlab-conversations"', '"format":"memlab-conversations"')),
    ("longmemeval", ('"haystack_sessions"', '"haystack_session_ids"')),
    ("locomo", ('"sample_id"', '"session_1_date_time"')),
    ("omi", ('"segments"', '"transcript_segments"')),
)


def sniff_format(path: str | Path) -> str | None:
    """The loader whose format a file's start looks like (a hint for errors), or None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16).decode("utf-8", errors="replace")
    except OSError:
        return None
    for loader, keys in _SIGNATURES:
        if any(key in head for key in keys):
            return loader
    return None


__all__ = [
    "Conversation",
    "DataIssue",
    "Dataset",
    "Probe",
    "Role",
    "Session",
    "Turn",
    "load_dataset",
    "registry",
]
