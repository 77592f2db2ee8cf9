"""The live memory agent: the Letta seed's ``LettaOllamaAgent`` rebuilt from memlab parts.

One experiment config decides everything that was evaluated - the memory architecture
and its parameters, the answer model, the prompt template, the memory-token budget -
so the configuration that won the evaluation is exactly what runs. Every user has a
separate memory (its own namespace of the SQLite store in the data directory) and a
user never sees another's; memories and the conversation log survive restarts.

Per message (the seed's "Memory Flow"): search the user's memory as of now, inject core
memory, retrieved memories and recent turns into the prompt, generate, then save the
exchange to memory (which may consolidate). Live timestamps are the wall clock (UTC),
recorded with every message and memory.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from memlab.agent.imports import FORGET_WAIT, ImportJobs, user_import_lock
from memlab.agent.log import LOG_FILE, ConversationLog
from memlab.agent.open_memories import OpenMemories
from memlab.agent.records import (
    DEFAULT_USER,
    MEMORY_TYPES,
    BackendUnavailable,
    InvalidRequest,
    MemoryNotFound,
    check_user,
    history_rows,
    hit_record,
    llm_errors,
    session_from_rows,
)
from memlab.agent.settings import AgentSettings
from memlab.compute import cpu_turn
from memlab.data.schema import Role, Session, Turn
from memlab.errors import ConfigError, DatasetError
from memlab.eval.config import ExperimentConfig
from memlab.memory import support
from memlab.memory.base import Accounted, Consolidating, Editable, HasContext
from memlab.prompts.builder import PromptBuilder, context_window
from memlab.retrieval.base import Hit
from memlab.store.base import Versioned

HISTORY_TOKENS = 1000
__all__ = ["DEFAULT_USER", "MEMORY_TYPES", "ChatReply", "MemoryAgent", "check_user",
           "from_config"]


def from_config(source: str | Path | dict[str, Any] | ExperimentConfig | None = None, *,
                data_dir: str | Path | None = None, settings: AgentSettings | None = None,
                llm: Any = None) -> MemoryAgent:
    """The live agent for an experiment config (default ``experiments/agent.yaml``).

    ``settings`` default to :func:`~memlab.agent.settings.load_settings` (file named by
    ``$MEMLAB_SERVE_CONFIG``, then environment). ``llm`` replaces the configured model
    (tests pass a mock). ``data_dir`` wins over the settings.
    """
    from memlab.agent.build import agent_parts

    parts = agent_parts(source, data_dir=data_dir, settings=settings, llm=llm)
    return MemoryAgent(parts.config, parts.settings, parts.llm, parts.memory_spec,
                       parts.overrides)


@dataclass
class ChatReply:
    """One answer, with what memory it used and what it cost."""

    message: str
    user_id: str
    session_id: str
    timestamp: str
    model: str
    memories_used: list[dict[str, Any]] = field(default_factory=list)
    tokens: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class MemoryAgent:
    """Chat with per-user persistent memory; build one with :func:`memlab.agent.from_config`."""

    def __init__(self, config: ExperimentConfig, settings: AgentSettings, llm: Any,
                 memory_spec: tuple[str, dict[str, Any]], overrides: dict[str, Any]) -> None:
        assert config.answer is not None, "from_config checks the answer section"
        self.config = config
        self.answer = config.answer
        self.settings = settings
        self.llm = llm
        self.memory_name, self.memory_params = memory_spec
        self.overrides = overrides
        self.data_dir = settings.data_dir()
        self.log = ConversationLog(self.data_dir / LOG_FILE)
        self.started = time.time()
        self._locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()
        self._memories = OpenMemories(settings.memory.max_open_users, self._lock)
        self._prompts: PromptBuilder | None = None
        self._versions: dict[str, int | None] = {}
        self._probe: Any = None
        self._imports = ImportJobs(self)

    # ------------------------------------------------------------------ public API

    def chat(self, message: str, user_id: str = DEFAULT_USER,
             include_memory_search: bool = True) -> ChatReply:
        """Answer ``message`` for ``user_id`` with their memory, then remember the exchange."""
        return self._chat(message, _asking(user_id, message), include_memory_search)

    def chat_stream(self, message: str, user_id: str = DEFAULT_USER,
                    include_memory_search: bool = True,
                    keepalive: float | None = None) -> Iterator[dict[str, Any]]:
        """:meth:`chat` as events (``POST /chat/stream``): ``{"event": "token", "text"}``
        as the reply is generated (token by token from a backend with ``streams_tokens``:
        llama.cpp, Ollama, OpenAI-compatible; in one piece from others), then
        ``{"event": "reply", ...}`` with the whole :class:`ChatReply` (the message as
        remembered: stripped, without a ``<think>`` block the tokens may have shown). The
        request is checked now; a failure later is raised from the
        iterator. The exchange is remembered even if the iterator is left unfinished.
        With ``keepalive`` (seconds), ``{"event": "keepalive"}`` comes whenever that long
        passes without another event (the prompt's prefill, a slow first token), so a
        server can keep an idle connection open through proxies."""
        user_id = _asking(user_id, message)
        if keepalive is not None and not keepalive > 0:
            raise ValueError(f"keepalive must be a positive number of seconds, got {keepalive}")
        events: queue.Queue[tuple[str, Any]] = queue.Queue()

        def run() -> None:
            try:
                reply = self._chat(message, user_id, include_memory_search,
                                   lambda text: events.put(("token", text)))
            except BaseException as exc:  # handed to the reader, raised there
                events.put(("error", exc))
            else:
                events.put(("reply", reply))

        # not a daemon: a process that ends mid-reply still remembers the exchange
        threading.Thread(target=run, name="memlab-chat-stream").start()
        return self._events(events, keepalive)

    @staticmethod
    def _events(events: queue.Queue[tuple[str, Any]],
                keepalive: float | None) -> Iterator[dict[str, Any]]:
        sent = ""
        while True:
            try:
                kind, value = events.get(timeout=keepalive)
            except queue.Empty:
                yield {"event": "keepalive"}
                continue
            if kind == "token":
                sent += value
                yield {"event": "token", "text": value}
            elif kind == "error":
                raise value
            else:  # (the message is stripped, and without a <think> block)
                shown = sent.lstrip()
                rest = value.message[len(shown):] if value.message.startswith(shown) else ""
                if rest:  # the last token, or a backend that does not stream
                    yield {"event": "token", "text": rest}
                yield {"event": "reply", **value.to_dict()}
                return

    def _chat(self, message: str, user_id: str, include_memory_search: bool,
              on_token: Callable[[str], None] | None = None) -> ChatReply:
        # An in-process model: the search and the answer are one CPU turn (memlab.compute),
        # so a background import does not slip in between them
        turn = cpu_turn if self.backend == "llamacpp" else nullcontext
        with self._using(user_id) as memory:
            with turn():
                asked = support.now()
                core, retrieved, recent, history = self._context(
                    memory, user_id, message, asked, include_memory_search)
                rendered, kept = self._prompt(message, user_id, asked, core, retrieved,
                                              history)
                streaming = ({"on_token": on_token} if on_token is not None
                             and getattr(self.llm, "streams_tokens", False) else {})
                completion = self.llm.generate(rendered.messages,
                                               max_tokens=self.answer.max_answer_tokens,
                                               **streaming)
            if not completion.ok:
                raise BackendUnavailable(str(completion.error), backend=self.backend)
            answered = support.now()
            session_id = f"s{self.log.next_session(user_id)}"
            self._remember_exchange(memory, user_id, session_id, message, completion.text,
                                    asked, answered)
        used = ([core] if core else []) + kept + recent
        return ChatReply(
            message=completion.text, user_id=user_id, session_id=session_id,
            timestamp=answered.isoformat(), model=completion.model,
            memories_used=[hit_record(h, isinstance(memory, Editable)) for h in used],
            tokens={"prompt": completion.prompt_tokens,
                    "completion": completion.completion_tokens},
            seconds=round(completion.seconds, 4))

    def add_memory(self, content: str, memory_type: str = "archival",
                   user_id: str = DEFAULT_USER, at: datetime | None = None) -> dict[str, Any]:
        """Store ``content`` in one tier of the user's memory (``core``/``recall``/``archival``),
        as of ``at`` (now by default; an import passes the original time)."""
        user_id = check_user(user_id)
        if memory_type not in MEMORY_TYPES:
            raise InvalidRequest(f"memory_type must be one of {', '.join(MEMORY_TYPES)}, "
                                 f"got {memory_type!r}")
        if not content.strip():
            raise InvalidRequest("content must not be empty")
        with self._using(user_id) as memory:
            if memory_type == "core":
                check_core_size(memory, content)
            at = support.utc(at) or support.now()
            session_id = f"m{self.log.next_session(user_id)}"
            unit = self._add(memory, user_id, session_id, content, memory_type, at)
            self.log.append(user_id, session_id, "memory", memory_type, content, at,
                            {"unit_id": unit.id})
            change = getattr(memory, "core_change", None) if memory_type == "core" else None
            tiers = isinstance(memory, Editable)
        added = {"status": "ok", "id": unit.id, "user_id": user_id,  # what it was stored as:
                 "memory_type": memory_type if tiers else "archival",  # flat has no tiers
                 "content": content, "timestamp": at.isoformat()}
        if change is not None:  # what the core block did with it
            added.update(changed=content not in change.skipped,
                         replaced=[old for old, _ in change.replaced],
                         evicted=list(change.evicted))
        return added

    def add_memories(self, contents: Sequence[str], memory_type: str = "archival",
                     user_id: str = DEFAULT_USER) -> list[dict[str, Any]]:
        """:meth:`add_memory` for each of ``contents``, under one lock: the memories are
        embedded together, in one batch, at the next search."""
        with self._lock(check_user(user_id)):
            return [self.add_memory(c, memory_type, user_id) for c in contents]

    def search_memory(self, query: str, limit: int = 5, user_id: str = DEFAULT_USER
                      ) -> list[dict[str, Any]]:
        """The user's memories most relevant to ``query`` (what chat would retrieve)."""
        user_id = check_user(user_id)
        if limit < 1:
            raise InvalidRequest(f"limit must be >= 1, got {limit}")
        with self._using(user_id) as memory, llm_errors(self.backend):
            hits = (memory.find(query, limit, support.now()) if isinstance(memory, HasContext)
                    else memory.search(query, limit, support.now()))
        return [hit_record(h, isinstance(memory, Editable)) for h in hits[:limit]]

    def list_memories(self, user_id: str = DEFAULT_USER, memory_type: str | None = None,
                      limit: int = 100, offset: int = 0) -> dict[str, Any]:
        """The user's memories, oldest first (current core block first), one page."""
        from memlab.agent.manage import list_memories

        user_id = check_user(user_id)
        with self._using(user_id) as memory:
            return list_memories(memory, user_id, memory_type, limit, offset)

    def delete_memory(self, memory_id: str, user_id: str = DEFAULT_USER) -> dict[str, Any]:
        """Delete one of the user's memories (a core id clears the whole core block)."""
        from memlab.agent.manage import delete_memory

        user_id = check_user(user_id)
        with self._using(user_id) as memory:
            return delete_memory(self, memory, user_id, memory_id)

    def forget_user(self, user_id: str) -> dict[str, Any]:
        """Delete all of the user's memories and logged messages (the user asked to be
        forgotten); the ids deleted and the number of messages. Their imports are cancelled
        first, and a running one is waited for until it stops (at most ``FORGET_WAIT``
        seconds, then :class:`~memlab.agent.imports.ImportBusy`)."""
        from memlab.agent.manage import forget_user

        user_id = check_user(user_id)
        self._imports.cancel_user(user_id)  # imports into them stop between two sessions
        busy = ("an import into user {user!r} did not stop within {wait:.0f} s (a "
                "synchronous one cannot be cancelled); forget the user once it has finished")
        with user_import_lock(self.data_dir, user_id, wait=FORGET_WAIT, busy=busy), \
                self._using(user_id) as memory:
            return forget_user(self, memory, user_id)

    def reopen(self, user_id: str) -> None:
        """Drop the user's open memory: the next request opens it again (from its store, or
        rebuilt from the log). The caller holds the user's lock."""
        self._memories.discard(user_id)

    def consolidate_memory(self, user_id: str = DEFAULT_USER) -> dict[str, Any]:
        """Summarise old recall memory into archival memory (architectures that have one)."""
        user_id = check_user(user_id)
        with self._using(user_id) as memory:
            if not isinstance(memory, Consolidating):
                return {"user_id": user_id, "consolidated": [],
                        "note": f"memory '{self.memory_name}' has no consolidation"}
            if isinstance(memory, Accounted):
                memory.take_calls()  # earlier calls are not this request's
            made = memory.consolidate(support.now())
            calls = memory.take_calls() if isinstance(memory, Accounted) else []
            failed = [r for r in calls if str(r.get("error") or "").startswith("llm error")]
        if failed:
            raise BackendUnavailable(str(failed[0]["error"]), backend=self.backend)
        budget = getattr(memory, "recall_tokens", None)
        return {"user_id": user_id, "consolidated": [u.id for u in made],
                "summaries": sum(u.kind == "summary" for u in made),
                "core_versions": sum(u.kind == "core" for u in made),
                "note": None if made else (
                    "nothing to consolidate: only turns that have left the recall buffer "
                    + (f"(the newest {budget} tokens stay in it) " if budget else "")
                    + "are summarised, and none are waiting")}

    def save_conversation(self, path: str | Path, user_id: str | None = None) -> Path:
        """Export messages and memories (of one user, or all) to a JSON file."""
        from memlab.agent.export import write_export

        users = [check_user(user_id)] if user_id is not None else self.log.users()
        return write_export(self, Path(path), users)

    def export_user(self, user_id: str) -> dict[str, Any]:
        """The user's export (``GET /users/{user_id}/export``): every logged message and the
        units their memory holds; :class:`MemoryNotFound` if nothing is kept for them."""
        from memlab.agent.export import export_data

        user_id = check_user(user_id)
        if not self.log.messages(user_id):
            raise MemoryNotFound(f"memlab keeps nothing for user {user_id!r}")
        with self._using(user_id):
            return export_data(self, [user_id])

    def import_user(self, user_id: str, data: Any, source: str = "request body"
                    ) -> dict[str, Any]:
        """Replay an export (``GET /users/{id}/export``'s JSON, from this agent or another)
        into ``user_id``'s memory with its original times (``POST /users/{user_id}/import``).
        The export's user of the same id is imported, or its only user under the new id.
        Messages already in the log are skipped, so importing twice changes nothing. A
        malformed export is an :class:`InvalidRequest` naming the user and field, raised
        before anything is replayed; :class:`~memlab.agent.imports.ImportBusy` while another
        import into the user runs (a background one, or one in another process)."""
        from memlab.agent.export import replay_import

        user_id, from_user = self._check_import(user_id, data, source)
        try:
            with user_import_lock(self.data_dir, user_id):  # ImportBusy: another is running
                counts = replay_import(self, data, Path(source), {from_user: user_id})
        except (DatasetError, ConfigError) as exc:
            raise InvalidRequest(str(exc)) from None
        return {"status": "imported", "user_id": user_id, "from_user": from_user, **counts}

    def start_import(self, user_id: str, data: Any, source: str = "request body"
                     ) -> dict[str, Any]:
        """:meth:`import_user` in the background (``POST /users/{user_id}/import?background=
        true``): the export is checked now (a malformed one is an :class:`InvalidRequest`),
        then queued; the job's record, which :meth:`import_status` follows (``state``
        queued, running, done, failed or cancelled; ``done`` of ``total`` sessions)."""
        user_id, from_user = self._check_import(user_id, data, source)
        return self._imports.submit(user_id, from_user, data, Path(source)).to_dict()

    def import_status(self, job_id: str | None = None) -> Any:
        """One background import's record (:class:`MemoryNotFound` if unknown), or, without
        ``job_id``, every one kept, newest first."""
        if job_id is None:
            return [job.to_dict() for job in self._imports.list()]
        return self._imports.get(job_id).to_dict()

    def _check_import(self, user_id: str, data: Any, source: str) -> tuple[str, str]:
        """The user id to import into and the export's user to import, the export checked
        (an :class:`InvalidRequest` naming the user and field)."""
        from memlab.agent.export import check_import

        user_id = check_user(user_id)
        histories = data.get("users") if isinstance(data, dict) else None
        from_user = user_id
        if isinstance(histories, dict):
            if not histories:
                raise InvalidRequest(f"{source}: the export holds no users")
            if user_id not in histories and len(histories) > 1:
                raise InvalidRequest(
                    f"{source}: the export holds users {', '.join(map(repr, histories))}, none "
                    f"of them {user_id!r}: import one of them by its id, or an export of one "
                    "user (it is imported under the id in the path)")
            from_user = user_id if user_id in histories else next(iter(histories))
        try:
            check_import(data, Path(source), {from_user: user_id})
        except (DatasetError, ConfigError) as exc:
            raise InvalidRequest(str(exc)) from None
        return user_id, from_user

    def load_conversation(self, path: str | Path, progress: bool = True) -> int:
        """Replay an export into memory with its original timestamps (a progress bar of the
        sessions unless ``progress`` is false); sessions and memories imported."""
        from memlab.agent.export import read_export

        return read_export(self, Path(path), progress=progress)

    def replay_session(self, user_id: str, rows: Sequence[dict[str, Any]]) -> str:
        """Ingest logged chat messages (``role``, ``content``, ISO ``at``) as one session
        of the user's memory with their original times, and log them; the session id."""
        user_id = check_user(user_id)
        with self._using(user_id) as memory:
            session_id = f"s{self.log.next_session(user_id)}"
            session = session_from_rows(session_id, user_id, rows)
            with llm_errors(self.backend):
                memory.ingest(session)
            for turn, row in zip(session.turns, rows, strict=True):
                self.log.append(user_id, session_id, "chat", row["role"], row["content"],
                                turn.at)
        return session_id

    def memory_units(self, user_id: str = DEFAULT_USER) -> list[Any]:
        """Every unit the user's memory holds (for exports)."""
        return list(self.memory(user_id).units())

    def status(self) -> dict[str, Any]:
        from memlab.agent.records import status

        return status(self)

    def users(self) -> list[str]:
        return self.log.users()

    def user_summaries(self) -> list[dict[str, Any]]:
        """Every user with a logged message: how many chat messages and explicit memories,
        sessions, first and last message time (``GET /users``)."""
        return self.log.user_summaries()

    def memory(self, user_id: str = DEFAULT_USER) -> Any:
        """The user's memory object (opened on first use)."""
        with self._lock(check_user(user_id)):
            return self._memory(user_id, self.store_version(user_id))

    def close(self) -> None:
        """Release the SQLite files (waiting for requests in flight); used again, the
        agent reopens them. A background import stops between two sessions first."""
        self._imports.close()
        with self._guard:
            locks = list(self._locks.values())
        with ExitStack() as held:
            for lock in locks:
                held.enter_context(lock)
            self._memories.close_all()
            self._versions.clear()
            if self._probe is not None:
                self._probe.close()
                self._probe = None
            self.log.close()

    @property
    def backend(self) -> str:
        return str(self.answer.llm.name)

    # ------------------------------------------------------------------ steps

    def _context(self, memory: Any, user_id: str, message: str, asked: datetime,
                 search: bool
                 ) -> tuple[Hit | None, list[Hit], list[Hit], list[dict[str, str]]]:
        """(core hit, retrieved hits, recent-turn hits, recent turns as chat messages)."""
        with llm_errors(self.backend):
            if isinstance(memory, HasContext):  # tiered: its own tiers
                ctx = memory.context(message if search else "", asked)
                return (ctx.core, ctx.retrieved, ctx.recent,
                        history_rows(h.unit for h in ctx.recent))
            k = self.config.k or 10
            hits = memory.search(message, k, asked) if search else []
        return None, hits, [], self._recent(user_id)

    def _recent(self, user_id: str) -> list[dict[str, str]]:
        """The newest chat messages that fit HISTORY_TOKENS (memories without a buffer)."""
        from memlab.tokens import count_tokens

        rows, used = [], 0
        for row in reversed(self.log.messages(user_id, kind="chat")):
            used += count_tokens(row["content"])
            if used > HISTORY_TOKENS:
                break
            rows.append({"role": row["role"], "content": row["content"]})
        return rows[::-1]

    def _prompt(self, message: str, user_id: str, asked: datetime, core: Hit | None,
                retrieved: list[Hit], history: list[dict[str, str]]) -> tuple[Any, list[Hit]]:
        """The chat prompt, built as the evaluator builds its prompts (same budget, same
        trim policy, same template machinery)."""
        from memlab.agent.refusals import hits_without_refusals, without_refusals
        from memlab.llm.budget import ContextOverflowError

        try:
            rendered, fitted = self._prompt_builder().build(
                hits_without_refusals(retrieved), question=message,
                core_memory=core.unit.text if core else "", history=without_refusals(history),
                asked_at=asked, user=user_id)
        except ContextOverflowError as exc:
            raise InvalidRequest(f"message too long for the model's context window: {exc}"
                                 ) from None
        return rendered, list(fitted.kept)

    def _remember_exchange(self, memory: Any, user_id: str, session_id: str, message: str,
                           reply: str, asked: datetime, answered: datetime) -> None:
        turns = (Turn(f"{session_id}:t1", session_id, user_id, Role.USER, message, asked),
                 Turn(f"{session_id}:t2", session_id, "assistant", Role.ASSISTANT, reply,
                      answered))
        with llm_errors(self.backend):
            memory.ingest(Session(session_id, asked, turns))
        self.log.append(user_id, session_id, "chat", "user", message, asked)
        self.log.append(user_id, session_id, "chat", "assistant", reply, answered)

    def _add(self, memory: Any, user_id: str, session_id: str, content: str,
             memory_type: str, at: datetime) -> Any:
        with llm_errors(self.backend):
            if isinstance(memory, Editable):
                return memory.remember(content, memory_type, at, speaker=user_id,
                                       source_id=session_id)
            turn = Turn(f"{session_id}:t1", session_id, user_id, Role.USER, content, at)
            units = memory.ingest(Session(session_id, at, (turn,)))
        if not units:
            raise InvalidRequest(f"memory '{self.memory_name}' stored nothing for this content")
        return units[0]

    # ------------------------------------------------------------------ plumbing

    def _lock(self, user_id: str) -> threading.RLock:
        with self._guard:
            return self._locks.setdefault(user_id, threading.RLock())

    @contextmanager
    def _using(self, user_id: str) -> Iterator[Any]:
        """The user's memory under their lock, reloaded first if the shared store (a
        PostgreSQL several server workers write to) changed since it was loaded. The
        version read *before* loading is what is remembered: a write since - another
        worker's, or this request's own, which can interleave with another's - reloads it
        on the next request (remembering the version after this request's writes hid a
        concurrent write of another worker for good)."""
        with self._lock(user_id):
            version = self.store_version(user_id)
            memory = self._memory(user_id, version)
            self._versions[user_id] = version
            yield memory

    def store_version(self, user_id: str = DEFAULT_USER) -> int | None:
        """The shared store's write counter for ``user_id`` (None: the store has none)."""
        if self._probe is None:
            from memlab.agent.build import user_store
            from memlab.spec import build

            self._probe = build("store", user_store(self.settings, DEFAULT_USER))
        if not isinstance(self._probe, Versioned):
            return None
        space: Any = self._probe.namespace(user_id)
        return int(space.version())

    def _memory(self, user_id: str, version: int | None) -> Any:
        """The user's memory, opened (and others closed, see OpenMemories) if need be, or
        reopened when the store's ``version`` (:meth:`store_version`; None for a store
        that counts no writes) is not the one it was loaded at; the caller holds the
        user's lock."""
        memory = self._memories.get(user_id)
        if memory is not None and user_id in self._versions and \
                version != self._versions[user_id]:
            self._memories.discard(user_id)  # written to since it was loaded: reload
            memory = None
        if memory is None:
            from memlab.agent.build import open_memory, user_store

            memory = open_memory(self.memory_name, self.memory_params, user_id,
                                 store=user_store(self.settings, user_id), llm=self.llm,
                                 log=self.log)
            self._memories.put(user_id, memory)
        return memory

    def _prompt_builder(self) -> PromptBuilder:
        if self._prompts is None:
            from memlab.prompts import get_template

            answer = self.answer
            template = get_template(answer.template.name, self.config.template_dirs)
            self._prompts = PromptBuilder(template, context_window(self.llm),
                                          answer.max_memory_tokens, answer.max_answer_tokens,
                                          answer.trim_policy)
        return self._prompts


def _asking(user_id: str, message: str) -> str:
    """The checked user id of a chat message (an :class:`InvalidRequest` for an empty
    message)."""
    user_id = check_user(user_id)
    if not message.strip():
        raise InvalidRequest("message must not be empty")
    return user_id


def check_core_size(memory: Any, content: str) -> None:
    """Core memory is in every prompt: a line over the block's budget is refused (one
    oversized core memory used to make every later chat of the user fail)."""
    from memlab.tokens import count_tokens

    limit = getattr(memory, "core_tokens", None)
    if not isinstance(limit, int):
        return
    size = count_tokens(f"- {content}")
    if size > limit:
        raise InvalidRequest(f"core memory is capped at {limit} tokens and this content has "
                             f"{size}: shorten it, or store it as archival memory")


