"""Means with bootstrap confidence intervals, paired run comparisons, latency percentiles.

Rows are per-probe dicts (``items.jsonl`` rows). A metric's value is read from
``row[metric]`` (or ``row["metrics"][metric]``); None, a missing key or NaN means the
metric did not apply or the item failed: it is *excluded and counted* (``n_excluded``),
never averaged in as 0.

- CI: percentile bootstrap of the mean (Efron), ``n_resamples`` resamples of the items
  with replacement drawn from ``numpy.random.default_rng(seed)``, so a seed gives the
  same interval every time.
- Paired comparison of runs A and B on the same probes (matched by ``key``): the mean of
  d = B - A with a paired-bootstrap CI (resampling probes), the two-sided Wilcoxon
  signed-rank test (``scipy.stats.wilcoxon``, zero differences dropped as in Wilcoxon's
  original method) and a two-sided paired sign-flip permutation test of the mean
  difference, p = (1 + #{|mean of sign-flipped d| >= |mean d|}) / (1 + permutations).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np

WILCOXON = "wilcoxon signed-rank (two-sided, scipy, zero_method=wilcox)"
PERMUTATION = "paired sign-flip permutation (two-sided, mean difference)"


@dataclass(frozen=True)
class Summary:
    """Mean of one metric over the items that have it, with its bootstrap CI."""

    metric: str
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    n_excluded: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Paired:
    """Run B minus run A on the probes both runs scored."""

    metric: str
    n: int
    n_excluded: int
    n_unmatched: int
    mean_a: float | None
    mean_b: float | None
    mean_diff: float | None
    ci_low: float | None
    ci_high: float | None
    wilcoxon_p: float | None
    permutation_p: float | None
    won: int = 0  # probes where B scored higher
    lost: int = 0  # probes where B scored lower
    tests: tuple[str, str] = (WILCOXON, PERMUTATION)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def value(row: Mapping[str, Any], metric: str) -> float | None:
    """``row``'s value of ``metric`` as a float, or None when absent / None / NaN.

    An items.jsonl row keeps its metrics under ``"metrics"``; only there is looked then,
    since its top level holds probe fields that share metric names (``abstention`` is the
    probe's flag there, the abstention score under ``metrics``). Other rows are flat.
    """
    metrics = row.get("metrics")
    raw = metrics.get(metric) if isinstance(metrics, Mapping) else row.get(metric)
    if raw is None:
        return None
    out = _number(metric, raw)
    return None if math.isnan(out) else out


def _number(metric: str, raw: Any, where: str = "") -> float:
    """``raw`` as a float; a non-numeric metric value is an error (``where`` says where)."""
    if type(raw) is not float and not isinstance(raw, (int, float, np.number)):
        raise ValueError(f"metric {metric!r} has a non-numeric value {raw!r}{where}")
    return float(raw)


def values_of(rows: Iterable[Mapping[str, Any]], metric: str) -> tuple[np.ndarray, int]:
    """The metric's values over ``rows`` and how many rows were excluded."""
    kept, excluded = [], 0
    for row in rows:
        v = value(row, metric)
        if v is None:
            excluded += 1
        else:
            kept.append(v)
    return np.asarray(kept, dtype=float), excluded


def bootstrap_ci(values: Sequence[float] | np.ndarray, *, n_resamples: int = 1000,
                 confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap CI of the mean of ``values`` (deterministic for ``seed``).

    The resamples of a given (size, n_resamples, seed) are the same for every metric, so
    their counts are drawn once and each metric's resample means are one matrix product.
    """
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    means = _resample_means(data, n_resamples, seed)
    alpha = (1 - confidence) / 2
    low, high = np.percentile(means, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)


_SHARED_RESAMPLES_MAX = 4_000_000  # count matrices up to 32 MB are cached and shared


def _resample_means(data: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """Mean of each resample of ``data``'s rows (one value, or one per column of a 2-D
    ``data``: every column sees the same resamples)."""
    n = data.shape[0]
    if n * n_resamples <= _SHARED_RESAMPLES_MAX:
        return _resample_counts(n, n_resamples, seed) @ data / n
    return data[_resample_indices(n, n_resamples, seed)].mean(axis=1)


def _resample_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


@lru_cache(maxsize=16)
def _resample_counts(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """How often each value is drawn in each resample (rows), as a read-only matrix."""
    flat = _resample_indices(n, n_resamples, seed) + n * np.arange(n_resamples)[:, None]
    counts = np.bincount(flat.ravel(), minlength=n * n_resamples).reshape(n_resamples, n)
    counts = counts.astype(float)
    counts.setflags(write=False)
    return counts


def summarize(rows: Iterable[Mapping[str, Any]], metric: str, *, n_resamples: int = 1000,
              confidence: float = 0.95, seed: int = 0) -> Summary:
    """Mean, bootstrap CI, n and n_excluded of ``metric`` over ``rows``."""
    data, excluded = values_of(rows, metric)
    return summary_of(metric, data, excluded, n_resamples, confidence, seed)


def summary_of(metric: str, data: np.ndarray, excluded: int, n_resamples: int = 1000,
             confidence: float = 0.95, seed: int = 0) -> Summary:
    """Mean, bootstrap CI, n and ``excluded`` of the kept values ``data``."""
    if data.size == 0:
        return Summary(metric, None, None, None, 0, excluded)
    low, high = bootstrap_ci(data, n_resamples=n_resamples, confidence=confidence, seed=seed)
    return Summary(metric, float(data.mean()), low, high, int(data.size), excluded)


def summarize_by(rows: Iterable[Mapping[str, Any]], metric: str, by: str = "category",
                 *, n_resamples: int = 1000, confidence: float = 0.95,
                 seed: int = 0) -> dict[str, Summary]:
    """``{"all": ..., <group>: ...}``: the summary overall and per value of ``row[by]``."""
    rows = list(rows)
    return summarize_groups(metric, metric_column(rows, metric), groups_of(rows, by),
                            n_resamples=n_resamples, confidence=confidence, seed=seed)


def metric_column(rows: Sequence[Mapping[str, Any]], metric: str) -> np.ndarray:
    """``metric`` over ``rows`` as floats, NaN where missing (checked as :func:`value`)."""
    return np.asarray([np.nan if (v := value(row, metric)) is None else v for row in rows],
                      dtype=float)


def metric_columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Every metric under the rows' ``"metrics"`` as a float column (NaN where missing),
    read in one pass; the same values :func:`metric_column` gives, sorted by name."""
    n = len(rows)
    columns: dict[str, list[float]] = {}
    for i, row in enumerate(rows):
        metrics = row.get("metrics")
        if not isinstance(metrics, Mapping):
            continue
        for name, raw in metrics.items():
            column = columns.get(name)
            if column is None:
                column = columns[name] = [math.nan] * n
            if raw is not None:
                column[i] = _number(name, raw, f" (row {i}, probe {row.get('probe_id', '?')})")
    return {name: np.asarray(columns[name], dtype=float) for name in sorted(columns)}


def groups_of(rows: Sequence[Mapping[str, Any]], by: str = "category") -> dict[str, np.ndarray]:
    """Row indices of ``"all"`` and of each value of ``row[by]`` (sorted by name)."""
    labels = [str(row.get(by)) for row in rows]
    members: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        members.setdefault(label, []).append(i)
    return {"all": np.arange(len(rows))} | {name: np.asarray(members[name], dtype=int)
                                            for name in sorted(members)}


def summarize_groups(metric: str, column: np.ndarray, groups: Mapping[str, np.ndarray], *,
                     n_resamples: int = 1000, confidence: float = 0.95,
                     seed: int = 0) -> dict[str, Summary]:
    """The summary of ``column`` (NaN = missing, counted as excluded) within each group."""
    out: dict[str, Summary] = {}
    for name, index in groups.items():
        data = column[index]
        kept = data[~np.isnan(data)]
        out[name] = summary_of(metric, kept, int(data.size - kept.size), n_resamples,
                               confidence, seed)
    return out


def summarize_table(columns: Mapping[str, np.ndarray], groups: Mapping[str, np.ndarray], *,
                    n_resamples: int = 1000, confidence: float = 0.95,
                    seed: int = 0) -> dict[str, dict[str, Summary]]:
    """:func:`summarize_groups` of every column at once: within a group, the metrics that
    are missing on the same items share one resample-count matrix product and one
    percentile call (the numbers of one column at a time, up to float rounding)."""
    out: dict[str, dict[str, Summary]] = {name: {} for name in columns}
    names = list(columns)
    if not names:
        return out
    table = np.column_stack([columns[name] for name in names])
    alpha = (1 - confidence) / 2
    for group, index in groups.items():
        data = table[index]
        missing = np.isnan(data)
        patterns: dict[bytes, list[int]] = {}
        for j in range(len(names)):
            patterns.setdefault(np.packbits(missing[:, j]).tobytes(), []).append(j)
        for members in patterns.values():
            kept = data[~missing[:, members[0]]][:, members]
            n, excluded = kept.shape[0], int(index.size - kept.shape[0])
            if n == 0:
                for j in members:
                    out[names[j]][group] = Summary(names[j], None, None, None, 0, excluded)
                continue
            lows, highs = _bootstrap_columns(kept, n_resamples, alpha, seed)
            for col, j in enumerate(members):
                out[names[j]][group] = Summary(names[j], float(kept[:, col].mean()),
                                               float(lows[col]), float(highs[col]), n,
                                               excluded)
    return {name: {group: out[name][group] for group in groups} for name in names}


def _bootstrap_columns(data: np.ndarray, n_resamples: int, alpha: float,
                       seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap bounds of each column's mean (the resamples of
    :func:`bootstrap_ci`: the same items are drawn for every column)."""
    means = _resample_means(data, n_resamples, seed)
    low, high = np.percentile(means, [100 * alpha, 100 * (1 - alpha)], axis=0)
    return low, high


def paired_compare(rows_a: Iterable[Mapping[str, Any]], rows_b: Iterable[Mapping[str, Any]],
                   metric: str, *, key: str = "probe_id", n_resamples: int = 1000,
                   n_permutations: int = 10000, confidence: float = 0.95,
                   seed: int = 0) -> Paired:
    """Compare run B with run A on ``metric`` over the probes both scored (d = B - A)."""
    a, b = _by_key(rows_a, key), _by_key(rows_b, key)
    shared = [k for k in a if k in b]
    unmatched = len(a) + len(b) - 2 * len(shared)
    pairs = [(value(a[k], metric), value(b[k], metric)) for k in shared]
    kept = np.asarray([(x, y) for x, y in pairs if x is not None and y is not None],
                      dtype=float).reshape(-1, 2)
    excluded = len(pairs) - len(kept)
    if len(kept) == 0:
        return Paired(metric, 0, excluded, unmatched, None, None, None, None, None, None, None)
    diff = kept[:, 1] - kept[:, 0]
    low, high = bootstrap_ci(diff, n_resamples=n_resamples, confidence=confidence, seed=seed)
    return Paired(metric, len(diff), excluded, unmatched, float(kept[:, 0].mean()),
                  float(kept[:, 1].mean()), float(diff.mean()), low, high,
                  wilcoxon_p(diff), permutation_p(diff, n_permutations, seed),
                  int((diff > 0).sum()), int((diff < 0).sum()))


def unpaired_difference(values_a: Sequence[float] | np.ndarray,
                        values_b: Sequence[float] | np.ndarray, *, n_resamples: int = 1000,
                        confidence: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """mean(B) - mean(A) for two samples of *different* items (e.g. dev and test probes),
    with a percentile-bootstrap CI that resamples each sample on its own (seeds ``seed``
    and ``seed + 1``); a paired CI would need the same probes in both."""
    a, b = np.asarray(values_a, dtype=float), np.asarray(values_b, dtype=float)
    if a.size == 0 or b.size == 0:
        raise ValueError("unpaired_difference needs at least one value in each sample")
    diffs = _resample_means(b, n_resamples, seed + 1) - _resample_means(a, n_resamples, seed)
    alpha = (1 - confidence) / 2
    low, high = np.percentile(diffs, [100 * alpha, 100 * (1 - alpha)])
    return {"mean_a": float(a.mean()), "mean_b": float(b.mean()),
            "mean_diff": float(b.mean() - a.mean()), "ci_low": float(low),
            "ci_high": float(high), "n_a": int(a.size), "n_b": int(b.size),
            "method": "unpaired percentile bootstrap (each sample resampled on its own)"}


def wilcoxon_p(diff: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value; 1.0 when every difference is zero."""
    from scipy.stats import wilcoxon

    if not np.any(diff):
        return 1.0
    return float(wilcoxon(diff, zero_method="wilcox", alternative="two-sided").pvalue)


def permutation_p(diff: np.ndarray, n_permutations: int = 10000, seed: int = 0) -> float:
    """Two-sided paired sign-flip permutation p-value of the mean difference."""
    rng = np.random.default_rng(seed)
    observed = abs(diff.mean())
    tolerance = 1e-12 * max(1.0, observed)
    extreme, done = 0, 0
    while done < n_permutations:
        size = min(1000, n_permutations - done)
        signs = rng.integers(0, 2, size=(size, diff.size)) * 2 - 1
        extreme += int(np.sum(np.abs(signs @ diff) / diff.size >= observed - tolerance))
        done += size
    return (extreme + 1) / (n_permutations + 1)


def latency_summary(seconds: Iterable[float | None]) -> dict[str, float | int | None]:
    """p50 / p95 / max (numpy linear percentiles) of the non-missing latencies, and n."""
    data = np.asarray([s for s in seconds if s is not None and not math.isnan(s)], dtype=float)
    if data.size == 0:
        return {"p50": None, "p95": None, "max": None, "n": 0}
    p50, p95 = np.percentile(data, [50, 95])
    return {"p50": float(p50), "p95": float(p95), "max": float(data.max()), "n": int(data.size)}


def _by_key(rows: Iterable[Mapping[str, Any]], key: str) -> dict[Any, Mapping[str, Any]]:
    out: dict[Any, Mapping[str, Any]] = {}
    for i, row in enumerate(rows):
        if key not in row:
            raise ValueError(f"row {i} has no {key!r} to pair runs on")
        if row[key] in out:
            raise ValueError(f"{key} {row[key]!r} appears twice in one run")
        out[row[key]] = row
    return out
