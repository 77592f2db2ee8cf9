"""``extracted``: ADD / UPDATE / DELETE / NONE, versions valid over time, persistence.

A scripted model (facts per session, decisions per fact) and the ``hash`` embedder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_memory_helpers import ScriptedLLM, at, session

from memlab.memory import registry
from memlab.memory.extracted import ExtractedMemory

S1 = session("s1", 0, ["I live in Paris with my partner.", "Nice city!",
                       "I have a gym membership downtown.", "Good for you."])
S2 = session("s2", 10, ["Big news: I moved to Berlin last week.", "Exciting!",
                        "I live in Paris with my partner.", "Still?"])
S3 = session("s3", 20, ["I cancelled my gym membership downtown.", "Why?",
                        "Too expensive.", "Fair."])

FACTS = {
    "I live in Paris with my partner.": "User lives in Paris",
    "I have a gym membership downtown.": "User has a gym membership downtown",
    "Big news: I moved to Berlin last week.": "User lives in Berlin",
    "I cancelled my gym membership downtown.": "User cancelled the gym membership downtown",
}


def _facts(turns: dict[int, str]) -> list[tuple[str, list[int]]]:
    return [(FACTS[text], [n]) for n, text in turns.items() if text in FACTS]


def _decide(fact: str, prompt: str) -> dict[str, Any]:
    if "Berlin" in fact:
        return {"event": "UPDATE", "id": 1, "text": "User lives in Berlin (moved from Paris)"}
    if "cancelled" in fact:
        return {"event": "DELETE", "id": 1}
    if "Paris" in fact and "Berlin" in prompt:  # a stale fact said again
        return {"event": "NONE", "id": 1}
    return {"event": "ADD"}


def _memory(llm: ScriptedLLM, **params: Any) -> ExtractedMemory:
    base = {"embedder": "hash", "llm": llm, "similar_threshold": 0.3, "same_threshold": 0.95}
    memory = registry.build("extracted", {**base, **params})
    assert isinstance(memory, ExtractedMemory)
    return memory


def _texts(memory: ExtractedMemory, query: str, day: int | None) -> list[str]:
    return [h.unit.text for h in memory.search(query, 10, None if day is None else at(day))]


def test_update_and_delete_replace_stale_facts_but_the_past_keeps_them() -> None:
    llm = ScriptedLLM(facts=_facts, decide=_decide)
    memory = _memory(llm)
    for s in (S1, S2, S3):
        memory.ingest(s)
    events = [(r["event"], r["by"], r["target"]) for r in memory.records if "event" in r]
    assert events == [("ADD", "rule", None), ("ADD", "rule", None),
                      ("UPDATE", "llm", "mem1/v1"), ("NONE", "llm", "mem1/v2"),
                      ("DELETE", "llm", "mem2/v1")]
    versions = {u.id: u for u in memory.units()}
    assert sorted(versions) == ["mem1/v1", "mem1/v2", "mem2/v1"]
    old, new = versions["mem1/v1"], versions["mem1/v2"]
    assert old.metadata["valid_to"] == new.at == S2.turns[0].at
    assert new.source_turn_ids == ("s1:t1", "s2:t1")  # the old evidence and the new
    assert versions["mem2/v1"].metadata["valid_to"] == S3.turns[0].at
    # now: Berlin, no gym; on day 5: Paris and the gym; on day 15: Berlin and the gym
    assert _texts(memory, "where does the user live", None) == [
        "User lives in Berlin (moved from Paris)"]
    assert set(_texts(memory, "where does the user live", 5)) == {
        "User lives in Paris", "User has a gym membership downtown"}
    assert set(_texts(memory, "gym membership", 15)) == {
        "User lives in Berlin (moved from Paris)", "User has a gym membership downtown"}
    assert _texts(memory, "gym membership", 25) == ["User lives in Berlin (moved from Paris)"]
    assert len(llm.calls["update"]) == 3  # the two ADDs never reached the model


def test_ingest_cost_counts_model_calls_only_with_every_calls_tokens() -> None:
    from memlab.llm.calls import ingest_summary

    llm = ScriptedLLM(facts=_facts, decide=_decide)
    memory = _memory(llm)
    for s in (S1, session("s0", 5, ["Hi"]), S2, S3):  # "user: Hi" is too short to send
        memory.ingest(s)
    calls = len(llm.calls["facts"]) + len(llm.calls["update"])
    assert (len(llm.calls["facts"]), len(llm.calls["update"])) == (3, 3)
    records = memory.take_calls()
    assert len(records) > calls  # a skipped session and two rule ADDs are recorded too
    cost = ingest_summary(records)
    assert (cost["calls"], cost["prompt_tokens"], cost["completion_tokens"]) == (
        calls, 10 * calls, 10 * calls)  # the scripted model counts 10 + 10 per call


def test_rule_mode_updates_the_closest_memory_without_asking() -> None:
    llm = ScriptedLLM(facts=_facts, decide=lambda fact, prompt: {"event": "DELETE"})
    memory = _memory(llm, decide="rule")
    for s in (S1, session("s2", 10, ["Big news: I moved to Berlin last week.", "Wow!"])):
        memory.ingest(s)
    assert llm.calls["update"] == []
    current = _texts(memory, "where does the user live", None)
    assert "User lives in Berlin" in current and "User lives in Paris" not in current


def test_unreadable_decision_falls_back_to_add_and_says_so() -> None:
    memory = _memory(ScriptedLLM(facts=_facts, decide=lambda fact, prompt: "no idea"))
    for s in (S1, S2):
        memory.ingest(s)
    berlin = next(r for r in memory.records if r.get("fact") == "User lives in Berlin")
    assert (berlin["event"], berlin["by"], berlin["fallback"]) == (
        "ADD", "fallback", "unreadable answer")
    assert {"User lives in Paris", "User lives in Berlin"} <= set(
        _texts(memory, "where does the user live", None))


def test_structured_holds_facts_and_decisions_to_their_schemas() -> None:
    import jsonschema

    from memlab.memory.decisions import decision_schema

    llm = ScriptedLLM(facts=_facts, decide=_decide)
    memory = _memory(llm, structured=True)
    for s in (S1, S2, S3):
        memory.ingest(s)
    facts = [o["json_schema"] for o in llm.overrides["facts"]]
    assert facts and all(f == memory._extractor().schema() for f in facts)
    shown = [len(m[-1]["content"].split("New fact")[0].split("\n[")) - 1
             for m in llm.calls["update"]]
    assert [o["json_schema"] for o in llm.overrides["update"]] == [
        decision_schema(n) for n in shown]
    schema = decision_schema(2)
    for good in ({"event": "UPDATE", "id": 2, "text": "User lives in Berlin"},
                 {"event": "ADD", "id": None, "text": ""}):
        jsonschema.validate(good, schema)
    for bad in ({"event": "MAYBE", "id": 1, "text": ""}, {"event": "NONE", "id": 3, "text": ""},
                {"event": "NONE", "id": 0, "text": ""}, {"event": "ADD", "id": None},
                {"event": "ADD", "id": None, "text": "", "why": "new"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
    # the same replies make the same memory; without structured no call carries a schema
    plain_llm = ScriptedLLM(facts=_facts, decide=_decide)
    plain = _memory(plain_llm)
    for s in (S1, S2, S3):
        plain.ingest(s)
    assert [u.text for u in plain.units()] == [u.text for u in memory.units()]
    assert not any("json_schema" in o for kind in plain_llm.overrides.values() for o in kind)


def test_remember_goes_through_the_same_decisions() -> None:
    memory = _memory(ScriptedLLM(decide=_decide))
    first = memory.remember("User lives in Paris", "archival", at(0), source_id="m1")
    same = memory.remember("User lives in Paris", "archival", at(1), source_id="m2")
    moved = memory.remember("User lives in Berlin", "archival", at(2), source_id="m3")
    assert first.id == same.id == "mem1/v1"
    assert moved.id == "mem1/v2" and moved.source_turn_ids == ("m1", "m3")


def test_sqlite_store_keeps_versions_validity_and_users_apart(tmp_path: Path) -> None:
    path = str(tmp_path / "archival.db")

    def open_user(name: str) -> ExtractedMemory:
        return _memory(ScriptedLLM(facts=_facts, decide=_decide),
                       store={"name": "sqlite", "params": {"path": path, "namespace": name}})

    alice, bob = open_user("alice"), open_user("bob")
    for s in (S1, S2, S3):
        alice.ingest(s)
    bob.ingest(S1)
    expected = {day: _texts(alice, "live gym", day) for day in (5, 15, 25)}
    alice.close()
    bob.close()
    again = open_user("alice")
    assert {day: _texts(again, "live gym", day) for day in (5, 15, 25)} == expected
    assert [u.id for u in again.units()] == ["mem1/v1", "mem2/v1", "mem1/v2"]
    bob_again = open_user("bob")
    assert sorted(u.text for u in bob_again.units()) == [
        "User has a gym membership downtown", "User lives in Paris"]
    # a new fact for alice after reopening updates her stored memory, not bob's
    again.remember("User moved to Munich", "archival", at(30), source_id="m9")
    assert len(again.units()) == 4 and len(bob_again.units()) == 2


def test_extracted_runs_through_the_harness_time_faithfully(tmp_path: Path) -> None:
    """synth-00's gym price changes from $25 (s4:t5) to $39 (s5:t7); q01 is asked between."""
    from memlab.eval.run import evaluate

    def fact(text: str, turn: int) -> str:
        return f'{{"memories": [{{"content": "{text}", "turn_ids": [{turn}]}}]}}'

    responses = {"costs $25 a month": fact("User pays $25 a month for the gym", 5),
                 "up to $39 a month": fact("User pays $39 a month for the gym", 7)}
    config = {
        "name": "extracted-harness",
        "dataset": {"name": "synthetic", "probes": {"conversations": ["synth-00"]}},
        "memory": {"name": "extracted", "params": {
            "embedder": "hash", "decide": "rule", "similar_threshold": 0.5,
            "llm": {"name": "mock", "params": {"responses": responses,
                                               "default": '{"memories": []}'}}}},
        "tracking": {"mlflow": False}, "cache": {"llm": "off"},
    }
    rows = {r["probe_id"]: r for r in evaluate(config, out=tmp_path / "run",
                                               progress=False).items()}
    assert len(rows) == 12 and not any(r["error"] for r in rows.values())
    before, after = rows["synth-00:q01"], rows["synth-00:q07"]
    assert [(h["id"], h["source_turn_ids"]) for h in before["retrieved"]] == [
        ("mem1/v1", ["s4:t5"])]
    assert [(h["id"], h["source_turn_ids"]) for h in after["retrieved"]] == [
        ("mem1/v2", ["s4:t5", "s5:t7"])]
    assert before["metrics"]["turn.recall_all@1"] == 1.0
    assert after["metrics"]["turn.recall_all@1"] == 1.0
