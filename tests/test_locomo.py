"""The LoCoMo loader on the real locomo10.json, and its errors on bad input."""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from memlab.data import Dataset, Role, load_dataset
from memlab.data.loaders.locomo import ABSTENTION_ANSWER, CATEGORIES, load_locomo
from memlab.errors import DatasetError


def _probes(ds: Dataset, category_id: int | None = None) -> list:
    return [p for _, p in ds.probes() if category_id is None or p.category_id == category_id]


# --- the real file -------------------------------------------------------------------


def test_totals(locomo_dataset: Dataset) -> None:
    stats = locomo_dataset.stats()
    assert (stats["conversations"], stats["sessions"], stats["turns"], stats["probes"]) == (
        10, 272, 5882, 1986)
    by_id = Counter(p.category_id for p in _probes(locomo_dataset))
    assert dict(sorted(by_id.items())) == {1: 282, 2: 321, 3: 96, 4: 841, 5: 446}
    assert CATEGORIES == {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop",
                          5: "adversarial"}
    assert all(p.category == CATEGORIES[p.category_id] for p in _probes(locomo_dataset))


def test_sessions_in_numeric_order_with_parsed_dates(locomo_dataset: Dataset) -> None:
    conv = locomo_dataset["conv-41"]
    assert [s.id for s in conv.sessions] == [f"session_{n}" for n in range(1, 33)]
    first = locomo_dataset["conv-26"].sessions[0]
    assert first.started_at == datetime(2023, 5, 8, 13, 56, tzinfo=UTC)  # 1:56 pm on 8 May, 2023
    for c in locomo_dataset:
        starts = [s.started_at for s in c.sessions]
        assert starts == sorted(starts), c.id
        assert all(t.at == s.started_at for s in c.sessions for t in s.turns)


def test_dates_without_turns_are_reported_not_loaded(locomo_dataset: Dataset) -> None:
    ignored = [i for i in locomo_dataset.issues if i.action == "ignored: date without turns"]
    assert [i.field for i in ignored] == [
        f"conversation.session_{n}_date_time" for n in range(20, 36)]
    assert {i.conversation_id for i in ignored} == {"conv-26"}
    assert len(locomo_dataset["conv-26"].sessions) == 19


def test_turns_roles_and_images(locomo_dataset: Dataset) -> None:
    conv = locomo_dataset["conv-26"]
    assert conv.speakers == ("Caroline", "Melanie")
    roles = Counter((t.speaker, t.role) for t in conv.turns())
    assert set(roles) == {("Caroline", Role.USER), ("Melanie", Role.OTHER)}
    turn = conv.turn("D1:5")
    assert turn.metadata["image_caption"] == (
        "a photo of a dog walking past a wall with a painting of a woman")
    assert turn.metadata["image_urls"] == ("https://i.redd.it/l7hozpetnhlb1.jpg",)
    assert turn.metadata["image_query"] == "transgender pride flag mural"
    assert turn.full_text.endswith(
        "[shares an image: a photo of a dog walking past a wall with a painting of a woman]")
    captioned = sum("image_caption" in t.metadata for c in locomo_dataset for t in c.turns())
    assert captioned == 1226


def test_session_summaries_kept(locomo_dataset: Dataset) -> None:
    session = locomo_dataset["conv-26"].sessions[0]
    assert session.metadata["summary"].startswith(
        "Caroline and Melanie had a conversation on 8 May 2023")
    assert session.metadata["events"]["Caroline"] == [
        "Caroline attends an LGBTQ support group for the first time."]
    assert all(s.metadata["summary"] for c in locomo_dataset for s in c.sessions)


def test_probe_ids_answers_and_asked_at(locomo_dataset: Dataset) -> None:
    conv = locomo_dataset["conv-26"]
    assert conv.probes[0].id == "conv-26:q0"
    assert all(p.asked_at == c.sessions[-1].started_at for c in locomo_dataset for p in c.probes)
    assert all(isinstance(p.answer, str) for p in _probes(locomo_dataset))
    raw = json.loads(Path(locomo_dataset.source).read_text())
    ints = [(r["sample_id"], i, q["answer"]) for r in raw for i, q in enumerate(r["qa"])
            if isinstance(q.get("answer"), int)]
    assert len(ints) == 6
    for sample_id, i, value in ints:
        assert locomo_dataset[sample_id].probes[i].answer == str(value)


def test_adversarial_probes_are_abstentions(locomo_dataset: Dataset) -> None:
    adversarial = _probes(locomo_dataset, 5)
    assert all(p.abstention and p.answer == ABSTENTION_ANSWER for p in adversarial)
    assert all(p.metadata["adversarial_answer"] for p in adversarial)
    assert sum(p.abstention for p in _probes(locomo_dataset)) == 446
    with_answer = [p for p in adversarial if "dataset_answer" in p.metadata]
    assert [(p.id, p.metadata["dataset_answer"], p.metadata["adversarial_answer"])
            for p in with_answer] == [("conv-26:q167", "No", "Yes"), ("conv-26:q178", "No", "Yes")]


def test_category_ids_match_the_data(locomo_dataset: Dataset) -> None:
    """The figures the module docstring gives for the 1-5 -> name mapping."""

    def count(cat: int, pred) -> int:
        return sum(bool(pred(p)) for p in _probes(locomo_dataset, cat))

    def starts_when(p):
        return p.question.startswith("When")

    def several_sessions(p):
        return len(p.evidence_session_ids) >= 2

    def hedged(p):
        return re.search(r"\b(would|likely|might|could)\b", p.question, re.I)

    assert [count(c, starts_when) for c in range(1, 6)] == [4, 246, 0, 7, 5]  # 2 temporal
    assert [count(c, several_sessions) for c in range(1, 6)] == [269, 28, 34, 1, 0]  # 1 multi
    assert count(4, lambda p: len(p.evidence_session_ids) == 1) == 840  # 4 single-hop
    assert [count(c, hedged) for c in range(1, 6)] == [0, 0, 42, 1, 0]  # 3 open-domain
    raw = json.loads(Path(locomo_dataset.source).read_text())
    adversarial = Counter(q["category"] for r in raw for q in r["qa"] if "adversarial_answer" in q)
    assert adversarial == {5: 446}  # 5 adversarial


def test_evidence_repair_figures(locomo_dataset: Dataset) -> None:
    """Rules: split on ';' ',' spaces; unpad 'D30:05'; repair 'D:11:26' -> 'D11:26';
    drop malformed ('D'), missing turns ('D10:19', 'D4:36') and duplicates."""
    probes = _probes(locomo_dataset)
    raw_strings = sum(len(p.metadata["raw_evidence"]) for p in probes)
    resolved = sum(len(p.evidence_turn_ids) for p in probes)
    unresolved = [u for p in probes for u in p.metadata["unresolved_evidence"]]
    actions = Counter(i.action for i in locomo_dataset.issues if ".evidence[" in i.field)
    assert raw_strings == 2815
    assert resolved + len(unresolved) + actions["dropped: duplicate"] == 2824
    assert sorted(unresolved) == ["D", "D10:19", "D4:36"]
    assert resolved == 2820
    assert actions == {"split": 4, "unpadded": 1, "repaired malformed": 1,
                       "dropped: malformed": 1, "dropped: no such turn": 2,
                       "dropped: duplicate": 1}
    assert locomo_dataset.metadata["evidence"] == {
        "raw_strings": 2815, "ids_after_split": 2824, "resolved": 2820, "unresolved": 3,
        "duplicates": 1}


def test_repaired_evidence_points_at_real_turns(locomo_dataset: Dataset) -> None:
    q18 = locomo_dataset["conv-43"].probes[18]
    assert "D:11:26" in q18.metadata["raw_evidence"]
    assert "D11:26" in q18.evidence_turn_ids
    assert locomo_dataset["conv-50"].probes[69].evidence_turn_ids == ("D30:5",)
    assert locomo_dataset["conv-26"].probes[37].evidence_turn_ids == ("D8:6", "D9:17")
    assert locomo_dataset["conv-26"].probes[37].evidence_session_ids == ("session_8", "session_9")
    for conv in locomo_dataset:
        turn_session = {t.id: t.session_id for t in conv.turns()}
        for p in conv.probes:
            assert all(t in turn_session for t in p.evidence_turn_ids), p.id
            assert p.evidence_session_ids == tuple(
                dict.fromkeys(turn_session[t] for t in p.evidence_turn_ids))


@pytest.mark.parametrize("backend", ["pandas", "polars"])
def test_frames(locomo_dataset: Dataset, backend: str) -> None:
    turns = locomo_dataset.to_frame("turns", backend=backend)
    probes = locomo_dataset.to_frame("probes", backend=backend)
    assert (len(turns), len(probes)) == (5882, 1986)
    captions = turns["image_caption"].notna().sum() if backend == "pandas" else (
        turns["image_caption"].is_not_null().sum())
    assert captions == 1226


def test_registry_loads_by_name(locomo_path: Path, tmp_path: Path) -> None:
    ds = load_dataset("locomo", path=locomo_path)
    assert ds.name == "locomo" and len(ds) == 10
    with pytest.raises(DatasetError, match="file not found"):  # not re-wrapped by the registry
        load_dataset("locomo", path=tmp_path / "missing.json")


# --- bad input -------------------------------------------------------------------------


def _record() -> dict[str, Any]:
    return {
        "sample_id": "conv-x",
        "conversation": {
            "speaker_a": "Ann", "speaker_b": "Bob",
            "session_1_date_time": "1:56 pm on 8 May, 2023",
            "session_1": [
                {"speaker": "Ann", "dia_id": "D1:1", "text": "I got a cat."},
                {"speaker": "Bob", "dia_id": "D1:2", "text": "Nice!", "blip_caption": "a cat"},
            ],
            "session_2_date_time": "9:05 am on 10 June, 2023",
            "session_2": [],
        },
        "qa": [
            {"question": "What pet?", "answer": "a cat", "evidence": ["D1:01, D1:2"],
             "category": 4},
            {"question": "Dog's name?", "adversarial_answer": "Rex", "evidence": [],
             "category": 5},
        ],
    }


def _write(tmp_path: Path, data: Any, name: str = "locomo.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_small_valid_file(tmp_path: Path) -> None:
    ds = load_locomo(_write(tmp_path, [_record()]))
    conv = ds["conv-x"]
    assert [s.id for s in conv.sessions] == ["session_1"]
    assert conv.probes[0].evidence_turn_ids == ("D1:1", "D1:2")
    assert conv.probes[1].answer == ABSTENTION_ANSWER
    assert conv.probes[1].asked_at == datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
    assert [i.action for i in ds.issues] == ["ignored: date without turns", "split", "unpadded"]


@pytest.mark.parametrize("empty", ["", "  ", " ; ,"])
def test_an_empty_evidence_string_is_reported_not_silently_dropped(
        tmp_path: Path, empty: str) -> None:
    record = _record()
    record["qa"][0]["evidence"] = [empty, "D1:1"]
    ds = load_locomo(_write(tmp_path, [record]))
    assert ds["conv-x"].probes[0].evidence_turn_ids == ("D1:1",)
    dropped = [i for i in ds.issues if i.action == "dropped: empty"]
    assert [(i.field, i.value) for i in dropped] == [("qa[0].evidence[0]", empty)]


def _error(tmp_path: Path, data: Any) -> str:
    with pytest.raises(DatasetError) as info:
        load_locomo(_write(tmp_path, data))
    return str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nope\.json: file not found"):
        load_locomo(tmp_path / "nope.json")


def test_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('[{"sample_id": "conv-x",}]')
    with pytest.raises(DatasetError, match=r"broken\.json: invalid JSON at line 1, column 25"):
        load_locomo(path)


def test_missing_field(tmp_path: Path) -> None:
    rec = _record()
    del rec["qa"][1]["adversarial_answer"]
    message = _error(tmp_path, [_record(), rec])
    assert message == (f"{tmp_path / 'locomo.json'}: record 1 (conv-x): "
                       "field 'qa[1].adversarial_answer': missing required field")


def test_missing_id(tmp_path: Path) -> None:
    rec = _record()
    del rec["sample_id"]
    assert "locomo.json: record 0: field 'sample_id': missing required field" in _error(
        tmp_path, [rec])


def test_wrong_type(tmp_path: Path) -> None:
    rec = _record()
    rec["qa"][0]["category"] = "4"
    message = _error(tmp_path, [rec])
    assert "locomo.json: record 0 (conv-x): field 'qa[0].category': expected integer, got string" \
        in message


def test_unparseable_date(tmp_path: Path) -> None:
    rec = _record()
    rec["conversation"]["session_1_date_time"] = "yesterday at noon"
    message = _error(tmp_path, [rec])
    assert "locomo.json: record 0 (conv-x): field 'conversation.session_1_date_time': " \
        "unparseable date 'yesterday at noon'" in message


def test_unknown_speaker_and_category(tmp_path: Path) -> None:
    rec = copy.deepcopy(_record())
    rec["conversation"]["session_1"][1]["speaker"] = "Carl"
    assert "field 'conversation.session_1[1].speaker': speaker 'Carl' is neither" in _error(
        tmp_path, [rec])
    rec = _record()
    rec["qa"][0]["category"] = 6
    assert "record 0 (conv-x): field 'qa[0].category': unknown category 6" in _error(
        tmp_path, [rec])


def test_not_a_list(tmp_path: Path) -> None:
    assert "expected a list of conversations" in _error(tmp_path, {"sample_id": "conv-x"})
