"""Imports that run in the background (``POST /users/{id}/import?background=true``).

An import replays every exchange of an export through the memory's ingest; into a memory
that calls the LLM at ingest (``extracted``, session summaries) a long history takes
minutes to hours, longer than an HTTP client waits. A background import is checked first
(a malformed export is still refused at once), then queued; one worker thread runs the
queue in order. Each replayed session takes the user's lock on its own, so the user can
chat while their history comes in.

Imports into one user never overlap, in one process or several sharing the data directory:
each holds the user's import lock (:func:`user_import_lock`, an ``flock`` on a file in
``<data_dir>/locks``) from reading the log to its last session, so a second import finds
what the first brought in and skips it. A synchronous import that finds the lock held is
refused (:class:`ImportBusy`, HTTP 409); a background one waits its turn. Forgetting the
user (``DELETE /users/{id}``) cancels their imports, queued or running in any process,
and waits for the running one to stop before it deletes anything.

A job's record is kept in the conversation log (the last :data:`KEEP` finished ones), so
every server process sharing the data directory answers for it, and it outlives a restart.
A job whose process stopped before it finished reads ``cancelled``; importing the same
export again goes on where it stopped, since messages already in the log are skipped.
Closing the agent stops the running import between two sessions (``cancelled``, with what
it imported) and cancels the queued ones.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import queue
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from memlab.agent.export import ImportStopped, replay_import
from memlab.agent.records import BackendUnavailable, InvalidRequest, MemoryNotFound
from memlab.compute import background
from memlab.errors import MemlabError

KEEP = 100
STATES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")
FORGET_WAIT = 600.0  # seconds DELETE /users/{id} waits for a running import to stop
log = logging.getLogger("memlab.agent.imports")
_OWNERS: set[str] = set()  # the job queues of this process (a restart starts empty)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class ImportJob:
    """One background import and how far it got (``total`` is known once it starts)."""

    job_id: str
    user_id: str
    from_user: str
    state: str = "queued"
    done: int = 0
    total: int | None = None
    sessions: int = 0
    memories: int = 0
    skipped: int = 0
    deleted: int = 0
    error: str | None = None
    submitted_at: str = field(default_factory=_now)
    started_at: str | None = None
    finished_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ImportBusy(InvalidRequest):
    """Another import into the same user is running (HTTP 409)."""


BUSY = ("an import into user {user!r} is running (a background one's state is at GET "
        "/imports); wait for it to finish, or import in the background (?background=true), "
        "which waits its turn")


@contextmanager
def user_import_lock(data_dir: Path, user_id: str, *, wait: float = 0.0,
                     stop: Callable[[], bool] | None = None, busy: str = BUSY
                     ) -> Iterator[None]:
    """Hold ``user_id``'s import lock (an ``flock`` on ``<data_dir>/locks/import-<user>``,
    exclusive across threads and processes; the kernel drops it if the process dies).
    Waits up to ``wait`` seconds (polling; giving up early once ``stop()`` is true), then
    raises :class:`ImportBusy` saying ``busy`` (``{user}`` and ``{wait}`` filled in)."""
    folder = data_dir / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait
    with (folder / f"import-{user_id}").open("a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline or (stop is not None and stop()):
                    raise ImportBusy(busy.format(user=user_id, wait=wait)) from None
                time.sleep(0.05 if stop is None else 0.25)  # stop() may read the log
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class ImportJobs:
    """The queue of background imports into one agent, run by one worker thread (started
    with the first job, again after :meth:`close`)."""

    def __init__(self, agent: Any) -> None:
        self.agent = agent
        self.owner = f"{os.getpid()}:{secrets.token_hex(4)}"  # this process, this start
        _OWNERS.add(self.owner)
        self._jobs: dict[str, ImportJob] = {}  # the jobs this process runs or queued
        self._work: dict[str, tuple[Any, Path, dict[str, str]]] = {}
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._closing = False

    def submit(self, user_id: str, from_user: str, data: Any, source: Path) -> ImportJob:
        """Queue the import of ``from_user`` of a checked export as ``user_id`` (its record
        written first: if that fails, nothing is queued)."""
        job = ImportJob(secrets.token_hex(8), user_id, from_user)
        with self._lock:
            if self._closing:
                raise BackendUnavailable("the server is stopping: import again once it is "
                                         "back", backend="imports")
            self._save(job)
            queued = ImportJob(**job.to_dict())  # what the caller is told: not read back
            self._jobs[job.job_id] = job
            self._work[job.job_id] = (data, source, {from_user: user_id})
            self.agent.log.prune_imports(KEEP, FINISHED)
            if self._worker is None or not self._worker.is_alive():
                self._stop.clear()
                self._worker = threading.Thread(target=self._run, name="memlab-import",
                                                daemon=True)
                self._worker.start()
        self._queue.put(job.job_id)
        return queued

    def get(self, job_id: str) -> ImportJob:
        """The job's record (run by this process or another sharing the data directory);
        :class:`MemoryNotFound` if it is unknown."""
        found = self.agent.log.imports(job_id)
        if not found:
            raise MemoryNotFound(
                f"no import job {job_id!r} (the last {KEEP} finished jobs are kept; "
                "importing the export again skips what is already in the log)")
        return self._current(*found[0])

    def list(self) -> list[ImportJob]:
        """Every job kept, newest first."""
        return [self._current(owner, record) for owner, record in self.agent.log.imports()]

    def _current(self, owner: str, record: dict[str, Any]) -> ImportJob:
        job = ImportJob(**record)
        if job.state in FINISHED:
            return job
        if owner == self.owner:
            with self._lock:  # (a job's last record is written under this lock)
                if job.job_id in self._jobs:
                    return job
                found = self.agent.log.imports(job.job_id)
            if found and found[0][1]["state"] in FINISHED:
                return ImportJob(**found[0][1])  # it finished since it was read
            # dropped after its record could not be written
            job.state, job.finished_at = "failed", job.finished_at or _now()
            job.error = "its record could not be written (see the server's log)"
        elif not _alive(owner):
            job.state, job.finished_at = "cancelled", job.finished_at or _now()
            job.error = ("the server process running it stopped; import the export again "
                         "to go on")
        return job

    def close(self) -> None:
        """Stop the running import between two sessions and cancel the queued ones (new
        imports are refused meanwhile)."""
        with self._lock:
            self._closing = True
            worker = self._worker
            self._stop.set()
        try:
            if worker is not None and worker.is_alive():
                self._queue.put(None)
                worker.join()
            with self._lock:
                for job_id in list(self._work):
                    try:
                        self._finish(job_id, "cancelled", "the server stopped before this "
                                                          "import started; import it again")
                    except (OSError, sqlite3.Error, MemlabError) as exc:
                        log.warning("import %s: its record failed: %s", job_id, exc)
                        self._jobs.pop(job_id, None)
                        self._work.pop(job_id, None)
                self._worker = None
                while True:
                    try:
                        self._queue.get_nowait()
                    except queue.Empty:
                        break
        finally:
            with self._lock:
                self._closing = False

    def cancel_user(self, user_id: str) -> int:
        """Ask every unfinished import into ``user_id`` (in this process or another) to
        stop: a queued one is cancelled when its turn comes, a running one between two
        sessions; how many."""
        return self.agent.log.cancel_imports(user_id, ("queued", "running"))

    # ------------------------------------------------------------------ the worker

    def _run(self) -> None:
        with background():  # the chats' model and CPU turns first (memlab.compute)
            self._work_through()

    def _work_through(self) -> None:
        while not self._stop.is_set():
            job_id = self._queue.get()
            if job_id is None or self._stop.is_set():
                break
            with self._lock:
                work = self._work.get(job_id)
            if work is None:
                continue
            try:
                self._import(job_id, *work)
            except Exception:  # the record could not be written (a full disk, say): the
                log.exception("import %s: its record failed", job_id)  # queue goes on
                with self._lock:
                    self._jobs.pop(job_id, None)
                    self._work.pop(job_id, None)

    def _import(self, job_id: str, data: Any, source: Path, users: dict[str, str]) -> None:
        [user_id] = users.values()

        def stop() -> bool:
            return self._stop.is_set() or self.agent.log.import_cancelled(job_id)

        def progress(done: int, total: int, counts: dict[str, int]) -> None:
            with self._lock:
                job = self._jobs[job_id]
                self._update(job, done, total, counts)
                self._save(job)

        try:
            with user_import_lock(self.agent.data_dir, user_id, wait=math.inf, stop=stop):
                with self._lock:
                    job = self._jobs[job_id]
                    job.state, job.started_at = "running", _now()
                    self._save(job)
                replay_import(self.agent, data, source, users, progress=progress, stop=stop)
        except (ImportStopped, ImportBusy) as stopped:
            if isinstance(stopped, ImportStopped):
                with self._lock:
                    self._update(self._jobs[job_id], None, None, stopped.counts)
            said = f"{stopped}; " if isinstance(stopped, ImportStopped) else ""
            why = (f"the server stopped: {said}import the export again to go on"
                   if self._stop.is_set() else
                   f"the user was forgotten (DELETE /users/{user_id}): {said}nothing of it "
                   "is kept")
            with self._lock:
                self._finish(job_id, "cancelled", why)
        except BackendUnavailable as exc:
            self._failed(job_id, f"{exc.backend or 'backend'} unavailable: {exc.reason}")
        except (MemlabError, OSError, sqlite3.Error) as exc:
            self._failed(job_id, str(exc))
        except Exception as exc:  # never lose the worker, nor the reason
            log.exception("import %s failed", job_id)
            self._failed(job_id, f"{type(exc).__name__}: {exc}")
        else:
            with self._lock:
                self._finish(job_id, "done", None)

    def _failed(self, job_id: str, error: str) -> None:
        with self._lock:
            self._finish(job_id, "failed", error)

    def _save(self, job: ImportJob) -> None:
        """Write the job's record to the log (the caller holds the lock)."""
        self.agent.log.save_import(self.owner, job.to_dict())

    @staticmethod
    def _update(job: ImportJob, done: int | None, total: int | None,
                counts: dict[str, int]) -> None:
        if done is not None:
            job.done, job.total = done, total
        job.sessions, job.memories = counts["sessions"], counts["memories"]
        job.skipped, job.deleted = counts["skipped"], counts["deleted"]

    def _finish(self, job_id: str, state: str, error: str | None) -> None:
        job = self._jobs.pop(job_id)
        job.state, job.error, job.finished_at = state, error, _now()
        self._work.pop(job_id, None)
        self._save(job)


def _alive(owner: str) -> bool:
    """Whether the job queue ``owner`` (``pid:token``) still runs on this machine: its
    process runs, and if that is this one, it is a queue of this start (a restarted server
    in a container often gets its old pid back)."""
    pid = owner.partition(":")[0]
    if not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return owner in _OWNERS
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
