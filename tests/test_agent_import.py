"""``POST /users/{user_id}/import``: an export replayed into another agent (another
data directory, another user id) with its original times, idempotent, its own body limit,
and a malformed export refused with the user and field named before anything is replayed."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from memlab.agent import BackendUnavailable, MemoryNotFound, from_config, load_settings
from memlab.agent.imports import ImportBusy, ImportJob, user_import_lock
from memlab.llm.mock import MockLLM
from memlab.serve import build_app

KEY = {"X-API-Key": "k"}


def _client(tmp_path: Path, folder: str, **extra: Any) -> TestClient:
    settings = load_settings(env={}, overrides={
        "model.embedding_model": "hash", "memory.data_dir": str(tmp_path / folder),
        "server.api_key": "k", **extra})
    return TestClient(build_app(settings, llm=MockLLM(["Noted."])))


def _history(client: TestClient) -> dict[str, Any]:
    for text in ("My sister Lena lives in Porto", "I play the cello on Sundays"):
        assert client.post("/chat", headers=KEY, json={"message": text,
                                                       "user_id": "ana"}).status_code == 200
    client.post("/memory/add", headers=KEY, json={"content": "Ana's flat is on the 4th floor",
                                                  "user_id": "ana"})
    client.post("/chat", headers=KEY, json={"message": "Forget this one", "user_id": "ana"})
    listed = client.get("/memory/list", headers=KEY, params={"user_id": "ana"}).json()
    [forget] = [m["id"] for m in listed["memories"] if m["content"] == "ana: Forget this one"]
    assert client.delete(f"/memory/{forget}", headers=KEY,
                         params={"user_id": "ana"}).status_code == 200
    response = client.get("/users/ana/export", headers=KEY)
    assert response.status_code == 200
    return response.json()


def _kept(export: dict[str, Any], user: str) -> list[tuple[str, str, str, str]]:
    return [(m["kind"], m["role"], m["content"], m["at"])
            for m in export["users"][user]["messages"] if not m["meta"].get("deleted")]


def test_an_export_imported_into_another_agent_is_the_same_history(tmp_path: Path) -> None:
    exported = _history(_client(tmp_path, "a"))
    other = _client(tmp_path, "b")
    assert other.post("/users/lena/import", json=exported).status_code == 401
    imported = other.post("/users/lena/import", headers=KEY, json=exported)
    assert imported.status_code == 200, imported.text
    # three exchanges (the third's user turn deleted, its reply kept) and a memory
    assert imported.json() == {"status": "imported", "user_id": "lena", "from_user": "ana",
                               "sessions": 3, "memories": 1, "skipped": 0, "deleted": 1}
    again = other.post("/users/lena/import", headers=KEY, json=exported)
    assert again.json() | {"skipped": None} == {
        "status": "imported", "user_id": "lena", "from_user": "ana", "sessions": 0,
        "memories": 0, "skipped": None, "deleted": 1}
    assert again.json()["skipped"] == 6  # every message kept: nothing twice
    lena = other.get("/users/lena/export", headers=KEY).json()
    assert _kept(lena, "lena") == _kept(exported, "ana")  # same words, same times
    found = other.post("/memory/search", headers=KEY, json={
        "query": "which floor is the flat on", "user_id": "lena", "limit": 1}).json()
    assert [r["content"] for r in found["results"]] == ["Ana's flat is on the 4th floor"]
    assert other.get("/users/ana/export", headers=KEY).status_code == 404  # no one else


def test_a_two_user_export_imports_the_user_of_the_path(tmp_path: Path) -> None:
    exported = _history(_client(tmp_path, "a"))
    both = exported | {"users": {"bob": exported["users"]["ana"], **exported["users"]}}
    other = _client(tmp_path, "b")
    response = other.post("/users/carol/import", headers=KEY, json=both)
    assert response.status_code == 422
    assert "the export holds users 'bob', 'ana', none of them 'carol'" in response.text
    assert other.post("/users/ana/import", headers=KEY, json=both).json()["from_user"] == "ana"


def test_a_malformed_export_is_a_422_naming_the_field_and_nothing_is_replayed(
        tmp_path: Path) -> None:
    exported = _history(_client(tmp_path, "a"))
    other = _client(tmp_path, "b")
    broken = json.loads(json.dumps(exported))
    del broken["users"]["ana"]["messages"][4]["role"]
    response = other.post("/users/ana/import", headers=KEY, json=broken)
    assert response.status_code == 422
    assert response.json()["detail"] == ("request body: record users.ana: field "
                                         "'messages[4].role': missing required field")
    assert other.get("/users/ana/export", headers=KEY).status_code == 404  # nothing replayed
    for body, says in ((exported | {"format": "letta"}, "not a memlab agent export"),
                       (exported | {"version": 2}, "unsupported version 2"),
                       (exported | {"users": {}}, "the export holds no users")):
        response = other.post("/users/ana/import", headers=KEY, json=body)
        assert response.status_code == 422 and says in response.text, response.text
    missing = other.post("/users/ana/import", headers=KEY, json={"format": "x"})
    assert missing.status_code == 422
    assert {tuple(e["loc"]) for e in missing.json()["detail"]} == {("body", "version"),
                                                                  ("body", "users")}
    assert other.post("/users/no%20spaces/import", headers=KEY,
                      json=exported).status_code == 422


def test_imports_have_their_own_body_limit(tmp_path: Path) -> None:
    exported = _history(_client(tmp_path, "a"))
    size = len(json.dumps(exported, separators=(",", ":")))  # as httpx sends it
    assert 1024 < size < 4096
    other = _client(tmp_path, "b", **{"server.max_body_bytes": 1024,
                                      "server.max_import_bytes": 4096})
    assert other.post("/users/ana/import", headers=KEY, json=exported).status_code == 200
    chat = other.post("/chat", headers=KEY, json={"message": "x" * 3000, "user_id": "ana"})
    assert chat.status_code == 413 and "limit of 1024 bytes" in chat.text
    small = _client(tmp_path, "c", **{"server.max_import_bytes": 1024})
    refused = small.post("/users/ana/import", headers=KEY, json=exported)
    assert refused.status_code == 413 and "limit of 1024 bytes" in refused.text


# ---------------------------------------------------------------- background imports


def _finished(client: TestClient, job_id: str) -> dict[str, Any]:
    """Poll ``GET /imports/{job_id}`` until the job is over (10 s at most)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        job = client.get(f"/imports/{job_id}", headers=KEY)
        assert job.status_code == 200, job.text
        if job.json()["state"] not in ("queued", "running"):
            return job.json()  # type: ignore[no-any-return]
        time.sleep(0.02)
    raise AssertionError(f"import {job_id} still {job.json()['state']} after 10 s")


def test_a_background_import_is_followed_to_the_same_history(tmp_path: Path) -> None:
    exported = _history(_client(tmp_path, "a"))
    other = _client(tmp_path, "b")
    queued = other.post("/users/lena/import", headers=KEY, params={"background": "true"},
                        json=exported)
    assert queued.status_code == 202, queued.text
    job = queued.json()
    assert queued.headers["location"] == f"/imports/{job['job_id']}"
    assert (job["user_id"], job["from_user"], job["state"]) == ("lena", "ana", "queued")
    done = _finished(other, job["job_id"])
    assert done | {"submitted_at": None, "started_at": None, "finished_at": None} == {
        "job_id": job["job_id"], "user_id": "lena", "from_user": "ana", "state": "done",
        "done": 4, "total": 4, "sessions": 3, "memories": 1, "skipped": 0, "deleted": 1,
        "error": None, "submitted_at": None, "started_at": None, "finished_at": None}
    lena = other.get("/users/lena/export", headers=KEY).json()
    assert _kept(lena, "lena") == _kept(exported, "ana")  # as the synchronous import
    # a second job for the same user runs after the first: it finds everything logged
    again = other.post("/users/lena/import?background=true", headers=KEY, json=exported)
    second = _finished(other, again.json()["job_id"])
    assert (second["state"], second["total"], second["sessions"], second["skipped"]) == (
        "done", 0, 0, 6)
    listed = other.get("/imports", headers=KEY).json()["imports"]
    assert [j["job_id"] for j in listed] == [second["job_id"], job["job_id"]]  # newest first
    missing = other.get("/imports/nope", headers=KEY)
    assert missing.status_code == 404 and "no import job 'nope'" in missing.text
    assert other.get(f"/imports/{job['job_id']}").status_code == 401


def test_a_malformed_background_import_is_refused_before_it_is_queued(
        tmp_path: Path) -> None:
    exported = _history(_client(tmp_path, "a"))
    broken = json.loads(json.dumps(exported))
    del broken["users"]["ana"]["messages"][4]["role"]
    other = _client(tmp_path, "b")
    response = other.post("/users/ana/import?background=true", headers=KEY, json=broken)
    assert response.status_code == 422
    assert "record users.ana: field 'messages[4].role'" in response.text
    assert other.get("/imports", headers=KEY).json() == {"imports": []}


def test_a_refusal_partway_fails_the_job_with_what_came_in_before_it(tmp_path: Path) -> None:
    exported = _history(_client(tmp_path, "a"))
    rows = exported["users"]["ana"]["messages"]
    huge = {**rows[0], "kind": "memory", "role": "core", "content": "word " * 5000,
            "session_id": "s99", "at": "2030-01-01T00:00:00+00:00"}
    exported["users"]["ana"]["messages"] = [*rows, huge]
    other = _client(tmp_path, "b")
    job = other.post("/users/ana/import?background=true", headers=KEY, json=exported).json()
    failed = _finished(other, job["job_id"])
    assert (failed["state"], failed["done"], failed["total"]) == ("failed", 4, 5)
    assert failed["error"].startswith(f"request body: users.ana.messages[{len(rows)}]: core "
                                      "memory is capped at")
    assert "(imported before it: 3 sessions, 1 memories;" in failed["error"]
    assert (failed["sessions"], failed["memories"]) == (3, 1)


def test_closing_the_agent_stops_an_import_between_sessions_and_it_resumes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exported = _history(_client(tmp_path, "a"))
    agent, first_in, go = _held_agent(tmp_path, monkeypatch)
    job = agent.start_import("ana", exported)
    assert first_in.wait(10)
    closing = threading.Thread(target=agent.close)
    closing.start()
    _wait_for(agent._imports._stop.is_set)
    go.set()
    closing.join(10)
    stopped = agent.import_status(job["job_id"])
    assert (stopped["state"], stopped["sessions"], stopped["done"], stopped["total"]) == (
        "cancelled", 1, 1, 4)
    assert "the server stopped: stopped after 1 sessions and 0 memories" in stopped["error"]
    # a restart: the record is still there, and importing again goes on where it stopped
    monkeypatch.undo()
    again = from_config(settings=agent.settings, llm=MockLLM(["Noted."]))
    assert again.import_status(job["job_id"])["state"] == "cancelled"
    counts = again.import_user("ana", exported)
    assert (counts["sessions"], counts["memories"], counts["skipped"]) == (2, 1, 2)
    assert _kept(again.export_user("ana"), "ana") == _kept(exported, "ana")
    again.close()


def test_a_job_whose_process_stopped_reads_cancelled(tmp_path: Path) -> None:
    settings = load_settings(env={}, overrides={"model.embedding_model": "hash",
                                                "memory.data_dir": str(tmp_path)})
    agent = from_config(settings=settings, llm=MockLLM(["Noted."]))
    record = ImportJob("j1", "ana", "ana", state="running", done=2, total=9).to_dict()
    agent.log.save_import("999999999:gone", record)  # no such process
    agent.log.save_import(f"{os.getpid()}:earlier", record | {"job_id": "j2"})  # a restart
    for job_id in ("j1", "j2"):
        read = agent.import_status(job_id)
        assert (read["state"], read["done"], read["total"]) == ("cancelled", 2, 9)
        assert "the server process running it stopped" in read["error"]
    agent.close()


def _held_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                ) -> tuple[Any, threading.Event, threading.Event]:
    """An agent whose replay of a session waits for ``go`` once it has replayed it
    (``first_in`` set): an import caught in the middle."""
    settings = load_settings(env={}, overrides={"model.embedding_model": "hash",
                                                "memory.data_dir": str(tmp_path / "b")})
    agent = from_config(settings=settings, llm=MockLLM(["Noted."]))
    replay, first_in, go = agent.replay_session, threading.Event(), threading.Event()

    def held(user_id: str, rows: Any) -> str:
        session = replay(user_id, rows)
        first_in.set()
        assert go.wait(10)
        return session

    monkeypatch.setattr(agent, "replay_session", held)
    return agent, first_in, go


def _wait_for(check: Any) -> None:
    deadline = time.monotonic() + 10
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_an_import_into_a_user_already_importing_is_refused_and_nothing_doubles(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exported = _history(_client(tmp_path, "a"))
    agent, first_in, go = _held_agent(tmp_path, monkeypatch)
    job = agent.start_import("ana", exported)
    assert first_in.wait(10)
    with pytest.raises(ImportBusy, match="an import into user 'ana' is running"):
        agent.import_user("ana", exported)
    queued = agent.start_import("ana", exported)  # a background one waits its turn
    go.set()
    _wait_for(lambda: agent.import_status(queued["job_id"])["state"] == "done")
    assert agent.import_status(job["job_id"])["sessions"] == 3
    assert (agent.import_status(queued["job_id"])["sessions"],
            agent.import_status(queued["job_id"])["skipped"]) == (0, 6)
    assert _kept(agent.export_user("ana"), "ana") == _kept(exported, "ana")  # once each
    agent.close()


def test_forgetting_a_user_cancels_their_import_and_nothing_comes_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exported = _history(_client(tmp_path, "a"))
    agent, first_in, go = _held_agent(tmp_path, monkeypatch)
    job = agent.start_import("ana", exported)
    later = agent.start_import("ana", exported)
    assert first_in.wait(10)
    forgotten: list[Any] = []
    forgetting = threading.Thread(target=lambda: forgotten.append(agent.forget_user("ana")))
    forgetting.start()
    _wait_for(lambda: agent.log.import_cancelled(job["job_id"]))
    go.set()  # the running session ends; the import stops before the next one
    forgetting.join(10)
    assert forgotten and forgotten[0]["messages"] == 2  # the one session replayed
    _wait_for(lambda: agent.import_status(later["job_id"])["state"] == "cancelled")
    for record in (agent.import_status(job["job_id"]), agent.import_status(later["job_id"])):
        assert record["state"] == "cancelled"
        assert record["error"].startswith("the user was forgotten (DELETE /users/ana)")
    assert agent.import_status(job["job_id"])["sessions"] == 1
    with pytest.raises(MemoryNotFound):
        agent.export_user("ana")  # nothing of theirs came back
    assert agent.log.messages("ana") == []
    agent.close()


def test_imports_into_one_user_exclude_each_other_across_processes(tmp_path: Path) -> None:
    exported = _history(_client(tmp_path, "a"))
    other = _client(tmp_path, "b")
    other.post("/users/bob/import", headers=KEY, json=exported)  # makes the lock folder
    holder = subprocess.Popen(  # another server process importing into ana
        [sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1], 'a'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()",
         str(tmp_path / "b" / "locks" / "import-ana")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        busy = other.post("/users/ana/import", headers=KEY, json=exported)
        assert busy.status_code == 409 and "an import into user 'ana' is running" in busy.text
        job = other.post("/users/ana/import?background=true", headers=KEY,
                         json=exported).json()
        time.sleep(0.5)
        assert other.get(f"/imports/{job['job_id']}", headers=KEY).json()["state"] == "queued"
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10)
    assert _finished(other, job["job_id"])["sessions"] == 3


def test_a_job_whose_record_cannot_be_written_does_not_stop_the_queue(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exported = _history(_client(tmp_path, "a"))
    settings = load_settings(env={}, overrides={"model.embedding_model": "hash",
                                                "memory.data_dir": str(tmp_path / "b")})
    agent = from_config(settings=settings, llm=MockLLM(["Noted."]))
    save, broken = agent.log.save_import, []

    def failing(owner: str, record: dict[str, Any]) -> None:
        if record["user_id"] == "ana" and record["state"] != "queued":
            broken.append(record["state"])
            raise sqlite3.OperationalError("disk I/O error")
        save(owner, record)

    monkeypatch.setattr(agent.log, "save_import", failing)
    first = agent.start_import("ana", exported)
    later = agent.start_import("lena", exported)
    _wait_for(lambda: agent.import_status(later["job_id"])["state"] == "done")
    assert broken and agent.import_status(later["job_id"])["sessions"] == 3
    lost = agent.import_status(first["job_id"])  # not "queued" for ever
    assert (lost["state"], lost["error"]) == ("failed", "its record could not be written "
                                                        "(see the server's log)")
    agent.close()


def test_a_job_whose_first_record_fails_is_not_queued(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exported = _history(_client(tmp_path, "a"))
    settings = load_settings(env={}, overrides={"model.embedding_model": "hash",
                                                "memory.data_dir": str(tmp_path / "b")})
    agent = from_config(settings=settings, llm=MockLLM(["Noted."]))

    def failing(owner: str, record: dict[str, Any]) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(agent.log, "save_import", failing)
    with pytest.raises(sqlite3.OperationalError):
        agent.start_import("ana", exported)
    monkeypatch.undo()
    agent.close()  # nothing left to cancel, nothing raised
    assert agent.import_status() == []


def test_an_import_submitted_while_the_agent_closes_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exported = _history(_client(tmp_path, "a"))
    agent, first_in, go = _held_agent(tmp_path, monkeypatch)
    agent.start_import("ana", exported)
    assert first_in.wait(10)
    closing = threading.Thread(target=agent.close)
    closing.start()
    _wait_for(agent._imports._stop.is_set)
    with pytest.raises(BackendUnavailable, match="the server is stopping"):
        agent.start_import("lena", exported)
    go.set()
    closing.join(10)
    assert not closing.is_alive()
    assert agent.start_import("lena", exported)["state"] == "queued"  # open again
    agent.close()


def test_forgetting_a_user_whose_synchronous_import_does_not_stop_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import memlab.agent.agent as agent_module

    settings = load_settings(env={}, overrides={"model.embedding_model": "hash",
                                                "memory.data_dir": str(tmp_path)})
    agent = from_config(settings=settings, llm=MockLLM(["Noted."]))
    agent.add_memory("Ana likes tea", user_id="ana")
    monkeypatch.setattr(agent_module, "FORGET_WAIT", 0.2)
    with user_import_lock(tmp_path, "ana"), pytest.raises(
            ImportBusy, match="an import into user 'ana' did not stop within 0 s"):
        agent.forget_user("ana")
    assert agent.forget_user("ana")["messages"] == 1
    agent.close()


def test_an_import_jobs_table_of_a_development_build_is_made_again(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "conversations.db") as db:
        db.execute("CREATE TABLE import_jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                   "job_id TEXT NOT NULL UNIQUE, owner TEXT NOT NULL, state TEXT NOT NULL, "
                   "record TEXT NOT NULL)")
    settings = load_settings(env={}, overrides={"model.embedding_model": "hash",
                                                "memory.data_dir": str(tmp_path)})
    agent = from_config(settings=settings, llm=MockLLM(["Noted."]))
    agent.add_memory("Ana likes tea", user_id="ana")
    assert agent.forget_user("ana")["messages"] == 1  # it used to fail: no column cancel
    agent.close()


def test_get_users_lists_each_user_with_counts_and_times(tmp_path: Path) -> None:
    client = _client(tmp_path, "a")
    exported = _history(client)
    client.post("/chat", headers=KEY, json={"message": "Hi", "user_id": "bob"})
    assert client.get("/users").status_code == 401
    listed = client.get("/users", headers=KEY).json()["users"]
    kept = [m for m in exported["users"]["ana"]["messages"] if not m["meta"].get("deleted")]
    assert [u["user_id"] for u in listed] == ["ana", "bob"]
    ana = listed[0]
    assert (ana["messages"], ana["memories"], ana["sessions"]) == (
        sum(m["kind"] == "chat" for m in kept), 1, len({m["session_id"] for m in kept}))
    assert (ana["first_at"], ana["last_at"]) == (kept[0]["at"], kept[-1]["at"])
    assert listed[1]["messages"] == 2
    client.delete("/users/bob", headers=KEY)
    assert [u["user_id"] for u in client.get("/users", headers=KEY).json()["users"]] == ["ana"]
    # an import keeps its times' offsets; first and last are still compared, and told, in UTC
    offset = {"format": "memlab-agent-export", "version": 1, "users": {"eve": {"messages": [
        {"kind": "chat", "session_id": "s1", "role": role, "content": text, "at": at,
         "meta": {}} for role, text, at in (
            ("user", "late", "2024-05-01T12:30:00+02:00"),      # 10:30 UTC
            ("assistant", "ok", "2024-05-01T11:00:00+00:00"),   # 11:00 UTC
            ("user", "early", "2024-05-01T11:45:00+02:00"))]}}}  # 09:45 UTC, logged last
    assert client.post("/users/eve/import", headers=KEY, json=offset).status_code == 200
    [eve] = [u for u in client.get("/users", headers=KEY).json()["users"]
             if u["user_id"] == "eve"]
    assert (eve["first_at"], eve["last_at"]) == ("2024-05-01T09:45:00+00:00",
                                                 "2024-05-01T11:00:00+00:00")
