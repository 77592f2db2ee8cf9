"""The LongMemEval loader on the real oracle file, and its errors on bad input."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from memlab.data import Dataset, Role, load_dataset
from memlab.data.loaders.longmemeval import load_longmemeval
from memlab.errors import DatasetError


def _probes(ds: Dataset) -> list:
    return [p for _, p in ds.probes()]


@pytest.fixture(scope="module")
def raw_oracle(longmemeval_path: Path) -> list[dict]:
    return json.loads(longmemeval_path.read_text())


# --- the real file -------------------------------------------------------------------


def test_totals(longmemeval_dataset: Dataset) -> None:
    stats = longmemeval_dataset.stats()
    assert (stats["conversations"], stats["sessions"], stats["turns"], stats["probes"]) == (
        500, 948, 10960, 500)
    assert stats["abstention_probes"] == 30
    assert Counter(p.category for p in _probes(longmemeval_dataset)) == {
        "multi-session": 133, "temporal-reasoning": 133, "knowledge-update": 78,
        "single-session-user": 70, "single-session-assistant": 56,
        "single-session-preference": 30}
    assert all(p.category_id == p.category for p in _probes(longmemeval_dataset))
    assert all(c.probes[0].id == c.id for c in longmemeval_dataset)
    roles = Counter(t.role for c in longmemeval_dataset for t in c.turns())
    assert roles == {Role.USER: 5479, Role.ASSISTANT: 5481}


def test_abstention_from_question_id(longmemeval_dataset: Dataset) -> None:
    abstention = [p.id for p in _probes(longmemeval_dataset) if p.abstention]
    assert len(abstention) == 30 and all(pid.endswith("_abs") for pid in abstention)


def test_turn_ids_follow_longmemeval(longmemeval_dataset: Dataset) -> None:
    """``{session_id}_{position + 1}``, counting user and assistant turns alike."""
    conv = longmemeval_dataset["001be529"]
    session = conv.sessions[0]
    assert [t.id for t in session.turns[:3]] == [
        "answer_530960c1_1", "answer_530960c1_2", "answer_530960c1_3"]
    assert conv.probes[0].evidence_turn_ids == ("answer_530960c1_5",)
    assert all(t.speaker == str(t.role) for c in longmemeval_dataset for t in c.turns())
    assert all(t.at == s.started_at for c in longmemeval_dataset for s in c.sessions
               for t in s.turns)


def test_evidence_turns_and_sessions(longmemeval_dataset: Dataset, raw_oracle: list) -> None:
    probes = _probes(longmemeval_dataset)
    evidence_roles = Counter(
        c.turn(t).role for c in longmemeval_dataset for t in c.probes[0].evidence_turn_ids)
    assert evidence_roles == {Role.USER: 842, Role.ASSISTANT: 54}
    # Abstention questions ask about something never said: 21 of 30 have no has_answer
    # turn; the other 9 mark the related fact that was said.
    without = [p for p in probes if not p.evidence_turn_ids]
    assert len(without) == 21 and all(p.abstention for p in without)
    assert sum(p.abstention and bool(p.evidence_turn_ids) for p in probes) == 9
    answer_sessions = {r["question_id"]: set(r["answer_session_ids"]) for r in raw_oracle}
    assert all(set(p.evidence_session_ids) == answer_sessions[p.id] for p in probes)
    assert sum(len(p.evidence_session_ids) for p in probes) == 948


def test_sessions_sorted_by_date(longmemeval_dataset: Dataset) -> None:
    for conv in longmemeval_dataset:
        starts = [s.started_at for s in conv.sessions]
        assert starts == sorted(starts), conv.id
    sorted_issues = [i for i in longmemeval_dataset.issues if i.action == "sorted sessions by date"]
    assert len(sorted_issues) == 34
    conv = longmemeval_dataset["2a1811e2"]  # listed 22:45 before 10:07 in the file
    assert [s.id for s in conv.sessions] == ["answer_1cc3cd0c_1", "answer_1cc3cd0c_2"]
    assert conv.sessions[0].started_at == datetime(2023, 3, 26, 10, 7, tzinfo=UTC)


def test_integer_answers_become_text(longmemeval_dataset: Dataset, raw_oracle: list) -> None:
    ints = {r["question_id"]: r["answer"] for r in raw_oracle if isinstance(r["answer"], int)}
    assert len(ints) == 32
    assert all(longmemeval_dataset[qid].probes[0].answer == str(v) for qid, v in ints.items())
    assert all(isinstance(p.answer, str) for p in _probes(longmemeval_dataset))


def test_asked_at_is_question_date(longmemeval_dataset: Dataset) -> None:
    probe = longmemeval_dataset["001be529"].probes[0]
    assert probe.asked_at == datetime(2023, 5, 28, 19, 47, tzinfo=UTC)  # 2023/05/28 (Sun) 19:47
    late = [p for p in _probes(longmemeval_dataset) if p.metadata["sessions_after_asked_at"]]
    assert len(late) == 43
    assert sum(len(p.metadata["sessions_after_asked_at"]) for p in late) == 65
    kept = [i for i in longmemeval_dataset.issues
            if i.action == "kept: session after question_date"]
    assert len(kept) == 65
    for conv in longmemeval_dataset:  # always the same day, only a few hours earlier
        for sid in conv.probes[0].metadata["sessions_after_asked_at"]:
            start = next(s.started_at for s in conv.sessions if s.id == sid)
            asked_at = conv.probes[0].asked_at
            assert start > asked_at and start.date() == asked_at.date()


def test_clamp_asked_at(longmemeval_path: Path, longmemeval_dataset: Dataset) -> None:
    clamped = load_longmemeval(longmemeval_path, clamp_asked_at=True)
    moved = [(c, p) for c, p in clamped.probes()
             if p.asked_at != longmemeval_dataset[c.id].probes[0].asked_at]
    assert len(moved) == 43
    assert all(p.asked_at == c.sessions[-1].started_at for c, p in moved)
    assert all(s.started_at <= p.asked_at for c, p in clamped.probes() for s in c.sessions)


@pytest.mark.parametrize("backend", ["pandas", "polars"])
def test_frames(longmemeval_dataset: Dataset, backend: str) -> None:
    turns = longmemeval_dataset.to_frame("turns", backend=backend)
    probes = longmemeval_dataset.to_frame("probes", backend=backend)
    assert (len(turns), len(probes)) == (10960, 500)
    assert int(probes["abstention"].sum()) == 30


def test_registry_loads_by_name(longmemeval_path: Path) -> None:
    ds = load_dataset("longmemeval", path=longmemeval_path)
    assert ds.metadata["variant"] == "longmemeval_oracle" and len(ds) == 500


# --- bad input -------------------------------------------------------------------------


def _record() -> dict[str, Any]:
    turns = [{"role": "user", "content": "I adopted a cat.", "has_answer": True},
             {"role": "assistant", "content": "Lovely!", "has_answer": False}]
    return {
        "question_id": "q1", "question_type": "single-session-user",
        "question": "What pet did I adopt?", "answer": "a cat",
        "question_date": "2023/05/28 (Sun) 19:47",
        "haystack_dates": ["2023/05/21 (Sun) 19:50", "2023/05/20 (Sat) 08:00"],
        "haystack_session_ids": ["answer_1", "filler"],
        "haystack_sessions": [turns, [{"role": "user", "content": "Hi"}]],
        "answer_session_ids": ["answer_1"],
    }


def _write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "lme.json"
    path.write_text(json.dumps(data))
    return path


def _error(tmp_path: Path, data: Any) -> str:
    with pytest.raises(DatasetError) as info:
        load_longmemeval(_write(tmp_path, data))
    return str(info.value)


def test_small_valid_file(tmp_path: Path) -> None:
    ds = load_longmemeval(_write(tmp_path, [_record()]))
    conv = ds["q1"]
    assert [s.id for s in conv.sessions] == ["filler", "answer_1"]
    assert conv.probes[0].evidence_turn_ids == ("answer_1_1",)
    assert conv.turn("filler_1").metadata["has_answer"] is False
    assert [i.action for i in ds.issues] == ["sorted sessions by date"]


def test_duplicate_session_ids(tmp_path: Path) -> None:
    rec = _record()
    rec["haystack_dates"].append("2023/05/22 (Mon) 10:00")
    rec["haystack_session_ids"].append("filler")
    rec["haystack_sessions"].append([{"role": "user", "content": "Hi"}])
    ds = load_longmemeval(_write(tmp_path, [rec]))
    assert [s.id for s in ds["q1"].sessions] == ["filler", "answer_1"]
    assert ds.issues[-1].action == "dropped: duplicate session"
    rec["haystack_sessions"][2] = [{"role": "user", "content": "Something else"}]
    assert "record 0 (q1): field 'haystack_session_ids[2]': session id 'filler' is used " \
        "for two different sessions" in _error(tmp_path, [rec])


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nope\.json: file not found"):
        load_longmemeval(tmp_path / "nope.json")


def test_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('[{"question_id": "q1"')
    with pytest.raises(DatasetError, match=r"broken\.json: invalid JSON at line 1, column 22"):
        load_longmemeval(path)


def test_missing_field(tmp_path: Path) -> None:
    rec = _record()
    del rec["question"]
    assert _error(tmp_path, [_record() | {"question_id": "q0"}, rec]) == (
        f"{tmp_path / 'lme.json'}: record 1 (q1): field 'question': missing required field")
    rec = _record()
    del rec["haystack_sessions"][0][1]["content"]
    assert "record 0 (q1): field 'haystack_sessions[0][1].content': missing required field" \
        in _error(tmp_path, [rec])


def test_wrong_type(tmp_path: Path) -> None:
    rec = _record()
    rec["haystack_sessions"][0][0]["has_answer"] = "yes"
    assert "lme.json: record 0 (q1): field 'haystack_sessions[0][0].has_answer': expected " \
        "boolean, got string" in _error(tmp_path, [rec])
    rec = _record()
    rec["answer"] = ["a cat"]
    assert "record 0 (q1): field 'answer': expected string or number, got list" \
        in _error(tmp_path, [rec])


@pytest.mark.parametrize(("field", "value"), [
    ("question_date", "28 May 2023"),
    ("question_date", "2023/05/28 (Mon) 19:47"),  # 28 May 2023 was a Sunday
])
def test_unparseable_date(tmp_path: Path, field: str, value: str) -> None:
    rec = _record()
    rec[field] = value
    assert f"lme.json: record 0 (q1): field '{field}': unparseable date {value!r}" in _error(
        tmp_path, [rec])
    rec = _record()
    rec["haystack_dates"][1] = value
    assert f"record 0 (q1): field 'haystack_dates[1]': unparseable date {value!r}" in _error(
        tmp_path, [rec])


def test_inconsistent_record(tmp_path: Path) -> None:
    rec = _record()
    rec["haystack_dates"].pop()
    assert "record 0 (q1): field 'haystack_dates': haystack_session_ids, haystack_dates and " \
        "haystack_sessions differ in length (2, 1, 2)" in _error(tmp_path, [rec])
    rec = _record()
    rec["question_type"] = "single-session"
    assert "field 'question_type': unknown question type 'single-session'" in _error(
        tmp_path, [rec])
    rec = _record()
    rec["haystack_sessions"][1][0]["role"] = "system"
    assert "field 'haystack_sessions[1][0].role': unknown role 'system'" in _error(
        tmp_path, [rec])
    rec = _record()
    del rec["question_id"]
    assert "lme.json: record 0: field 'question_id': missing required field" in _error(
        tmp_path, [rec])


def test_unknown_answer_session_is_reported(tmp_path: Path) -> None:
    rec = _record()
    rec["answer_session_ids"].append("gone")
    ds = load_longmemeval(_write(tmp_path, [rec]))
    assert ds["q1"].probes[0].evidence_session_ids == ("answer_1",)
    assert ds.issues[-1].action == "dropped: no such session"
    assert ds.issues[-1].field == "answer_session_ids[1]"


def test_a_loader_flag_must_be_a_boolean() -> None:
    from memlab.data import load_dataset
    from memlab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"dataset 'longmemeval': clamp_asked_at must be "
                       r"true or false, got 'maybe'"):
        load_dataset("longmemeval", clamp_asked_at="maybe")
