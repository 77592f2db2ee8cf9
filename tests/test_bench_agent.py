"""``python -m memlab.bench agent`` on a few memories: the table it prints (figures are
printed, never asserted: speed is measured in benchmarks, not in tests)."""

from __future__ import annotations

import importlib.util

import pytest

from memlab.bench.__main__ import main


@pytest.mark.slow
def test_agent_bench_prints_ingest_and_search_rows_for_both_systems(capsys, monkeypatch,
                                                                     tmp_path) -> None:
    monkeypatch.setenv("MEMLAB_CACHE_DIR", str(tmp_path / "outer-cache"))  # restored after
    monkeypatch.setenv("MEM0_DIR", str(tmp_path / "mem0"))
    monkeypatch.setenv("MEM0_TELEMETRY", "False")
    with_mem0 = importlib.util.find_spec("mem0") is not None
    args = ["agent", "--ingest", "4", "--sizes", "30,60", "--queries", "3",
            "--import-conversations", "1"]
    assert main(args + ([] if with_mem0 else ["--no-mem0"])) == 0
    table = capsys.readouterr().out
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert rows[0] == "| measure | memlab agent | mem0 (local, infer=False) | memlab / mem0 |"
    measures = [r.split(" | ")[0].lstrip("| ") for r in rows[1:]]
    assert measures == [
        "add, one at a time, cold (memories/s, 4)",
        "add, one at a time, warm: embeddings cached (memories/s)",
        "add, batched, cold (memories/s, 4)", "add, batched, warm (memories/s)",
        "import an export (sessions/s, 1 LoCoMo conversations, 19 sessions)",
        "first search after an import, p50 / p95 ms (embeds it)",
        "search p50 / p95 ms at 30 memories", "search p50 / p95 ms at 60 memories"]
    cells = [r.split(" | ") for r in rows[1:]]
    assert all(c[1] != "—" for c in cells)  # memlab measured every row
    assert all((c[2] != "—") == with_mem0 for c in (cells[0], cells[2], cells[6], cells[7]))
    assert cells[4][2] == "—"  # mem0 imports no memlab export
