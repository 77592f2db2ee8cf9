"""Chunkers: one conformance suite over every registered name, then each one's logic."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from memlab.chunkers import UNIT_KINDS, MemoryUnit, registry
from memlab.data.schema import Conversation, Role, Session, Turn
from memlab.errors import ConfigError, UnknownComponentError
from memlab.llm.base import Completion, Message
from memlab.llm.mock import MockLLM
from memlab.tokens import count_tokens

T0 = datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
LINE = re.compile(r"^\[(?P<id>[^\]]+)\] (?P<speaker>[^:]+): (?P<text>.*)$", re.MULTILINE)


def _turn(tid: str, sid: str, speaker: str, text: str, at: datetime, **meta: Any) -> Turn:
    role = Role.USER if speaker == "Caroline" else Role.OTHER
    return Turn(tid, sid, speaker, role, text, at, meta)


def _session(sid: str, start: datetime, lines: Sequence[tuple[str, str]],
             offsets: Sequence[float] | None = None, prefix: str | None = None) -> Session:
    offsets = offsets or [0.0] * len(lines)
    prefix = prefix or sid
    turns = tuple(_turn(f"{prefix}:{i + 1}", sid, speaker, text,
                        start + timedelta(seconds=offsets[i]))
                  for i, (speaker, text) in enumerate(lines))
    return Session(sid, start, turns)


# LoCoMo-like: every turn carries the session time.
S1 = Session("S1", T0, (
    _turn("D1:1", "S1", "Caroline", "Hey Mel! I went to the LGBTQ support group yesterday.", T0),
    _turn("D1:2", "S1", "Melanie", "That's great, Caroline! How did it feel?", T0),
    _turn("D1:3", "S1", "Caroline", "Empowering. I want to study counseling next year.", T0),
    _turn("D1:4", "S1", "Melanie", "I painted a lake sunrise last week.", T0,
          image_caption="a painting of a sunrise over a lake"),
    _turn("D1:5", "S1", "Caroline", "It's lovely! Do you paint often?", T0),
    _turn("D1:6", "S1", "Melanie", "Every Sunday morning, it relaxes me.", T0),
    _turn("D1:7", "S1", "Caroline", "I should try that with my kids.", T0),
))
# OMI-like: real per-turn times, with silences of 170 s and 679 s.
T1 = T0 + timedelta(days=30)
S2 = _session("S2", T1, [
    ("Caroline", "I'm adopting a dog from the shelter on Saturday."),
    ("Melanie", "Wonderful! Which breed?"),
    ("Caroline", "A beagle named Max, he is three years old."),
    ("Melanie", "My kids would love to meet him."),
    ("Caroline", "Bring them over next week!"),
    ("Melanie", "Deal. I'll bring dog treats."),
], offsets=[0, 30, 200, 320, 321, 1000], prefix="D2")
CONV = Conversation("conv-x", ("Caroline", "Melanie"), (S1, S2), ())


def fact_answer(messages: Sequence[Message]) -> str:
    """A deterministic extractor: one fact per turn, quoting its id."""
    memories = [
        {"content": f"{m['speaker']} said: {m['text']}", "category": "interesting",
         "turn_ids": [m["id"]]}
        for m in LINE.finditer(messages[-1]["content"])
    ]
    return json.dumps({"memories": memories})


def summary_answer(messages: Sequence[Message]) -> str:
    ids = [m["id"] for m in LINE.finditer(messages[-1]["content"])]
    return json.dumps({"title": f"Talk {ids[0]}", "overview": f"{len(ids)} turns."})


def _build(name: str) -> Any:
    llm = {"facts": fact_answer, "summary": summary_answer}.get(name)
    return registry.build(name, {"llm": MockLLM(llm)} if llm else {})


def _split_all(chunker: Any, conversation: Conversation = CONV) -> list[MemoryUnit]:
    return [u for s in conversation.sessions for u in chunker.split(s, conversation)]


# ---- conformance -----------------------------------------------------------------

@pytest.mark.parametrize("name", registry.names())
def test_conformance(name: str) -> None:
    chunker = _build(name)
    units = _split_all(chunker)
    turns = {t.id: t for t in CONV.turns()}
    assert {u.session_id for u in units} == {"S1", "S2"}
    for unit in units:
        session = next(s for s in CONV.sessions if s.id == unit.session_id)
        assert unit.kind in UNIT_KINDS
        assert unit.text.strip()
        assert unit.source_turn_ids
        assert set(unit.source_turn_ids) <= {t.id for t in session.turns}
        assert unit.at == max(turns[i].at for i in unit.source_turn_ids)
        assert re.fullmatch(rf"{unit.session_id}/{name}/\d+", unit.id)
    assert len({u.id for u in units}) == len(units)
    assert _split_all(_build(name)) == units  # a fresh instance agrees
    assert _split_all(chunker) == units  # and re-splitting with the same one too
    rebuilt = registry.build(name, chunker.params())
    assert rebuilt.params() == chunker.params()
    assert chunker.split(Session("S0", T0, ()), CONV) == []


def test_registry_names_and_errors() -> None:
    assert registry.names() == ["facts", "session", "summary", "time_gap", "token_window",
                                "turn", "window"]
    with pytest.raises(UnknownComponentError, match=r"Did you mean 'window'.*Valid choices: "
                       "facts, session, summary, time_gap, token_window, turn, window"):
        registry.get("windows")
    with pytest.raises(ConfigError, match=r"'window' has no parameter\(s\) width; "
                       "valid parameters: size, stride"):
        registry.build("window", {"width": 3})


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("window", {"size": 4, "stride": 5}, "stride must be an integer from 1 to size"),
        ("window", {"size": 0}, "size must be an integer >= 1"),
        ("token_window", {"max_tokens": 10, "overlap": 10}, "overlap must be an integer from 0"),
        ("time_gap", {"gap_seconds": -1}, "gap_seconds must be a number >= 0"),
        ("facts", {"llm": MockLLM(), "unsourced": "keep"}, "unsourced must be 'session' or"),
        ("facts", {"llm": MockLLM(), "max_memories": 0}, "max_memories must be an integer"),
        ("facts", {"llm": {"params": {}}}, "llm spec needs a 'name'"),
        ("summary", {"llm": 42}, "llm must be a spec {name, params} or an object"),
    ],
)
def test_bad_parameter_values_fail_clearly(name: str, params: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=f"chunker '{name}': {re.escape(message)}"):
        registry.build(name, params).split(S1, CONV)


# ---- turn, window, session ---------------------------------------------------------

def test_turn_units_are_speaker_prefixed_with_captions() -> None:
    units = registry.build("turn").split(S1)
    assert len(units) == 7
    assert units[0] == MemoryUnit("S1/turn/0", "Caroline: Hey Mel! I went to the LGBTQ support "
                                  "group yesterday.", "turn", ("D1:1",), "S1", T0)
    assert units[3].text == ("Melanie: I painted a lake sunrise last week. "
                             "[shares an image: a painting of a sunrise over a lake]")


@pytest.mark.parametrize(
    ("n", "size", "stride", "expected"),
    [
        (7, 4, 2, [(0, 4), (2, 6), (4, 7)]),
        (6, 4, 2, [(0, 4), (2, 6)]),
        (5, 4, 2, [(0, 4), (2, 5)]),
        (3, 4, 2, [(0, 3)]),
        (1, 4, 2, [(0, 1)]),
        (8, 4, 4, [(0, 4), (4, 8)]),
        (9, 4, 4, [(0, 4), (4, 8), (8, 9)]),
        (5, 2, 1, [(0, 2), (1, 3), (2, 4), (3, 5)]),
        (4, 1, 1, [(0, 1), (1, 2), (2, 3), (3, 4)]),
    ],
)
def test_window_edges(n: int, size: int, stride: int, expected: list[tuple[int, int]]) -> None:
    session = _session("W", T0, [("A", f"turn {i}") for i in range(n)],
                       offsets=[float(i) for i in range(n)])
    units = registry.build("window", {"size": size, "stride": stride}).split(session)
    ids = [t.id for t in session.turns]
    assert [u.source_turn_ids for u in units] == [tuple(ids[a:b]) for a, b in expected]
    assert [u.at for u in units] == [T0 + timedelta(seconds=b - 1) for _, b in expected]
    assert [u.id for u in units] == [f"W/window/{k}" for k in range(len(expected))]


def test_session_is_one_unit_with_every_line() -> None:
    (unit,) = registry.build("session").split(S2)
    assert unit.kind == "session" and unit.id == "S2/session/0"
    assert unit.text.splitlines()[2] == "Caroline: A beagle named Max, he is three years old."
    assert len(unit.text.splitlines()) == 6
    assert unit.at == T1 + timedelta(seconds=1000)


# ---- time_gap ----------------------------------------------------------------------

def test_time_gap_splits_only_where_silence_exceeds_threshold() -> None:
    units = registry.build("time_gap", {"gap_seconds": 120}).split(S2)
    # gaps: 30, 170 (split), 120 (equal: no split), 1, 679 (split)
    assert [u.source_turn_ids for u in units] == [("D2:1", "D2:2"), ("D2:3", "D2:4", "D2:5"),
                                                 ("D2:6",)]
    assert [u.at for u in units] == [T1 + timedelta(seconds=s) for s in (30, 321, 1000)]
    assert len(registry.build("time_gap", {"gap_seconds": 119}).split(S2)) == 4
    assert len(registry.build("time_gap", {"gap_seconds": 678}).split(S2)) == 2
    assert len(registry.build("time_gap", {"gap_seconds": 679}).split(S2)) == 1


def test_time_gap_is_one_unit_per_session_when_turns_share_a_time() -> None:
    (unit,) = registry.build("time_gap").split(S1)
    assert unit.text == registry.build("session").split(S1)[0].text


# ---- token_window ------------------------------------------------------------------

WORDS = ["the", "cat", "sat", "on", "a", "mat", "and", "then", "ran", "to", "see", "his",
         "old", "dog", "who", "was", "in", "the", "big", "red", "barn", "near", "our", "new",
         "home", "by", "an", "oak", "tree", "with", "some", "birds"]


def test_token_window_overlap_counts() -> None:
    # each line "A: w w w" is 5 tokens, and lines joined by "\n" add 1 token each
    session = _session("K", T0, [("A", "w w w")] * 4, offsets=[0, 1, 2, 3])
    assert count_tokens("A: w w w") == 5 and count_tokens("A: w w w\nA: w w w") == 11
    ids = [t.id for t in session.turns]

    def windows(overlap: int) -> list[tuple[str, ...]]:
        chunker = registry.build("token_window", {"max_tokens": 12, "overlap": overlap})
        return [u.source_turn_ids for u in chunker.split(session)]

    assert windows(5) == [tuple(ids[0:2]), tuple(ids[1:3]), tuple(ids[2:4])]
    assert windows(4) == [tuple(ids[0:2]), tuple(ids[2:4])]
    assert windows(0) == [tuple(ids[0:2]), tuple(ids[2:4])]
    big = registry.build("token_window", {"max_tokens": 17, "overlap": 11}).split(session)
    assert [u.source_turn_ids for u in big] == [tuple(ids[0:3]), tuple(ids[1:4])]


def test_token_window_splits_a_long_turn_at_token_boundaries() -> None:
    long_text = " ".join(WORDS[:30])  # "A: " + 30 one-token words = 32 tokens
    session = _session("L", T0, [("A", "w w w"), ("A", long_text), ("A", "w w w"),
                                 ("A", "w w w")], offsets=[0, 1, 2, 3])
    assert count_tokens(f"A: {long_text}") == 32
    units = registry.build("token_window", {"max_tokens": 12, "overlap": 4}).split(session)
    # pieces of the 32 tokens start every 12 - 4 = 8 tokens: [0,12) [8,20) [16,28) [24,32)
    assert [u.source_turn_ids for u in units] == [("L:1",), ("L:2",), ("L:2",), ("L:2",),
                                                 ("L:2",), ("L:3", "L:4")]
    assert units[1].text == "A: " + " ".join(WORDS[0:10])
    assert units[2].text == " ".join(WORDS[6:18])
    assert units[4].text == " ".join(WORDS[22:30])
    assert [u.metadata.get("part") for u in units] == [None, 0, 1, 2, 3, None]
    assert units[1].metadata["parts"] == 4
    assert [u.id for u in units] == [f"L/token_window/{k}" for k in range(6)]
    assert all(count_tokens(u.text) <= 12 for u in units)


def test_token_window_never_cuts_inside_a_character() -> None:
    text = "𠀀𠀁𠀂" * 8  # rare characters: several tokens each
    session = _session("U", T0, [("B", text)])
    units = registry.build("token_window", {"max_tokens": 7, "overlap": 2}).split(session)
    assert len(units) > 3
    assert all("\ufffd" not in u.text and count_tokens(u.text) <= 7 for u in units)
    assert units[-1].text.endswith("𠀂")


def test_token_window_budget_holds_on_a_whole_session() -> None:
    units = registry.build("token_window", {"max_tokens": 30, "overlap": 10}).split(S1)
    assert all(count_tokens(u.text) <= 30 for u in units)
    covered = [i for u in units for i in u.source_turn_ids]
    assert sorted(set(covered)) == [t.id for t in S1.turns]


# ---- facts -------------------------------------------------------------------------

def _facts(answer: Any, **params: Any) -> tuple[Any, MockLLM]:
    llm = MockLLM([answer] if isinstance(answer, str) else answer)
    return registry.build("facts", {"llm": llm, **params}), llm


def _answer(*facts: dict) -> str:
    return json.dumps({"memories": list(facts)})


def test_facts_keep_source_turns_and_their_latest_time() -> None:
    chunker, llm = _facts(_answer(
        {"content": "Caroline is adopting a beagle named Max", "category": "interesting",
         "turn_ids": ["D2:3", "D2:1"]}))
    (unit,) = chunker.split(S2, CONV)
    assert unit.id == "S2/facts/0" and unit.kind == "fact"
    assert unit.text == "Caroline is adopting a beagle named Max"
    assert unit.source_turn_ids == ("D2:1", "D2:3")
    assert unit.at == T1 + timedelta(seconds=200)
    assert unit.metadata["category"] == "interesting"
    assert unit.metadata["template"] == "extract_facts"
    prompt = llm.calls[0][-1]["content"]
    assert "Conversation on 7 June 2023, 13:56:" in prompt
    assert "[3] Caroline: A beagle named Max, he is three years old." in prompt
    assert chunker.records[-1]["outcome"] == "ok"


def test_structured_facts_hold_the_answer_to_the_chunkers_schema() -> None:
    import jsonschema

    class Recording(MockLLM):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            self.overrides: list[dict[str, Any]] = []

        def generate(self, messages: Sequence[Message], **overrides: Any) -> Completion:
            self.overrides.append(overrides)
            return super().generate(messages, **overrides)

    good = {"content": "Caroline is adopting a beagle named Max", "category": "interesting",
            "turn_ids": [3, 1]}
    llm = Recording([_answer(good)])
    chunker = registry.build("facts", {"llm": llm, "structured": True, "max_memories": 2})
    (unit,) = chunker.split(S2, CONV)
    assert unit.source_turn_ids == ("D2:1", "D2:3")
    schema = llm.overrides[0]["json_schema"]
    assert schema == chunker.schema() and schema["properties"]["memories"]["maxItems"] == 2
    jsonschema.validate({"memories": [good]}, schema)
    for bad in ({"memories": [good] * 3}, {"memories": [{**good, "category": "gossip"}]},
                {"memories": [{**good, "turn_ids": []}]}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
    plain = Recording([_answer(good)])
    registry.build("facts", {"llm": plain}).split(S2, CONV)
    assert plain.overrides == [{"max_tokens": 512}]


def test_facts_skip_sessions_under_25_characters_without_calling() -> None:
    # "A: " + 21 characters = 24 characters: skipped; one more character: extracted
    short = _session("Q", T0, [("A", "x" * 21)])
    enough = _session("Q", T0, [("A", "x" * 22)])
    chunker, llm = _facts(_answer({"content": "A likes x", "turn_ids": ["Q:1"]}), grounding=0)
    assert chunker.split(short) == [] and llm.calls == []
    assert chunker.records[-1]["outcome"] == "skipped"
    assert [u.text for u in chunker.split(enough)] == ["A likes x"]
    assert len(llm.calls) == 1


def test_facts_are_capped_at_max_memories() -> None:
    six = [{"content": f"Caroline fact number {w}", "turn_ids": ["D1:1"]}
           for w in ("one", "two", "three", "four", "five", "six")]
    chunker, _ = _facts(_answer(*six), grounding=0)
    assert [u.text for u in chunker.split(S1)] == [f["content"] for f in six[:4]]
    assert chunker.records[-1]["over_cap"] == 2 and chunker.records[-1]["proposed"] == 6
    two, llm = _facts(_answer(*six), max_memories=2, grounding=0)
    assert len(two.split(S1)) == 2
    assert "Return at most 2 memories;" in llm.calls[0][0]["content"]


def test_facts_already_in_memory_are_skipped() -> None:
    first = _answer({"content": "Caroline loves hiking in the mountains", "turn_ids": ["D1:1"]})
    second = _answer(
        {"content": "Caroline loves hiking in the mountains.", "turn_ids": ["D2:1"]},
        {"content": "caroline LOVES hiking in mountains", "turn_ids": ["D2:1"]},  # J = 5/6
        {"content": "Caroline is adopting a beagle named Max", "turn_ids": ["D2:3"]},
        {"content": "Caroline is adopting a beagle named Max!", "turn_ids": ["D2:3"]},
    )
    chunker, llm = _facts(lambda m: first if "Hey Mel!" in m[-1]["content"] else second,
                          grounding=0)
    assert [u.text for u in chunker.split(S1, CONV)] == ["Caroline loves hiking in the mountains"]
    units = chunker.split(S2, CONV)
    assert [u.text for u in units] == ["Caroline is adopting a beagle named Max"]
    assert chunker.records[-1]["duplicate"] == 3
    assert "Previous memories:\n- Caroline loves hiking in the mountains\n" in \
        llm.calls[1][-1]["content"]
    # a stricter threshold keeps the reworded one; no context means no memory to check
    strict, _ = _facts(lambda m: first if "Hey Mel!" in m[-1]["content"] else second,
                       similarity=1.0, grounding=0)
    strict.split(S1, CONV)
    assert len(strict.split(S2, CONV)) == 2
    alone, _ = _facts(second, grounding=0)
    assert len(alone.split(S2)) == 2


def test_facts_not_grounded_in_the_session_are_dropped() -> None:
    # Qwen2.5-0.5B copies the template's worked example, with a speaker's name swapped in
    chunker, _ = _facts(_answer(
        {"content": "Caroline's sister Lea works at the bakery", "turn_ids": ["D2:1"]},
        {"content": "Caroline starts a new job at the bakery on Monday", "turn_ids": [2]},
        {"content": "Caroline adopts Max, a three-year-old beagle", "turn_ids": ["D2:3"]},
        {"content": "Melanie will bring treats on Saturday in June 2023", "turn_ids": [6]},
    ))
    assert [u.text for u in chunker.split(S2, CONV)] == [
        "Caroline adopts Max, a three-year-old beagle",  # 'adopts' ~ 'adopting', 'three'
        "Melanie will bring treats on Saturday in June 2023"]  # the date counts as seen
    assert chunker.records[-1]["ungrounded"] == 2
    everything, _ = _facts(_answer({"content": "Lea works at the bakery", "turn_ids": [1]}),
                           grounding=0)
    assert len(everything.split(S2, CONV)) == 1
    with pytest.raises(ConfigError, match=r"grounding must be a number in \[0, 1\]"):
        registry.build("facts", {"llm": MockLLM(), "grounding": 2}).split(S2)


def test_facts_that_copy_the_prompts_example_are_dropped_even_when_grounded() -> None:
    # a session about a new job shares most of the example's words: grounding (0.5) lets
    # the copy through, its "bakery" and "Monday" (in the example, not in this Wednesday's
    # session) do not
    job = _session("J", T1, [("Gina", "I start my new job next week, so excited!"),
                             ("Jon", "Congrats Gina! Where is it?"),
                             ("Gina", "At a clothing store downtown, I start on Tuesday.")])
    copied = {"content": "Gina starts a new job at the bakery on Monday", "turn_ids": [1]}
    real = {"content": "Gina starts a new job at a clothing store on Tuesday",
            "turn_ids": [1, 3]}
    chunker, _ = _facts(_answer(copied, real))
    assert [u.text for u in chunker.split(job)] == [real["content"]]
    record = chunker.records[-1]
    assert record["copied_example"] == 1 and record["ungrounded"] == 0
    kept, _ = _facts(_answer(copied, real), grounding=0)  # grounding 0: no checks at all
    assert len(kept.split(job)) == 2


def test_facts_drop_turn_ids_not_in_the_session() -> None:
    chunker, _ = _facts(_answer(
        {"content": "Melanie paints every Sunday morning", "category": "Interesting",
         "turn_ids": ["D1:6", "D9:9", "[D1:4]"]},
        {"content": "Caroline wants to study counseling", "category": "health",
         "turn_ids": "D1:3, D1:99"},
        {"content": "Melanie has kids", "category": "system", "turn_ids": ["nope"]},
    ))
    first, second, third = chunker.split(S1)
    assert first.source_turn_ids == ("D1:4", "D1:6")
    assert first.metadata["dropped_turn_ids"] == ["D9:9"]
    assert first.metadata["category"] == "interesting"
    assert second.source_turn_ids == ("D1:3",)
    assert (second.metadata["category"], second.metadata["category_given"]) == \
        ("interesting", "health")
    assert third.metadata["unsourced"] is True and third.metadata["category"] == "system"
    assert third.source_turn_ids == tuple(t.id for t in S1.turns)
    record = chunker.records[-1]
    assert (record["dropped_turn_ids"], record["unsourced"], record["bad_category"]) == (3, 1, 1)
    dropping, _ = _facts(_answer({"content": "Melanie has kids", "turn_ids": ["nope"]}),
                         unsourced="drop")
    assert dropping.split(S1) == [] and dropping.records[-1]["unsourced_dropped"] == 1


def test_facts_resolve_turn_numbers_as_the_prompt_shows_them() -> None:
    chunker, _ = _facts(_answer(
        {"content": "Caroline adopts Max", "turn_ids": [3, "1", "#2", 99, 0, "D2:5"]}))
    (unit,) = chunker.split(S2)
    assert unit.source_turn_ids == ("D2:1", "D2:2", "D2:3", "D2:5")
    assert unit.metadata["dropped_turn_ids"] == ["99", "0"]


@pytest.mark.parametrize(
    "answer",
    [
        '```json\n{"memories": [{"content": "Melanie paints on Sundays", "turn_ids": ["D1:6"]}'
        "]}\n```\nLet me know if you need more!",
        "Sure! {'memories': [{'content': 'Melanie paints on Sundays', 'turn_ids': ['D1:6'],},]}",
        '[{"memory": "Melanie paints on Sundays", "source_turn_ids": "D1:6"}]',
        '{"memories": [{"content": "Melanie paints on Sundays", "turn_ids": ["D1:6"]}, {"con',
    ],
)
def test_facts_parse_imperfect_json(answer: str) -> None:
    chunker, _ = _facts(answer)
    (unit,) = chunker.split(S1)
    assert (unit.text, unit.source_turn_ids) == ("Melanie paints on Sundays", ("D1:6",))


@pytest.mark.parametrize("answer", ["I cannot help with that.", '{"note": "nothing"}', ""])
def test_facts_unparseable_answer_gives_no_units_and_a_recorded_error(answer: str) -> None:
    chunker, _ = _facts(answer)
    assert chunker.split(S1, CONV) == []
    record = chunker.records[-1]
    assert record["outcome"] == "error" and record["error"].startswith("unparseable answer")
    assert (record["session_id"], record["conversation_id"]) == ("S1", "conv-x")
    assert record["template"] == "extract_facts" and len(record["prompt_sha256"]) == 64


class FailingLLM:
    """An LLM whose every call fails, as backends report it (an error, not a raise)."""

    def params(self) -> dict[str, Any]:
        return {}

    def generate(self, messages: Sequence[Message], **overrides: Any) -> Completion:
        return Completion("", 0, 0, 0.5, "broken", error="timeout after 300 s")


@pytest.mark.parametrize("name", ["facts", "summary"])
def test_llm_errors_give_no_units_and_a_recorded_error(name: str) -> None:
    chunker = registry.build(name, {"llm": FailingLLM()})
    assert chunker.split(S1, CONV) == []
    assert chunker.records[-1]["error"] == "llm error: timeout after 300 s"
    assert chunker.records[-1]["model"] == "broken"


def test_facts_prompt_shows_the_declared_categories() -> None:
    chunker, llm = _facts(_answer(), categories=["health", "work"])
    assert chunker.split(S1) == [] and chunker.records[-1]["outcome"] == "ok"
    system = llm.calls[0][0]["content"]
    assert "  - health\n  - work\n" in system and "interesting" not in system


# ---- summary -----------------------------------------------------------------------

def test_summary_is_one_unit_over_all_turns() -> None:
    answer = '{"title": "Dog adoption", "overview": "Caroline adopts Max, a beagle."}'
    chunker = registry.build("summary", {"llm": MockLLM([answer])})
    (unit,) = chunker.split(S2, CONV)
    assert unit == MemoryUnit(
        "S2/summary/0", "Dog adoption\nCaroline adopts Max, a beagle.", "summary",
        tuple(t.id for t in S2.turns), "S2", T1 + timedelta(seconds=1000), unit.metadata)
    assert unit.metadata["title"] == "Dog adoption" and unit.metadata["parsed"] == "json"
    assert unit.metadata["template"] == "session_summary"


def test_summary_keeps_prose_and_rejects_empty_answers() -> None:
    prose = registry.build("summary", {"llm": MockLLM(["Caroline  talks about\nher dog."])})
    (unit,) = prose.split(S2)
    assert (unit.text, unit.metadata["parsed"]) == ("Caroline talks about her dog.", "text")
    for answer in ("", '{"topic": "dogs"}'):
        empty = registry.build("summary", {"llm": MockLLM([answer])})
        assert empty.split(S2) == []
        assert empty.records[-1]["error"].startswith("no title or overview")


# ---- real data ---------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "units", "sources"),
    [("turn", 5882, 5882), ("window", 2739, 10816), ("session", 272, 5882),
     ("token_window", 1023, 6316), ("time_gap", 272, 5882)],
)
def test_unit_counts_on_locomo(locomo_dataset: Any, name: str, units: int,
                               sources: int) -> None:
    chunker = registry.build(name)
    got = [u for c in locomo_dataset for s in c.sessions for u in chunker.split(s, c)]
    assert (len(got), sum(len(u.source_turn_ids) for u in got)) == (units, sources)
    if name == "token_window":
        assert max(count_tokens(u.text) for u in got) == 256


def test_time_gap_degrades_to_session_on_longmemeval(longmemeval_dataset: Any) -> None:
    gap, whole = registry.build("time_gap"), registry.build("session")
    pairs = [(gap.split(s), whole.split(s)) for c in longmemeval_dataset for s in c.sessions]
    assert len(pairs) == 948
    assert all([u.text for u in a] == [u.text for u in b] for a, b in pairs)


# ---- the real embedded Qwen ------------------------------------------------------------

@pytest.mark.slow
def test_facts_and_summary_with_the_embedded_qwen() -> None:
    from memlab.llm import build_llm

    qwen = build_llm({"name": "llamacpp", "params": {}})
    session = _session("M", T0, [
        ("User", "How do I take my blood pressure medication?"),
        ("Nurse", "Take your BP medication at 9am with food, every day."),
        ("User", "I always forget it. My daughter Anna reminds me on Sundays."),
        ("Nurse", "Set a reminder on your phone for 9am."),
    ], offsets=[0, 20, 40, 60])
    conversation = Conversation("omi-1", ("User", "Nurse"), (session,), ())
    facts = registry.build("facts", {"llm": qwen})
    units = facts.split(session, conversation)
    record = facts.records[-1]
    assert record["outcome"] == "ok", record
    assert 1 <= len(units) <= 4
    assert all(set(u.source_turn_ids) <= {t.id for t in session.turns} for u in units)
    assert not any(u.metadata["unsourced"] for u in units)  # it cited turns, as asked
    assert record["prompt_tokens"] > 300 and record["model"]
    summary = registry.build("summary", {"llm": qwen})
    (unit,) = summary.split(session, conversation)
    assert unit.kind == "summary" and len(unit.text) > 20
    assert summary.records[-1]["outcome"] == "ok"
