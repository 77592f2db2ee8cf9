"""Which probes a run answers: category / conversation filters, stratified samples, limits."""

from __future__ import annotations

import random
from collections import defaultdict

from memlab.data.schema import Conversation, Dataset, Probe
from memlab.errors import ConfigError
from memlab.eval.config import ProbeSelection


def select_probes(dataset: Dataset, selection: ProbeSelection) -> list[tuple[Conversation, Probe]]:
    """The chosen (conversation, probe) pairs, in dataset order.

    A stratified sample draws ``sample`` probes spread over the ``stratify`` attribute
    (``category`` by default) in proportion to its frequency, with at least one per
    stratum while the sample size allows; the draw depends only on ``seed``.
    """
    part = None if selection.split is None else set(
        selection.split.select([c.id for c in dataset]))
    pairs = [
        (c, p) for c, p in dataset.probes()
        if (selection.categories is None or p.category in selection.categories)
        and (selection.conversations is None or c.id in selection.conversations)
        and (part is None or c.id in part)
    ]
    _check_names(dataset, selection)
    if selection.sample is not None and selection.sample < len(pairs):
        pairs = _stratified(pairs, selection.sample, selection.stratify, selection.seed)
    if selection.limit is not None:
        pairs = pairs[: selection.limit]
    if not pairs:
        total = sum(len(c.probes) for c in dataset)
        raise ConfigError(
            f"dataset.probes: nothing to evaluate: {dataset.name} has {total} probes and "
            "this selection keeps none" if total else
            f"dataset {dataset.name!r} ({dataset.source}) has no probes to evaluate; "
            "`python -m memlab.data probes` writes questions for a history without any")
    return pairs


def _check_names(dataset: Dataset, selection: ProbeSelection) -> None:
    if selection.categories is not None:
        known = {p.category for _, p in dataset.probes()}
        unknown = sorted(set(selection.categories) - known)
        if unknown:
            raise ConfigError(f"dataset.probes.categories: {', '.join(unknown)} not in "
                              f"{dataset.name} (has {', '.join(sorted(known))})")
    if selection.conversations is not None:
        known = {c.id for c in dataset}
        unknown = sorted(set(selection.conversations) - known)
        if unknown:
            raise ConfigError(f"dataset.probes.conversations: no conversation(s) "
                              f"{', '.join(unknown)} in {dataset.name}")


def _stratified(pairs: list[tuple[Conversation, Probe]], n: int, attribute: str,
                seed: int) -> list[tuple[Conversation, Probe]]:
    strata: dict[str, list[int]] = defaultdict(list)
    for index, (_, probe) in enumerate(pairs):
        strata[str(getattr(probe, attribute))].append(index)
    rng = random.Random(seed)
    quotas = _quotas({k: len(v) for k, v in sorted(strata.items())}, n)
    chosen: list[int] = []
    for key, quota in quotas.items():
        chosen.extend(rng.sample(strata[key], quota))
    return [pairs[i] for i in sorted(chosen)]


def _quotas(sizes: dict[str, int], n: int) -> dict[str, int]:
    """Largest-remainder apportionment of ``n`` over strata, at least 1 each if n allows."""
    total = sum(sizes.values())
    floor_one = n >= len(sizes)
    exact = {k: n * size / total for k, size in sizes.items()}
    quotas = {k: min(size, max(int(exact[k]), 1 if floor_one else 0))
              for k, size in sizes.items()}
    order = sorted(sizes, key=lambda k: (-(exact[k] - int(exact[k])), k))
    while sum(quotas.values()) > n:
        key = max(quotas, key=lambda k: (quotas[k], k))
        quotas[key] -= 1
    i = 0
    while sum(quotas.values()) < n:
        key = order[i % len(order)]
        if quotas[key] < sizes[key]:
            quotas[key] += 1
        i += 1
    return quotas
