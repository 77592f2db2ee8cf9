"""The FastAPI app: the Letta seed's endpoints over a :class:`~memlab.agent.MemoryAgent`.

``POST /chat``, ``POST /chat/stream`` (server-sent events), ``POST /memory/add``,
``POST /memory/search``, ``POST /memory/consolidate``,
``GET /memory/list``, ``DELETE /memory/{id}``, ``GET /users``, ``DELETE /users/{id}``,
``GET /users/{id}/export``, ``POST /users/{id}/import``, ``GET /imports/{job_id}``,
``GET /imports``, ``GET /status``; OpenAPI at
``/openapi.json``, Swagger UI at ``/docs``, ReDoc at ``/redoc``. Errors are JSON
``{"detail": ...}`` with a status that says whose fault it is: 400 (unreadable body),
401 (API key), 404 (no such memory), 408 (body not sent in time), 409 (an import into the
user is running), 413 (body too large),
422 (invalid input, including NaN/Infinity numbers and a core memory over its cap), 503
(model or embedding backend down, or the data files failing: ``"backend": "storage"``;
with the reason) - never a traceback.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request, Security
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import APIKeyHeader

from memlab.agent import BackendUnavailable, InvalidRequest, MemoryAgent, MemoryNotFound
from memlab.agent.imports import ImportBusy
from memlab.errors import MemlabError, StorageError
from memlab.serve import schemas as s
from memlab.serve.limits import BodySizeLimit

API_KEY_HEADER = "X-API-Key"
log = logging.getLogger("memlab.serve")

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": s.ErrorResponse, "description": "body is not readable (bad encoding)"},
    401: {"model": s.ErrorResponse, "description": "missing or wrong API key"},
    408: {"model": s.ErrorResponse, "description": "request body not received in time"},
    413: {"model": s.ErrorResponse, "description": "request body too large"},
    422: {"model": s.UnprocessableResponse,
          "description": "invalid input: the fields that failed (a list), or the agent's "
                         "refusal of valid input (a sentence)"},
    503: {"model": s.ErrorResponse,
          "description": "model or embedding backend unavailable, or storage failing"},
}


_BUSY = {"model": s.ErrorResponse,
         "description": "an import into the user is running (and, for a delete, did not stop "
                        "in time)"}


def create_app(agent: MemoryAgent, *, api_key: str | None = None,
               max_body_bytes: int = 65536, body_timeout: float = 30.0,
               max_import_bytes: int = 32 << 20,
               stream_keepalive: float = 15.0) -> FastAPI:
    """The HTTP API for ``agent``; ``api_key`` (if set) is required in ``X-API-Key``;
    ``POST /chat/stream`` sends ``: keepalive`` after ``stream_keepalive`` idle seconds."""
    import memlab

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        agent.close()  # flush and release the SQLite files on shutdown

    app = FastAPI(title="memlab agent API", version=getattr(memlab, "__version__", "0"),
                  lifespan=lifespan,
                  description="Chat with a Qwen model that has long-term memory (the Letta "
                              "seed's API), backed by a memlab memory architecture.",
                  responses=_ERRORS)
    app.state.agent = agent
    guard = [Depends(_key_check(api_key))]
    _routes(app, agent, guard, stream_keepalive)
    _handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes, body_timeout=body_timeout,
                       import_bytes=max_import_bytes)
    return app


def _key_check(expected: str | None) -> Any:
    header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                          description="required when the server has an API key")

    def check(given: str | None = Security(header)) -> None:
        if expected and not (given and secrets.compare_digest(given.encode(),
                                                              expected.encode())):
            raise _Unauthorized()

    return check


class _Unauthorized(Exception):
    pass


def _routes(app: FastAPI, agent: MemoryAgent, guard: list[Any],
            stream_keepalive: float) -> None:
    @app.post("/chat", response_model=s.ChatResponse, dependencies=guard, tags=["chat"])
    def chat(body: s.ChatRequest) -> dict[str, Any]:
        """Answer a message with the user's memory, then remember the exchange."""
        return agent.chat(body.message, body.user_id, body.include_memory_search).to_dict()

    @app.post("/chat/stream", dependencies=guard, tags=["chat"],
              response_class=StreamingResponse,
              responses={200: {"content": {"text/event-stream": {}},
                               "description": "server-sent events: `token` ({text}) as the "
                               "reply is generated, then `reply` (the ChatResponse), or "
                               "`error` ({detail, status, backend}: what /chat would "
                               "have answered); a `: keepalive` comment line whenever "
                               "the server's stream_keepalive seconds pass without one"}})
    def chat_stream(body: s.ChatRequest) -> StreamingResponse:
        """``POST /chat`` as server-sent events, the reply's text as it is generated (token
        by token from llama.cpp, Ollama and OpenAI-compatible servers; in one piece from a
        backend that does not stream). A
        bad request is refused before the stream starts; a failure during it is an
        `error` event. The exchange is remembered even if the client goes away."""
        events = agent.chat_stream(body.message, body.user_id, body.include_memory_search,
                                   keepalive=stream_keepalive)
        return StreamingResponse(_sse(events), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    @app.post("/memory/add", response_model=s.AddMemoryResponse, dependencies=guard,
              tags=["memory"])
    def add_memory(body: s.AddMemoryRequest) -> dict[str, Any]:
        """Store a memory in one tier (core, recall or archival) of the user's memory."""
        return agent.add_memory(body.content, body.memory_type, body.user_id)

    @app.post("/memory/search", response_model=s.SearchResponse, dependencies=guard,
              tags=["memory"])
    def search_memory(body: s.SearchRequest) -> dict[str, Any]:
        """The user's memories most relevant to a query."""
        results = agent.search_memory(body.query, body.limit, body.user_id)
        return {"query": body.query, "user_id": body.user_id, "results": results,
                "count": len(results)}

    @app.post("/memory/consolidate", response_model=s.ConsolidateResponse,
              dependencies=guard, tags=["memory"])
    def consolidate(body: s.ConsolidateRequest) -> dict[str, Any]:
        """Summarise old recall memory into archival memory."""
        return agent.consolidate_memory(body.user_id)

    @app.get("/memory/list", response_model=s.ListResponse, dependencies=guard,
             tags=["memory"])
    def list_memories(user_id: s.UserQuery = "default",
                      memory_type: s.MemoryType | None = None,
                      limit: s.ListLimit = 100, offset: s.ListOffset = 0) -> dict[str, Any]:
        """The user's memories, oldest first (the current core block first), one page."""
        return agent.list_memories(user_id, memory_type, limit, offset)

    @app.delete("/memory/{memory_id:path}", response_model=s.DeleteResponse,
                dependencies=guard, tags=["memory"],
                responses={404: {"model": s.ErrorResponse, "description": "no such memory"}})
    def delete_memory(memory_id: s.MemoryId, user_id: s.UserQuery = "default"
                      ) -> dict[str, Any]:
        """Delete one of the user's memories (a core id clears the whole core block)."""
        return agent.delete_memory(memory_id, user_id)

    @app.get("/users", response_model=s.UsersResponse, dependencies=guard, tags=["memory"])
    def users() -> dict[str, Any]:
        """Every user the agent keeps messages for, in id order, with their counts and the
        times of their first and last message."""
        return {"users": agent.user_summaries()}

    @app.delete("/users/{user_id}", response_model=s.ForgetUserResponse,
                dependencies=guard, tags=["memory"],
                responses={404: {"model": s.ErrorResponse,
                                 "description": "nothing kept for this user"},
                           409: _BUSY})
    def forget_user(user_id: s.UserPath) -> dict[str, Any]:
        """Forget the user: every memory and every logged message of theirs is deleted.
        Imports into them are cancelled first; a running one stops after its current
        session, which this waits for."""
        return agent.forget_user(user_id)

    @app.get("/users/{user_id}/export", response_model=s.ExportResponse,
             dependencies=guard, tags=["memory"],
             responses={404: {"model": s.ErrorResponse,
                              "description": "nothing kept for this user"}})
    def export_user(user_id: s.UserPath) -> dict[str, Any]:
        """The user's logged messages and memories, in the file format the ``agent``
        dataset loader reads: save it, generate probes for it (``python -m memlab.data
        probes agent=FILE``) and score memory configurations on your own chats."""
        return agent.export_user(user_id)

    @app.post("/users/{user_id}/import", response_model=s.ImportResponse | s.ImportJobResponse,
              dependencies=guard, tags=["memory"],
              responses={202: {"model": s.ImportJobResponse,
                               "description": "background=true: the import is queued"},
                         409: _BUSY})
    def import_user(user_id: s.UserPath, body: s.ImportRequest,
                    background: bool = False) -> Any:
        """Replay an export (this agent's or another's, e.g. one running another
        configuration) into the user's memory with its original times: each exchange is
        ingested as a session, each explicit memory added to its tier. Messages already in
        the log are skipped, so importing twice changes nothing; a malformed export is a 422
        naming the user and field, before anything is replayed. The body may be up to
        ``server.max_import_bytes`` (32 MiB), not ``server.max_body_bytes``. With
        ``background=true`` (for a long history, or a memory that calls the model at
        ingest) the checked export is queued and the reply is a 202 with the job, which
        ``GET /imports/{job_id}`` follows."""
        if not background:
            return agent.import_user(user_id, body.model_dump())
        job = agent.start_import(user_id, body.model_dump())
        return JSONResponse(job, status_code=202,
                            headers={"Location": f"/imports/{job['job_id']}"})

    @app.get("/imports/{job_id}", response_model=s.ImportJobResponse, dependencies=guard,
             tags=["memory"],
             responses={404: {"model": s.ErrorResponse, "description": "no such import job"}})
    def import_job(job_id: str) -> dict[str, Any]:
        """A background import: its state (queued, running, done, failed, cancelled), the
        sessions done of its total, what it imported and why it failed or was cancelled.
        The record is kept in the conversation log: any server process sharing the data
        directory answers for it, after a restart too (the last 100 finished jobs)."""
        return agent.import_status(job_id)

    @app.get("/imports", response_model=s.ImportJobsResponse, dependencies=guard,
             tags=["memory"])
    def import_jobs() -> dict[str, Any]:
        """Every background import kept (running, queued, the last 100 finished), newest
        first."""
        return {"imports": agent.import_status()}

    @app.get("/status", response_model=s.StatusResponse, dependencies=guard, tags=["status"],
             responses={503: {"model": s.StatusResponse,
                              "description": "degraded: the model backend or the shared "
                                             "memory store does not answer (see problems)"}})
    def status() -> Any:
        """Configuration, model backend and store health, and memory counts; 503 when
        something chat needs does not answer, so a health check sees it."""
        report = agent.status()
        if report["status"] != "ok":
            return JSONResponse(jsonable_encoder(report), status_code=503)
        return report


def _handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    def unprocessable(request: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's 422, with the offending input made printable (a lone surrogate in
        the input would otherwise break the JSON encoder and turn the 422 into a 500); a
        body sent without a JSON content type is said to be that, not "not a dictionary"."""
        errors = _printable(jsonable_encoder(exc.errors()))
        sent = request.headers.get("content-type", "")
        if "json" not in sent:
            for error in errors:
                if error.get("loc") == ["body"] and error.get("type") == "model_attributes_type":
                    error["msg"] = (f"the body is not read as JSON: send the header "
                                    f"Content-Type: application/json (got "
                                    f"{sent or 'no content type'})")
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(_Unauthorized)
    def unauthorized(request: Request, exc: _Unauthorized) -> JSONResponse:
        return JSONResponse({"detail": f"missing or invalid API key (header {API_KEY_HEADER})"},
                            status_code=401, headers={"WWW-Authenticate": API_KEY_HEADER})

    @app.exception_handler(MemoryNotFound)
    def not_found(request: Request, exc: MemoryNotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(ImportBusy)
    def busy(request: Request, exc: ImportBusy) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(InvalidRequest)
    def invalid(request: Request, exc: InvalidRequest) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(BackendUnavailable)
    def unavailable(request: Request, exc: BackendUnavailable) -> JSONResponse:
        log.warning("backend unavailable: %s", exc.reason)
        return JSONResponse({"detail": exc.reason, "backend": exc.backend or None},
                            status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(StorageError)
    @app.exception_handler(OSError)
    @app.exception_handler(sqlite3.Error)
    def storage_error(request: Request, exc: Exception) -> JSONResponse:
        """The data files failed (disk, permissions, descriptors): not the model's fault."""
        log.warning("storage failed: %s", exc)
        return JSONResponse({"detail": f"storage unavailable: {exc}", "backend": "storage"},
                            status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(MemlabError)
    def memlab_error(request: Request, exc: MemlabError) -> JSONResponse:
        log.warning("request failed: %s", exc)
        return JSONResponse({"detail": str(exc)}, status_code=503,
                            headers={"Retry-After": "5"})


def _sse(events: Iterator[dict[str, Any]]) -> Iterator[str]:
    """Agent events as server-sent events (``event: NAME``, ``data: JSON``; a keepalive
    as a comment line, which clients ignore); a failure is an ``error`` event with the
    status the same failure gets outside a stream."""
    try:
        for event in events:
            name = event.pop("event")
            if name == "keepalive":
                yield ": keepalive\n\n"
                continue
            yield f"event: {name}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n"
    except Exception as exc:
        error: dict[str, Any] = {"detail": str(exc)}
        if isinstance(exc, ImportBusy | MemoryNotFound | InvalidRequest):
            error["status"] = (409 if isinstance(exc, ImportBusy) else
                               404 if isinstance(exc, MemoryNotFound) else 422)
        elif isinstance(exc, BackendUnavailable):
            log.warning("backend unavailable: %s", exc.reason)
            error.update(detail=exc.reason, status=503, backend=exc.backend or None)
        elif isinstance(exc, StorageError | OSError | sqlite3.Error):
            log.warning("storage failed: %s", exc)
            error.update(detail=f"storage unavailable: {exc}", status=503, backend="storage")
        elif isinstance(exc, MemlabError):
            log.warning("request failed: %s", exc)
            error["status"] = 503
        else:
            log.exception("chat stream failed")
            error.update(detail=f"{type(exc).__name__}: {exc}", status=500)
        yield f"event: error\ndata: {json.dumps(error, ensure_ascii=False)}\n\n"


def _printable(value: Any, limit: int = 200) -> Any:
    """Strings valid UTF-8 and at most ``limit`` characters, non-finite numbers as
    strings, recursively."""
    if isinstance(value, str):
        text = value.encode("utf-8", "backslashreplace").decode("utf-8")
        return text if len(text) <= limit else text[:limit] + "..."
    if isinstance(value, list):
        return [_printable(v, limit) for v in value]
    if isinstance(value, dict):
        return {k: _printable(v, limit) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN / Infinity / 1e400 in the body: JSON has no such number
    return value
