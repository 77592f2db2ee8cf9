"""Bootstrap CIs, grouped summaries, paired comparisons and latency percentiles."""

from __future__ import annotations

import math

import numpy as np
import pytest

from memlab.metrics.stats import (
    PERMUTATION,
    WILCOXON,
    bootstrap_ci,
    latency_summary,
    paired_compare,
    permutation_p,
    summarize,
    summarize_by,
    wilcoxon_p,
)


def rows_of(values, category="c", key="f1"):
    return [{"probe_id": f"p{i}", "category": category, key: v} for i, v in enumerate(values)]


# --- bootstrap -------------------------------------------------------------------------


def test_bootstrap_is_deterministic_for_a_seed_and_contains_the_mean() -> None:
    values = np.random.default_rng(3).uniform(0, 1, 200)
    first = bootstrap_ci(values, seed=11)
    assert bootstrap_ci(values, seed=11) == first
    assert bootstrap_ci(values, seed=12) != first
    low, high = first
    assert low < values.mean() < high
    # the standard error of a U(0,1) mean over 200 items is ~0.02: a 95% CI ~ +-0.04
    assert 0.05 < high - low < 0.1


def test_bootstrap_edge_cases() -> None:
    assert bootstrap_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)
    assert bootstrap_ci([1.0]) == (1.0, 1.0)
    with pytest.raises(ValueError, match="at least one"):
        bootstrap_ci([])
    wide = bootstrap_ci([0.0, 1.0] * 50, confidence=0.99, seed=0)
    narrow = bootstrap_ci([0.0, 1.0] * 50, confidence=0.80, seed=0)
    assert wide[0] < narrow[0] < 0.5 < narrow[1] < wide[1]


def test_summarize_counts_excluded_items() -> None:
    rows = rows_of([1.0, 0.0, None, 0.5, float("nan"), True])
    rows.append({"probe_id": "missing", "category": "c"})
    rows.append({"probe_id": "nested", "category": "c", "metrics": {"f1": 0.5}})
    s = summarize(rows, "f1", n_resamples=200, seed=1)
    assert (s.n, s.n_excluded) == (5, 3)   # None, NaN, missing are excluded, not 0
    assert s.mean == pytest.approx((1.0 + 0.0 + 0.5 + 1.0 + 0.5) / 5)
    assert s.ci_low <= s.mean <= s.ci_high
    assert s.as_dict()["metric"] == "f1"
    empty = summarize(rows_of([None, None]), "f1")
    assert (empty.mean, empty.ci_low, empty.n, empty.n_excluded) == (None, None, 0, 2)


def test_summarize_rejects_non_numbers() -> None:
    with pytest.raises(ValueError, match="non-numeric value 'yes'"):
        summarize(rows_of(["yes"]), "f1")


def test_summarize_by_category() -> None:
    rows = rows_of([1.0, 1.0, None], "single-hop") + rows_of([0.0, 0.5], "multi-hop")
    by = summarize_by(rows, "f1", n_resamples=100)
    assert list(by) == ["all", "multi-hop", "single-hop"]
    assert (by["all"].mean, by["all"].n, by["all"].n_excluded) == (pytest.approx(0.625), 4, 1)
    assert (by["single-hop"].mean, by["single-hop"].n_excluded) == (1.0, 1)
    assert (by["multi-hop"].mean, by["multi-hop"].ci_low, by["multi-hop"].ci_high) == (
        0.25, 0.0, 0.5)


def test_item_rows_are_read_from_their_metrics_not_their_probe_fields() -> None:
    # items.jsonl rows: the top-level "abstention" is the probe's flag; the abstention
    # score exists only for abstention probes, under "metrics"
    rows = [{"probe_id": "p0", "category": "c", "abstention": True,
             "metrics": {"abstention": 1.0}},
            {"probe_id": "p1", "category": "c", "abstention": False, "metrics": {}},
            {"probe_id": "p2", "category": "c", "abstention": False,
             "metrics": {"abstention": None}}]
    by = summarize_by(rows, "abstention", n_resamples=50)
    assert (by["all"].mean, by["all"].n, by["all"].n_excluded) == (1.0, 1, 2)


# --- paired comparison -----------------------------------------------------------------


def test_paired_test_on_known_small_case() -> None:
    diff = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    # all 5 differences positive: exact two-sided Wilcoxon p = 2 / 2^5
    assert wilcoxon_p(diff) == pytest.approx(2 / 32)
    # sign flips: only all-plus and all-minus reach |mean| 3, so p -> 2/32 (Monte Carlo)
    assert permutation_p(diff, 20000, seed=0) == pytest.approx(2 / 32, abs=0.006)
    assert wilcoxon_p(np.zeros(4)) == 1.0
    assert permutation_p(np.zeros(4), 100) == 1.0


def test_paired_compare_finds_a_known_improvement() -> None:
    rng = np.random.default_rng(5)
    base = rng.uniform(0, 1, 60)
    better = np.clip(base + 0.1 + rng.normal(0, 0.05, 60), 0, None)
    a = rows_of(base.tolist())
    b = rows_of(better.tolist())
    result = paired_compare(a, b, "f1", n_resamples=500, n_permutations=2000, seed=2)
    assert result.n == 60 and result.n_excluded == 0 and result.n_unmatched == 0
    assert result.mean_diff == pytest.approx(float((better - base).mean()))
    assert result.mean_diff == pytest.approx(result.mean_b - result.mean_a)
    assert 0 < result.ci_low < result.mean_diff < result.ci_high
    assert result.wilcoxon_p < 1e-6
    assert result.permutation_p == pytest.approx(1 / 2001)  # no flip reaches the observed
    assert result.tests == (WILCOXON, PERMUTATION)
    # the other direction: the same evidence, opposite sign
    reverse = paired_compare(b, a, "f1", n_resamples=500, n_permutations=2000, seed=2)
    assert reverse.mean_diff == pytest.approx(-result.mean_diff)
    assert reverse.ci_high < 0
    assert reverse.wilcoxon_p == pytest.approx(result.wilcoxon_p)
    assert paired_compare(a, b, "f1", seed=2) == paired_compare(a, b, "f1", seed=2)


def test_paired_compare_no_difference() -> None:
    a = rows_of([0.0, 1.0, 0.5, 1.0])
    result = paired_compare(a, a, "f1")
    assert (result.mean_diff, result.ci_low, result.ci_high) == (0.0, 0.0, 0.0)
    assert (result.wilcoxon_p, result.permutation_p) == (1.0, 1.0)


def test_paired_compare_counts_unmatched_and_excluded_pairs() -> None:
    a = rows_of([1.0, None, 0.0, 1.0])                       # p0..p3
    b = [*rows_of([0.0, 1.0, 1.0]), {"probe_id": "p9", "f1": 1.0}]
    result = paired_compare(a, b, "f1", n_permutations=100)
    # shared p0 p1 p2; p1 is None in A -> excluded; p3 (A only) and p9 (B only) unmatched
    assert (result.n, result.n_excluded, result.n_unmatched) == (2, 1, 2)
    assert result.mean_diff == 0.0   # (0 - 1) and (1 - 0)
    empty = paired_compare(rows_of([None]), rows_of([1.0]), "f1")
    assert (empty.n, empty.mean_diff, empty.wilcoxon_p) == (0, None, None)
    with pytest.raises(ValueError, match="appears twice"):
        paired_compare(a + a, b, "f1")
    with pytest.raises(ValueError, match="no 'probe_id'"):
        paired_compare([{"f1": 1.0}], b, "f1")


# --- latency ---------------------------------------------------------------------------


def test_latency_percentiles() -> None:
    assert latency_summary([5.0, 1.0, 3.0, None, 2.0, 4.0]) == {
        "p50": 3.0, "p95": pytest.approx(4.8), "max": 5.0, "n": 5}
    assert latency_summary([None, math.nan]) == {"p50": None, "p95": None, "max": None,
                                                   "n": 0}


def write_run(folder, scores, offset=0, category="c"):
    """A run directory whose items.jsonl scores probes p{offset}.. with ``scores``."""
    import json

    folder.mkdir(parents=True)
    rows = [{"probe_id": f"p{offset + i}", "category": category if i % 2 else "other",
             "error": None, "metrics": {"session.recall_all@5": v}}
            for i, v in enumerate(scores)]
    (folder / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_compare_pools_cross_fitted_pairs_and_counts_wins(tmp_path, capsys) -> None:
    from memlab.errors import ConfigError
    from memlab.eval.cli import main
    from memlab.eval.compare import compare_pooled, compare_runs

    a1 = write_run(tmp_path / "a1", [1.0, 0.0, 0.0, 1.0])
    b1 = write_run(tmp_path / "b1", [1.0, 1.0, 1.0, 0.0])
    a2 = write_run(tmp_path / "a2", [0.0, 0.0], offset=4)
    b2 = write_run(tmp_path / "b2", [1.0, 0.0], offset=4)
    metric = ["session.recall_all@5"]
    [pooled] = compare_pooled([(a1, b1), (a2, b2)], metric)
    assert (pooled["n"], pooled["won"], pooled["lost"]) == (6, 3, 1)
    assert pooled["mean_a"] == pytest.approx(2 / 6) and pooled["mean_b"] == pytest.approx(4 / 6)
    [one] = compare_runs(a1, b1, metric)
    assert (one["n"], one["won"], one["lost"]) == (4, 2, 1)
    rows = compare_pooled([(a1, b1), (a2, b2)], metric, by_category=True)
    assert [(r["category"], r["n"], r["won"]) for r in rows] == [
        (None, 6, 3), ("c", 3, 1), ("other", 3, 2)]
    with pytest.raises(ConfigError, match="also in"):  # the same probes twice
        compare_pooled([(a1, b1), (a1, b1)], metric)
    assert main(["compare", str(a1), str(b1), str(a2), str(b2), "--metric", metric[0]]) == 0
    out = capsys.readouterr().out
    assert f"B = {b1} + {b2}" in out and out.rstrip().endswith("6    3    1")
    assert main(["compare", str(a1), str(b1), str(a2)]) != 0
    assert "in pairs" in capsys.readouterr().err
    half = write_run(tmp_path / "half", [1.0, 1.0])  # 2 of a1's 4 probes
    assert main(["compare", str(a1), str(half), "--metric", metric[0]]) == 0
    assert ("note: 2 probe(s) were scored by only one run of a pair and are not compared"
            ) in capsys.readouterr().out


def test_compare_refuses_runs_on_different_probes_and_metrics_neither_scored(tmp_path) -> None:
    """Two halves given as one pair, or a mistyped metric, is an error saying what to do,
    not a table of dashes with n = 0."""
    from memlab.errors import ConfigError
    from memlab.eval.compare import compare_runs

    test = write_run(tmp_path / "test", [1.0, 0.0])
    dev = write_run(tmp_path / "dev", [1.0, 1.0], offset=2)
    with pytest.raises(ConfigError, match=r"share no probe \(2 and 2 scored\).*compare A1 B1 "
                       r"A2 B2"):
        compare_runs(test, dev)
    with pytest.raises(ConfigError, match=r"session\.recall_all@50 not scored in both runs; "
                       r"they share: session\.recall_all@5$"):
        compare_runs(test, test, ["session.recall_all@50"])
    with pytest.raises(ConfigError, match=r": not a run directory \(no items\.jsonl\); it "
                       r"holds 2 run directories, e\.g\. .*dev$"):
        compare_runs(tmp_path, test)
    with pytest.raises(ConfigError, match=r"nope: no such run directory$"):
        compare_runs(tmp_path / "nope", test)
    with pytest.raises(ConfigError, match=r"items\.jsonl: not a run directory \(a file"):
        compare_runs(test / "items.jsonl", test)
