"""Request-size and body-time limits as plain ASGI middleware.

A declared ``Content-Length`` over ``max_bytes`` is refused (413) before anything is
read; a body sent without one (chunked) is read up to the limit and refused as soon as it
passes it. A body whose next part does not arrive within ``body_timeout`` seconds (say,
shorter than its ``Content-Length``: uvicorn would wait for the rest forever) gets a 408.
A body within the limits is buffered and handed to the app unchanged. An import
(``POST .../import``: a whole exported history) has its own, larger limit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
IMPORT_SUFFIX = "/import"  # POST /users/{user_id}/import


class BodySizeLimit:
    """Reject HTTP request bodies larger than ``max_bytes`` with 413."""

    def __init__(self, app: ASGIApp, max_bytes: int = 65536, body_timeout: float = 30.0,
                 import_bytes: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout = body_timeout
        self.import_bytes = max_bytes if import_bytes is None else import_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = (self.import_bytes if scope.get("method") == "POST"
                 and scope.get("path", "").endswith(IMPORT_SUFFIX) else self.max_bytes)
        declared = _content_length(scope)
        if declared == -1:
            await _reply(send, 400, "invalid Content-Length header")
            return
        if declared is not None and declared > limit:
            await _reply(send, 413, _too_large(declared, limit))
            return
        body = bytearray()
        while True:
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout)
            except TimeoutError:
                await _reply(send, 408, f"request body not received within "
                                        f"{self.body_timeout:g} s")
                return
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > limit:
                await _reply(send, 413, _too_large(len(body), limit))
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(bytes(body), receive), send)


def _too_large(size: int, limit: int) -> str:
    return f"request body of {size} bytes is over the limit of {limit} bytes"


def _content_length(scope: Scope) -> int | None:
    """The declared length, None if absent, -1 if malformed."""
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else -1
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _reply(send: Send, status: int, detail: str) -> None:
    payload = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": payload})
