"""OMI transcript loader: timeout rules, segmentation, speakers, times, probes, errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import memlab
from memlab.data import Role
from memlab.data.loaders.omi import effective_timeout, load_omi
from memlab.errors import ConfigError, DatasetError

DATA = Path(__file__).parent / "data" / "omi"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def seg(start: float, end: float | None = None, text: str = "hello", is_user: bool = True,
        speaker_id: int = 0, **extra: Any) -> dict[str, Any]:
    end = start + 2.0 if end is None else end
    return {"text": text, "is_user": is_user, "speaker_id": speaker_id, "start": start,
            "end": end, **extra}


STOP = {"type": "stop_conversation"}


def write(tmp_path: Path, data: Any, name: str = "omi.json") -> Path:
    path = tmp_path / name
    if name.endswith(".jsonl"):
        path.write_text("".join(json.dumps(item) + "\n" for item in data), encoding="utf-8")
    else:
        path.write_text(json.dumps(data), encoding="utf-8")
    return path


def session_sizes(tmp_path: Path, segments: list[dict], **options: Any) -> list[int]:
    ds = load_omi(write(tmp_path, segments), **options)
    return [len(s.turns) for s in ds[0].sessions]


def located(exc: pytest.ExceptionInfo[DatasetError], path: Path, record: Any, field: str) -> None:
    err = exc.value
    assert (err.path, err.record, err.field) == (str(path), record, field)
    assert str(err).startswith(f"{path}: record {record}: field '{field}': ")


# --- timeout rules ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "effective"),
    [(50, 120), (-1, 14400), (20000, 14400), (300, 300), (120, 120), (0, 120), (-5, 120),
     (119.5, 120), (14400, 14400), (14401, 14400)],
)
def test_timeout_follows_omi_rules(requested: float, effective: float) -> None:
    assert effective_timeout(requested) == effective


@pytest.mark.parametrize("bad", ["120", True, None, float("nan")])
def test_timeout_must_be_a_number(bad: Any, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="conversation_timeout"):
        load_omi(write(tmp_path, [seg(0)]), conversation_timeout=bad)


@pytest.mark.parametrize(
    ("timeout", "gap", "sizes"),
    [
        (120, 119.9, [2]), (120, 120.1, [1, 1]), (120, 120.0, [1, 1]),  # default 120 s
        (50, 100.0, [2]), (50, 119.9, [2]), (50, 120.0, [1, 1]),  # raised to 120
        (300, 200.0, [2]), (300, 299.9, [2]), (300, 300.0, [1, 1]),
        (-1, 14399.5, [2]), (-1, 14400.0, [1, 1]),  # -1 means 4 h
        (20000, 14399.5, [2]), (20000, 14400.0, [1, 1]), (20000, 19999.0, [1, 1]),  # capped
    ],
)
def test_silence_at_least_the_timeout_starts_a_new_session(
    tmp_path: Path, timeout: float, gap: float, sizes: list[int]
) -> None:
    # The first segment ends at 10.0 s; the second starts `gap` seconds later.
    segments = [seg(0.0, 10.0), seg(10.0 + gap, 12.0 + gap)]
    assert session_sizes(tmp_path, segments, conversation_timeout=timeout) == sizes


def test_silence_counts_from_the_latest_end_heard(tmp_path: Path) -> None:
    # seg-0 (0-200 s) overlaps seg-1 (50-60 s); seg-2 at 250 s is 50 s after the latest
    # end (200 s) although 190 s after seg-1's end, so all three form one session.
    segments = [seg(0, 200), seg(50, 60, is_user=False, speaker_id=1), seg(250, 255)]
    assert session_sizes(tmp_path, segments) == [3]
    segments[2] = seg(320, 325)
    assert session_sizes(tmp_path, segments) == [2, 1]


def test_stream_can_set_its_own_timeout(tmp_path: Path) -> None:
    streams = [
        {"id": "short", "segments": [seg(0, 10), seg(200, 210)]},
        {"id": "long", "conversation_timeout": 600, "segments": [seg(0, 10), seg(200, 210)]},
        {"id": "max", "conversation_timeout": -1, "segments": [seg(0, 10), seg(14000, 14010)]},
    ]
    ds = load_omi(write(tmp_path, streams))
    assert [len(c.sessions) for c in ds] == [2, 1, 1]
    assert [c.metadata["conversation_timeout"] for c in ds] == [120, 600, 14400]


# --- stop marker --------------------------------------------------------------------------


def test_stop_marker_ends_a_session_and_is_not_a_turn(tmp_path: Path) -> None:
    segments = [seg(0), seg(3), STOP, seg(6), seg(9)]
    conv = load_omi(write(tmp_path, segments))[0]
    assert [[t.id for t in s.turns] for s in conv.sessions] == [["seg-0", "seg-1"],
                                                                  ["seg-3", "seg-4"]]
    assert [s.id for s in conv.sessions] == ["stream-0-c1", "stream-0-c2"]
    assert [s.metadata["ended_by"] for s in conv.sessions] == ["stop_conversation",
                                                               "end_of_stream"]


def test_leading_repeated_and_trailing_markers_make_no_empty_sessions(tmp_path: Path) -> None:
    segments = [STOP, seg(0), STOP, STOP, seg(5), seg(500), STOP]
    conv = load_omi(write(tmp_path, segments))[0]
    assert [[t.id for t in s.turns] for s in conv.sessions] == [["seg-1"], ["seg-4"], ["seg-5"]]
    assert [s.metadata["ended_by"] for s in conv.sessions] == [
        "stop_conversation", "timeout", "stop_conversation"]


def test_unknown_marker_type_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, [seg(0), {"type": "pause"}])
    with pytest.raises(DatasetError, match="unknown type 'pause'") as exc:
        load_omi(path)
    located(exc, path, 1, "type")


# --- speakers and turns -------------------------------------------------------------------


def test_speaker_mapping_follows_segments_as_string(tmp_path: Path) -> None:
    segments = [seg(0, is_user=True, speaker_id=0)]
    segments += [seg(3 * i, is_user=False, speaker_id=i) for i in range(1, 4)]
    segments += [seg(12, is_user=False, speaker_id=0), seg(15, is_user=True, speaker_id=2)]
    conv = load_omi(write(tmp_path, segments))[0]
    turns = list(conv.turns())
    assert [t.speaker for t in turns] == ["User", "Speaker 1", "Speaker 2", "Speaker 3",
                                          "Speaker 0", "User"]
    assert [t.role for t in turns] == [Role.USER] + [Role.OTHER] * 4 + [Role.USER]
    assert conv.speakers == ("User", "Speaker 1", "Speaker 2", "Speaker 3", "Speaker 0")
    assert turns[1].metadata == {"start": 3.0, "end": 5.0, "speaker_id": 1, "is_user": False}


def test_speaker_id_falls_back_to_omi_speaker_label_then_zero(tmp_path: Path) -> None:
    plain = {"text": "hi", "is_user": False, "start": 0, "end": 1}
    segments = [{**plain, "speaker": "SPEAKER_02"}, {**plain, "start": 2, "end": 3},
                {**plain, "start": 4, "end": 5, "speaker_id": None, "speaker": "SPEAKER_11"}]
    turns = list(load_omi(write(tmp_path, segments))[0].turns())
    assert [t.speaker for t in turns] == ["Speaker 2", "Speaker 0", "Speaker 11"]


def test_bad_speaker_label_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, [{"text": "hi", "is_user": False, "start": 0, "end": 1,
                             "speaker": "Bob"}])
    with pytest.raises(DatasetError, match="SPEAKER_<n>") as exc:
        load_omi(path)
    located(exc, path, 0, "speaker")


def test_user_name_option_and_stream_override(tmp_path: Path) -> None:
    streams = [{"id": "a", "segments": [seg(0)]},
               {"id": "b", "user_name": "James", "segments": [seg(0)]},
               {"id": "c", "user_name": "", "segments": [seg(0)]}]
    ds = load_omi(write(tmp_path, streams), user_name="Margaret")
    assert [c.sessions[0].turns[0].speaker for c in ds] == ["Margaret", "James", "User"]


def test_text_is_stripped_and_ids_are_given_or_positional(tmp_path: Path) -> None:
    segments = [seg(0, text="  hi there \n"), STOP, seg(4, id="x-7"), seg(6, id=12), seg(8)]
    turns = list(load_omi(write(tmp_path, segments))[0].turns())
    assert [t.id for t in turns] == ["seg-0", "x-7", "12", "seg-4"]
    assert turns[0].text == "hi there"


def test_duplicate_turn_id_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, {"id": "u1", "segments": [seg(0, id="a"), seg(2, id="a")]})
    with pytest.raises(DatasetError, match="duplicate segment id 'a'") as exc:
        load_omi(path)
    located(exc, path, "0 (u1)", "segments[1].id")


# --- timestamps ---------------------------------------------------------------------------


def test_turn_times_are_stream_start_plus_offset_in_utc(tmp_path: Path) -> None:
    stream = {"uid": "u1", "started_at": "2025-11-17T09:00:00-05:00",
              "segments": [seg(0, 4.5), seg(95.25, 100), seg(86400, 86410)]}
    conv = load_omi(write(tmp_path, stream))[0]
    t0 = datetime(2025, 11, 17, 14, 0, tzinfo=UTC)
    assert [t.at for t in conv.turns()] == [t0, t0 + timedelta(seconds=95.25),
                                           t0 + timedelta(days=1)]
    assert [s.started_at for s in conv.sessions] == [t0, t0 + timedelta(days=1)]
    assert conv.sessions[0].metadata["finished_at"] == t0 + timedelta(seconds=100)
    assert conv.metadata["started_at"] == t0


def test_start_time_defaults_to_option_then_epoch_never_now(tmp_path: Path) -> None:
    path = write(tmp_path, [seg(60)])
    assert next(load_omi(path)[0].turns()).at == EPOCH + timedelta(seconds=60)
    option = next(load_omi(path, started_at="2024-02-29T08:00:00")[0].turns()).at
    assert option == datetime(2024, 2, 29, 8, 1, tzinfo=UTC)
    stream = write(tmp_path, {"started_at": "2025-01-01T00:00:00Z", "segments": [seg(0)]},
                   name="s.json")
    assert next(load_omi(stream, started_at="2024-02-29")[0].turns()).at == datetime(
        2025, 1, 1, tzinfo=UTC)
    # dated from the epoch is said, not silent
    (issue,) = load_omi(path).issues
    assert (issue.conversation_id, issue.field, issue.value) == (
        "stream-0", "started_at", "1970-01-01T00:00:00+00:00")
    assert issue.action.startswith("dated from 1970-01-01: no started_at")
    assert load_omi(path, started_at="2024-02-29").issues == ()
    assert load_omi(stream).issues == ()


def test_started_at_option_must_parse(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="started_at: unparseable date 'yesterday'"):
        load_omi(write(tmp_path, [seg(0)]), started_at="yesterday")


def test_out_of_order_segments_are_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, [{"id": "u1", "segments": [seg(0), seg(30), STOP, seg(12)]}])
    with pytest.raises(DatasetError, match=r"before the previous segment's start 30\.0") as exc:
        load_omi(path)
    located(exc, path, "0 (u1)", "segments[3].start")


@pytest.mark.parametrize(
    ("segment", "field", "message"),
    [(seg(-1.0, 2.0), "start", "seconds >= 0"), (seg(5.0, 4.0), "end", "end 4.0 is before"),
     (seg(1.0, float("inf")), "end", "finite")],
)
def test_bad_times_are_errors(tmp_path: Path, segment: dict, field: str, message: str) -> None:
    path = write(tmp_path, [seg(0), segment])
    with pytest.raises(DatasetError, match=message) as exc:
        load_omi(path)
    located(exc, path, 1, field)


# --- file shapes --------------------------------------------------------------------------


def test_jsonl_streams_and_bare_segments(tmp_path: Path) -> None:
    streams = [{"id": "a", "segments": [seg(0)]}, {"segments": [seg(0), seg(500)]}]
    ds = load_omi(write(tmp_path, streams, name="s.jsonl"))
    assert [(c.id, len(c.sessions)) for c in ds] == [("a", 1), ("stream-1", 2)]
    bare = load_omi(write(tmp_path, [seg(0), STOP, seg(1)], name="b.jsonl"))
    assert [(c.id, len(c.sessions)) for c in bare] == [("stream-0", 2)]


def test_jsonl_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(seg(0)) + "\n\n" + json.dumps({"text": "x", "is_user": True}))
    with pytest.raises(DatasetError) as exc:
        load_omi(path)
    located(exc, path, "line 3", "start")


def test_mixing_streams_and_segments_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, [{"id": "a", "segments": [seg(0)]}, seg(5)])
    with pytest.raises(DatasetError, match="mixes stream objects") as exc:
        load_omi(path)
    assert exc.value.record == 1
    short = write(tmp_path, [{"id": "a", "segments": [seg(0)]}, {"id": "b"}], name="b.json")
    with pytest.raises(DatasetError, match=r"missing required field \(record 0 is a stream"):
        load_omi(short)


@pytest.mark.parametrize(("data", "message"), [([], "no transcript segments"),
                                               ("text", "expected a list or an object")])
def test_empty_or_scalar_file_is_an_error(tmp_path: Path, data: Any, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        load_omi(write(tmp_path, data))


def test_stream_without_segments_and_duplicate_ids_are_errors(tmp_path: Path) -> None:
    empty = write(tmp_path, [{"id": "a", "segments": []}], name="e.json")
    with pytest.raises(DatasetError, match="at least one segment") as exc:
        load_omi(empty)
    located(exc, empty, "0 (a)", "segments")
    twice = write(tmp_path, [{"id": "a", "segments": [seg(0)]},
                             {"uid": "a", "segments": [seg(0)]}], name="d.json")
    with pytest.raises(DatasetError, match="duplicate conversation id 'a'") as exc2:
        load_omi(twice)
    located(exc2, twice, 1, "id")


# --- the five error kinds -----------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="file not found") as exc:
        load_omi(tmp_path / "nope.json")
    assert exc.value.path == str(tmp_path / "nope.json")
    with pytest.raises(DatasetError, match="file not found"):  # not wrapped as ConfigError
        memlab.load_dataset("omi", path=tmp_path / "nope.json")
    with pytest.raises(DatasetError, match=r"probes\.jsonl: file not found"):
        load_omi(DATA / "transcripts.json", probes_path=tmp_path / "probes.jsonl")


def test_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "omi.json"
    path.write_text('[{"text": "hi", "is_user": true,}]')
    with pytest.raises(DatasetError, match="invalid JSON at line 1, column 33") as exc:
        load_omi(path)
    assert exc.value.path == str(path)


def test_missing_field(tmp_path: Path) -> None:
    segments = [seg(0), seg(2), seg(4), {"is_user": True, "speaker_id": 0, "start": 6, "end": 7}]
    path = write(tmp_path, [{"id": "user-1", "segments": segments}])
    with pytest.raises(DatasetError, match="missing required field") as exc:
        load_omi(path)
    located(exc, path, "0 (user-1)", "segments[3].text")


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [("is_user", "yes", ("expected boolean", "got string ('yes')")),
     ("start", "12", ("expected number", "got string ('12')")),
     ("speaker_id", 1.5, ("expected integer or null", "got number (1.5)")),
     ("text", ["hi"], ("expected string", "got list"))],
)
def test_wrong_type(tmp_path: Path, key: str, value: Any, expected: tuple[str, str]) -> None:
    path = write(tmp_path, {"id": "u1", "segments": [seg(0), {**seg(3), key: value}]})
    with pytest.raises(DatasetError) as exc:
        load_omi(path)
    located(exc, path, "0 (u1)", f"segments[1].{key}")
    assert all(part in exc.value.reason for part in expected)


def test_unparseable_started_at(tmp_path: Path) -> None:
    path = write(tmp_path, [{"id": "u1", "segments": [seg(0)]},
                            {"id": "u2", "started_at": "17/11/2025", "segments": [seg(0)]}])
    with pytest.raises(DatasetError, match="unparseable date '17/11/2025'") as exc:
        load_omi(path)
    located(exc, path, "1 (u2)", "started_at")


def test_unparseable_asked_at(tmp_path: Path) -> None:
    probes = write(tmp_path, [probe("q1", asked_at="next Tuesday")], name="probes.json")
    with pytest.raises(DatasetError, match="unparseable date 'next Tuesday'") as exc:
        load_omi(DATA / "transcripts.json", probes_path=probes)
    located(exc, probes, "0 (q1)", "asked_at")


# --- probes -------------------------------------------------------------------------------


def probe(probe_id: str, **fields: Any) -> dict[str, Any]:
    base = {"id": probe_id, "conversation_id": "user-margaret", "question": "q?",
            "answer": "a", "evidence_turn_ids": ["seg-1"], "asked_at": "2025-12-01T00:00:00Z"}
    return {**base, **fields}


def test_probe_evidence_gives_sessions_in_order(tmp_path: Path) -> None:
    probes = write(tmp_path, [probe("q1", evidence_turn_ids=["seg-20", "seg-9", "seg-1",
                                                             "seg-19"], answer=42)],
                   name="probes.json")
    conv = load_omi(DATA / "transcripts.json", probes_path=probes)["user-margaret"]
    (only,) = conv.probes
    assert only.evidence_session_ids == ("user-margaret-c1", "user-margaret-c2",
                                         "user-margaret-c4")
    assert (only.answer, only.category, only.abstention) == ("42", "omi", False)
    assert only.asked_at == datetime(2025, 12, 1, tzinfo=UTC)


def test_conversation_id_optional_only_with_one_stream(tmp_path: Path) -> None:
    transcript = write(tmp_path, [seg(0), seg(300)])
    one = write(tmp_path, [{"id": "q", "question": "?", "answer": "a",
                            "evidence_turn_ids": ["seg-1"], "asked_at": "1970-01-02"}],
                name="p.jsonl")
    assert load_omi(transcript, probes_path=one)[0].probes[0].evidence_session_ids == (
        "stream-0-c2",)
    two = write(tmp_path, [{k: v for k, v in probe("q").items() if k != "conversation_id"}],
                name="p2.jsonl")
    with pytest.raises(DatasetError, match="2 streams: user-margaret, user-james") as exc:
        load_omi(DATA / "transcripts.json", probes_path=two)
    located(exc, two, "line 1 (q)", "conversation_id")


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [({"evidence_turn_ids": ["seg-1", "seg-8"]}, "evidence_turn_ids[1]",
      "no turn 'seg-8' in conversation 'user-margaret'"),
     ({"conversation_id": "user-ana"}, "conversation_id", "no stream 'user-ana'"),
     ({"evidence_turn_ids": ["seg-23"], "asked_at": "2025-11-19T12:00:00Z"}, "asked_at",
      "before evidence turn 'seg-23'"),
     ({"evidence_turn_ids": "seg-1"}, "evidence_turn_ids", "expected list, got string"),
     ({"abstention": "no"}, "abstention", "expected boolean")],
)
def test_bad_probes_are_errors(tmp_path: Path, fields: dict, field: str, message: str) -> None:
    probes = write(tmp_path, [probe("ok"), probe("bad", **fields)], name="probes.jsonl")
    with pytest.raises(DatasetError, match=message) as exc:
        load_omi(DATA / "transcripts.json", probes_path=probes)
    located(exc, probes, "line 2 (bad)", field)


@pytest.mark.parametrize(
    ("where", "key", "meant"),
    [("stream", "startedAt", "started_at"), ("stream", "userName", "user_name"),
     ("segment", "isUser", "is_user"), ("segment", "speakerId", "speaker_id"),
     ("probe", "categroy", "category"), ("probe", "asked_At", "asked_at")],
)
def test_a_misspelt_field_is_an_error_other_keys_are_ignored_or_kept(
        tmp_path: Path, where: str, key: str, meant: str) -> None:
    """Keys the loader does not use are fine (OMI's records carry more, and a probe keeps
    them as metadata), but one that looks like a field it reads would be silently lost."""
    segment = seg(0, language="en", person_id="p1")
    stream = {"id": "s", "started_at": "2025-01-01T00:00:00Z", "source": "omi",
              "segments": [segment]}
    question = {**probe("q", conversation_id="s", evidence_turn_ids=["seg-0"]), "note": "x"}
    ok = load_omi(write(tmp_path, [stream], name="ok.json"),
                  probes_path=write(tmp_path, [question], name="okp.json"))
    assert ok[0].probes[0].metadata == {"note": "x"}
    target = {"stream": stream, "segment": segment, "probe": question}[where]
    target[key] = target.pop(meant, "x")
    transcript = write(tmp_path, [stream], name="t.json")
    probes = write(tmp_path, [question], name="p.json")
    with pytest.raises(DatasetError, match=f"unknown field; did you mean '{meant}'") as exc:
        load_omi(transcript, probes_path=probes)
    assert exc.value.field == (f"segments[0].{key}" if where == "segment" else key)
    assert exc.value.path == str(probes if where == "probe" else transcript)


def test_duplicate_probe_id_is_an_error(tmp_path: Path) -> None:
    probes = write(tmp_path, [probe("q"), probe("q")], name="probes.json")
    with pytest.raises(DatasetError, match="duplicate probe id 'q'") as exc:
        load_omi(DATA / "transcripts.json", probes_path=probes)
    located(exc, probes, "1 (q)", "id")


# --- the example files --------------------------------------------------------------------


def test_example_files_load_through_the_registry() -> None:
    ds = memlab.load_dataset("omi", path=DATA / "transcripts.json",
                             probes_path=DATA / "probes.jsonl")
    stats = ds.stats()
    assert (stats["conversations"], stats["sessions"], stats["turns"], stats["probes"]) == (
        2, 8, 32, 8)
    assert stats["abstention_probes"] == 1
    assert stats["categories"] == {"abstention": 1, "knowledge-update": 1, "multi-speaker": 1,
                                   "multi-turn": 1, "single-session": 4}
    margaret, james = ds
    assert [len(s.turns) for s in margaret.sessions] == [8, 3, 3, 6, 2, 2]
    assert [s.metadata["ended_by"] for s in margaret.sessions] == [
        "stop_conversation", "timeout", "timeout", "timeout", "timeout", "end_of_stream"]
    assert margaret.speakers == ("User", "Speaker 1", "Speaker 2", "Speaker 3")
    assert james.speakers == ("James", "Speaker 1")
    assert [len(s.turns) for s in james.sessions] == [4, 4]
    assert margaret.turn("seg-10").speaker == "Speaker 2"  # from "speaker": "SPEAKER_02"
    assert margaret.turn("seg-9").at == datetime(2025, 11, 17, 14, 2, 10, tzinfo=UTC)
    assert margaret.turn("seg-6").text.startswith("Oh, and")
    evidence = {p.id: p.evidence_session_ids for _, p in ds.probes()}
    assert evidence["p-02"] == ("user-margaret-c1", "user-margaret-c4")
    assert evidence["p-08"] == ("user-james-c2",)
    assert evidence["p-06"] == ()
    assert dict(james.probes[1].metadata) == {"notes": "Mochi is presumably James's cat"}
    assert memlab.load_dataset("omi", path=DATA / "transcripts.json")[0].probes == ()


@pytest.mark.parametrize(("timeout", "sessions"), [(50, 8), (121, 8), (121.5, 7), (300, 7),
                                                   (-1, 7)])
def test_example_sessions_depend_on_the_timeout(timeout: float, sessions: int) -> None:
    # Margaret's seg-21 starts 121.0 s after seg-20 ends: only timeouts <= 121 s split there.
    ds = load_omi(DATA / "transcripts.json", conversation_timeout=timeout)
    assert ds.stats()["sessions"] == sessions
    assert ds.metadata["conversation_timeout"] == effective_timeout(timeout)


def test_stats_and_probes_pass_loader_options(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m memlab.data stats omi=FILE --option probes_path=...` counts the probes a
    run would see (without the option the OMI loader has none to count)."""
    from memlab.data.__main__ import main

    transcripts = f"omi={DATA / 'transcripts.json'}"
    assert main(["stats", transcripts, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["probes"] == 0
    assert main(["stats", transcripts, "--option", f"probes_path={DATA / 'probes.jsonl'}",
                 "--option", "conversation_timeout=14400", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["probes"] == 8 and row["conversations"] == 2
    assert main(["stats", "--option", "conversation_timeout=300"]) == 2
    assert "applies to the datasets named" in capsys.readouterr().err


def test_a_missing_benchmark_folder_is_named_not_silently_skipped(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    import memlab.data.__main__ as data_cli
    from memlab.data import load_dataset
    from memlab.errors import DatasetError

    monkeypatch.setenv("MEMLAB_DATASETS", str(tmp_path / "nowhere"))
    cli = importlib.reload(data_cli)  # DEFAULTS are read from the folder at import
    try:
        assert cli.main(["stats", "--json"]) == 0
        err = capsys.readouterr().err
        assert "not found, so not shown: " in err and "nowhere does not exist" in err
        with pytest.raises(SystemExit):  # argparse: usage and the one-line reason
            cli.main(["stats", "omi=x.json", "--option", "x=[1,"])
        assert "invalid YAML at line 1" in capsys.readouterr().err
    finally:
        monkeypatch.undo()
        importlib.reload(data_cli)
    monkeypatch.setenv("MEMLAB_DATASETS", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError, match=r"file not found \(benchmark folder from "
                       r"MEMLAB_DATASETS, which does not exist\)"):
        load_dataset("locomo", path=tmp_path / "nowhere" / "locomo10.json")


@pytest.mark.parametrize("loader, path, looks", [
    ("omi", "locomo", "locomo"), ("locomo", "longmemeval", "longmemeval"),
    ("longmemeval", "omi", "omi"), ("memlab", "locomo", "locomo")])
def test_a_file_read_with_the_wrong_loader_says_which_format_it_looks_like(
        loader: str, path: str, looks: str) -> None:
    from memlab.data import load_dataset
    from memlab.data.paths import benchmark_file
    from memlab.errors import DatasetError

    files = {"locomo": benchmark_file("locomo10.json"),
             "longmemeval": benchmark_file("longmemeval_oracle.json"),
             "omi": DATA / "transcripts.json"}
    with pytest.raises(DatasetError, match=rf"looks like the '{looks}' format: load it with "
                       rf"the '{looks}' loader\)"):
        load_dataset(loader, path=files[path])
