"""Evaluation runs against a misbehaving model server (memlab's fake Ollama on 127.0.0.1):
a server that is down, one that answers HTTP 200 with no text, a resume after a kill
mid-write, healing errored probes in place, and two processes on one run directory."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from memlab.errors import ConfigError
from memlab.eval.items import read_items
from memlab.eval.run import evaluate
from memlab.llm.cache import ResponseCache
from memlab.testing import FakeOllama

ROOT = Path(__file__).resolve().parents[1]
RECALL = "turn.recall_any@10"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMLAB_CACHE_DIR", str(tmp_path / "cache"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(port: int | None = None, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"name": "faults", "dataset": {"name": "synthetic"},
                              "retrieval": {"name": "bm25"}, "tracking": {"mlflow": False},
                              "fail_on_error": 1.0}
    if port is not None:
        config["answer"] = {"llm": {"name": "ollama", "params": {
            "model": "qwen3:4b", "host": f"http://127.0.0.1:{port}", "retries": 0,
            "timeout": 10}}, "max_answer_tokens": 16}
    return {**config, **extra}


def _chats(server: FakeOllama) -> int:
    return sum(path == "/api/chat" for _, path, _ in server.requests)


def test_llm_errors_keep_retrieval_metrics_and_retry_errors_heals_in_place(
        tmp_path: Path) -> None:
    port, out = _free_port(), tmp_path / "run"
    down = evaluate(_config(port), out=out, progress=False)  # nothing listens on port
    assert down.summary["errors"]["probes"] == 48
    retrieval_only = evaluate(_config(), out=tmp_path / "retrieval", progress=False)
    want = retrieval_only.summary["metrics"][RECALL]["all"]
    assert want["n"] == 44  # 4 probes have no evidence to find
    got = down.summary["metrics"][RECALL]["all"]
    assert (got["n"], got["mean"]) == (want["n"], want["mean"])  # retrieval worked for each
    with FakeOllama(port=port) as server:
        kept = evaluate(_config(port), out=out, progress=False)
        assert _chats(server) == 0 and kept.summary["errors"]["probes"] == 48
        healed = evaluate(_config(port), out=out, progress=False, retry_errors=True)
        assert _chats(server) == 48
    assert healed.summary["errors"]["probes"] == 0 and healed.summary["retried_errors"] == 48
    assert len(healed.items()) == 48 and all(row["answer"] for row in healed.items())
    assert len(read_items(out / "items.jsonl")) == 48  # no probe counted twice
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["retried_errors"] == 48 and metrics["metrics"]["exact_match"]["all"]["n"] == 48


def test_an_empty_completion_is_an_error_and_is_not_cached(tmp_path: Path) -> None:
    port, out = _free_port(), tmp_path / "run"
    with FakeOllama(port=port) as server:
        server.reply_empty(times=48)
        empty = evaluate(_config(port), out=out, progress=False)
        assert empty.summary["errors"]["probes"] == 48
        assert all("empty completion" in row["error"] for row in empty.items())
        assert len(ResponseCache(tmp_path / "cache" / "llm" / "responses.sqlite")) == 0
        healed = evaluate(_config(port), out=out, progress=False, retry_errors=True)
    assert healed.summary["errors"]["probes"] == 0
    assert not any(row["cache_hit"] for row in healed.items())


def test_resume_after_a_partial_line_counts_every_probe_in_memory_jsonl(tmp_path: Path) -> None:
    full = evaluate(_config(), out=tmp_path / "full", progress=False)
    killed = tmp_path / "killed"
    killed.mkdir()
    shutil.copy(tmp_path / "full" / "config.resolved.yaml", killed)
    lines = (tmp_path / "full" / "items.jsonl").read_text().splitlines(keepends=True)
    (killed / "items.jsonl").write_text("".join(lines[:17]) + lines[17][:40])
    memory = (tmp_path / "full" / "memory.jsonl").read_text().splitlines(keepends=True)
    (killed / "memory.jsonl").write_text("".join(memory[:2]))
    resumed = evaluate(_config(), out=killed, progress=False)
    latest = {row["conversation_id"]: row for row in read_items(killed / "memory.jsonl")}
    assert {cid: row["probes"] for cid, row in latest.items()} == {
        row["conversation_id"]: row["probes"] for row in read_items(
            tmp_path / "full" / "memory.jsonl")}
    assert all(row["probes"] == 12 for row in latest.values())
    assert resumed.summary["metrics"] == full.summary["metrics"]


def test_damaged_run_records_are_errors_naming_file_and_line(tmp_path: Path) -> None:
    from memlab.errors import MemlabError
    from memlab.eval.compare import compare_runs as compare

    full = evaluate(_config(), out=tmp_path / "full", progress=False)
    lines = (full.run_dir / "items.jsonl").read_text().splitlines(keepends=True)
    garbled = tmp_path / "garbled"
    shutil.copytree(full.run_dir, garbled)
    (garbled / "items.jsonl").write_text("".join(lines[:5]) + "{oops\n" + "".join(lines[6:]))
    with pytest.raises(MemlabError, match=r"items.jsonl: damaged: line 6 is not a JSON row "
                       r"\(starts '\{oops\\n'\); the 5 rows before it read fine"):
        compare(full.run_dir, garbled)
    cut = tmp_path / "cut"
    shutil.copytree(full.run_dir, cut)
    (cut / "items.jsonl").write_text("".join(lines[:-1]) + lines[-1][:30])
    with pytest.raises(MemlabError, match=r"damaged: line 48, the last, is cut off in a "
                       r"finished run \(47 complete rows"):
        compare(full.run_dir, cut)
    (cut / "metrics.json").write_text('{"metrics": ')
    from memlab.eval.report import report

    with pytest.raises(MemlabError, match=r"metrics.json \(the run's summary\): damaged "
                       r"JSON at line 1, column 13"):
        report([cut])


def test_resuming_a_finished_run_after_a_kill_mid_write(tmp_path: Path) -> None:
    """A finished run run again (say with retry_errors) and killed mid-write: its files
    end in a cut-off line beside the old metrics.json; the next resume repairs both."""
    full = evaluate(_config(), out=tmp_path / "full", progress=False)
    again = tmp_path / "again"
    shutil.copytree(full.run_dir, again)
    for name in ("items.jsonl", "memory.jsonl"):
        with (again / name).open("a") as fh:
            fh.write('{"probe_id": "cut off')
    (again / "items.jsonl").write_text("".join(
        (full.run_dir / "items.jsonl").read_text().splitlines(keepends=True)[:40])
        + '{"probe_id": "cut')
    resumed = evaluate(_config(), out=again, progress=False)
    assert resumed.summary["metrics"] == full.summary["metrics"]
    assert (again / "memory.jsonl").read_text().endswith("\n")


_HOLDER = """
import sys, time
from pathlib import Path
from memlab.eval.lock import lock_run_dir
lock_run_dir(Path(sys.argv[1]))
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_process_on_a_run_directory_fails_clearly(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match=rf"in use by another memlab process "
                                              rf"\(pid {holder.pid}\)"):
            evaluate(_config(), out=out, progress=False)
        config = tmp_path / "faults.yaml"
        config.write_text(yaml.safe_dump(_config()))
        cli = subprocess.run([sys.executable, "-m", "memlab.eval", "run", str(config),
                              "--out", str(out), "--no-mlflow"], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
        assert cli.returncode == 2 and f"pid {holder.pid}" in cli.stderr
        assert not (out / "items.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    done = evaluate(_config(), out=out, progress=False)  # the lock died with its process
    assert done.summary["probes"] == 48
    again = evaluate(_config(), out=out, progress=False)  # the same process may reopen it
    assert again.summary == done.summary


def test_a_template_may_allow_empty_answers(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    builtin = (ROOT / "memlab" / "prompts" / "builtin" / "answer_short.j2").read_text()
    (templates / "answer_short.j2").write_text(
        builtin.replace("output: text\n", "output: text\nallow_empty: true\n", 1))
    port = _free_port()
    with FakeOllama(port=port) as server:
        server.reply_empty(times=48)
        run = evaluate(_config(port, template_dirs=[str(templates)]), out=tmp_path / "run",
                       progress=False)
    assert run.summary["errors"]["probes"] == 0
    assert {row["answer"] for row in run.items()} == {""}


def test_cli_counts_and_run_paths_are_checked_before_any_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A count of 0 or a mistyped run folder is an error naming it, not a silent serial run,
    an empty table or a traceback from Optuna."""
    from memlab.eval.cli import main

    root = Path(__file__).resolve().parents[1]
    cases = [
        (["run", str(root / "experiments/quickstart.yaml"), "--workers", "0", "--no-mlflow"],
         "error: workers must be an integer >= 1, got 0"),
        (["tune", str(root / "experiments/locomo-tune.yaml"), "--trials", "0",
          "--out", str(tmp_path / "tune")], "error: trials must be an integer >= 1, got 0"),
        (["report", str(tmp_path / "no-such-runs")],
         f"error: {tmp_path / 'no-such-runs'}: no such file or directory"),
        (["report", str(tmp_path)],
         f"error: no run directories (holding metrics.json) under {tmp_path}"),
        (["judge-check", "--judge", "mock", "--per-type", "0"],
         "error: judge-check: per_type must be an integer >= 1, got 0"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert capsys.readouterr().err.strip() == message
    assert not (tmp_path / "tune").exists()


def test_an_interrupted_run_says_what_is_saved_and_how_to_resume(tmp_path: Path) -> None:
    """SIGINT (Ctrl-C) mid-run: one line, no traceback; the rows written so far stay."""
    import signal
    import time

    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "memlab.eval", "run", str(ROOT / "experiments" / "quickstart.yaml"),
         "--set",
         "answer=null", "--set", "dataset.name=locomo", "--no-mlflow", "--out", str(out)],
        cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        # a shell's background job ignores SIGINT, and so would the run (as in CI):
        # Python only turns SIGINT into KeyboardInterrupt when it starts with the default
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out / "memory.jsonl").exists():
        time.sleep(0.05)
    for _ in range(200):  # again until it ends: a native library may hold it a moment
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=0.3)
            break
        except subprocess.TimeoutExpired:
            continue
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr  # signalled from its start until it ended
    assert "Traceback" not in stderr
    assert re.search(rf"interrupted: \d+ finished probe rows are saved in {re.escape(str(out))};"
                     r" the same command resumes it", stderr), stderr[-500:]


def test_ray_flags_without_the_ray_executor_are_refused_not_ignored(
        capsys: pytest.CaptureFixture[str]) -> None:
    from memlab.eval.cli import main

    quickstart = str(ROOT / "experiments" / "quickstart.yaml")

    assert main(["run", quickstart, "--shard-size", "0",
                 "--task-resources", "{}", "--no-mlflow"]) == 2
    assert "--shard-size, --task-resources need --executor ray" in capsys.readouterr().err
    assert main(["run", quickstart, "--executor", "ray",
                 "--task-resources", "{bad", "--no-mlflow"]) == 2
    assert "--task-resources: not JSON" in capsys.readouterr().err
    assert main(["validate", quickstart, "--set",
                 "dataset.name=locomoo"]) == 2
    assert "dataset.name: unknown dataset loader 'locomoo'. Did you mean 'locomo'?" in \
        capsys.readouterr().err


def test_retry_errors_heals_a_sweep_and_repeats_in_place(tmp_path: Path) -> None:
    from memlab.eval.repeat import evaluate_repeats
    from memlab.eval.sweep import sweep

    port = _free_port()
    grid = _config(port, grid={"k": [3, 5]}, dataset={
        "name": "synthetic", "probes": {"sample": 6, "seed": 0}})
    down = sweep(grid, out=tmp_path / "sweep", progress=False, track=False)
    assert list(down["errors"]) == [6, 6]
    one = _config(port, dataset={"name": "synthetic", "probes": {"sample": 4, "seed": 0}})
    assert all(run.summary["errors"]["probes"] == 4 for run in evaluate_repeats(
        one, 2, out=tmp_path / "repeats", progress=False, track=False).runs)
    with FakeOllama(port=port) as server:
        healed = sweep(grid, out=tmp_path / "sweep", progress=False, track=False,
                       retry_errors=True)
        assert list(healed["errors"]) == [0, 0] and _chats(server) == 12
        again = evaluate_repeats(one, 2, out=tmp_path / "repeats", progress=False,
                                 track=False, retry_errors=True)
        assert [run.summary["errors"]["probes"] for run in again.runs] == [0, 0]
        assert _chats(server) == 12 + 8
