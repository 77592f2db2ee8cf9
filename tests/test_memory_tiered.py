"""``tiered``: recall budget, consolidation, core versions, retrieval, time, persistence.

A scripted model and the ``hash`` embedder keep these fast; the numbers are exact.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_memory_helpers import HASH_DENSE, ScriptedLLM, at, conversation, session

from memlab.errors import ConfigError
from memlab.memory import registry
from memlab.memory.tiered import TieredMemory
from memlab.tokens import count_tokens

S1 = session("s1", 0, ["I adopted a cat named Miso.", "Lovely, how old is Miso?",
                       "Two years old and very playful.", "Cats are great company."])
S2 = session("s2", 3, ["I started learning the cello this week.", "What a lovely instrument.",
                       "My teacher is called Ana.", "Say hi to Ana from me."])
S3 = session("s3", 7, ["We booked a trip to Lisbon for June.", "Lisbon is beautiful in June.",
                       "We fly on the 12th.", "Enjoy the trip!"])


def _facts(turns: dict[int, str]) -> list[tuple[str, list[int]]]:
    """One fact from the first turn of each consolidated group."""
    return [(f"User said: {turns[1]}", [1])]


def _memory(llm: ScriptedLLM, **params: object) -> TieredMemory:
    base = {"retrieval": HASH_DENSE, "llm": llm, "recall_tokens": 40, "core_facts": 1}
    memory = registry.build("tiered", {**base, **params})
    assert isinstance(memory, TieredMemory)
    return memory


def _tokens(units: list) -> int:
    return sum(count_tokens(u.text) for u in units)


def test_recall_buffer_keeps_the_newest_turns_within_the_budget() -> None:
    memory = _memory(ScriptedLLM(), auto_consolidate=False)
    for s in (S1, S2, S3):
        memory.ingest(s)
    buffer = memory.recall_buffer()
    assert _tokens(buffer) <= 40
    assert [u.source_turn_ids[0] for u in buffer] == ["s3:t1", "s3:t2", "s3:t3", "s3:t4"]
    # one more turn in the budget would not fit: it is exactly the newest that fit
    older = [u for u in memory.units() if u.kind == "turn"][-5]
    assert _tokens([*buffer, older]) > 40
    # as of day 3 (during s2) the buffer ends with s2's turns and holds nothing of s3
    then = memory.recall_buffer(at(3, 10))
    assert then[-1].source_turn_ids == ("s2:t4",) and _tokens(then) <= 40


def test_consolidation_summarises_evicted_turns_once_with_all_their_sources() -> None:
    llm = ScriptedLLM(facts=_facts)
    memory = _memory(llm)
    made = [memory.ingest(s, conversation(S1, S2, S3)) for s in (S1, S2, S3)]
    summaries = [u for u in memory.units() if u.kind == "summary"]
    assert [u.id for u in summaries] == ["s1/consolidated/0", "s2/consolidated/0"]
    assert summaries[0].source_turn_ids == ("s1:t1", "s1:t2", "s1:t3", "s1:t4")
    assert summaries[0].at == S1.turns[-1].at  # dated by its latest turn, not by the wall clock
    assert summaries[0].text == "Chat\nThey said 4 things."
    assert len(llm.calls["summary"]) == 2 and len(llm.calls["facts"]) == 2
    assert {u.kind for u in made[0]} == {"turn"}  # s1 alone fits the buffer
    consolidated = {u.source_turn_ids[0] for u in memory.units()
                    if u.kind == "turn" and u.metadata["consolidated"]}
    assert consolidated == {t.id for t in S1.turns + S2.turns}
    assert memory.consolidate() == []  # nothing new has left the buffer
    assert len(llm.calls["summary"]) == 2


def test_core_block_is_versioned_capped_and_first_in_every_search() -> None:
    memory = _memory(ScriptedLLM(facts=_facts), core_tokens=14)
    for s in (S1, S2, S3):
        memory.ingest(s)
    versions = [u for u in memory.units() if u.kind == "core"]
    assert [v.id for v in versions] == ["core/1", "core/2"]
    assert versions[0].text == "- User said: I adopted a cat named Miso."
    # the second fact did not fit 14 tokens next to the first: the oldest line went
    assert versions[1].text == "- User said: I started learning the cello this week."
    assert versions[1].source_turn_ids == ("s2:t1",)
    hits = memory.search("anything", 50, at(10))
    assert hits[0].unit.id == "core/2" and hits[0].score == 1.0
    # a version is dated by its newest line: core/2 by s2:t1 (day 3, minute 1)
    assert versions[1].at == at(3, 1)
    assert memory.search("anything", 50, at(3, 0))[0].unit.id == "core/1"
    assert memory.search("anything", 50, at(3, 1))[0].unit.id == "core/2"
    assert memory.search("anything", 50, at(0, 0)) == []  # nothing was known yet


def test_retrieval_respects_top_k_threshold_time_and_skips_the_buffer() -> None:
    memory = _memory(ScriptedLLM(), auto_consolidate=False, top_k=2, relevance_threshold=0.2)
    for s in (S1, S2, S3):
        memory.ingest(s)
    ctx = memory.context("Miso the cat is playful", at(30))
    assert 1 <= len(ctx.retrieved) <= 2
    assert all(h.score >= 0.2 for h in ctx.retrieved)
    assert ctx.retrieved[0].unit.source_turn_ids[0].startswith("s1:")
    shown = {h.unit.id for h in ctx.recent}
    assert not shown & {h.unit.id for h in ctx.retrieved}
    early = memory.context("Lisbon trip in June", at(3, 10))
    assert all(h.unit.at <= at(3, 10) for h in early.retrieved + early.recent)
    assert not any(h.unit.session_id == "s3" for h in early.retrieved + early.recent)
    strict = _memory(ScriptedLLM(), auto_consolidate=False, relevance_threshold=0.99)
    strict.ingest(S1)
    assert strict.context("cello teacher", at(30)).retrieved == []
    assert len(memory.search("Miso", 3, at(30))) == 3  # search never returns more than k


def test_failed_model_call_leaves_turns_unconsolidated_and_recorded() -> None:
    llm = ScriptedLLM(fail=True)
    memory = _memory(llm)
    for s in (S1, S2):
        memory.ingest(s)
    assert not [u for u in memory.units() if u.kind in ("summary", "core")]
    assert not any(u.metadata["consolidated"] for u in memory.units() if u.kind == "turn")
    errors = [r for r in memory.records if r["outcome"] == "error"]
    assert errors and errors[0]["error"] == "llm error: connection refused"
    llm.fail = False
    made = memory.consolidate()
    assert [u.id for u in made if u.kind == "summary"] == ["s1/consolidated/0"]


def test_remember_edits_each_tier() -> None:
    memory = _memory(ScriptedLLM(), auto_consolidate=False, relevance_threshold=0.1)
    memory.ingest(S1)
    core = memory.remember("Prefers tea over coffee", "core", at(1))
    assert core.kind == "core" and core.source_turn_ids == ("note/5",)
    note = memory.remember("Allergic to peanuts", "archival", at(1, 1), source_id="m2")
    assert (note.kind, note.id, note.metadata["tier"]) == ("note", "m2", "archival")
    recall = memory.remember("Call mum on Sunday", "recall", at(1, 2), source_id="m3")
    assert recall.kind == "turn" and memory.recall_buffer()[-1].id == recall.id
    assert memory.find("peanuts allergic", 3, at(2))[0].unit.id == "m2"
    assert "m2" not in {h.unit.id for h in memory.find("peanuts allergic", 3, at(1))}
    assert memory.context("x", at(2)).core.unit.text == "- Prefers tea over coffee"
    with pytest.raises(ValueError, match="memory_type must be one of core, recall, archival"):
        memory.remember("x", "episodic")


def test_sqlite_store_persists_tiers_and_keeps_users_apart(tmp_path: Path) -> None:
    path = str(tmp_path / "archival.db")

    def open_user(name: str) -> TieredMemory:
        return _memory(ScriptedLLM(facts=_facts),
                       store={"name": "sqlite", "params": {"path": path, "namespace": name}})

    alice, bob = open_user("alice"), open_user("bob")
    for s in (S1, S2, S3):
        alice.ingest(s)
    bob.ingest(session("b1", 0, ["I collect vinyl records.", "Which genre?"]))
    before = alice.search("cello teacher Ana", 20, at(30))
    units_before = alice.units()
    alice.close()
    bob.close()
    again = open_user("alice")
    assert again.units() == units_before
    assert [(h.unit.id, round(h.score, 6)) for h in again.search("cello teacher Ana", 20,
                                                                 at(30))] == \
           [(h.unit.id, round(h.score, 6)) for h in before]
    bob_again = open_user("bob")
    assert {u.session_id for u in bob_again.units()} == {"b1"}
    assert all(h.unit.session_id == "b1" for h in bob_again.search("cello Ana Miso", 20))


def test_tiered_runs_through_the_harness(tmp_path: Path) -> None:
    from memlab.eval.run import evaluate

    config = {
        "name": "tiered-harness", "dataset": {"name": "synthetic",
                                              "probes": {"conversations": ["synth-00"]}},
        "memory": {"name": "tiered", "params": {
            "retrieval": HASH_DENSE, "recall_tokens": 300, "relevance_threshold": 0.1,
            "llm": {"name": "mock", "params": {
                "responses": {"Previous memories": '{"memories": [{"content": "User has a '
                                                   'gym", "turn_ids": [1]}]}'},
                "default": '{"title": "Chat", "overview": "They talked."}'}}}},
        "k": None, "tracking": {"mlflow": False}, "cache": {"llm": "off"},
    }
    result = evaluate(config, out=tmp_path / "run", progress=False)
    rows = result.items()
    assert len(rows) == 12 and not any(r["error"] for r in rows)
    first = rows[0]  # asked on day 15, between sessions 4 and 5
    assert all(r["at"] <= first["asked_at"] for r in first["retrieved"])
    kinds = [r["kind"] for r in rows[-1]["retrieved"]]
    assert kinds[0] == "core" and set(kinds[1:]) == {"turn"}
    assert rows[-1]["retrieved"][0]["source_turn_ids"] == ["s1:t1"]  # the first gym line
    assert result.summary["config_name"] == "tiered-harness"


def test_live_style_consolidation_waits_for_enough_tokens_and_batches() -> None:
    llm = ScriptedLLM()
    memory = _memory(llm, recall_tokens=20, consolidate_min_tokens=30, consolidate_by="batch")
    exchanges = [session(f"x{n}", n, [f"Message number {n} about topic {n}.", "Noted."])
                 for n in range(1, 6)]
    counts = []
    for exchange in exchanges:
        memory.ingest(exchange)
        counts.append(len(llm.calls["summary"]))
    assert counts == [0, 0, 1, 1, 2]  # once >= 30 tokens had left the 20-token buffer
    summaries = [u for u in memory.units() if u.kind == "summary"]
    assert summaries[0].source_turn_ids == ("x1:t1", "x1:t2", "x2:t1", "x2:t2")
    assert summaries[0].id == "x1/consolidated/0"


@pytest.mark.parametrize("dating", ["latest_turn", "consolidation"])
def test_summaries_dated_at_consolidation_let_an_hnsw_graph_grow_without_rebuilds(
        dating: str) -> None:
    """A live memory (the agent's ``date_summaries: consolidation``): each summary is dated
    when consolidation ran, so it is the newest unit and dense's HNSW graph appends it; dated
    by its latest turn it sorts before turns already indexed, and the graph is rebuilt."""
    hnsw = {"name": "dense", "params": {"embedder": "hash", "index": "faiss-hnsw",
                                        "index_params": {"exact_below": 4, "ladder_min": 4}}}
    memory = _memory(ScriptedLLM(facts=_facts), retrieval=hnsw, consolidate_by="batch",
                     date_summaries=dating, core_facts=0, recall_tokens=100)
    sessions = [session(f"s{i}", i, [f"Note {i}.{n}: the {w} number {i * n}" for n, w in
                                     enumerate(["kettle", "garden", "violin", "harbour"])])
                for i in range(12)]
    for s in sessions:
        memory.ingest(s)
        assert memory.search("kettle number", 3)
    summaries = [u for u in memory.units() if u.kind == "summary"]
    assert len(summaries) >= 5
    dense = memory._ready().retriever()
    turn_at = {t.id: t.at for s in sessions for t in s.turns}
    if dating == "consolidation":
        # dated at the end of the session whose ingest pushed its turns out of the buffer
        ends = {s.turns[-1].at for s in sessions}
        assert all(u.at in ends and u.at > max(turn_at[t] for t in u.source_turn_ids)
                   for u in summaries)
        assert dense.ann_builds == 1
    else:
        assert all(u.at == max(turn_at[t] for t in u.source_turn_ids) for u in summaries)
        assert dense.ann_builds > 1
    with pytest.raises(ConfigError, match="date_summaries 'wall_clock' is not known; valid "
                       "choices: latest_turn, consolidation"):
        _memory(ScriptedLLM(), date_summaries="wall_clock").ingest(sessions[0])


def test_a_near_repeat_in_core_is_an_update_or_skipped_as_configured() -> None:
    """"Phone 555 9876" after "phone 555 1234" (Jaccard 0.8) replaces the old line as the
    newest one; the same words again change nothing; with ``core_repeat: skip`` the old
    value stays (the behaviour before session 27). Each add says what it did."""
    old = "Hana's phone number is 555 1234 and she prefers calls after 6pm"
    new = "Hana's phone number is 555 9876 and she prefers calls after 6pm"
    other = "Hana is vegetarian"
    memory = _memory(ScriptedLLM(), auto_consolidate=False)
    memory.remember(old, "core", at(1))
    memory.remember(other, "core", at(1, 1))
    unit = memory.remember(new, "core", at(1, 2))
    assert unit.text == f"- {other}\n- {new}" and unit.id == "core/3"
    assert memory.core_change.replaced == ((old, new),) and not memory.core_change.evicted
    again = memory.remember(new.upper(), "core", at(1, 3))  # the same words
    assert again.id == "core/3" and memory.core_change.skipped == (new.upper(),)
    assert memory.search("x", 5, at(1, 1))[0].unit.text == f"- {old}\n- {other}"  # as of then
    keep = _memory(ScriptedLLM(), auto_consolidate=False, core_repeat="skip")
    keep.remember(old, "core", at(1))
    assert keep.remember(new, "core", at(1, 2)).text == f"- {old}"
    assert keep.core_change.skipped == (new,)
    small = _memory(ScriptedLLM(), auto_consolidate=False, core_tokens=14)
    small.remember(other, "core", at(1))
    small.remember("Hana works night shifts as a nurse at the city hospital", "core", at(1, 1))
    assert small.core_change.evicted == (other,)
    with pytest.raises(ConfigError, match="core_repeat"):
        _memory(ScriptedLLM(), core_repeat="merge").check_params()
