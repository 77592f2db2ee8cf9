"""The agent's conversation log numbers each user's sessions once across every process that
shares the file (several ``memlab.serve`` workers on one machine): a number handed out
twice made two memories one id, and the second overwrote the first in the shared store."""

from __future__ import annotations

import multiprocessing
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from memlab.agent.log import ConversationLog

AT = datetime(2026, 1, 5, tzinfo=UTC)


def _reserve(path: str, user: str, n: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    log = ConversationLog(path)
    out.put([log.next_session(user) for _ in range(n)])
    log.close()


def test_two_logs_on_one_file_never_hand_out_the_same_number(tmp_path: Path) -> None:
    path = tmp_path / "conversations.db"
    first, second = ConversationLog(path), ConversationLog(path)
    assert [first.next_session("ann"), second.next_session("ann"),
            first.next_session("ann"), first.next_session("bob")] == [1, 2, 3, 1]
    first.append("ann", "m3", "memory", "archival", "x", AT)
    assert second.next_session("ann") == 4  # not the stale count of a cached view


def test_processes_racing_for_numbers_get_distinct_ones(tmp_path: Path) -> None:
    path = str(tmp_path / "conversations.db")
    ConversationLog(path).next_session("warm")  # the file and its tables exist
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    workers = [context.Process(target=_reserve, args=(path, "ann", 40, out))
               for _ in range(3)]
    for worker in workers:
        worker.start()
    numbers = [n for _ in workers for n in out.get(timeout=120)]
    for worker in workers:
        worker.join(timeout=60)
    assert sorted(numbers) == list(range(1, 121))


def test_a_log_written_before_numbers_were_kept_continues_after_its_sessions(
        tmp_path: Path) -> None:
    path = tmp_path / "conversations.db"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL,
            session_id TEXT NOT NULL, kind TEXT NOT NULL, role TEXT NOT NULL,
            content TEXT NOT NULL, at TEXT NOT NULL, meta TEXT NOT NULL);
        INSERT INTO messages (user_id, session_id, kind, role, content, at, meta) VALUES
            ('ann', 's1', 'chat', 'user', 'hi', '2026-01-01T00:00:00+00:00', '{}'),
            ('ann', 's1', 'chat', 'assistant', 'hello', '2026-01-01T00:00:01+00:00', '{}'),
            ('ann', 'm2', 'memory', 'archival', 'figs', '2026-01-01T00:01:00+00:00', '{}');
    """)
    conn.close()
    log = ConversationLog(path)
    assert [log.next_session("ann"), log.next_session("ann")] == [3, 4]
    assert len(log.messages("ann")) == 3
