"""The live agent's export as a dataset (the ``agent`` loader): sittings by time gap,
explicit memories as the user's turns, deleted messages left out, stable ids, located
errors, and the round trip agent -> ``GET /users/{id}/export`` -> dataset -> a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import memlab
from memlab.agent import load_settings
from memlab.data import Role
from memlab.data.loaders.native import save_native
from memlab.data.probegen import generate_probes
from memlab.errors import ConfigError, DatasetError
from memlab.llm.mock import MockLLM
from memlab.serve import build_app


def msg(session: str, kind: str, role: str, content: str, at: str,
        **meta: Any) -> dict[str, Any]:
    return {"user_id": "ana", "session_id": session, "kind": kind, "role": role,
            "content": content, "at": at, "meta": meta}


def export(tmp_path: Path, messages: list[dict[str, Any]], **header: Any) -> Path:
    data = {"format": "memlab-agent-export", "version": 1, "exported_at": "2026-01-03T00:00:00",
            "config": "agent", "memory": "tiered",
            "users": {"ana": {"messages": messages, "memory_units": []}}, **header}
    path = tmp_path / "export.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


HISTORY = [
    msg("s1", "chat", "user", "I adopted a greyhound called Biscuit", "2026-01-01T09:00:00Z"),
    msg("s1", "chat", "assistant", "Lovely! How old is Biscuit?", "2026-01-01T09:00:04Z"),
    msg("s2", "chat", "user", "He is three", "2026-01-01T09:10:00Z"),
    msg("s2", "chat", "assistant", "A good age.", "2026-01-01T09:10:03Z"),
    msg("m3", "memory", "archival", "Ana is allergic to penicillin", "2026-01-01T09:12:00Z",
        unit_id="m3"),
    msg("s4", "chat", "user", "[deleted]", "2026-01-02T18:00:00Z", deleted=True),
    msg("s4", "chat", "assistant", "[deleted]", "2026-01-02T18:00:02Z", deleted=True),
    msg("s5", "chat", "user", "I start the new job on Monday", "2026-01-02T20:00:00Z"),
    msg("s5", "chat", "assistant", "Good luck!", "2026-01-02T20:00:05Z"),
]


def test_exchanges_within_the_gap_are_one_sitting_and_memories_are_the_users_turns(
        tmp_path: Path) -> None:
    dataset = memlab.load_dataset("agent", path=export(tmp_path, HISTORY))
    [ana] = dataset.conversations
    assert ana.id == "ana" and ana.speakers == ("ana", "assistant") and ana.probes == ()
    assert [s.id for s in ana.sessions] == ["s1", "s2"]
    assert [[t.id for t in s.turns] for s in ana.sessions] == [
        ["m1", "m2", "m3", "m4", "m5"], ["m8", "m9"]]  # m6, m7 deleted: numbers kept
    memory = ana.sessions[0].turns[4]
    assert (memory.role, memory.speaker, memory.metadata) == (
        Role.USER, "ana", {"memory_type": "archival"})
    assert [t.role for t in ana.sessions[1].turns] == [Role.USER, Role.ASSISTANT]
    assert ana.sessions[1].turns[1].speaker == "assistant"
    assert ana.sessions[1].started_at.isoformat() == "2026-01-02T20:00:00+00:00"
    assert ana.metadata == {"deleted": 2}
    assert dataset.metadata["memory"] == "tiered" and dataset.metadata["memories"] is True


@pytest.mark.parametrize(("options", "sizes"), [
    ({"session_gap_minutes": 0}, [2, 2, 1, 2]),    # every exchange and memory its own
    ({"session_gap_minutes": 5}, [2, 3, 2]),       # 09:00 -> 09:10 is 10 minutes
    ({"session_gap_minutes": 24 * 60}, [5, 2]),    # 09:12 -> 20:00 the next day: 35 h
    ({"session_gap_minutes": 48 * 60}, [7]),
    ({"memories": False}, [4, 2]),
])
def test_the_gap_and_the_memories_option_shape_the_sessions(
        tmp_path: Path, options: dict[str, Any], sizes: list[int]) -> None:
    [ana] = memlab.load_dataset("agent", path=export(tmp_path, HISTORY), **options)
    assert [len(s.turns) for s in ana.sessions] == sizes


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"role": "system"}, "messages[1].role", "role must be user or assistant"),
    ({"kind": "note"}, "messages[1].kind", "kind must be chat or memory"),
    ({"at": "yesterday"}, "messages[1].at", "unparseable date"),
    ({"content": 3}, "messages[1].content", "expected string"),
    ({"contnet": "x"}, "messages[1].contnet", "did you mean 'content'"),
])
def test_a_bad_message_names_file_user_and_field(tmp_path: Path, change: dict[str, Any],
                                                  field: str, message: str) -> None:
    rows = [dict(row) for row in HISTORY]
    rows[1].update(change)
    path = export(tmp_path, rows)
    with pytest.raises(DatasetError, match=message) as caught:
        memlab.load_dataset("agent", path=path)
    assert (caught.value.path, caught.value.record, caught.value.field) == (
        str(path), "users.ana", field)


def test_a_memory_with_an_unknown_tier_and_other_files_are_refused(tmp_path: Path) -> None:
    rows = [dict(row) for row in HISTORY]
    rows[4]["role"] = "episodic"
    with pytest.raises(DatasetError, match="memory's role must be one of core, recall"):
        memlab.load_dataset("agent", path=export(tmp_path, rows))
    with pytest.raises(DatasetError, match="not a memlab agent export"):
        memlab.load_dataset("agent", path=export(tmp_path, HISTORY,
                                                 format="memlab-conversations"))
    with pytest.raises(DatasetError, match="unsupported version 2"):
        memlab.load_dataset("agent", path=export(tmp_path, HISTORY, version=2))
    with pytest.raises(ConfigError, match="users must be a list of user ids"):
        memlab.load_dataset("agent", path=export(tmp_path, HISTORY), users="ana")
    with pytest.raises(ConfigError, match="session_gap_minutes must be a number >= 0"):
        memlab.load_dataset("agent", path=export(tmp_path, HISTORY), session_gap_minutes=-1)
    # read with another loader, the error says which loader the file is for
    with pytest.raises(DatasetError, match="looks like the 'agent' format"):
        memlab.load_dataset("memlab", path=export(tmp_path, HISTORY))


def test_an_agent_s_history_exported_over_http_is_a_dataset_a_run_scores(
        tmp_path: Path) -> None:
    """Chats and a memory through the API, ``GET /users/ana/export``, probes written for
    it, then an ordinary retrieval run over that history."""
    settings = load_settings(env={}, overrides={
        "model.embedding_model": "hash", "memory.data_dir": str(tmp_path / "data"),
        "server.api_key": "k"})
    client = TestClient(build_app(settings, llm=MockLLM(["Noted."])))
    key = {"X-API-Key": "k"}
    for text in ("My sister Lena lives in Porto", "I play the cello on Sundays"):
        assert client.post("/chat", headers=key, json={"message": text,
                                                       "user_id": "ana"}).status_code == 200
    client.post("/memory/add", headers=key, json={"content": "Ana's flat is on the 4th floor",
                                                  "user_id": "ana"})
    assert client.get("/users/ana/export").status_code == 401
    assert client.get("/users/bob/export", headers=key).status_code == 404
    assert client.get("/users/no%20spaces/export", headers=key).status_code == 422
    response = client.get("/users/ana/export", headers=key)
    assert response.status_code == 200
    body = response.json()
    assert body["format"] == "memlab-agent-export" and list(body["users"]) == ["ana"]
    assert body["users"]["ana"]["memory_units"]  # what this agent's memory made of it
    path = tmp_path / "ana.json"
    path.write_text(response.text, encoding="utf-8")
    [ana] = memlab.load_dataset("agent", path=path).conversations
    turns = list(ana.turns())
    assert [t.text for t in turns] == [
        "My sister Lena lives in Porto", "Noted.", "I play the cello on Sundays", "Noted.",
        "Ana's flat is on the 4th floor"]
    assert len(ana.sessions) == 1

    # probes for it as `python -m memlab.data probes agent=ana.json` writes them, scored
    reply = json.dumps({"questions": [
        {"question": "Where does my sister Lena live?", "answer": "Porto", "turns": [1]},
        {"question": "Which floor is Ana's flat on?", "answer": "4th floor", "turns": [5]}]})
    dataset = memlab.load_dataset("agent", path=path)
    generated, report = generate_probes(dataset, MockLLM([reply]), progress=False,
                                        cache="off", min_chars=0)
    assert [p.evidence_turn_ids for p in generated.conversations[0].probes] == [
        ("m1",), ("m5",)], report
    # the agent's data directory reads the same (its conversation log, read-only)
    direct = memlab.load_dataset("agent", path=tmp_path / "data")
    assert direct.conversations == dataset.conversations
    assert memlab.load_dataset("agent", path=tmp_path / "data", users=["ana"]).conversations \
        == dataset.conversations
    with pytest.raises(ConfigError, match="has no user 'bob' \\(it has 'ana'\\)"):
        memlab.load_dataset("agent", path=tmp_path / "data", users=["bob"])
    with pytest.raises(DatasetError, match=r"no conversations\.db here"):
        memlab.load_dataset("agent", path=tmp_path)
    mine = save_native(generated, tmp_path / "mine.jsonl")
    result = memlab.evaluate({
        "name": "mine", "dataset": {"name": "memlab", "params": {"path": str(mine)}},
        "chunker": {"name": "turn"}, "retrieval": {"name": "bm25"}, "k": 1,
        "tracking": {"mlflow": False}}, out=tmp_path / "run", progress=False)
    recall = result.summary["metrics"]["turn.recall_any@1"]
    assert recall["all"]["n"] == 2 and recall["all"]["mean"] == 1.0


def test_hand_written_probes_for_an_export_are_scored_and_checked(tmp_path: Path) -> None:
    """``probes_path``: the user's own questions about their chats (ids as the export gives
    them), scored by an ordinary run; a wrong id or date names the probes file's line."""
    path = export(tmp_path, HISTORY)
    probes = tmp_path / "mine.jsonl"
    rows = [{"id": "dog", "question": "What is my dog called?", "answer": "Biscuit",
             "evidence_turn_ids": ["m1"], "asked_at": "2026-01-03T10:00:00Z"},
            {"id": "job", "conversation_id": "ana", "question": "When do I start?",
             "answer": "Monday", "evidence_turn_ids": ["m8"], "category": "plans",
             "asked_at": "2026-01-03T10:00:00Z", "note": "mine"}]
    probes.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    dataset = memlab.load_dataset("agent", path=path, probes_path=probes)
    [ana] = dataset.conversations
    assert [(p.id, p.category, p.evidence_session_ids) for p in ana.probes] == [
        ("dog", "agent", ("s1",)), ("job", "plans", ("s2",))]
    assert ana.probes[1].metadata == {"note": "mine"}
    assert dataset.metadata["probes_path"] == str(probes)
    result = memlab.evaluate({
        "name": "mine", "dataset": {"name": "agent", "params": {
            "path": str(path), "probes_path": str(probes)}},
        "chunker": {"name": "turn"}, "retrieval": {"name": "bm25"}, "k": 1,
        "tracking": {"mlflow": False}}, out=tmp_path / "run", progress=False)
    recall = result.summary["metrics"]["turn.recall_any@1"]
    assert recall["all"]["n"] == 2 and recall["all"]["mean"] == 1.0
    for change, field, message in [
            ({"evidence_turn_ids": ["m6"]}, "evidence_turn_ids[0]",
             "no turn 'm6' in conversation 'ana'"),  # a deleted message
            ({"conversation_id": "bob"}, "conversation_id",
             "no user 'bob' in the export (known: ana)"),
            ({"asked_at": "2026-01-01T00:00:00Z"}, "asked_at",
             "asked at 2026-01-01T00:00:00+00:00, before evidence turn 'm1'")]:
        probes.write_text(json.dumps({**rows[0], **change}), encoding="utf-8")
        with pytest.raises(DatasetError) as caught:
            memlab.load_dataset("agent", path=path, probes_path=probes)
        assert f"{probes}: record line 1 (dog): field '{field}': {message}" in str(caught.value)


def test_loading_a_malformed_export_into_an_agent_names_the_field_and_replays_nothing(
        tmp_path: Path) -> None:
    from memlab.agent import from_config

    rows = [dict(row) for row in HISTORY]
    del rows[7]["role"]
    path = export(tmp_path, rows)
    settings = load_settings(env={}, overrides={
        "model.embedding_model": "hash", "memory.data_dir": str(tmp_path / "data")})
    agent = from_config(settings=settings, llm=MockLLM(["Noted."]))
    with pytest.raises(DatasetError, match="missing required field") as caught:
        agent.load_conversation(path)
    assert (caught.value.record, caught.value.field) == ("users.ana", "messages[7].role")
    assert agent.log.messages("ana") == []
    assert agent.load_conversation(export(tmp_path, HISTORY)) == 4  # deleted s4 left out
