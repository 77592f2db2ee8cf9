"""The real server: ``python -m memlab.serve`` on 127.0.0.1 with the embedded Qwen and
MiniLM (experiments/agent.yaml), two users, a restart, and each user's memory intact
and separate afterwards; one user's export read as a dataset and imported again."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

import memlab
from memlab.testing.servers import wait_until_serving


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _server(config: Path, port: int, log: Path) -> Iterator[str]:
    """A server process; yields its URL once /docs answers, stops it afterwards."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "memlab.serve", "--config", str(config), "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(f"{url}/docs", proc, log, timeout=180)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _post(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{url}{path}", json=body, timeout=600)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _contents(url: str, query: str, user: str) -> list[str]:
    found = _post(url, "/memory/search", {"query": query, "limit": 5, "user_id": user})
    return [r["content"] for r in found["results"]]


def _streamed(url: str, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The server-sent events of ``POST /chat/stream``, as they arrive."""
    events = []
    with httpx.stream("POST", f"{url}/chat/stream", json=body, timeout=600) as response:
        assert response.status_code == 200
        name = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, json.loads(line.removeprefix("data: "))))
    return events


def _followed(url: str, location: str) -> dict[str, Any]:
    """A background import's record once it is over (60 s at most)."""
    deadline = time.monotonic() + 60
    while True:
        job = httpx.get(f"{url}{location}", timeout=60).json()
        if job["state"] not in ("queued", "running") or time.monotonic() > deadline:
            return job  # type: ignore[no-any-return]
        time.sleep(0.1)


@pytest.mark.slow
def test_two_users_memories_survive_a_restart_and_stay_apart(tmp_path: Path) -> None:
    config = tmp_path / "letta_config.json"
    config.write_text(json.dumps({"memory": {"data_dir": "data"},
                                  "model": {"max_tokens": 32}}))
    port, log = _free_port(), tmp_path / "server.log"
    timings: dict[str, float] = {}
    with _server(config, port, log) as url:
        start = time.perf_counter()
        alice = _post(url, "/chat", {"message": "Hi! My name is Alice and I love green tea.",
                                     "user_id": "alice"})
        timings["first chat (loads the model)"] = time.perf_counter() - start
        start = time.perf_counter()
        bob = _post(url, "/chat", {"message": "Hello, I am Bob and I play the trumpet.",
                                   "user_id": "bob"})
        timings["second chat"] = time.perf_counter() - start
        assert alice["message"].strip() and bob["message"].strip()
        assert alice["tokens"]["completion"] <= 32
        # the same model's reply as server-sent events, token by token
        start = time.perf_counter()
        events = _streamed(url, {"message": "Which instrument do I play?", "user_id": "bob"})
        timings["streamed chat"] = time.perf_counter() - start
        names = [name for name, _ in events]
        assert names[-1] == "reply" and set(names[:-1]) == {"token"}, names
        assert len(names) > 3  # more than one piece: streamed, not sent at the end
        reply = events[-1][1]
        assert "".join(data["text"] for _, data in events[:-1]) == reply["message"]
        _post(url, "/memory/add", {"content": "Alice's cat is called Miso",
                                   "memory_type": "archival", "user_id": "alice"})
        _post(url, "/memory/add", {"content": "Bob's dog is called Rex",
                                   "memory_type": "archival", "user_id": "bob"})
    assert (tmp_path / "data" / "archival.db").is_file()

    with _server(config, port, log) as url:
        status = httpx.get(f"{url}/status", timeout=60).json()
        assert status["memory"]["users"] == 2 and status["memory"]["messages"] == 8
        assert status["memory"]["data_dir"] == str(tmp_path / "data")
        assert "Alice's cat is called Miso" in _contents(url, "cat called Miso", "alice")
        assert "Bob's dog is called Rex" in _contents(url, "dog called Rex", "bob")
        for user, other in (("alice", ("Bob", "Rex", "trumpet")),
                            ("bob", ("Alice", "Miso", "green tea"))):
            seen = " ".join(_contents(url, "name pet cat dog tea trumpet", user) +
                            _contents(url, "cat called Miso dog called Rex", user))
            assert not any(word in seen for word in other), (user, seen)
        start = time.perf_counter()
        again = _post(url, "/chat", {"message": "What is my cat called?", "user_id": "alice"})
        timings["chat after restart"] = time.perf_counter() - start
        used = [m["content"] for m in again["memories_used"]]
        assert "Alice's cat is called Miso" in used
        assert not any("Rex" in m or "Bob" in m for m in used)
        # alice's history as a dataset to score memory configurations on
        export = httpx.get(f"{url}/users/alice/export", timeout=60)
        assert export.status_code == 200, export.text
        saved = tmp_path / "alice-export.json"
        saved.write_text(export.text, encoding="utf-8")
        [conversation] = memlab.load_dataset("agent", path=saved).conversations
        texts = [t.text for t in conversation.turns()]
        assert conversation.id == "alice" and len(conversation.sessions) == 1  # one sitting
        assert texts[0] == "Hi! My name is Alice and I love green tea."
        assert texts[2] == "Alice's cat is called Miso" and texts[3] == "What is my cat called?"
        assert len(texts) == 5 and not any("Bob" in text for text in texts)
        assert httpx.get(f"{url}/users/carol/export", timeout=60).status_code == 404
        # ... and the same history imported under another id: what alice's memory holds
        imported = _post(url, "/users/alice2/import", export.json())
        assert (imported["sessions"], imported["memories"]) == (2, 1), imported
        assert "Alice's cat is called Miso" in _contents(url, "cat called Miso", "alice2")
        assert _post(url, "/users/alice2/import", export.json())["skipped"] == 5
        # ... and in the background: queued at once, followed to the end
        queued = httpx.post(f"{url}/users/alice3/import", params={"background": "true"},
                            json=export.json(), timeout=60)
        assert queued.status_code == 202, queued.text
        job = _followed(url, queued.headers["location"])
        assert (job["state"], job["sessions"], job["memories"], job["total"]) == (
            "done", 2, 1, 3), job
        assert "Alice's cat is called Miso" in _contents(url, "cat called Miso", "alice3")
    print("live server timings (s):", {k: round(v, 1) for k, v in timings.items()})


@pytest.mark.slow
def test_a_background_import_outlives_chat_and_a_restart_of_the_real_server(
        tmp_path: Path) -> None:
    """A long history imported in the background by the real server: the user chats while
    it comes in, a stop (SIGTERM) ends it between two sessions as ``cancelled``, and after
    the restart its record is still there and the same export goes on where it stopped."""
    config = tmp_path / "letta_config.json"
    config.write_text(json.dumps({"memory": {"data_dir": "data"},
                                  "model": {"type": "mock", "embedding_model": "hash"}}))
    messages = []
    for n in range(1500):
        at = f"2024-{1 + n // 150:02d}-{1 + n % 150 // 6:02d}T{n % 6:02d}:00:00+00:00"
        messages += [{"kind": "chat", "session_id": f"s{n}", "role": role, "content": text,
                      "at": at, "meta": {}}
                     for role, text in (("user", f"I planted tree number {n} today"),
                                        ("assistant", "Noted."))]
    export = {"format": "memlab-agent-export", "version": 1,
              "users": {"ana": {"messages": messages}}}
    port, log = _free_port(), tmp_path / "server.log"
    with _server(config, port, log) as url:
        queued = httpx.post(f"{url}/users/ana/import?background=true", json=export,
                            timeout=60)
        assert queued.status_code == 202, queued.text
        location = queued.headers["location"]
        while httpx.get(f"{url}{location}", timeout=60).json()["done"] < 50:
            time.sleep(0.05)
        start = time.perf_counter()
        chat = _post(url, "/chat", {"message": "Which tree did I plant first?",
                                    "user_id": "ana"})
        waited = time.perf_counter() - start
        running = httpx.get(f"{url}{location}", timeout=60).json()
        assert running["state"] == "running", running  # the chat did not wait for it all
        assert chat["message"]
    with _server(config, port, log) as url:
        stopped = httpx.get(f"{url}{location}", timeout=60).json()
        assert stopped["state"] == "cancelled", stopped
        assert stopped["error"].startswith("the server stopped: stopped after")
        assert 50 <= stopped["sessions"] < 1500 and stopped["done"] == stopped["sessions"]
        resumed = _post(url, "/users/ana/import", export)
        assert resumed["sessions"] == 1500 - stopped["sessions"]
        assert resumed["skipped"] == 2 * stopped["sessions"]
        kept = httpx.get(f"{url}/users/ana/export", timeout=60).json()["users"]["ana"]
        said = [m["content"] for m in kept["messages"]]
        assert len(said) == 3000 + 2  # every message of the export once, the chat beside it
        assert len(set(s for s in said if s.startswith("I planted tree"))) == 1500
    print(f"background import: chat answered in {waited:.2f} s while it ran; stopped after "
          f"{stopped['sessions']} of 1500 sessions, resumed with {resumed['sessions']}")
