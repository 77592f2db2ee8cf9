"""Error-analysis and notebook helpers on a real run of the synthetic set (BM25, no model)."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import memlab
from memlab.data.paths import PROJECT_ROOT
from memlab.data.schema import Dataset
from memlab.errors import ConfigError
from memlab.eval import notebook
from memlab.eval.analysis import (
    age_bin,
    age_bin_labels,
    evidence_ranks,
    failure_rates,
    mean_memory_tokens,
    memory_tokens,
    miss_table,
    probe_table,
    retrieved_context,
    run_dataset,
    when_line,
)
from memlab.eval.cli import main
from memlab.eval.run import RunResult, evaluate
from memlab.metrics.base import mlflow_key


@pytest.fixture(scope="module")
def synthetic() -> Dataset:
    return memlab.load_dataset("synthetic")


@pytest.fixture(scope="module")
def bm25_run(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """Turns + BM25, k=10, retrieval only: needs no embedder and no LLM."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MEMLAB_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    try:
        return evaluate({"name": "analysis", "dataset": {"name": "synthetic"},
                         "retrieval": {"name": "bm25"}, "k": 10,
                         "tracking": {"mlflow": False}},
                        out=tmp_path_factory.mktemp("run"), progress=False)
    finally:
        mp.undo()


def test_age_bins_are_half_open_and_labelled() -> None:
    assert age_bin_labels() == ["<1 d", "1–7 d", "7–30 d", "30–90 d", "90–180 d",
                                "180–365 d", "≥365 d"]
    assert age_bin(0.0) == "<1 d" and age_bin(0.999) == "<1 d"
    assert age_bin(1.0) == "1–7 d" and age_bin(364.9) == "180–365 d"
    assert age_bin(365.0) == "≥365 d" and age_bin(5000) == "≥365 d"
    assert age_bin(None) is None and age_bin(math.nan) is None
    assert age_bin(3, edges=(0, 2, math.inf)) == "≥2 d"


def test_probe_table_verdicts_and_evidence_ages(bm25_run: RunResult, synthetic: Dataset) -> None:
    table = probe_table(bm25_run.items(), synthetic, "turn.recall_any@10")
    assert len(table) == 48
    scored = table["failed"].notna()
    assert scored.sum() == 44  # the 4 abstention probes have no evidence to recall
    assert table.loc[~scored, "turn.recall_any@10"].isna().all()
    assert int(table["failed"].eq(True).sum()) == 12  # BM25 recall_any@10 = 32/44 on turns
    gym = table.set_index("probe_id").loc["synth-00:q01"]
    # asked 2024-01-23 12:00, evidence s4:t5 said 2024-01-22 13:10:15
    assert gym["evidence_age_days"] == pytest.approx((12 * 3600 - 13 * 3600 - 615
                                                      + 86_400) / 86_400)
    assert gym["age_bin"] == "<1 d" and gym["evidence_span_days"] == 0
    hikes = table.set_index("probe_id").loc["synth-00:q05"]  # s3:t7, s7:t9, s8:t3
    asked = datetime.fromisoformat("2024-02-13T18:05:00+00:00")
    conversation = synthetic["synth-00"]
    ages = [(asked - conversation.turn(t).at).total_seconds() / 86_400
            for t in ("s3:t7", "s7:t9", "s8:t3")]
    assert hikes["evidence_age_days"] == pytest.approx(min(ages))
    assert hikes["evidence_span_days"] == pytest.approx(max(ages) - min(ages))
    oldest = probe_table(bm25_run.items(), synthetic, age_of="oldest").set_index("probe_id")
    assert oldest.loc["synth-00:q05", "evidence_age_days"] == pytest.approx(max(ages))
    with pytest.raises(ValueError, match="age_of"):
        probe_table(bm25_run.items(), synthetic, age_of="middle")


def test_failure_rates_match_the_verdicts(bm25_run: RunResult, synthetic: Dataset) -> None:
    table = probe_table(bm25_run.items(), synthetic, "turn.recall_any@10")
    rates = failure_rates(table, "category")
    overall = rates.iloc[0]
    assert overall["category"] == "all"
    assert (overall["n"], overall["failed"], overall["excluded"]) == (44, 12, 4)
    assert overall["rate"] == pytest.approx(12 / 44)
    assert overall["ci_low"] <= overall["rate"] <= overall["ci_high"]
    groups = rates.iloc[1:]
    assert list(groups["category"]) == sorted(groups["category"])
    assert groups["n"].sum() == 44 and groups["failed"].sum() == 12
    for _, row in groups.iterrows():
        part = table[table["category"] == row["category"]]
        assert row["failed"] == int(part["failed"].eq(True).sum())
        assert row["n"] == int(part["failed"].notna().sum())
    by_age = failure_rates(table, "age_bin")
    assert list(by_age["age_bin"]) == ["all", *age_bin_labels()]  # young to old, even empty
    assert by_age.iloc[1:]["n"].sum() == 44


def test_retrieved_context_marks_evidence_and_lists_what_was_missed(
        synthetic: Dataset) -> None:
    row: dict[str, Any] = {
        "conversation_id": "synth-00", "asked_at": "2024-01-23T12:00:00+00:00",
        "evidence_turn_ids": ["s4:t5", "s3:t3"],
        "retrieved": [
            {"id": "u1", "score": 2.5, "session_id": "s1", "source_turn_ids": ["s1:t1"],
             "at": "2024-01-08T18:42:00+00:00", "tokens": 4},
            {"id": "u2", "score": 2.0, "session_id": "s4",
             "source_turn_ids": ["s4:t4", "s4:t5"], "at": "2024-01-22T13:10:15+00:00",
             "tokens": 20},
        ],
    }
    frame = retrieved_context(row, synthetic)
    assert list(frame["unit"]) == ["u1", "u2", "s3:t3"]
    assert list(frame["evidence"]) == ["", "yes", "missed"]
    assert list(frame["rank"].astype("object").fillna(0)) == [1, 2, 0]
    assert frame.loc[1, "text"].endswith("user: My gym membership costs $25 a month.")
    assert " / " in frame.loc[1, "text"]  # a unit of two turns shows both
    assert frame.loc[0, "days_before"] == pytest.approx(14.7)
    top = retrieved_context(row, synthetic, top=1)
    assert list(top["evidence"]) == ["", "missed", "missed"]
    assert memory_tokens([row, {**row, "retrieved": []}, {**row, "error": "x"}]) == [24, 0]


def test_memory_tokens_of_a_run(bm25_run: RunResult) -> None:
    counts = memory_tokens(bm25_run.items())
    assert len(counts) == 48 and all(c > 0 for c in counts)
    shown = [sum(h["tokens"] for h in row["retrieved"]) for row in bm25_run.items()]
    assert counts == shown
    assert mean_memory_tokens(bm25_run.run_dir) == pytest.approx(sum(shown) / 48)


def test_display_paths_never_show_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    assert notebook.display_path(PROJECT_ROOT / "runs" / "x") == "runs/x"
    assert notebook.display_path(PROJECT_ROOT) == "."
    assert notebook.display_path(PROJECT_ROOT.parent / "shared" / "d.json") == \
        "../shared/d.json"
    home = Path("/nonexistent-home")
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: home))
    assert notebook.display_path(home / ".cache" / "memlab") == "~/.cache/memlab"
    assert notebook.display_uri(f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}") == \
        "sqlite:///mlflow.db"
    assert notebook.display_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_setup_keeps_variables_already_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    monkeypatch.setenv("MEMLAB_RUNS_DIR", str(PROJECT_ROOT / "runs" / "elsewhere"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{PROJECT_ROOT / 'x.db'}")
    where = notebook.setup()
    assert where["runs"] == "runs/elsewhere" and where["mlflow"] == "sqlite:///x.db"
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "0"
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"


def test_metric_names_round_trip_through_mlflow_keys(bm25_run: RunResult) -> None:
    names = list(bm25_run.summary["metrics"])
    assert any("@" in n for n in names)
    for name in names:
        assert notebook.metric_name(mlflow_key(name)) == name


def test_tidy_runs_and_per_category(tmp_path: Path) -> None:
    a, b, other = tmp_path / "a", tmp_path / "b", tmp_path / "other"
    runs = pd.DataFrame({
        "run_id": ["2", "1", "3"], "start_time": pd.to_datetime([2, 1, 3], unit="s"),
        "tags.memlab.run_dir": [str(b), str(a), str(other)],
        "params.memory.params.chunker.name": ["turn", "turn", "window"],
        "params.memory.params.retrieval.name": ["dense", "bm25", "bm25"],
        "metrics.turn.recall_any_at_10": [0.5, 0.25, 0.9],
        "metrics.turn.recall_any_at_10.single-hop": [1.0, 0.5, 1.0],
        "metrics.turn.recall_any_at_10.adversarial": [None, None, None],
        "metrics.turn.recall_any_at_10.ci_low": [0.1, 0.1, 0.1],
    })
    tidy = notebook.tidy_runs(runs, run_dirs=[a, b])
    assert list(tidy["run_id"]) == ["1", "2"]  # oldest first, other run dropped
    assert "metrics.turn.recall_any@10" in tidy.columns
    heat = notebook.per_category(tidy, "turn.recall_any@10")
    assert list(heat.index) == ["turn / bm25", "turn / dense"]
    assert list(heat.columns) == ["all", "single-hop"]  # all-empty category dropped
    assert heat.loc["turn / dense", "all"] == 0.5


def test_plots_carry_titles_and_axis_labels(bm25_run: RunResult, synthetic: Dataset) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = failure_rates(probe_table(bm25_run.items(), synthetic), "category")
    axes = [
        notebook.plot_sessions(synthetic),
        notebook.plot_rates(rates, "category", title="t", xlabel="category"),
        notebook.plot_pareto(["a", "b", "c"], [10, 20, 30], [0.2, 0.5, 0.4], xlabel="tokens",
                             ylabel="recall", title="p"),
        notebook.plot_heatmap(pd.DataFrame({"x": [0.1, None]}, index=["r1", "r2"]),
                              label="recall", title="h", xlabel="c", ylabel="r"),
    ]
    for ax in axes:
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    plt.close("all")


def _hit(session: str, *turns: str) -> dict[str, Any]:
    return {"id": f"{session}/{turns[0]}", "session_id": session, "source_turn_ids": list(turns)}


def _row(probe: str, sessions: list[str], turns: list[str], hits: list[dict[str, Any]],
         metrics: dict[str, float | None]) -> dict[str, Any]:
    return {"probe_id": probe, "category": "multi", "question": f"{probe}?",
            "evidence_session_ids": sessions, "evidence_turn_ids": turns, "retrieved": hits,
            "metrics": metrics, "error": None}


def test_evidence_ranks_count_distinct_sessions_or_unit_positions() -> None:
    hits = [_hit("s1", "a"), _hit("s1", "b"), _hit("s2", "c", "d"), _hit("s3", "e")]
    row = _row("p", ["s3", "s9", "s1"], ["d", "a", "z"], hits, {})
    assert evidence_ranks(row) == {"s3": 3, "s9": None, "s1": 1}
    assert evidence_ranks(row, "turn") == {"d": 3, "a": 1, "z": None}
    with pytest.raises(ConfigError, match="'turn' or 'session'"):
        evidence_ranks(row, "unit")


def test_miss_table_says_how_far_each_miss_is() -> None:
    hits = [_hit(f"s{i}", f"t{i}") for i in range(1, 13)]
    rows = [_row("found", ["s1", "s2"], [], hits, {"session.recall_all@2": 1.0}),
            _row("near", ["s1", "s4"], [], hits, {"session.recall_all@2": 0.0}),
            _row("deep", ["s1", "s9"], [], hits, {"session.recall_all@2": 0.0}),
            _row("gone", ["s1", "x"], [], hits, {"session.recall_all@2": 0.0}),
            _row("many", ["s1", "s2", "s3"], [], hits, {"session.recall_all@2": 0.0}),
            _row("abstain", [], [], hits, {"session.recall_all@2": None})]
    table = miss_table(rows, "session.recall_all@2")
    assert table["probe_id"].tolist() == ["near", "deep", "gone", "many"]
    assert table["kind"].tolist() == ["within 2k", "deeper than 2k", "not ranked",
                                      "more evidence than k"]
    assert table["ranks"].tolist() == [[1, 4], [1, 9], [1, None], [1, 2, 3]]
    # recall_any is decided by the best rank
    any_rows = [_row("any", ["s5", "s11"], [], hits, {"session.recall_any@2": 0.0})]
    assert miss_table(any_rows, "session.recall_any@2")["kind"].tolist() == ["deeper than 2k"]
    with pytest.raises(ConfigError, match=r"LEVEL\.recall_all@K.*; this run has "
                       r"session\.recall_all@2, session\.recall_any@2$"):
        miss_table([*rows, *any_rows], "locomo_f1")
    # a token-budget metric: below 1 is a miss; ranked evidence lay past the budget
    budget = [_row("cut", ["s1", "s9"], [], hits, {"session.budget_evidence_recall@50": 0.5}),
              _row("lost", ["s1", "x"], [], hits, {"session.budget_evidence_recall@50": 0.5}),
              _row("full", ["s1"], [], hits, {"session.budget_evidence_recall@50": 1.0})]
    with pytest.raises(ConfigError, match=r"this run did not score 'session\.recall_all@7'; "
                       r"this run has session\.budget_evidence_recall@50$"):
        miss_table(budget, "session.recall_all@7")
    table = miss_table(budget, "session.budget_evidence_recall@50")
    assert table["kind"].tolist() == ["ranked, past the token budget", "not ranked"]
    assert table["ranks"].tolist() == [[1, 9], [1, None]]


def test_miss_table_with_a_dataset_says_when() -> None:
    from memlab.data.schema import Conversation, Role, Session, Turn

    def session(name: str, day: int) -> Session:
        at = datetime(2023, 3, day, 12, tzinfo=UTC)
        return Session(name, at, (Turn(f"{name}-t", name, "user", Role.USER, "hi", at),))

    conversation = Conversation("c", ("user",), (session("s1", 15), session("s2", 10),
                                                 session("s3", 1)), ())
    dataset = Dataset("d", (conversation,))
    hits = [_hit("s1", "s1-t"), _hit("s3", "s3-t")]
    row = {**_row("p", ["s1", "s2"], ["s1-t", "s2-t"], hits, {"session.recall_all@2": 0.0,
                                                                 "turn.recall_all@2": 0.0}),
           "conversation_id": "c", "question": "What did I post 5 days ago?",
           "asked_at": "2023-03-20T05:50:00+00:00"}
    table = miss_table([row], "session.recall_all@2", dataset)
    miss = next(table.itertuples())
    assert miss.named == [(date(2023, 3, 15), date(2023, 3, 15))]
    assert miss.evidence == [(datetime(2023, 3, 10, 12, tzinfo=UTC), None, False),
                             (datetime(2023, 3, 15, 12, tzinfo=UTC), 1, True)]
    assert when_line(miss) == ("asked 2023-03-20 Mon; names 2023-03-15; evidence "
                               "2023-03-10 Fri #-, 2023-03-15 Wed #1*")
    turns = miss_table([row], "turn.recall_all@2", dataset)
    assert [at.day for at, _, _ in turns["evidence"][0]] == [10, 15]
    assert "evidence" not in miss_table([row], "session.recall_all@2").columns
    other = Dataset("d", (Conversation("c", ("user",), (session("s1", 15),), ()),))
    with pytest.raises(ConfigError, match=r"session 's2' of probe 'p'.*the run replayed"):
        miss_table([row], "session.recall_all@2", other)


@pytest.fixture(scope="module")
def longmemeval_run(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """BM25 over turns on 60 real LongMemEval oracle questions, top 30 units stored."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MEMLAB_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    try:
        return evaluate({"name": "misses", "dataset": {"name": "longmemeval",
                                                       "probes": {"sample": 60}},
                         "chunker": {"name": "turn"}, "retrieval": {"name": "bm25"}, "k": 30,
                         "tracking": {"mlflow": False}},
                        out=tmp_path_factory.mktemp("run"), progress=False)
    finally:
        mp.undo()


@pytest.mark.parametrize("level", ["turn", "session"])
@pytest.mark.parametrize("run", ["bm25_run", "longmemeval_run"])
def test_evidence_ranks_agree_with_the_run_s_own_recall(
        run: str, level: str, request: pytest.FixtureRequest) -> None:
    checked = 0
    for row in request.getfixturevalue(run).items():
        for k in (1, 3, 5, 10, 20, 50):
            recall = row["metrics"].get(f"{level}.recall_all@{k}")
            if recall is None or row.get("error"):
                continue
            # the ranks the row records reach the run's depth (100 units), as the metric
            ranks = list(evidence_ranks(row, level).values())
            assert recall == float(all(r is not None and r <= k for r in ranks)), row["probe_id"]
            any_recall = row["metrics"][f"{level}.recall_any@{k}"]
            assert any_recall == float(any(r is not None and r <= k for r in ranks))
            checked += 1
            # an older row (no recorded ranks) reads its stored top k: it agrees where
            # the stored list reaches k
            old = {key: v for key, v in row.items() if key != "evidence_ranks"}
            reach = len(row["retrieved"]) if level == "turn" else len(
                {h["session_id"] for h in row["retrieved"]})
            stored = list(evidence_ranks(old, level).values())
            if None not in stored or reach >= k:
                assert recall == float(all(r is not None and r <= k for r in stored))
    assert checked > 200


def test_misses_command_on_a_real_run(bm25_run: RunResult, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    metric = "turn.recall_all@3"
    table = miss_table(bm25_run.items(), metric)
    failing = [r for r in bm25_run.items()
               if not r.get("error") and r["metrics"].get(metric) is not None
               and r["metrics"][metric] < 1]
    assert len(table) == len(failing) > 0
    assert main(["misses", str(bm25_run.run_dir), "--metric", metric]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{len(failing)} of ")
    assert all(q in out for q in table["question"])


def test_misses_with_dates_on_a_real_longmemeval_run(
        longmemeval_run: RunResult, capsys: pytest.CaptureFixture[str]) -> None:
    from memlab.retrieval.timeref import time_spans

    metric = "session.recall_all@1"
    dataset = run_dataset(longmemeval_run.run_dir)
    table = miss_table(longmemeval_run.items(), metric, dataset)
    started = {(c.id, s.id): s.started_at for c in dataset for s in c.sessions}
    rows = {r["probe_id"]: r for r in longmemeval_run.items()}
    named = 0
    for miss in table.itertuples():
        row = rows[miss.probe_id]
        assert [at for at, _, _ in miss.evidence] == sorted(
            started[(row["conversation_id"], s)] for s in row["evidence_session_ids"])
        assert sorted(r for _, r, _ in miss.evidence if r is not None) == [
            r for r in miss.ranks if r is not None]
        named += bool(time_spans(row["question"], datetime.fromisoformat(row["asked_at"])))
        assert len(miss.named) == len(
            time_spans(row["question"], datetime.fromisoformat(row["asked_at"])))
    assert len(table) > 10 and named > 0  # LongMemEval's temporal questions name times
    assert main(["misses", str(longmemeval_run.run_dir), "--metric", metric, "--dates"]) == 0
    out = capsys.readouterr().out
    width = max(len(c) for c in table["category"])  # category names whole, not cut
    assert out.count("\n" + " " * (width + 1) + "asked ") == len(table)
    assert all(f"\n{c:<{width}} [" in out for c in table["category"])
