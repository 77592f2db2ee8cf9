"""Malformed files that used to load silently or fail with an unlocated message (a fuzz run
of 121 bad inputs over the five loaders, session 32): each is now an error naming the file,
record and field, or a reported ``kept:`` issue. Built from slices of the real LoCoMo and
LongMemEval files and the OMI / agent fixtures."""

from __future__ import annotations

import copy
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import memlab
from memlab.data.loaders.native import save_native
from memlab.errors import DatasetError

DATA = Path(__file__).parent / "data"


def _locomo(locomo_path: Path) -> list[dict[str, Any]]:
    """conv-26 cut to two short sessions and one question."""
    record = copy.deepcopy(json.loads(locomo_path.read_text())[0])
    conversation = record["conversation"]
    record["conversation"] = {
        "speaker_a": conversation["speaker_a"], "speaker_b": conversation["speaker_b"],
        "session_1": conversation["session_1"][:4],
        "session_1_date_time": conversation["session_1_date_time"],
        "session_2": conversation["session_2"][:3],
        "session_2_date_time": conversation["session_2_date_time"]}
    record["qa"] = [{"question": "Q1?", "answer": "A1", "evidence": ["D1:3"], "category": 2}]
    for key in ("event_summary", "observation", "session_summary"):
        record[key] = {}
    return [record]


def _write(path: Path, value: Any) -> Path:
    path.write_text(value if isinstance(value, str) else json.dumps(value), encoding="utf-8")
    return path


def _huge_answer(data: list[dict[str, Any]]) -> str:
    data[0]["qa"][0]["answer"] = "@@"
    return json.dumps(data).replace('"@@"', "9" * 5000)


def _padded(data: list[dict[str, Any]]) -> None:
    data[0]["conversation"]["session_02"] = data[0]["conversation"].pop("session_2")


def _surrogate(data: list[dict[str, Any]]) -> str:
    text = data[0]["conversation"]["session_1"][0]["text"]
    return json.dumps(data).replace(json.dumps(text)[1:-1], "Hey \\ud800Mel", 1)


LOCOMO_CASES: list[tuple[str, Callable[[Any], Any], str]] = [
    ("a 5,000-digit number", _huge_answer,
     "JSON that cannot be read: Exceeds the limit (4300 digits)"),
    ("a zero-padded session key", _padded,
     "record 0 (conv-26): field 'conversation.session_02': session numbers are written "
     "without leading zeros: 'session_2', not 'session_02'"),
    ("an unpaired surrogate", _surrogate,
     "record conv-26: field 'sessions[0].turns[0].text': unpaired surrogate '\\ud800' at "
     "character 4"),
    ("no conversation", lambda data: [], "holds no conversation: nothing to replay"),
    # the file's own field names, not memlab's (probes[0].answer, sessions[0].turns[0].id)
    ("an empty answer", lambda data: data[0]["qa"][0].update(answer=" "),
     "record 0 (conv-26): field 'qa[0].answer': empty answer"),
    ("an empty question", lambda data: data[0]["qa"][0].update(question=""),
     "record 0 (conv-26): field 'qa[0].question': empty question"),
    ("an empty dia_id", lambda data: data[0]["conversation"]["session_1"][0].update(dia_id=""),
     "record 0 (conv-26): field 'conversation.session_1[0].dia_id': empty dia_id"),
]


@pytest.mark.parametrize(("case", "change", "says"), LOCOMO_CASES,
                         ids=[c[0] for c in LOCOMO_CASES])
def test_bad_locomo_files_are_located_errors(tmp_path: Path, locomo_path: Path, case: str,
                                             change: Callable[[Any], Any], says: str) -> None:
    data = _locomo(locomo_path)
    changed = change(data)
    path = _write(tmp_path / "bad.json", data if changed is None else changed)
    with pytest.raises(DatasetError) as info:
        memlab.load_dataset("locomo", path=path)
    assert str(info.value).startswith(f"{path}: "), info.value
    assert says in str(info.value), info.value


@pytest.mark.parametrize(("question_id", "record"), [("", "#0 (no id)"),
                                                     ("\u200b", "#0 (no id)")])
def test_an_empty_or_invisible_question_id_is_named_by_position(
        tmp_path: Path, longmemeval_path: Path, question_id: str, record: str) -> None:
    [question] = copy.deepcopy(json.loads(longmemeval_path.read_text())[:1])
    question["question_id"] = question_id
    path = _write(tmp_path / "lme.json", [question])
    with pytest.raises(DatasetError, match="empty conversation id") as info:
        memlab.load_dataset("longmemeval", path=path)
    assert f"record {record}: field 'id'" in str(info.value)


@pytest.mark.parametrize(("field", "says"), [("question", "empty question"),
                                             ("answer", "empty answer")])
def test_an_empty_longmemeval_question_or_answer_names_the_files_field(
        tmp_path: Path, longmemeval_path: Path, field: str, says: str) -> None:
    [question] = copy.deepcopy(json.loads(longmemeval_path.read_text())[:1])
    question[field] = ""
    path = _write(tmp_path / "lme.json", [question])
    with pytest.raises(DatasetError, match=f"record 0 \\({question['question_id']}\\): "
                                           f"field '{field}': {says}"):
        memlab.load_dataset("longmemeval", path=path)


def test_an_unpaired_surrogate_never_reaches_a_file_memlab_writes(
        tmp_path: Path, locomo_path: Path) -> None:
    path = _write(tmp_path / "bad.json", _surrogate(_locomo(locomo_path)))
    with pytest.raises(DatasetError):
        save_native(memlab.load_dataset("locomo", path=path), tmp_path / "x.jsonl")
    assert not (tmp_path / "x.jsonl").exists()


def _omi() -> list[dict[str, Any]]:
    return json.loads((DATA / "omi" / "transcripts.json").read_text())  # type: ignore[no-any-return]


def test_an_omi_stream_dated_past_year_9999_is_a_located_error(tmp_path: Path) -> None:
    streams = _omi()
    streams[0]["started_at"] = "9999-12-31T23:00:00"
    path = _write(tmp_path / "omi.json", streams)
    with pytest.raises(DatasetError, match=r"record 0 \(user-margaret\): field 'started_at': "
                                           "started_at 9999-12-31T23:00:00"):
        memlab.load_dataset("omi", path=path)


def test_an_omi_jsonl_file_with_a_byte_order_mark_and_a_blank_line_loads(
        tmp_path: Path) -> None:
    segments = _omi()[0]["segments"]
    path = tmp_path / "omi.jsonl"
    path.write_bytes(b"\xef\xbb\xbf\n" + "\n".join(map(json.dumps, segments)).encode() + b"\n")
    [conversation] = memlab.load_dataset("omi", path=path).conversations
    assert len(list(conversation.turns())) == sum(
        1 for s in segments if s.get("type") != "stop_conversation")


def test_an_empty_omi_probes_file_is_an_error(tmp_path: Path) -> None:
    empty = _write(tmp_path / "probes.jsonl", "")
    with pytest.raises(DatasetError, match="the probes file holds no probe"):
        memlab.load_dataset("omi", path=DATA / "omi" / "transcripts.json", probes_path=empty)


def _agent() -> dict[str, Any]:
    return json.loads((DATA / "agent" / "export.json").read_text())  # type: ignore[no-any-return]


def test_an_agent_message_of_another_user_is_an_error(tmp_path: Path) -> None:
    export = _agent()
    user = next(iter(export["users"]))
    export["users"][user]["messages"][0]["user_id"] = "bob"
    path = _write(tmp_path / "export.json", export)
    with pytest.raises(DatasetError, match=f"record users.{user}: field 'messages\\[0\\]"
                                           f".user_id': a message of user 'bob' in the "
                                           f"history of user '{user}'"):
        memlab.load_dataset("agent", path=path)


def test_agent_turns_out_of_time_order_are_kept_and_reported(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export = _agent()
    user = next(iter(export["users"]))
    export["users"][user]["messages"][0]["at"] = "2027-01-01T00:00:00+00:00"
    source = _write(tmp_path / "export.json", export)
    loaded = memlab.load_dataset("agent", path=source)
    assert [i.action for i in loaded.issues] == ["kept: turns out of time order"]
    # memlab's own format refuses what the loader keeps: convert says whose it is
    from memlab.data.__main__ import main

    assert main(["convert", f"agent={source}", "--out", str(tmp_path / "out.jsonl")]) == 2
    said = capsys.readouterr().err
    assert f"the source (agent={source}) loaded with 1 issue(s) its loader keeps but " \
        "memlab's file format refuses (kept: turns out of time order)" in said
    assert "Fix it in the source" in said and not (tmp_path / "out.jsonl").exists()


def test_a_data_directory_with_a_broken_meta_names_user_and_message(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "conversations.db") as db:
        db.execute("CREATE TABLE messages (seq INTEGER PRIMARY KEY, user_id, session_id, "
                   "kind, role, content, at, meta)")
        db.executemany("INSERT INTO messages (user_id, session_id, kind, role, content, at, "
                       "meta) VALUES ('ana', 's1', 'chat', ?, ?, '2026-01-01T00:00:00Z', ?)",
                       [("user", "hi", "{}"), ("assistant", "hello", "{not json")])
    with pytest.raises(DatasetError, match=r"record users.ana: field 'messages\[1\].meta': "
                                           "the message's meta is not JSON"):
        memlab.load_dataset("agent", path=tmp_path)


def test_a_conversation_without_turns_is_kept_and_reported(tmp_path: Path) -> None:
    streams = _omi()
    native = memlab.load_dataset("omi", path=_write(tmp_path / "omi.json", streams))
    empty = type(native.conversations[0])("quiet", (), (), ())
    path = save_native(type(native)("n", (native.conversations[0], empty)),
                       tmp_path / "n.jsonl")
    loaded = memlab.load_dataset("memlab", path=path)
    assert [(i.conversation_id, i.action) for i in loaded.issues] == [
        ("quiet", "kept: conversation without turns")]


def test_a_duplicate_conversation_names_both_records(tmp_path: Path, locomo_path: Path) -> None:
    data = _locomo(locomo_path)
    path = _write(tmp_path / "twice.json", data + copy.deepcopy(data))
    with pytest.raises(DatasetError) as info:
        memlab.load_dataset("locomo", path=path)
    assert str(info.value).startswith(
        f"{path}: record #1 (conv-26): field 'id': duplicate conversation id 'conv-26', first "
        "at #0 (conv-26), id")


def test_convert_writes_any_dataset_as_a_memlab_file_losslessly(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from memlab.data.__main__ import main

    out = tmp_path / "two.jsonl"
    assert main(["convert", "locomo", "--conversation", "conv-26,conv-30",
                 "--out", str(out)]) == 0
    assert f"wrote {out}: 2 conversations" in capsys.readouterr().out
    source = memlab.load_dataset("locomo")
    back = memlab.load_dataset("memlab", path=out)
    assert back.conversations == tuple(c for c in source.conversations
                                       if c.id in ("conv-26", "conv-30"))
    assert back.issues == tuple(i for i in source.issues
                                if i.conversation_id in ("conv-26", "conv-30"))
    assert main(["convert", "locomo", "--out", str(out)]) == 2  # exists: --force replaces
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["convert", "locomo", "--conversation", "conv-99", "--out",
                 str(tmp_path / "x.jsonl")]) == 2
    assert "no conversation 'conv-99' in locomo (it has 10: conv-26" in capsys.readouterr().err
    gone = tmp_path / "gone.json"  # a file that is not there: bad input, exit 2 everywhere
    assert main(["convert", f"locomo={gone}", "--out", str(tmp_path / "y.jsonl")]) == 2
    assert main(["stats", f"locomo={gone}"]) == 2
    assert capsys.readouterr().err.count(f"error: {gone}: file not found") == 2
    locomo = memlab.data.paths.benchmark_file("locomo10.json")
    assert main(["stats", f"locomo={locomo}", "--issues"]) == 0  # each repair, drop, keep
    listed = capsys.readouterr().out
    assert "locomo issues (26):" in listed
    assert "  conv-50 conv-50:q69 'qa[69].evidence[0]': unpadded ('D30:05')" in listed
    padded = tmp_path / "padded.json"
    assert main(["convert", "locomo", "--conversation", "conv-30", "--option",
                 "haystack={tokens: 30000, seed: 0}", "--out", str(padded)]) == 0
    [history] = memlab.load_dataset("memlab", path=padded).conversations
    assert len(history.sessions) > len(source["conv-30"].sessions)  # others' sessions in it
