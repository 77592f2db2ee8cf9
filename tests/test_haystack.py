"""Haystacks (histories padded with other conversations' sessions) and ``scale``, on the
real LongMemEval oracle and LoCoMo files."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from memlab.data import load_dataset
from memlab.data.checks import check_dataset
from memlab.data.haystack import PREFIX, build_haystack, history_tokens, parse_tokens
from memlab.data.schema import Conversation, Dataset
from memlab.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMLAB_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def _first(dataset: Dataset, n: int) -> list[str]:
    return [c.id for c in dataset.conversations[:n]]


def check_haystack(original: Conversation, padded: Conversation, target: int) -> int:
    """What every haystack must hold; returns how many distractor sessions it has."""
    own = {s.id: s for s in original.sessions}
    assert [s.id for s in padded.sessions if s.id in own] == [s.id for s in original.sessions]
    assert all(padded.sessions[[s.id for s in padded.sessions].index(i)] == s
               for i, s in own.items())  # own sessions untouched
    assert padded.probes == original.probes
    turn_ids = {t.id for t in padded.turns()}
    session_ids = [s.id for s in padded.sessions]
    assert len(turn_ids) == sum(len(s.turns) for s in padded.sessions)  # ids unique
    assert len(set(session_ids)) == len(session_ids)
    starts = [s.started_at for s in padded.sessions]
    assert starts == sorted(starts)  # merged in time order
    first_question = min(p.asked_at for p in padded.probes)
    evidence_turns = {t for p in padded.probes for t in p.evidence_turn_ids}
    evidence_sessions = {s for p in padded.probes for s in p.evidence_session_ids}
    assert evidence_turns <= turn_ids and evidence_sessions <= set(session_ids)
    own_texts = {tuple(t.text for t in s.turns) for s in original.sessions}
    distractors = [s for s in padded.sessions if s.id not in own]
    for session in distractors:
        assert session.id.startswith(PREFIX) and session.metadata["haystack"] is True
        assert session.metadata["source_conversation"] != original.id
        assert session.id not in evidence_sessions
        assert not {t.id for t in session.turns} & evidence_turns  # never evidence
        assert all("has_answer" not in t.metadata for t in session.turns)
        assert [t.at for t in session.turns] == sorted(t.at for t in session.turns)
        assert all(session.started_at <= t.at < first_question for t in session.turns)
        assert tuple(t.text for t in session.turns) not in own_texts  # no copy of its own
    if distractors:
        assert history_tokens(padded) <= target
    assert set(padded.speakers) >= {t.speaker for t in padded.turns()}
    return len(distractors)


@pytest.mark.parametrize("target", [5_000, 20_000])
def test_longmemeval_haystacks_keep_evidence_valid_and_time_ordered(
        longmemeval_dataset: Dataset, target: int) -> None:
    ids = _first(longmemeval_dataset, 25)
    padded = build_haystack(longmemeval_dataset, target, seed=0, conversations=ids)
    check_dataset(padded, "haystack")  # the loaders' checks hold
    counts = [check_haystack(longmemeval_dataset[i], padded[i], target) for i in ids]
    assert sum(counts) >= 10
    grown = [history_tokens(padded[i]) for i in ids
             if history_tokens(longmemeval_dataset[i]) < target * 0.8]
    assert grown and all(target * 0.9 <= n <= target for n in grown)
    untouched = longmemeval_dataset.conversations[30]
    assert padded[untouched.id] is untouched  # not asked for, not padded


def test_locomo_haystack_borrows_other_speakers(locomo_dataset: Dataset) -> None:
    padded = build_haystack(locomo_dataset, "40k", seed=1, conversations=["conv-26"])
    n = check_haystack(locomo_dataset["conv-26"], padded["conv-26"], 40_000)
    assert n > 0
    assert len(padded["conv-26"].speakers) > len(locomo_dataset["conv-26"].speakers)


def test_sessions_numbered_per_conversation_pad_each_other() -> None:
    """memlab's sets (and LoCoMo) number sessions s1, s2 ... in every conversation: another
    conversation's s3 is another session and pads; a session with the same id and half
    its turns the same is a version of one's own (LongMemEval reuses ids) and does not."""
    synthetic = load_dataset("synthetic")
    padded = build_haystack(synthetic, 2_000, seed=0)
    assert all(check_haystack(c, padded[c.id], 2_000) > 0 for c in synthetic)
    first, second = synthetic.conversations[:2]
    theirs = second.sessions[1]  # their s2 becomes first's s2 less its last turn
    assert theirs.id == first.sessions[1].id
    version = replace(theirs, turns=first.sessions[1].turns[:-1])
    other = replace(second, sessions=(second.sessions[0], version, *second.sessions[2:]))
    pair = build_haystack(Dataset(name="pair", conversations=(first, other)), 10_000, seed=0,
                          conversations=[first.id])
    sources = [s.metadata["source_session"] for s in pair[first.id].sessions
               if s.id.startswith(PREFIX)]
    assert sorted(sources) == sorted(s.id for s in second.sessions if s.id != theirs.id)
    assert check_haystack(first, pair[first.id], 10_000) == len(second.sessions) - 1


def test_haystacks_are_deterministic_per_seed(longmemeval_dataset: Dataset) -> None:
    ids = _first(longmemeval_dataset, 5)

    def layout(seed: int) -> list[list[tuple[str, Any]]]:
        padded = build_haystack(longmemeval_dataset, 10_000, seed=seed, conversations=ids)
        return [[(s.id, s.started_at) for s in padded[i].sessions] for i in ids]

    assert layout(0) == layout(0)
    assert layout(0) != layout(1)
    alone = build_haystack(longmemeval_dataset, 10_000, seed=0, conversations=ids[:1])
    assert [s.id for s in alone[ids[0]].sessions] == [x for x, _ in layout(0)[0]]


def test_haystack_is_a_dataset_option_of_any_loader() -> None:
    padded = load_dataset("longmemeval", clamp_asked_at=True,
                          haystack={"tokens": "8k", "seed": 0})
    assert padded.metadata["haystack"] == {"tokens": 8000, "seed": 0, "lead_days": 30.0}
    assert any(s.id.startswith(PREFIX) for s in padded.conversations[0].sessions)
    with pytest.raises(ConfigError, match=r"dataset.params.haystack: unknown option"):
        load_dataset("synthetic", haystack={"tokens": 1000, "size": 3})
    with pytest.raises(ConfigError, match=r"dataset.params.haystack.tokens: expected a positive"):
        load_dataset("synthetic", haystack={"tokens": "lots"})
    assert [parse_tokens(v) for v in (115000, "115k", "1.5M", "30K")] == [
        115000, 115000, 1500000, 30000]


@pytest.mark.slow  # four runs over padded histories (~1 min on the shared 2 cores)
def test_scale_tabulates_and_plots_recall_against_history_length(tmp_path: Path) -> None:
    from memlab.eval.scale import scale

    config = yaml.safe_load((ROOT / "experiments" / "longmemeval-scale.yaml").read_text())
    config["dataset"]["probes"] = {"sample": 6, "stratify": "category", "seed": 0}
    config["grid"] = {"cases": [{"label": "bm25", "retrieval": {"name": "bm25"}},
                                {"label": "recency", "retrieval": {"name": "recency",
                                                                   "params": {"base": "bm25"}}}]}
    config["tracking"] = {"mlflow": False}
    table = scale(config, ["4k", "12k"], out=tmp_path, progress=False)
    assert list(table["strategy"]) == ["bm25", "recency", "bm25", "recency"]
    assert list(table["tokens"]) == [4000, 4000, 12000, 12000]
    assert (table["probes"] == 6).all()
    assert table["history_tokens"].iloc[2] > table["history_tokens"].iloc[0]
    assert table["session.recall_any@5"].between(0, 1).all()
    assert (tmp_path / "scale.png").stat().st_size > 0 and (tmp_path / "scale.csv").exists()
    resolved = yaml.safe_load((tmp_path / "12000" / "bm25" / "config.resolved.yaml").read_text())
    assert resolved["dataset"]["params"]["haystack"] == {"tokens": 12000, "seed": 0,
                                                         "lead_days": 30.0}


def test_scale_pads_memlabs_own_set_and_warns_when_the_sessions_run_out(tmp_path: Path) -> None:
    from memlab.eval.scale import scale

    config = {"name": "own", "dataset": {"name": "synthetic"}, "chunker": {"name": "turn"},
              "k": 5, "tracking": {"mlflow": False},
              "grid": {"cases": [{"label": "bm25", "retrieval": {"name": "bm25"}}]}}
    with pytest.warns(UserWarning, match=r"scale: at 50,000 tokens the histories average "
                      r"[\d,]+: the other conversations' sessions ran out"):
        table = scale(config, ["2k", "50k"], out=tmp_path, progress=False)
    own = sum(history_tokens(c) for c in load_dataset("synthetic")) / 4
    assert own < 1_500 < table["history_tokens"].iloc[0] <= 2_000  # padded, within the target
    assert table["history_tokens"].iloc[1] < 45_000
    # a target no longer than the histories themselves pads nothing: said, not a flat curve
    with pytest.warns(UserWarning, match=r"scale: 200 tokens is no longer than the shortest "
                      r"history \([\d,]+\): none is padded"):
        short = scale(config, ["200"], out=tmp_path / "short", progress=False)
    assert short["history_tokens"].iloc[0] == pytest.approx(own, rel=0.01)


def test_the_scale_command_prints_the_warning_as_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from memlab.eval.cli import main

    config = tmp_path / "own.yaml"
    config.write_text(yaml.safe_dump({
        "name": "own", "dataset": {"name": "synthetic"}, "chunker": {"name": "turn"}, "k": 5,
        "tracking": {"mlflow": False},
        "grid": {"cases": [{"label": "bm25", "retrieval": {"name": "bm25"}}]}}))
    assert main(["scale", str(config), "--tokens", "50k", "--out", str(tmp_path / "s"),
                 "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert err.startswith("warning: scale: at 50,000 tokens the histories average ")
    row = next(line for line in out.splitlines() if line.lstrip().startswith("bm25"))
    assert re.search(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", row), out  # a mean with its CI
    assert "UserWarning" not in err and len(err.splitlines()) == 1
