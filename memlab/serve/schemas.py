"""Request and response bodies of the HTTP API (the Letta seed's shapes, validated).

Field names follow the seed: ``message`` / ``user_id`` / ``include_memory_search`` for
chat, ``content`` / ``memory_type`` to add, ``query`` / ``limit`` to search; the chat
answer is in ``message``. ``user_id`` is optional everywhere (``"default"``), as the
seed's memory calls send none. Text must be valid Unicode (no lone surrogates) and is
bounded in length; unknown fields are rejected so a typo is a 422, not a silent default.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

MAX_MESSAGE_CHARS = 16_000
MAX_QUERY_CHARS = 2_000
MAX_SEARCH_LIMIT = 50
MAX_LIST_LIMIT = 500
USER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"


def _encodable(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (no unpaired surrogates)") from None
    if "\x00" in text:
        raise ValueError("text must not contain NUL characters")
    return text


Text = Annotated[str, AfterValidator(_encodable)]
UserId = Annotated[str, Field(default="default", pattern=USER_ID_PATTERN,
                              description="whose memory (letters, digits, _.@-; <= 64)")]
MemoryType = Literal["core", "recall", "archival"]
MemoryId = Annotated[str, AfterValidator(_encodable),
                     Path(min_length=1, max_length=200, description="a memory's id")]
UserQuery = Annotated[str, Query(pattern=USER_ID_PATTERN, description="whose memory")]
UserPath = Annotated[str, Path(pattern=USER_ID_PATTERN, description="whose memory")]
ListLimit = Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)]
ListOffset = Annotated[int, Query(ge=0, le=10**9)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChatRequest(_Request):
    message: Text = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    user_id: UserId = "default"
    include_memory_search: bool = True


class AddMemoryRequest(_Request):
    content: Text = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    memory_type: MemoryType = "archival"
    user_id: UserId = "default"


class SearchRequest(_Request):
    query: Text = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    limit: int = Field(default=5, ge=1, le=MAX_SEARCH_LIMIT)
    user_id: UserId = "default"


class ConsolidateRequest(_Request):
    user_id: UserId = "default"


class MemoryItem(BaseModel):
    """One memory: its id, text, tier, score and the time it became known."""

    id: str
    content: str
    memory_type: str
    kind: str
    score: float
    timestamp: str
    source_turn_ids: list[str]


class ChatResponse(BaseModel):
    message: str
    user_id: str
    session_id: str
    timestamp: str
    model: str
    memories_used: list[MemoryItem]
    tokens: dict[str, int]
    seconds: float


class AddMemoryResponse(BaseModel):
    status: Literal["ok"]
    id: str
    user_id: str
    memory_type: MemoryType
    content: str
    timestamp: str
    changed: bool = Field(default=True, description="false: the memory already held this "
                          "(a core line with the same words); nothing was stored")
    replaced: list[str] = Field(default_factory=list, description="core lines this one "
                                "replaced (a near-repeat is an update)")
    evicted: list[str] = Field(default_factory=list, description="the oldest core lines "
                               "dropped to keep the block within its token budget")


class SearchResponse(BaseModel):
    query: str
    user_id: str
    results: list[MemoryItem]
    count: int


class StoredMemory(BaseModel):
    """One stored memory as ``GET /memory/list`` shows it."""

    id: str
    content: str
    memory_type: str
    kind: str
    timestamp: str
    source_turn_ids: list[str]


class ListResponse(BaseModel):
    user_id: str
    total: int
    offset: int
    memories: list[StoredMemory]


class DeleteResponse(BaseModel):
    status: Literal["deleted"]
    user_id: str
    deleted: list[str]


class UserSummary(BaseModel):
    user_id: str
    messages: int = Field(description="chat messages logged (deleted ones left out)")
    memories: int = Field(description="explicit memories added (deleted ones left out)")
    sessions: int = Field(description="exchanges and memories, each a session")
    first_at: str | None = Field(description="the first message's time (UTC)")
    last_at: str | None = Field(description="the last message's time (UTC)")


class UsersResponse(BaseModel):
    users: list[UserSummary]


class ForgetUserResponse(BaseModel):
    status: Literal["deleted"]
    user_id: str
    deleted: list[str] = Field(description="the ids of every memory deleted")
    messages: int = Field(description="conversation-log messages deleted")


class ExportResponse(BaseModel):
    """The user's history as the ``agent`` dataset loader reads it
    (``memlab.load_dataset("agent", path=...)``)."""

    format: Literal["memlab-agent-export"]
    version: int
    exported_at: str
    config: str
    memory: str
    users: dict[str, Any] = Field(description="user id -> {messages, memory_units}")


class ImportRequest(BaseModel):
    """An export (``GET /users/{user_id}/export``'s body, from this agent or another): its
    user of the path's id is imported, or its only user under the path's id."""

    model_config = ConfigDict(extra="allow")
    format: str = Field(description="memlab-agent-export")
    version: int
    users: dict[str, Any] = Field(description="user id -> {messages, memory_units}; "
                                  "memory_units are not read: this agent's memory builds "
                                  "its own from the messages")


class ImportResponse(BaseModel):
    status: Literal["imported"]
    user_id: str
    from_user: str = Field(description="the export's user that was imported")
    sessions: int = Field(description="chat exchanges replayed into memory")
    memories: int = Field(description="explicit memories added again")
    skipped: int = Field(description="messages already in the log (an import repeated)")
    deleted: int = Field(description="messages deleted before the export: not brought back")


class ImportJobResponse(BaseModel):
    """A background import (``POST /users/{user_id}/import?background=true``) and how far
    it got; follow it at ``GET /imports/{job_id}``."""

    job_id: str
    user_id: str
    from_user: str = Field(description="the export's user being imported")
    state: Literal["queued", "running", "done", "failed", "cancelled"]
    done: int = Field(description="sessions and memories replayed or refused so far")
    total: int | None = Field(description="sessions and memories to replay (known once "
                                          "the job runs; already logged messages excluded)")
    sessions: int = Field(description="chat exchanges replayed into memory")
    memories: int = Field(description="explicit memories added again")
    skipped: int = Field(description="messages already in the log (an import repeated)")
    deleted: int = Field(description="messages deleted before the export: not brought back")
    error: str | None = Field(description="why it failed or was cancelled")
    submitted_at: str
    started_at: str | None
    finished_at: str | None


class ImportJobsResponse(BaseModel):
    imports: list[ImportJobResponse] = Field(description="the jobs kept, newest first")


class ConsolidateResponse(BaseModel):
    user_id: str
    consolidated: list[str]
    summaries: int = 0
    core_versions: int = 0
    note: str | None = None


class StatusResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: Literal["ok", "degraded"]
    problems: list[str] = Field(default_factory=list,
                                description="what does not answer when degraded")
    uptime_seconds: float
    process: int = Field(description="pid of the server worker that answered")
    config: str
    experiment: str
    overrides: dict[str, Any]
    model: dict[str, Any]
    backend: dict[str, Any]
    memory: dict[str, Any]


class ValidationProblem(BaseModel):
    """One field that failed validation: where (``loc``), what (``msg``), which rule."""

    model_config = ConfigDict(extra="allow")
    type: str
    loc: list[str | int]
    msg: str


class UnprocessableResponse(BaseModel):
    """A 422: the fields that failed validation (a list), or the agent's own refusal of
    valid input (one sentence, e.g. a core memory over the block's budget)."""

    detail: str | list[ValidationProblem]


class ErrorResponse(BaseModel):
    """Why a request failed (never a traceback)."""

    detail: str
    backend: str | None = None
