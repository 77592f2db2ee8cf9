"""``POST /users/{user_id}/import``: an export replayed into another agent (another
data directory, another user id) with its original times, idempotent, its own body limit,
and a malformed export refused with the user and field named before anything is replayed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from memlab.agent import load_settings
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
