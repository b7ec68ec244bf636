"""Request body limits for the whole web port: one ASGI middleware, so no handler can forget one.

A body larger than its path's limit is answered ``413`` before the application reads it when
Content-Length says so, and otherwise (chunked, or a lying client) as soon as the bytes received pass
the limit; the connection is then closed, so the rest of the body is never read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger(__name__)


class BodyTooLarge(Exception):
    """Raised inside the application's ``receive`` when the body passes its limit (turned into a 413
    by `BodyLimit`; handlers never see it unless they catch everything, which they must not)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes")
        self.limit = limit


class BodyLimit:
    """Refuse request bodies over `default` bytes (or over ``limits[path]`` for the paths named)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        default: int,
        limits: Mapping[str, int] | None = None,
        on_refused: Callable[[], None] | None = None,
    ) -> None:
        if default < 1 or any(v < 1 for v in (limits or {}).values()):
            raise ValueError(f"body limits must be at least 1 byte (got {default}, {dict(limits or {})})")
        self.app = app
        self.default = default
        self.limits = dict(limits or {})
        self._on_refused = on_refused

    def limit_for(self, path: str) -> int:
        return self.limits.get(path, self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await self._refuse(send, limit)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if started:  # an answer is already on its way: the server closes the unfinished response
                raise
            await self._refuse(send, limit)

    async def _refuse(self, send: Send, limit: int) -> None:
        if self._on_refused is not None:
            self._on_refused()
        log.debug("request_body_too_large", limit_bytes=limit)
        body = json.dumps({"error": f"request body too large (limit {limit} bytes)"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),  # the unread rest of the body is never read
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None
