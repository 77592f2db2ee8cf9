"""memlab's own format: lossless round trips and located errors on bad input."""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import memlab
from memlab.data.loaders.native import FORMAT, VERSION, load_native, save_native
from memlab.data.paths import SYNTHETIC_DEFAULT
from memlab.data.schema import Conversation, DataIssue, Dataset, Probe, Role, Session, Turn
from memlab.errors import DatasetError

TOKYO = timezone(timedelta(hours=9))
NEWFOUNDLAND = timezone(timedelta(hours=-3, minutes=-30))


def rich_dataset() -> Dataset:
    """Every field and value kind the schema allows, with non-UTC input times."""
    t0 = datetime(2023, 5, 8, 13, 56, 7, 123456, tzinfo=TOKYO)
    s1 = Session("session_1", t0, (
        Turn("D1:1", "session_1", "Caroline", Role.USER, "Hey Mel! 🌻 ça va?", t0,
             {"image_caption": "a photo of a sunflower", "image_urls": ("http://x/a.jpg",)}),
        Turn("D1:2", "session_1", "Melanie", Role.OTHER, "Line one\nline \"two\"",
             t0 + timedelta(seconds=30)),
    ), {"summary": None, "events": {"Caroline": ["went to a support group"]}})
    t1 = datetime(2023, 5, 20, 9, 0, tzinfo=NEWFOUNDLAND)
    s2 = Session("session_2", t1, (
        Turn("D2:1", "session_2", "Bot", Role.ASSISTANT, "", t1, {"score": 0.25, "n": 3}),
    ))
    probes = (
        Probe("conv-1:q0", "When did Caroline go?", "7 May 2023", ("D1:1", "D2:1"),
              ("session_1", "session_2"), "temporal", t1, category_id=2,
              metadata={"raw_evidence": ("D1:1; D2:1",), "seen": datetime(2023, 1, 1)}),
        Probe("conv-1:q1", "What is her dog's name?", "Not mentioned", (), (), "adversarial",
              datetime(2023, 6, 1, tzinfo=UTC), abstention=True, category_id="5",
              metadata={"adversarial_answer": "Rex", "nested": [{"a": (1, 2)}, []]}),
        Probe("conv-1:q2", "Q?", "A", ("D1:2",), ("session_1",), "single-session-user",
              datetime(2023, 6, 1, tzinfo=UTC)),
    )
    conv = Conversation("conv-1", ("Caroline", "Melanie", "Bot"), (s1, s2), probes,
                        {"speaker_a": "Caroline", "flags": (True, False, None)})
    empty = Conversation("conv-2", (), (), ())
    return Dataset("rich", (conv, empty), source="hand-built",
                   issues=(DataIssue("conv-1", "conv-1:q0", "qa[0].evidence", "D:1",
                                     "dropped: malformed"),),
                   metadata={"version": 3, "when": datetime(2024, 2, 3, 4, 5, tzinfo=TOKYO)})


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_rich_dataset_round_trips_exactly(tmp_path: Path, suffix: str) -> None:
    original = rich_dataset()
    path = save_native(original, tmp_path / f"rich{suffix}")
    back = load_native(path)
    said = DataIssue("conv-2", "conv-2", "sessions", "0", "kept: conversation without turns")
    assert back == dataclasses.replace(original, issues=(*original.issues, said))
    turn = back["conv-1"].sessions[1].turns[0]
    assert turn.at.tzinfo is UTC and turn.at == datetime(2023, 5, 20, 12, 30, tzinfo=UTC)
    probes = back["conv-1"].probes
    assert probes[0].category_id == 2 and probes[1].category_id == "5"
    assert probes[2].category_id is None and probes[1].abstention is True
    assert isinstance(probes[0].metadata["raw_evidence"], tuple)
    assert back.metadata["when"].utcoffset() == timedelta(hours=9)  # metadata kept as given
    assert back.source == "hand-built"
    again = save_native(back, tmp_path / f"again{suffix}")
    assert load_native(again) == back  # the note is said once, not again on every load
    assert save_native(load_native(again), tmp_path / f"third{suffix}").read_bytes() == \
        again.read_bytes()


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_locomo_round_trips_exactly(tmp_path: Path, locomo_dataset: Dataset,
                                    suffix: str) -> None:
    back = load_native(save_native(locomo_dataset, tmp_path / f"locomo{suffix}"))
    assert back == locomo_dataset
    assert back.stats()["turns"] == 5882 and back.stats()["probes"] == 1986


def test_longmemeval_round_trips_exactly(tmp_path: Path, longmemeval_dataset: Dataset) -> None:
    back = memlab.load_dataset("memlab", path=save_native(longmemeval_dataset,
                                                          tmp_path / "lme.jsonl"))
    assert back == longmemeval_dataset
    assert back.stats()["probes"] == 500


def test_committed_synthetic_file_is_what_the_writer_writes(tmp_path: Path) -> None:
    dataset = memlab.load_dataset("synthetic")
    rewritten = save_native(dataset, tmp_path / "synthetic-small.jsonl")
    assert rewritten.read_bytes() == SYNTHETIC_DEFAULT.read_bytes()


# ------------------------------------------------------------- hand-written files

def minimal_conversation() -> dict[str, Any]:
    """A conversation as a user would write it: optional fields left out."""
    return {
        "id": "c1",
        "sessions": [
            {"id": "s1", "started_at": "2024-03-01T09:00:00",
             "turns": [{"id": "s1:t1", "speaker": "ann", "role": "user", "text": "I love figs."},
                       {"id": "s1:t2", "speaker": "bot", "role": "assistant", "text": "Noted.",
                        "at": "2024-03-01T09:01:00+00:00"}]},
            {"id": "s2", "started_at": "2024-03-05T10:00:00+02:00",
             "turns": [{"id": "s2:t1", "speaker": "ann", "role": "user", "text": "Hi.",
                        "at": "2024-03-05T08:00:00Z"}]},
        ],
        "probes": [{"id": "q1", "question": "What fruit do I love?", "answer": "figs",
                    "category": "single-session-user", "asked_at": "2024-03-06T00:00:00Z",
                    "evidence_turn_ids": ["s1:t1"]}],
    }


def write_jsonl(path: Path, *conversations: dict[str, Any],
                header: dict[str, Any] | None = None) -> Path:
    head = header if header is not None else {"format": FORMAT, "version": VERSION}
    path.write_text("".join(json.dumps(x) + "\n" for x in [head, *conversations]),
                    encoding="utf-8")
    return path


def test_hand_written_file_gets_documented_defaults(tmp_path: Path) -> None:
    dataset = load_native(write_jsonl(tmp_path / "mine.jsonl", minimal_conversation()))
    conv = dataset["c1"]
    assert dataset.name == "mine" and dataset.source == str(tmp_path / "mine.jsonl")
    assert conv.speakers == ("ann", "bot")
    first = conv.sessions[0].turns[0]
    assert first.at == datetime(2024, 3, 1, 9, 0, tzinfo=UTC) and first.at.tzinfo is UTC
    assert first.session_id == "s1" and first.metadata == {}
    assert conv.sessions[1].started_at == datetime(2024, 3, 5, 8, 0, tzinfo=UTC)
    probe = conv.probes[0]
    assert probe.evidence_session_ids == ("s1",) and probe.abstention is False
    assert probe.category_id is None


def load_error(tmp_path: Path, conversation: dict[str, Any]) -> str:
    path = write_jsonl(tmp_path / "bad.jsonl", minimal_conversation(), conversation)
    with pytest.raises(DatasetError) as info:
        load_native(path)
    return str(info.value)


def mutated(change: Any) -> dict[str, Any]:
    conv = copy.deepcopy(minimal_conversation())
    conv["id"] = "c2"
    change(conv)
    return conv


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nope\.jsonl: file not found"):
        memlab.load_dataset("memlab", path=tmp_path / "nope.jsonl")


def test_the_json_form_in_a_jsonl_file_says_which_form_it_is(tmp_path: Path) -> None:
    whole = tmp_path / "all.jsonl"
    whole.write_text('{"format": "memlab-conversations", "version": 1, "conversations": []}\n')
    with pytest.raises(DatasetError, match=r"all\.jsonl: record line 1 \(header\): field "
                       r"'conversations': a \.jsonl file's first line is the header alone.*"
                       r"name the file \.json"):
        load_native(whole)


def test_invalid_json_names_file_and_line(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", minimal_conversation())
    path.write_text(path.read_text() + '{"id": "c2", "sessions": [}\n')
    with pytest.raises(DatasetError, match=r"bad\.jsonl: record line 3: invalid JSON at column"):
        load_native(path)
    whole = tmp_path / "bad.json"
    whole.write_text('{"format": "memlab-conversations",\n "version": 1,, }')
    with pytest.raises(DatasetError, match=r"bad\.json: invalid JSON at line 2, column 15"):
        load_native(whole)


def test_missing_field_names_record_and_field(tmp_path: Path) -> None:
    message = load_error(tmp_path, mutated(lambda c: c["sessions"][1]["turns"][0].pop("text")))
    assert message == (f"{tmp_path / 'bad.jsonl'}: record line 3 (c2): "
                       "field 'sessions[1].turns[0].text': missing required field")


def test_wrong_type_names_record_and_field(tmp_path: Path) -> None:
    message = load_error(tmp_path, mutated(lambda c: c["probes"][0].update(abstention="yes")))
    assert "record line 3 (c2): field 'probes[0].abstention': expected boolean, got string" \
        in message
    message = load_error(tmp_path, mutated(lambda c: c["probes"][0].update(category_id=True)))
    assert "field 'probes[0].category_id': expected integer or string or null" in message
    message = load_error(tmp_path, mutated(lambda c: c["probes"][0].update(
        evidence_turn_ids=["s1:t1", 7])))
    assert "field 'probes[0].evidence_turn_ids[1]': expected string, got integer" in message


def test_missing_conversation_id_names_the_line(tmp_path: Path) -> None:
    message = load_error(tmp_path, mutated(lambda c: c.pop("id")))
    assert message.endswith("bad.jsonl: record line 3: field 'id': missing required field")


def test_unparseable_date_names_record_and_field(tmp_path: Path) -> None:
    message = load_error(tmp_path, mutated(
        lambda c: c["sessions"][1]["turns"][0].update(at="next tuesday")))
    assert "record line 3 (c2): field 'sessions[1].turns[0].at': unparseable date " \
           "'next tuesday'" in message


def test_duplicate_turn_id_is_an_error(tmp_path: Path) -> None:
    message = load_error(tmp_path, mutated(
        lambda c: c["sessions"][1]["turns"][0].update(id="s1:t2")))
    assert ("record line 3 (c2): field 'sessions[1].turns[0].id': duplicate turn id 's1:t2' "
            "(first at sessions[0].turns[1])") in message


@pytest.mark.parametrize("mutate, expected", [
    (lambda c: (c["probes"][0].update(id="q2"), c["sessions"][1]["turns"][0].update(id=" ")),
     "field 'sessions[1].turns[0].id': empty turn id"),
    (lambda c: (c["probes"][0].update(id="q2"), c["sessions"][1].update(id="")),
     "field 'sessions[1].id': empty session id"),
    (lambda c: c["probes"][0].update(id="", evidence_turn_ids=[], evidence_session_ids=[]),
     "field 'probes[0].id': empty probe id"),
    (lambda c: c["probes"][0].update(id="q2", answer=" "),
     "field 'probes[0].answer': probe 'q2' has an empty gold answer"),
])
def test_empty_ids_and_gold_answers_are_errors(tmp_path: Path, mutate: Any,
                                               expected: str) -> None:
    message = load_error(tmp_path, mutated(mutate))
    assert "record line 3 (c2): " in message and expected in message, message


def test_evidence_that_names_no_turn_is_an_error(tmp_path: Path) -> None:
    message = load_error(tmp_path, mutated(
        lambda c: c["probes"][0].update(evidence_turn_ids=["s1:t1", "s9:t9"])))
    assert ("record line 3 (c2): field 'probes[0].evidence_turn_ids[1]': evidence turn 's9:t9' "
            "is not a turn of this conversation") in message
    message = load_error(tmp_path, mutated(
        lambda c: c["probes"][0].update(evidence_session_ids=["s3"])))
    assert "field 'probes[0].evidence_session_ids[0]': evidence session 's3'" in message


def test_evidence_named_twice_or_outside_its_sessions_is_an_error(tmp_path: Path) -> None:
    """Turn- and session-level metrics must score the same evidence: each id once, and the
    sessions listed hold every evidence turn. Errors from the checks every loader shares
    name the record by its line, as the native reader's own do."""
    message = load_error(tmp_path, mutated(
        lambda c: c["probes"][0].update(id="q2", evidence_turn_ids=["s1:t1", "s1:t1"])))
    assert message == (f"{tmp_path / 'bad.jsonl'}: record line 3 (c2): field "
                       "'probes[0].evidence_turn_ids': probe 'q2' names evidence 's1:t1' twice")
    message = load_error(tmp_path, mutated(lambda c: c["probes"][0].update(
        id="q2", evidence_turn_ids=["s2:t1"], evidence_session_ids=["s1"])))
    assert message.endswith("record line 3 (c2): field 'probes[0].evidence_session_ids': "
                            "probe 'q2': evidence turn 's2:t1' is in session 's2', which is "
                            "not among its evidence sessions ['s1']")
    message = load_error(tmp_path, mutated(lambda c: (c.update(speakers=["ann"]),
                                                      c["probes"][0].update(id="q2"))))
    assert "record line 3 (c2): field 'sessions[0].turns[1].speaker'" in message


def test_sessions_out_of_time_order_are_an_error(tmp_path: Path) -> None:
    message = load_error(tmp_path, mutated(
        lambda c: c["sessions"][1].update(started_at="2024-02-01T00:00:00Z")))
    assert ("record line 3 (c2): field 'sessions[1].started_at': session 's2' starts at "
            "2024-02-01T00:00:00Z, before the previous session 's1'") in message


def test_turn_before_its_session_start_is_an_error(tmp_path: Path) -> None:
    message = load_error(tmp_path, mutated(
        lambda c: c["sessions"][0]["turns"][1].update(at="2024-03-01T08:59:59Z")))
    assert "field 'sessions[0].turns[1].at': turn time 2024-03-01T08:59:59Z is before" in message

    def untimed_after_timed(c: dict[str, Any]) -> None:
        first, second = c["sessions"][0]["turns"]
        first["at"] = "2024-03-01T09:05:00Z"
        second.pop("at")
    message = load_error(tmp_path, mutated(untimed_after_timed))
    assert ("field 'sessions[0].turns[1].at': turn time 2024-03-01T09:00:00Z (its session's "
            "start, which a turn without `at` takes) is before") in message


def test_unknown_field_and_role_are_errors(tmp_path: Path) -> None:
    message = load_error(tmp_path, mutated(lambda c: c["probes"][0].update(
        evidence_turn_id=["s1:t1"])))
    assert "field 'probes[0].evidence_turn_id': unknown field; did you mean " \
           "'evidence_turn_ids'?" in message
    message = load_error(tmp_path, mutated(
        lambda c: c["sessions"][0]["turns"][0].update(role="human")))
    assert "field 'sessions[0].turns[0].role': unknown role 'human'; choose user, assistant, " \
           "other" in message


def test_duplicate_ids_across_records_are_errors(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "dup.jsonl", minimal_conversation(), minimal_conversation())
    with pytest.raises(DatasetError, match=r"record line 3: field 'id': duplicate conversation "
                                           r"id 'c1'"):
        load_native(path)
    message = load_error(tmp_path, mutated(lambda c: c["probes"].append(c["probes"][0])))
    assert "field 'probes[1].id': duplicate probe id 'q1'" in message


def test_format_and_version_are_checked(tmp_path: Path) -> None:
    conv = minimal_conversation()
    with pytest.raises(DatasetError, match=r"record line 1 \(header\): field 'version': "
                                           r"unsupported version 2; this memlab reads version 1"):
        load_native(write_jsonl(tmp_path / "v2.jsonl", conv,
                                header={"format": FORMAT, "version": 2}))
    with pytest.raises(DatasetError, match=r"field 'format': expected 'memlab-conversations', "
                                           r"got 'locomo'"):
        load_native(write_jsonl(tmp_path / "f.jsonl", conv,
                                header={"format": "locomo", "version": 1}))
    headless = tmp_path / "headless.jsonl"
    headless.write_text(json.dumps(conv) + "\n")
    with pytest.raises(DatasetError, match=r"record line 1 \(header\): not a memlab-conversations "
                                           r"file: "
                                           r"the first line must be an object"):
        load_native(headless)
    whole = tmp_path / "whole.json"
    whole.write_text(json.dumps({"format": FORMAT, "conversations": [conv]}))
    with pytest.raises(DatasetError, match=r"whole\.json: field 'version': missing required"):
        load_native(whole)
    csv = tmp_path / "x.csv"
    csv.write_text("a,b\n")
    with pytest.raises(DatasetError, match=r"x\.csv: unknown file type '\.csv'; use \.json or "):
        load_native(csv)


def test_byte_order_marks_and_ndjson_files_are_read(tmp_path: Path) -> None:
    """What Windows editors and other tools write: a UTF-8 byte-order mark, the .ndjson
    or upper-case suffix."""
    lines = write_jsonl(tmp_path / "mine.jsonl", minimal_conversation()).read_bytes()
    for name in ("bom.jsonl", "chats.ndjson", "CHATS.JSONL"):
        path = tmp_path / name
        path.write_bytes((b"\xef\xbb\xbf" if name.startswith("bom") else b"") + lines)
        assert load_native(path)["c1"].probes[0].answer == "figs"
    whole = tmp_path / "bom.json"
    whole.write_bytes(b"\xef\xbb\xbf" + json.dumps(
        {"format": FORMAT, "version": VERSION, "conversations": [minimal_conversation()]}
    ).encode())
    assert load_native(whole)["c1"].probes[0].answer == "figs"
    broken = tmp_path / "cut.jsonl"  # a raw line break inside a string
    broken.write_bytes(lines.replace(b"I love figs.", b"I love\tfigs."))
    with pytest.raises(DatasetError) as info:
        load_native(broken)
    assert str(info.value).endswith(": Invalid control character")


def test_json_file_records_are_conversation_indexes(tmp_path: Path) -> None:
    bad = minimal_conversation()
    bad["sessions"][0]["turns"][0]["speaker"] = 3
    path = tmp_path / "whole.json"
    path.write_text(json.dumps({"format": FORMAT, "version": 1,
                                "conversations": [mutated(lambda c: None), bad]}))
    with pytest.raises(DatasetError, match=r"whole\.json: record conversation 1 \(c1\): field "
                                           r"'sessions\[0\]\.turns\[0\]\.speaker': expected "
                                           r"string, got integer"):
        load_native(path)


def test_writer_refuses_what_the_reader_would_reject(tmp_path: Path) -> None:
    rich = rich_dataset()
    conv = rich.conversations[0]
    broken_probe = Probe("p", "q", "a", ("D7:7",), (), "x", conv.probes[0].asked_at)
    broken = Dataset("b", (Conversation("conv-1", (), conv.sessions, (broken_probe,)),))
    with pytest.raises(DatasetError, match=r"out\.jsonl: record conversation 0 \(conv-1\): "
                                           r"field 'probes\[0\]\.evidence_turn_ids\[0\]'"):
        save_native(broken, tmp_path / "out.jsonl")
    stray = Turn("x", "session_9", "a", Role.USER, "hi", conv.sessions[0].started_at)
    moved = Session("session_1", stray.at, (stray,))
    with pytest.raises(DatasetError, match=r"field 'sessions\[0\]\.turns\[0\]\.session_id': turn "
                                           r"says session 'session_9' but sits in 'session_1'"):
        save_native(Dataset("b", (Conversation("c", (), (moved,), ()),)), tmp_path / "out.jsonl")
    odd = Dataset("b", (Conversation("c", (), (), (), {"tags": {"a", "b"}}),))
    with pytest.raises(DatasetError, match=r"field 'conversation\.metadata\.tags': cannot write "
                                           r"a set value"):
        save_native(odd, tmp_path / "out.json")
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "out.json").exists()


def test_a_session_without_turns_is_kept_and_reported(tmp_path: Path) -> None:
    conv = mutated(lambda c: (c["probes"][0].update(id="q2"),
                              c["sessions"][1].update(turns=[])))
    conv["probes"][0].update(evidence_turn_ids=["s1:t1"], evidence_session_ids=["s1"])
    path = write_jsonl(tmp_path / "empty.jsonl", minimal_conversation(), conv)
    ds = load_native(path)
    assert [(i.conversation_id, i.field, i.action) for i in ds.issues] == [
        ("c2", "sessions[1].turns", "kept: session without turns")]
    assert len(ds["c2"].sessions) == 2
