"""``python -m memlab.bench search``: every table row is produced (the default, all
strategies, had failed since the as_of-filtered rows were added), and its counts are
checked before any work. Speed itself is not asserted: the bench prints it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from memlab.bench import count, fractions, non_negative


def test_count_options_refuse_zero_and_bad_fractions_before_any_work() -> None:
    assert (count("3"), non_negative("0"), fractions("0.5,0.1")) == (3, 0, [0.5, 0.1])
    for parse, text in ((count, "0"), (count, "x"), (non_negative, "-1"),
                        (fractions, "2"), (fractions, "0"), (fractions, "a,b"), (fractions, "")):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)
    from memlab.bench.metrics import main as metrics_main
    from memlab.bench.search import main as search_main

    with pytest.raises(SystemExit):
        metrics_main(["--repeat", "0"])
    with pytest.raises(SystemExit):
        search_main(["--fractions", "1.5"])


@pytest.mark.slow
def test_bench_search_writes_every_strategy_and_store_row(tmp_path: Path) -> None:
    from memlab.bench.search import main

    out = tmp_path / "rows.json"
    assert main(["--sizes", "2k", "--queries", "8", "--embed-queries", "4",
                 "--throughput-sample", "16", "--fractions", "0.5", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    names = [r["name"] for r in rows]
    assert names == [
        "bm25", "dense (exact)", "hybrid (rrf)", "hybrid (weighted)", "recency (dense)", "mmr",
        "dense (faiss-ivf)", "dense (exact), filtered", "dense (faiss-ivf), filtered",
        "hybrid (rrf) on faiss-ivf", "recency on faiss-ivf", "dense (faiss-hnsw)",
        "dense (faiss-hnsw), filtered", "full_context", "none", "oracle", "memory", "sqlite"]
    assert all(r["size"] == 2000 and r["queries"] > 0 and r["p50_ms"] >= 0 for r in rows)
    approximate = [r for r in rows if r["recall_at_10"] is not None]
    assert len(approximate) == 4 and all(0.9 <= r["recall_at_10"] <= 1 for r in approximate)
