"""Malformed dataset files, generated from small real ones, through every file loader.

Each variant mutates one value of a valid file (deleted, null, NaN, 1e400, a wrong type,
an empty string, nesting deeper than the parser can follow, a date outside Python's
range) or the file as a whole (not UTF-8, truncated, a record repeated, sessions out of
order). Every variant must either load, or end in a DatasetError naming the file (and
the record and field when the problem is inside a record): never a bare traceback.
The bad data that used to load silently (duplicate ids, NaN, empty questions, a probe
before its evidence, a speakers list that does not match) must be an error or a repair
reported in ``ds.issues``.
"""

from __future__ import annotations

import copy
import json
import math
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memlab.data.loaders.agent import load_agent
from memlab.data.loaders.locomo import load_locomo
from memlab.data.loaders.longmemeval import load_longmemeval
from memlab.data.loaders.native import load_native
from memlab.data.loaders.omi import load_omi
from memlab.data.schema import Dataset
from memlab.errors import DatasetError

ROOT = Path(__file__).parent.parent
HUGE, DEEP = "__memlab_huge__", "__memlab_deep__"
DEPTH = 100_000
VALUES: dict[str, Any] = {"null": None, "nan": math.nan, "inf": -math.inf, "huge": HUGE,
                          "deep": DEEP, "object": {}, "empty": "", "number": 7,
                          "late_date": "9999-12-31T23:59:59-01:00",
                          "early_date": "0001-01-01T00:00:00+01:00"}
PER_LOADER = 40  # value mutations per loader, on top of the whole-file ones


def _locomo(path: Path) -> list[Any]:
    raw = json.loads(path.read_text(encoding="utf-8"))[:2]
    for record in raw:  # three sessions and a few probes keep the suite fast
        conv = record["conversation"]
        for key in [k for k in conv if k.startswith("session_")]:
            number = int(key.split("_")[1])
            if number > 3:
                del conv[key]
        record["qa"] = [q for q in record["qa"] if all(
            int(e.split(":")[0][1:] or 0) <= 3 for e in q["evidence"] if e[:1] == "D"
            and e.split(":")[0][1:].isdigit())][:5]
        for key in ("session_summary", "event_summary", "observation"):
            record.pop(key, None)
    return raw


def _sources(locomo: Path, longmemeval: Path) -> dict[str, tuple[Callable[..., Dataset], Any, str]]:
    native = [json.loads(line) for line in
              (ROOT / "datasets" / "synthetic-small.jsonl").read_text().splitlines()[:3]]
    omi = json.loads((ROOT / "tests" / "data" / "omi" / "transcripts.json").read_text())
    agent = json.loads((ROOT / "tests" / "data" / "agent" / "export.json").read_text())
    return {
        "locomo": (load_locomo, _locomo(locomo), "json"),
        "longmemeval": (load_longmemeval,
                        json.loads(longmemeval.read_text(encoding="utf-8"))[:2], "json"),
        "native": (load_native, native, "jsonl"),
        "omi": (load_omi, omi, "json"),
        "agent": (load_agent, agent, "json"),
    }


def _dump(data: Any, form: str) -> str:
    if form == "jsonl":
        text = "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in data)
    else:
        text = json.dumps(data, ensure_ascii=False)
    return (text.replace(json.dumps(HUGE), "1e400")
            .replace(json.dumps(DEEP), "[" * DEPTH + "]" * DEPTH))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        items: Any = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return
    for key, child in items:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


def _set(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    out = copy.deepcopy(data)
    node = out
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


_DELETE = object()


def _variants(name: str, data: Any, form: str) -> Iterator[tuple[str, str | bytes, bool]]:
    """(label, file content, whether the problem sits inside a record)."""
    rng = random.Random(f"memlab-{name}")
    paths = list(_paths(data))
    kinds = ["delete", *VALUES]
    for n in range(PER_LOADER):
        path = rng.choice(paths)
        kind = kinds[n % len(kinds)]
        value = _DELETE if kind == "delete" else VALUES[kind]
        label = f"{name}:{kind}@{'/'.join(map(str, path))}"
        yield label, _dump(_set(data, path, value), form), len(path) > 1
    text = _dump(data, form)
    yield f"{name}:not-utf8", text.encode("utf-8")[:200] + b"\xff\xfe" + text.encode()[200:], False
    yield f"{name}:truncated", text[: len(text) // 2], False
    yield f"{name}:empty", "", False
    yield f"{name}:deep-file", "[" * DEPTH + "]" * DEPTH, False
    yield f"{name}:not-a-list", json.dumps("text"), False
    if isinstance(data, list) and data:
        yield f"{name}:repeated-record", _dump([*data, data[-1]], form), True


def _all_variants(locomo: Path, longmemeval: Path) -> Iterator[tuple[str, Any, str, Any, bool]]:
    for name, (load, data, form) in _sources(locomo, longmemeval).items():
        for label, content, inside in _variants(name, data, form):
            yield label, load, form, content, inside


def _load(load: Callable[..., Dataset], form: str, content: str | bytes,
          tmp_path: Path) -> Dataset:
    path = tmp_path / f"data.{form}"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return load(path)


def test_every_malformed_variant_loads_or_names_the_file(
        tmp_path: Path, locomo_path: Path, longmemeval_path: Path) -> None:
    outcomes: dict[str, int] = {"loaded": 0, "error": 0}
    raw_tracebacks: list[str] = []
    unlocated: list[str] = []
    for n, (label, load, form, content, inside) in enumerate(
            _all_variants(locomo_path, longmemeval_path)):
        folder = tmp_path / str(n)
        folder.mkdir()
        try:
            _load(load, form, content, folder)
            outcomes["loaded"] += 1
        except DatasetError as exc:
            outcomes["error"] += 1
            if exc.path is None or str(folder) not in str(exc):
                unlocated.append(f"{label}: {exc}")
            elif inside and exc.record is None and "nested too deeply" not in str(exc) \
                    and "cannot be read" not in str(exc) and "invalid JSON" not in str(exc):
                unlocated.append(f"{label}: no record in {exc}")
        except Exception as exc:
            raw_tracebacks.append(f"{label}: {type(exc).__name__}: {exc}"[:300])
    total = sum(outcomes.values())
    print(f"{total} variants: {outcomes}")
    assert total >= 100
    assert raw_tracebacks == []
    assert unlocated == []
    assert outcomes["error"] >= total // 3  # the suite really does break the files


def _write(tmp_path: Path, data: Any, form: str = "json") -> Path:
    path = tmp_path / f"data.{form}"
    path.write_text(_dump(data, form), encoding="utf-8")
    return path


def test_duplicate_ids_are_errors_in_every_loader(
        tmp_path: Path, locomo_path: Path, longmemeval_path: Path) -> None:
    sources = _sources(locomo_path, longmemeval_path)
    for name in ("locomo", "longmemeval", "native"):
        load, data, form = sources[name]
        doubled = [*data, data[-1]]
        folder = tmp_path / name
        folder.mkdir()
        with pytest.raises(DatasetError, match="duplicate") as exc:
            load(_write(folder, doubled, form))
        assert exc.value.record is not None and exc.value.field is not None, name
    load, data, form = sources["omi"]
    (tmp_path / "omi").mkdir()
    with pytest.raises(DatasetError, match="duplicate conversation id"):
        load(_write(tmp_path / "omi", [data, data] if isinstance(data, dict) else data * 2))


def test_empty_question_is_an_error(tmp_path: Path, locomo_path: Path,
                                    longmemeval_path: Path) -> None:
    sources = _sources(locomo_path, longmemeval_path)
    cases = {"locomo": (0, "qa", 0, "question"), "longmemeval": (0, "question"),
             "native": (1, "probes", 0, "question")}
    for name, path in cases.items():
        load, data, form = sources[name]
        folder = tmp_path / name
        folder.mkdir()
        with pytest.raises(DatasetError, match="empty question") as exc:
            load(_write(folder, _set(data, path, "  "), form))
        assert exc.value.field is not None and exc.value.field.endswith("question")


def test_nan_metadata_is_an_error(tmp_path: Path, locomo_path: Path,
                                  longmemeval_path: Path) -> None:
    load, data, form = _sources(locomo_path, longmemeval_path)["native"]
    bad = _set(data, (1, "metadata"), {"score": math.nan})
    with pytest.raises(DatasetError, match="non-finite") as exc:
        load(_write(tmp_path, bad, form))
    assert exc.value.field == "metadata.score"


def test_speakers_must_match_the_turns(tmp_path: Path, locomo_path: Path,
                                       longmemeval_path: Path) -> None:
    load, data, form = _sources(locomo_path, longmemeval_path)["native"]
    with pytest.raises(DatasetError, match="not in the conversation's speakers") as exc:
        load(_write(tmp_path, _set(data, (1, "speakers"), ["somebody"]), form))
    assert exc.value.record == "line 2 (synth-00)"  # where it stands in the file


def test_native_probe_before_its_evidence_is_reported(
        tmp_path: Path, locomo_path: Path, longmemeval_path: Path) -> None:
    load, data, form = _sources(locomo_path, longmemeval_path)["native"]
    ds = load(_write(tmp_path, _set(data, (1, "probes", 0, "asked_at"),
                                    "2000-01-01T00:00:00Z"), form))
    assert [i.action for i in ds.issues] == ["kept: asked before evidence"]
    assert ds.issues[0].record == data[1]["probes"][0]["id"]


def test_locomo_sessions_out_of_date_order_are_sorted_and_reported(
        tmp_path: Path, locomo_path: Path, longmemeval_path: Path) -> None:
    load, data, form = _sources(locomo_path, longmemeval_path)["locomo"]
    conv = data[0]["conversation"]
    late = conv["session_1_date_time"]
    swapped = _set(_set(data, (0, "conversation", "session_1_date_time"),
                        conv["session_3_date_time"]),
                   (0, "conversation", "session_3_date_time"), late)
    ds = load(_write(tmp_path, swapped, form))
    sessions = ds.conversations[0].sessions
    assert [s.id for s in sessions] == ["session_3", "session_2", "session_1"]
    assert [s.started_at for s in sessions] == sorted(s.started_at for s in sessions)
    assert any(i.action == "sorted sessions by date" for i in ds.issues)
    assert all(p.asked_at >= sessions[-1].started_at for p in ds.conversations[0].probes)


def test_omi_timestamps_out_of_range_and_non_utf8_jsonl(tmp_path: Path) -> None:
    segment = {"text": "hi", "is_user": True, "speaker_id": 0, "start": 1e12, "end": 1e12 + 1}
    with pytest.raises(DatasetError, match="seconds") as exc:
        load_omi(_write(tmp_path, [segment]))
    assert exc.value.field is not None
    path = tmp_path / "omi.jsonl"
    path.write_bytes(b'{"text": "caf\xe9", "is_user": true, "start": 0, "end": 1}\n')
    with pytest.raises(DatasetError, match="not UTF-8") as exc:
        load_omi(path)
    assert str(path) in str(exc.value) and exc.value.record == "line 1"


def test_omi_probe_errors_name_the_probes_file(tmp_path: Path) -> None:
    probes = tmp_path / "probes.jsonl"
    probes.write_text(json.dumps({"id": "p1", "conversation_id": "user-margaret",
                                  "question": " ", "answer": "x",
                                  "evidence_turn_ids": [], "asked_at": "2030-01-01T00:00:00Z"})
                      + "\n")
    with pytest.raises(DatasetError, match="empty question") as exc:
        load_omi(ROOT / "tests" / "data" / "omi" / "transcripts.json", probes_path=probes)
    assert exc.value.path == str(probes) and exc.value.field == "question"
