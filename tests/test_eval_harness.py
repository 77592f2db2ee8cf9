"""The evaluation harness end to end: run directory, reproducibility, resume, config errors."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from memlab.errors import ConfigError, MemlabError
from memlab.eval.config import expand_grid, load_config
from memlab.eval.items import read_items, without_timing
from memlab.eval.run import evaluate

ROOT = Path(__file__).resolve().parents[1]


def _config(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "t", "dataset": {"name": "synthetic"}, "retrieval": {"name": "bm25"},
        "tracking": {"mlflow": False},
    }
    base.update(extra)
    return base


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMLAB_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def test_run_directory_holds_config_environment_items_and_metrics(tmp_path: Path) -> None:
    result = evaluate(_config(), out=tmp_path / "run", progress=False)
    run = tmp_path / "run"
    resolved = yaml.safe_load((run / "config.resolved.yaml").read_text())
    memory = resolved["memory"]  # top-level retrieval moved into the memory, resolved
    assert "retrieval" not in resolved and "chunker" not in resolved
    assert memory["name"] == "flat"
    assert memory["params"]["chunker"] == {"name": "turn", "params": {}}  # default filled in
    assert memory["params"]["retrieval"] == {"name": "bm25", "params": {
        "k": 5, "threshold": None, "k1": 1.5, "b": 0.75, "method": "lucene",
        "stopwords": "en", "stemmer": "snowball"}}
    template = resolved["answer"]
    assert template is None  # retrieval only
    env = json.loads((run / "environment.json").read_text())
    assert len(env["git"]["commit"]) == 40
    assert env["packages"]["bm25s"]
    items = read_items(run / "items.jsonl")
    assert len(items) == 48 == result.summary["probes"]
    assert result.summary["errors"] == {"probes": 0, "ingest": 0}
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    recall = metrics["turn.recall_any@5"]
    assert recall["all"]["n"] == 44 and recall["all"]["n_excluded"] == 4  # 4 abstention
    assert recall["all"]["ci_low"] <= recall["all"]["mean"] <= recall["all"]["ci_high"]
    assert set(recall) == {"all", "knowledge-update", "multi-session", "single-session-assistant",
                           "single-session-preference", "single-session-user",
                           "temporal-reasoning"}
    frame = result.to_frame()
    assert len(frame) == 48 and "metrics.turn.recall_any@5" in frame.columns


def test_memory_footprint_and_ingest_time_per_conversation(tmp_path: Path) -> None:
    from memlab import load_dataset
    from memlab.tokens import count_tokens

    result = evaluate(_config(), out=tmp_path / "run", progress=False)
    rows = read_items(tmp_path / "run" / "memory.jsonl")
    conversations = list(load_dataset("synthetic"))
    assert [r["conversation_id"] for r in rows] == [c.id for c in conversations]
    turns = [t for c in conversations for t in c.turns()]
    assert sum(r["units"] for r in rows) == len(turns) == 390  # turn chunker: a unit a turn
    assert sum(r["probes"] for r in rows) == 48
    footprint = result.summary["footprint"]
    assert footprint["conversations"] == 4 and footprint["units"]["total"] == 390
    # units are speaker-prefixed turns: "<speaker>: <text>"
    assert footprint["tokens"]["total"] == sum(count_tokens(f"{t.speaker}: {t.text}")
                                               for t in turns)
    texts = sum(len(f"{t.speaker}: {t.text}".encode()) for t in turns)
    assert texts < footprint["bytes"]["total"] < texts + 400 * 390  # + ids, times, metadata
    ingest = result.summary["latency_seconds"]["ingest_per_unit"]
    assert ingest["n"] == 4 and 0 < ingest["p50"] <= ingest["max"]


def test_none_is_the_floor_and_oracle_the_ceiling(tmp_path: Path) -> None:
    floor = evaluate(_config(retrieval={"name": "none"}), out=tmp_path / "a", progress=False)
    ceiling = evaluate(_config(retrieval={"name": "oracle"}), out=tmp_path / "b",
                       progress=False)
    for name in ("turn.recall_any@5", "turn.recall_all@50", "session.recall_any@1"):
        assert floor.summary["metrics"][name]["all"]["mean"] == 0.0
        assert ceiling.summary["metrics"][name]["all"]["mean"] == 1.0


def test_two_runs_give_identical_items_apart_from_timing(tmp_path: Path) -> None:
    config = _config(answer={"llm": {"name": "mock", "params": {"responses": ["blue", "2"]}}})
    cold = evaluate(config, out=tmp_path / "cold", progress=False).items()
    first = evaluate(config, out=tmp_path / "one", progress=False).items()
    second = evaluate(config, out=tmp_path / "two", progress=False).items()
    assert not any(r["cache_hit"] for r in cold)
    assert all(r["cache_hit"] for r in first + second)
    assert [without_timing(r) for r in first] == [without_timing(r) for r in second]
    assert [r["answer"] for r in cold] == [r["answer"] for r in first]


def test_a_cache_hit_keeps_the_models_own_generation_seconds(tmp_path: Path) -> None:
    config = _config(answer={"llm": {"name": "mock", "params": {"responses": ["blue"]}}})
    cold = evaluate(config, out=tmp_path / "cold", progress=False)
    warm = evaluate(config, out=tmp_path / "warm", progress=False)
    seconds = {r["probe_id"]: r["llm"]["generation_seconds"] for r in cold.items()}
    assert all(not r["cache_hit"] for r in cold.items())
    assert all(r["cache_hit"] for r in warm.items())
    assert {r["probe_id"]: r["llm"]["generation_seconds"] for r in warm.items()} == seconds
    # the warm run's generate phase is the lookup; generate_model is the stored time
    assert warm.summary["latency_seconds"]["generate_model"] == \
        cold.summary["latency_seconds"]["generate_model"]
    assert "generate_model is the model's own time" in _table(warm)


def _table(result: Any) -> str:
    from memlab.eval.summary import render_table
    return render_table(result.summary)


def test_a_process_pool_gives_the_same_items_and_footprint(tmp_path: Path) -> None:
    alone = evaluate(_config(), out=tmp_path / "one", progress=False)
    pooled = evaluate(_config(), out=tmp_path / "two", workers=2, progress=False)
    assert [without_timing(r) for r in pooled.items()] == \
        [without_timing(r) for r in alone.items()]
    assert pooled.summary["metrics"] == alone.summary["metrics"]
    footprint = {k: v for k, v in pooled.summary["footprint"].items() if k != "ingest_seconds"}
    assert footprint == {k: v for k, v in alone.summary["footprint"].items()
                         if k != "ingest_seconds"}


def test_answers_record_prompt_hash_tokens_and_scores(tmp_path: Path) -> None:
    mock = {"name": "mock", "params": {"responses": ["Not mentioned in the conversation"]}}
    config = _config(answer={"llm": mock, "max_memory_tokens": 60}, cache={"llm": "off"})
    result = evaluate(config, out=tmp_path / "qa", progress=False)
    row = result.items()[0]
    assert len(row["llm"]["prompt_sha256"]) == 64
    assert row["llm"]["template"] == "answer_short"
    assert row["tokens"]["memory"] <= 60
    assert row["tokens"]["qwen_prompt"] > row["tokens"]["memory"]
    assert row["cache_hit"] is False
    abstention = [r for r in result.items() if r["abstention"]]
    assert abstention and all(r["metrics"]["locomo_f1"] == 1.0 for r in abstention)
    answerable = [r for r in result.items() if not r["abstention"]]
    # Only "in" is shared with any gold answer: "in the morning" -> P 1/4, R 1/2, F1 1/3.
    nonzero = {(r["gold"], round(r["metrics"]["locomo_f1"], 6)) for r in answerable
               if r["metrics"]["locomo_f1"]}
    assert nonzero == {("in the morning", round(1 / 3, 6))}
    assert sum(1 for r in answerable if r["metrics"]["locomo_f1"] == 0.0) == 42


def test_failed_calls_are_recorded_and_stop_the_run(tmp_path: Path) -> None:
    closed_port = _free_port()
    config = _config(answer={"llm": {"name": "openai", "params": {
        "base_url": f"http://127.0.0.1:{closed_port}/v1", "model": "qwen", "retries": 0}}},
        fail_on_error=0.5, cache={"llm": "off"})
    with pytest.raises(MemlabError, match=r"stopped: 12 of 12 probes failed"):
        evaluate(config, out=tmp_path / "broken", progress=False)
    rows = read_items(tmp_path / "broken" / "items.jsonl")
    assert len(rows) == 12  # the first conversation's probes are kept, each with its error
    assert all(r["error"].startswith("llm: ") for r in rows)
    assert all("127.0.0.1" in r["error"] for r in rows)


@pytest.mark.slow
def test_resume_after_a_real_kill_gives_the_same_metrics(tmp_path: Path) -> None:
    config = {**_config(), "dataset": {"name": "locomo"}, "name": "resume"}
    path = tmp_path / "resume.yaml"
    path.write_text(yaml.safe_dump(config))
    full = evaluate(load_config(path), out=tmp_path / "full", progress=False)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "memlab.eval", "run", str(path), "--out", str(killed),
         "--no-mlflow"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    items = killed / "items.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if items.exists() and items.stat().st_size > 0:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = read_items(items)
    assert 0 < len(partial) < 1986, "the kill must land part-way through the run"
    resumed = evaluate(load_config(path), out=killed, progress=False)
    got = json.loads((killed / "metrics.json").read_text())
    want = json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert got.pop("latency_seconds").keys() == want.pop("latency_seconds").keys()
    assert got["footprint"].pop("ingest_seconds") and want["footprint"].pop("ingest_seconds")
    assert got == want  # every metric, CI, count and token total; only timings differ
    assert len(resumed.items()) == len(full.items()) == 1986


def test_resuming_into_a_directory_of_another_config_is_refused(tmp_path: Path) -> None:
    evaluate(_config(), out=tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match="holds a run of a different config"):
        evaluate(_config(k=3), out=tmp_path / "run", progress=False)


def test_a_refused_resume_names_what_differs_and_settings_of_the_run_may_change(
        tmp_path: Path) -> None:
    first = evaluate(_config(), out=tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match=r"different config \(k: 10 -> 3\); resuming"):
        evaluate(_config(k=3), out=tmp_path / "run", progress=False)
    # how the run goes (workers, tracking, description) is not what it computes
    again = evaluate(_config(workers=2, description="the same, on two workers"),
                     out=tmp_path / "run", progress=False)
    assert again.summary["metrics"] == first.summary["metrics"]
    recorded = yaml.safe_load((tmp_path / "run" / "config.resolved.yaml").read_text())
    assert recorded["workers"] == 2  # the record keeps the latest


def test_the_record_pins_the_dataset_file_and_each_segment_of_the_run(tmp_path: Path) -> None:
    from tests.test_locomo import _record

    data = tmp_path / "tiny-locomo.json"
    data.write_text(json.dumps([_record()]))
    config = _config(dataset={"name": "locomo", "path": str(data)})
    evaluate(config, out=tmp_path / "run", progress=False)
    environment = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert environment["dataset"]["files"]["path"] == {
        "file": str(data.resolve()), "sha256": hashlib.sha256(data.read_bytes()).hexdigest()}
    assert [s["rows_before"] for s in environment["segments"]] == [0]
    assert environment["git"] == environment["segments"][0]["git"]
    evaluate(config, out=tmp_path / "run", progress=False)  # resumed: nothing left to do
    environment = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert [s["rows_before"] for s in environment["segments"]] == [0, 2]
    record = _record()
    record["qa"][0]["answer"] = "a dog"
    data.write_text(json.dumps([record]))
    with pytest.raises(ConfigError, match=r"the dataset changed since this run started "
                       r"\(dataset.path: another file or sha256\)"):
        evaluate(config, out=tmp_path / "run", progress=False)


def test_the_run_directory_must_be_a_directory_it_can_make(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    with pytest.raises(ConfigError, match=r"the run directory .*afile is a file"):
        evaluate(_config(), out=tmp_path / "afile", progress=False)
    with pytest.raises(ConfigError, match=r"cannot make the run directory .*: Not a directory"):
        evaluate(_config(), out=tmp_path / "afile" / "sub", progress=False)
    with pytest.raises(ConfigError, match=r"dataset= takes a loaded Dataset"):
        evaluate(_config(), out=tmp_path / "x", dataset="locomo", progress=False)
    with pytest.raises(ConfigError, match=r"a config is a YAML file's path, a dict or an "
                       r"ExperimentConfig; got list"):
        evaluate([1], progress=False)


def test_a_component_may_be_named_alone_and_a_misplaced_value_is_refused() -> None:
    import memlab

    config = load_config(_config(retrieval="hybrid", chunker="window"))
    assert config.memory.params["retrieval"]["name"] == "hybrid"
    with pytest.raises(ConfigError, match=r"retrieval.params.base: expected a retrieval: a "
                       r"name, \{name: ..., params: \{...\}\} or a built retrieval, got 7"):
        load_config(_config(retrieval={"name": "budget", "params": {"base": 7}}))
    with pytest.raises(ConfigError) as info:
        load_config(_config(retrieval={"name": "hybrid", "params": {
            "bm25": 7, "dense": {"embedder": 5}}}))
    assert "retrieval.params.bm25: expected the parameters of retrieval 'bm25' as a " \
        "mapping" in str(info.value)
    assert "retrieval.params.dense.embedder: expected an embedder" in str(info.value)
    for bad in (5, ["bm25"], None):
        with pytest.raises(ConfigError, match="cannot build a retrieval"):
            memlab.build("retrieval", bad) if bad is not None else memlab.spec.build(
                "retrieval", bad)
    with pytest.raises(ConfigError, match="cannot resolve a retrieval"):
        memlab.resolve("retrieval", 5)


def test_config_errors_name_their_yaml_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "bad", "dataset": {"name": "synthetic"},
                                    "k": 0, "retrieval": {"name": "bm25", "prams": {}}}))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert "k: Input should be greater than or equal to 1" in message
    assert "retrieval.prams: Extra inputs are not permitted" in message


def test_unknown_components_and_params_are_listed_with_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_config(retrieval={"name": "bm52"},
                            chunker={"name": "window", "params": {"sise": 3}}))
    message = str(info.value)
    assert "retrieval.name: unknown retrieval strategy 'bm52'. Did you mean 'bm25'?" in message
    assert "chunker.params.sise: not a parameter of chunker 'window' (valid: size, stride)" \
        in message


def test_a_dataset_named_alone_and_a_bad_dataset_beside_a_bad_component(
        tmp_path: Path) -> None:
    assert load_config({**_config(), "dataset": "synthetic"}).dataset.name == "synthetic"
    bad_param = {"name": "bm25", "params": {"kk": 3}}
    for dataset, says in (([], "dataset: Input should be a valid dictionary"),
                          ({"nam": "synthetic"}, "dataset.nam: Extra inputs"),
                          (None, "dataset: Field required")):
        config = {**_config(), "retrieval": bad_param, "dataset": dataset}
        if dataset is None:
            del config["dataset"]
        with pytest.raises(ConfigError) as info:
            load_config(config)
        message = str(info.value)  # both problems at once, not the dataset's alone
        assert says in message and "retrieval.params.kk: not a parameter" in message, message
    with pytest.raises(ConfigError) as info:  # a bad value inside: the loader still checked
        load_config({**_config(), "dataset": {"name": "locomoo", "probes": {"limit": -1}}})
    assert "dataset.probes.limit: Input should be greater" in str(info.value)
    assert "unknown dataset loader 'locomoo'. Did you mean 'locomo'?" in str(info.value)


def test_overrides_and_grid_expansion() -> None:
    assert load_config(_config(), ["cache.llm=off"]).cache.llm == "off"  # YAML's bare off
    config = load_config(_config(), ["retrieval.name=dense", "k=3", "dataset.probes.limit=5"])
    retrieval = config.memory.params["retrieval"]  # the shorthand lands in the memory
    assert (retrieval["name"], config.k, config.dataset.probes.limit) == ("dense", 3, 5)
    variants = expand_grid({**_config(), "grid": {"retrieval.name": ["bm25", "dense"],
                                                  "k": [1, 5]}})
    assert [v.name for v in variants] == ["t[retrieval=bm25,k=1]", "t[retrieval=bm25,k=5]",
                                          "t[retrieval=dense,k=1]", "t[retrieval=dense,k=5]"]


def test_cli_run_prints_the_summary_table(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_config(name="cli")))
    out = subprocess.run(
        [sys.executable, "-m", "memlab.eval", "run", str(path), "--out", str(tmp_path / "r"),
         "--no-mlflow"], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=True).stdout
    assert "turn.recall_any@5" in out and "probes 48, errors 0" in out
    bad = subprocess.run([sys.executable, "-m", "memlab.eval", "validate", str(tmp_path / "x")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "config file not found" in bad.stderr


def test_validate_reads_the_data_and_a_run_on_bad_data_leaves_no_directory(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`validate` loads each dataset a config names (no haystack built) and selects its
    probes, so what would stop a run stops here; a run refused for its data writes nothing."""
    from memlab.eval.cli import main

    monkeypatch.chdir(tmp_path)
    silent = tmp_path / "silent.jsonl"  # a history with no questions
    silent.write_text(json.dumps({"format": "memlab-conversations", "version": 1}) + "\n"
                      + json.dumps({"id": "c1", "probes": [], "sessions": [{
                          "id": "s1", "started_at": "2024-03-01T09:00:00Z", "turns": [{
                              "id": "s1:t1", "speaker": "ann", "role": "user",
                              "text": "I adopted a cat."}]}]}) + "\n")
    cases = [({"name": "memlabb"}, "unknown dataset loader 'memlabb'. Did you mean 'memlab'?"),
             ({"name": "memlab", "path": str(silent)},
              f"dataset 'silent' ({silent}) has no probes to evaluate; `python -m memlab.data "
              "probes` writes questions"),
             ({"name": "synthetic",  # synth-00 is in the dev part
               "probes": {"conversations": ["synth-00"], "split": {"part": "test"}}},
              "dataset.probes: nothing to evaluate: synthetic-small has 48 probes and this "
              "selection keeps none"),
             ({"name": "memlab", "path": "nope.jsonl"},
              f"nope.jsonl: file not found (a relative path is read from {tmp_path})"),
             ({"name": "synthetic", "probes": {"conversations": ["c-99"]}},
              "dataset.probes.conversations: no conversation(s) c-99"),
             ({"name": "synthetic", "params": {"haystack": {"seed": 1}}},
              "dataset.params.haystack.tokens: required")]
    for n, (dataset, message) in enumerate(cases):
        path = tmp_path / f"bad{n}.yaml"
        path.write_text(yaml.safe_dump(_config(name=f"bad{n}", dataset=dataset)))
        assert main(["validate", str(path)]) == 2
        assert message in capsys.readouterr().err
        assert main(["run", str(path), "--out", str(tmp_path / f"run{n}")]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / f"run{n}").exists()
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(_config(
        name="good", dataset={"name": "synthetic", "probes": {"sample": 10}})))
    assert main(["validate", str(good)]) == 0
    assert capsys.readouterr().out == "ok: good (synthetic, retrieval only; 10 of 48 probes)\n"


def test_a_run_counts_what_the_loader_repaired_in_its_conversations(tmp_path: Path) -> None:
    """LoCoMo conv-26 as loaded: 16 session dates with no turns ignored, one multi-id
    evidence string split; the run records and prints them (other conversations' repairs
    are not counted)."""
    from memlab.eval.summary import render_table

    result = evaluate(_config(name="issues", dataset={
        "name": "locomo", "probes": {"conversations": ["conv-26"], "limit": 5}}),
        out=tmp_path / "run", progress=False)
    assert result.summary["dataset_issues"] == {"ignored: date without turns": 16, "split": 1}
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["dataset_issues"] == result.summary["dataset_issues"]
    assert ("dataset issues at load: 16 ignored: date without turns, 1 split "
            "(Dataset.issues lists them)") in render_table(result.summary).splitlines()


def test_a_failed_mlflow_mirror_still_shows_the_run_and_the_sweep_table(tmp_path: Path) -> None:
    """The run directory is complete whatever MLflow does: the summary (or the sweep's
    table) is printed, then one error line saying how to mirror it later."""
    blocked = tmp_path / "a-file"
    blocked.write_text("")  # a store under a file: MLflow cannot create it
    tracking = {"tracking_uri": f"sqlite:///{blocked}/mlflow.db", "traces": "off"}
    run_cfg = tmp_path / "run.yaml"
    run_cfg.write_text(yaml.safe_dump(_config(name="unlogged", tracking=tracking)))
    sweep_cfg = tmp_path / "sweep.yaml"
    sweep_cfg.write_text(yaml.safe_dump(_config(
        name="unlogged-sweep", tracking=tracking, grid={"k": [5, 10]})))
    for command, config, shown in (("run", run_cfg, "probes 48, errors 0"),
                                   ("sweep", sweep_cfg, "unlogged-sweep[k=10]")):
        done = subprocess.run(
            [sys.executable, "-m", "memlab.eval", command, str(config),
             "--out", str(tmp_path / command)], cwd=ROOT, capture_output=True, text=True,
            timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        assert done.returncode == 2, done.stderr[-2000:]
        assert shown in done.stdout
        error = done.stderr.strip().splitlines()[-1]
        assert error.startswith("error: "), error
        assert "not logged to MLflow" in error or "logging it to MLflow failed" in error
        assert "python -m memlab.eval log " in error
    assert (tmp_path / "run" / "metrics.json").is_file()
    # a tracking server that does not answer fails at once, not after MLflow's retries
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "memlab.eval", "log", str(tmp_path / "run"), "--tracking-uri",
         f"http://127.0.0.1:{_free_port()}"], cwd=ROOT, capture_output=True, text=True,
        timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "does not answer" in done.stderr and "--no-mlflow" in done.stderr
    assert time.monotonic() - started < 60


def test_the_python_api_takes_one_override_or_label_as_a_plain_string(tmp_path: Path) -> None:
    """``overrides="k=5"`` and ``only="retrieval=bm25"`` in a notebook are one override and
    one label (they were read as sequences of characters: "--set expects key=value, got
    'k'")."""
    from memlab.eval.sweep import sweep

    result = evaluate(_config(), overrides="k=5", out=tmp_path / "one", progress=False)
    assert result.config.k == 5
    table = sweep({**_config(name="s"), "grid": {"retrieval.name": ["bm25", "recency"]}},
                  overrides="k=3", only="retrieval=bm25", out=tmp_path / "sweep",
                  track=False, progress=False)
    assert list(table["retrieval"]) == ["bm25"]


def test_an_unknown_key_names_the_keys_its_section_has() -> None:
    with pytest.raises(ConfigError, match=r"dataset\.probes\.sampel: Extra inputs are not "
                       r"permitted; did you mean 'sample'\? \(known: categories, "):
        load_config(_config(), ["dataset.probes.sampel=20"])
    with pytest.raises(ConfigError, match=r"answer\.max_answer_tokn: .*did you mean "
                       r"'max_answer_tokens'"):
        load_config(_config(answer={"llm": {"name": "mock"}}), ["answer.max_answer_tokn=9"])


def test_run_refuses_a_config_with_a_grid(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"t has a grid \(retrieval.name\): `sweep` runs"):
        evaluate(_config(grid={"retrieval.name": ["bm25", "recency"]}), out=tmp_path / "r",
                 progress=False)
    assert not (tmp_path / "r").exists()


def test_probes_with_mixed_category_id_types_are_logged_to_mlflow(tmp_path: Path) -> None:
    """``category_id`` may be an integer on one probe and text on another (memlab's format
    keeps it as given): the items table takes both as text, so Parquet and polars can
    hold it, and the run is logged."""
    import mlflow

    from memlab import load_dataset
    from memlab.data.loaders.native import save_native

    path = save_native(load_dataset("synthetic"), tmp_path / "mixed.jsonl")
    lines = path.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines[1:]]
    for n, probe in enumerate(p for r in records for p in r["probes"]):
        probe["category_id"] = "mh" if n == 0 else 4
    path.write_text("\n".join([lines[0], *map(json.dumps, records)]) + "\n", encoding="utf-8")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = evaluate(_config(name="mixed", dataset={"name": "memlab", "path": str(path)},
                              tracking={"tracking_uri": uri, "traces": "off"}),
                      out=tmp_path / "run", progress=False)
    assert result.mlflow_run_id
    frame = result.to_frame(backend="polars")
    assert frame["category_id"].to_list()[:2] == ["mh", "4"]
    client = mlflow.MlflowClient(uri)
    tables = {a.path for a in client.list_artifacts(result.mlflow_run_id, "tables")}
    assert tables == {"tables/items.parquet"}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_report_per_category_columns_and_markdown(tmp_path: Path) -> None:
    from memlab.eval.report import report, to_markdown

    evaluate(_config(), out=tmp_path / "bm25", progress=False)
    evaluate(_config(retrieval={"name": "none"}), out=tmp_path / "none", progress=False)
    metric = "turn.recall_any@5"
    table = report([tmp_path], metric=[metric], by_category=metric)
    assert list(table["retrieval"]) == ["bm25", "none"]
    column = f"{metric} [multi-session]"
    assert table[column].iloc[1] == 0.0 and 0 < table[column].iloc[0] <= 1
    text = to_markdown(table, ["retrieval", metric, column])
    lines = text.splitlines()
    assert lines[0] == f"| retrieval | {metric} | {column} |" and lines[1] == "|---|---|---|"
    assert lines[3] == "| none | 0.000 | 0.000 |" and len(lines) == 4


def test_report_plots_a_metric_against_prompt_tokens(tmp_path: Path) -> None:
    from memlab.eval.plots import pareto_front
    from memlab.eval.report import plot_report, report

    mock = {"name": "mock", "params": {"responses": ["Not mentioned in the conversation"]}}
    answer = {"llm": mock, "max_memory_tokens": 60}
    evaluate(_config(answer=answer, cache={"llm": "off"}), out=tmp_path / "bm25",
             progress=False)
    evaluate(_config(answer=answer, retrieval={"name": "none"}, cache={"llm": "off"}),
             out=tmp_path / "none", progress=False)
    table = report([tmp_path], metric=["locomo_f1"])
    assert table["prompt_tokens/probe"].iloc[0] > table["prompt_tokens/probe"].iloc[1] > 0
    path = plot_report(table, tmp_path / "f1.png", "locomo_f1")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    assert pareto_front([(10, 0.5), (100, 0.4), (100, 0.6)]) == [0, 2]
    with pytest.raises(MemlabError, match="no run has 'judge'"):
        plot_report(table, tmp_path / "judge.png", "judge")
    # retrieval-only runs: a retrieval metric against memory tokens per probe
    evaluate(_config(), out=tmp_path / "only" / "bm25", progress=False)
    evaluate(_config(retrieval={"name": "bm25"}, k=2), out=tmp_path / "only" / "k2",
             progress=False)
    only = report([tmp_path / "only"])
    with pytest.raises(MemlabError, match=r"no run here scored 'turn\.recall_any@7'; did "
                       r"you mean 'turn\.recall_any@5'"):
        report([tmp_path / "only"], metric=["turn.recall_any@7"])
    with pytest.raises(MemlabError, match=r"no run here scored 'turn\.budget_evidence_recal"):
        report([tmp_path / "only"], by_category="turn.budget_evidence_recal@1000")
    assert only["prompt_tokens/probe"].isna().all()
    assert only["memory_tokens/probe"].iloc[0] > only["memory_tokens/probe"].iloc[1] > 0
    with pytest.raises(MemlabError, match=r"retrieval only: plot a retrieval metric, e\.g\. "
                       r"--metric turn\.budget_evidence_recall@1000"):
        plot_report(only, tmp_path / "f1.png", "locomo_f1")
    path = plot_report(only, tmp_path / "recall.png", "turn.recall_any@5")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_columns_keep_one_order_whichever_run_comes_first(tmp_path: Path) -> None:
    import shutil

    from memlab.eval.report import HEADLINE, report

    mock = {"name": "mock", "params": {"responses": ["Not mentioned in the conversation"]}}
    evaluate(_config(), out=tmp_path / "a-retrieval-only", progress=False)
    evaluate(_config(answer={"llm": mock}, cache={"llm": "off"}), out=tmp_path / "b-answered",
             progress=False)
    # an MLflow artifact copy of a run below the folder is not another run
    shutil.copytree(tmp_path / "b-answered", tmp_path / "mlartifacts" / "1" / "x" / "artifacts")
    table = report([tmp_path])
    assert [Path(d).name for d in table["dir"]] == ["a-retrieval-only", "b-answered"]
    columns = list(table.columns)
    assert columns[:9] == ["run", "dataset", "memory", "chunker", "retrieval", "llm", "probes",
                           "errors", "ingest_errors"]
    assert columns[-3:] == ["memory_tokens/probe", "prompt_tokens/probe", "dir"]
    shown = [c for c in HEADLINE if c in columns]
    assert "locomo_f1" in shown and columns[9:9 + len(shown)] == shown


def test_a_dataset_file_may_be_given_as_path_or_as_params_path(tmp_path: Path) -> None:
    from memlab.data import load_dataset
    from memlab.data.loaders.native import save_native
    from memlab.eval.config import DatasetSpec

    path = save_native(load_dataset("synthetic"), tmp_path / "mine.jsonl")
    by_path = DatasetSpec(name="memlab", path=str(path)).load()
    by_params = DatasetSpec(name="memlab", params={"path": str(path)}).load()
    assert by_params.conversations == by_path.conversations
    both = DatasetSpec(name="memlab", path=str(path), params={"path": str(path)}).load()
    assert both.conversations == by_path.conversations
    with pytest.raises(ConfigError, match=r"two files given, dataset\.path .* and "
                                          r"dataset\.params\.path 'other\.jsonl'; keep one"):
        DatasetSpec(name="memlab", path=str(path), params={"path": "other.jsonl"}).load()


def test_a_sweep_reads_a_dataset_file_given_as_params_path(tmp_path: Path) -> None:
    from memlab.data import load_dataset
    from memlab.data.loaders.native import save_native
    from memlab.eval.sweep import sweep

    path = save_native(load_dataset("synthetic"), tmp_path / "mine.jsonl")
    table = sweep({"name": "mine", "dataset": {"name": "memlab", "params": {"path": str(path)}},
                   "k": 5, "tracking": {"mlflow": False},
                   "grid": {"retrieval.name": ["bm25", "recency"]}},
                  out=tmp_path / "runs", progress=False)
    assert len(table) == 2


def test_log_skips_a_run_the_experiment_already_holds(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A folder of runs logged twice gives no duplicate points in MLflow's views."""
    from memlab.eval.cli import main

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = evaluate(_config(name="once", tracking={"tracking_uri": uri, "traces": "off"}),
                     out=tmp_path / "runs" / "once", progress=False)
    assert main(["log", str(tmp_path / "runs")]) == 0
    assert capsys.readouterr().out.strip().endswith(
        f"already logged as MLflow run {first.mlflow_run_id} (--again logs it once more)")
    assert main(["log", str(tmp_path / "runs"), "--again"]) == 0
    again = capsys.readouterr().out.strip().rsplit(" ", 1)[-1]
    assert again != first.mlflow_run_id and len(again) == 32


@pytest.mark.parametrize("text, message", [
    ("name: x\nk: 3\nk: 5\n", r"invalid YAML at line 3, column 1: key 'k' given twice "
     r"\(first on line 2"),
    ("name: x\n  k: 3\n", r"invalid YAML at line 2, column 4: mapping values are not allowed"),
    (b"\xff\xfe k: 3", r"not UTF-8 text \(byte 0: b'\\xff'\)"),
])
def test_a_config_file_that_is_not_good_yaml_is_one_error_line(
        tmp_path: Path, text: str | bytes, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_override_values_that_are_not_yaml_name_the_set_item(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--set k=\[1,: invalid YAML at line 1"):
        load_config("experiments/quickstart.yaml", ["k=[1,"])
    with pytest.raises(ConfigError, match=r"is a directory, not a config file"):
        load_config(tmp_path)
    # merge keys may override what they merge (the experiments' YAML anchors do)
    path = tmp_path / "m.yaml"
    path.write_text("name: m\ndataset: {name: synthetic}\n"
                    "chunker: &c {name: window, params: {size: 2}}\n"
                    "grid: {cases: [{label: a, chunker: {<<: *c, params: {size: 4}}}]}\n")
    chunker = expand_grid(path)[0].memory.params["chunker"]
    assert (chunker if isinstance(chunker, dict) else chunker.model_dump())["params"] == {"size": 4}


def test_mlflow_logs_the_dataset_sha256_the_run_recorded_not_the_file_now(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from memlab.eval import mlflow_datasets, tracking

    evaluate(_config(), out=tmp_path / "run", progress=False)
    environment = json.loads((tmp_path / "run" / "environment.json").read_text())
    recorded = environment["dataset"]["files"]["path"]
    seen: dict[str, Any] = {}

    def fake_log(*args: Any, **kwargs: Any) -> str:
        seen.update(kwargs)
        return "synthetic"

    monkeypatch.setattr(mlflow_datasets, "log_dataset", fake_log)
    tracking._log_dataset(None, ["run"], "1", tracking.RunRecord.open(tmp_path / "run"))
    assert seen["recorded"] == recorded and len(recorded["sha256"]) == 64


def test_a_recorded_config_whose_template_or_model_changed_is_warned(tmp_path: Path) -> None:
    from memlab.errors import MemlabWarning
    from memlab.eval.config import resolved_dict

    config = _config(answer={"llm": {"name": "mock"}, "template": "answer_short"})
    recorded = resolved_dict(load_config(config))
    assert not recorded["answer"]["template"]["identity"]["sha256"].startswith("ff")
    recorded["answer"]["template"]["identity"]["sha256"] = "ff" * 32
    with pytest.warns(MemlabWarning, match=r"template 'answer_short': the config records "
                      r"sha256 ffff.*another model or template file"):
        resolved_dict(load_config(recorded))
    recorded["answer"]["template"]["identity"]["path"] = "/elsewhere/answer_short.md"
    recorded["answer"]["template"]["identity"]["sha256"] = resolved_dict(load_config(
        config))["answer"]["template"]["identity"]["sha256"]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # where the file was read from is not a change
        resolved_dict(load_config(recorded))


def test_report_names_the_unfinished_runs_it_leaves_out(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from memlab.eval.cli import main

    evaluate(_config(), out=tmp_path / "runs" / "done", progress=False)
    (tmp_path / "runs" / "half").mkdir()
    shutil.copy(tmp_path / "runs" / "done" / "config.resolved.yaml", tmp_path / "runs" / "half")
    assert main(["report", str(tmp_path / "runs")]) == 0
    out, err = capsys.readouterr()
    assert "note: 1 unfinished run(s) left out" in err and str(tmp_path / "runs" / "half") in err
    assert len([line for line in out.splitlines() if line.strip().startswith("t ")]) == 1


def test_git_state_names_changed_files_whole_and_new_package_files(tmp_path: Path) -> None:
    from memlab.eval.environment import git_state

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.email", "t@t")
    git("config", "user.name", "t")
    (tmp_path / "memlab").mkdir()
    (tmp_path / "memlab" / "run.py").write_text("a = 1\n")
    (tmp_path / "README.md").write_text("x\n")
    git("add", "-A")
    git("commit", "-qm", "one")
    assert git_state(tmp_path)["dirty"] is False
    (tmp_path / "memlab" / "run.py").write_text("a = 2\n")  # ' M memlab/run.py' comes first
    (tmp_path / "memlab" / "new.py").write_text("")  # untracked, inside the package
    (tmp_path / "notes.txt").write_text("")  # untracked, outside: not a change
    state = git_state(tmp_path)
    assert state["dirty"] is True
    assert state["changed_files"] == ["memlab/new.py", "memlab/run.py"]


def test_priced_roles_give_the_runs_cost_and_prices_may_change_on_resume(
        tmp_path: Path) -> None:
    from memlab.eval.summary import render_table, run_cost
    from memlab.eval.tracking import run_metrics

    mock = {"name": "mock", "params": {"responses": ["blue"]}}
    config = _config(answer={"llm": mock}, judge={"llm": mock},
                     prices={"answer": {"prompt": 0.5, "completion": 2.0}})
    result = evaluate(config, out=tmp_path / "run", progress=False)
    tokens = result.summary["tokens"]
    want = (tokens["prompt"]["total"] * 0.5 + tokens["completion"]["total"] * 2.0) / 1e6
    assert tokens["prompt"]["total"] > 10_000 and tokens["judge_prompt"]["total"] > 0
    assert result.summary["cost_usd"] == {"answer": want, "total": want,
                                          "per_probe": want / 48, "unpriced": ["judge"],
                                          "no_tokens": []}
    assert f"cost USD {want:.4f} (answer {want:.4f}), " in render_table(result.summary)
    assert "not priced: judge" in render_table(result.summary)
    assert run_metrics(result.summary)["cost_usd.total"] == want
    # a price is no part of the results: the run resumes with another
    judged = config | {"prices": {**config["prices"], "judge": {"prompt": 1, "completion": 1}}}
    again = evaluate(judged, out=tmp_path / "run", progress=False)
    assert again.summary["cost_usd"]["unpriced"] == []
    assert again.summary["cost_usd"]["judge"] == (
        tokens["judge_prompt"]["total"] + tokens["judge_completion"]["total"]) / 1e6
    assert "cost_usd" not in evaluate(_config(answer={"llm": mock}), out=tmp_path / "free",
                                      progress=False).summary
    assert run_cost(result.summary, {}) == {}
    from memlab.eval.report import report
    table = report([tmp_path / "run", tmp_path / "free"])
    costs = dict(zip(table["dir"], table["cost_usd/probe"], strict=True))
    assert costs[str(tmp_path / "run")] == again.summary["cost_usd"]["per_probe"]
    assert costs[str(tmp_path / "free")] != costs[str(tmp_path / "free")]  # NaN: unpriced
    assert list(table.columns)[-2:] == ["cost_usd/probe", "dir"]
    unused = run_cost(result.summary, {"search": {"prompt": 1, "completion": 1}})
    assert (unused["total"], unused["no_tokens"]) == (0.0, ["search"])  # said, not hidden
    assert "priced but no tokens counted: search" in render_table(
        result.summary | {"cost_usd": unused})
    with pytest.raises(ConfigError, match=r"prices\.answer\.prompt"):
        load_config(_config(prices={"answer": {"prompt": -1, "completion": 0}}))
