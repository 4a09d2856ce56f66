"""What reaches the prediction APIs: JSON bodies of bounded size, nothing else.

BentoML parses a body by its Content-Type: it reads `text/plain` or a missing type as JSON,
answers 500 to `multipart/form-data` it cannot match to the schema, and reads the whole body
into memory whatever its size. This ASGI middleware stands in front of the API routes and
answers the client's mistake itself: 415 for a body that is not `application/json`, 413 for
one larger than the largest valid request. Other routes (health, metrics, docs) pass through.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON = "application/json"


async def _answer(send: Send, status: int, error: str) -> None:
    body = json.dumps({"error": error}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", JSON.encode()), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


class JsonBodiesOnly:
    """415 unless the body is JSON, 413 past `max_bytes`; for POSTs to `paths` only."""

    def __init__(self, app: ASGIApp, paths: frozenset[str], max_bytes: int) -> None:
        self.app = app
        self.paths = paths
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        headers = {key.lower(): value for key, value in scope["headers"]}
        media_type = headers.get(b"content-type", b"").decode("latin-1").split(";")[0]
        if media_type.strip().lower() != JSON:
            await _answer(
                send,
                415,
                f"Content-Type must be {JSON}; got {media_type.strip() or 'none'}",
            )
            return
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _answer(send, 413, f"the body is larger than {self.max_bytes:,} bytes")
            return
        # A body without a length (chunked) is counted as it arrives, then replayed.
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await _answer(send, 413, f"the body is larger than {self.max_bytes:,} bytes")
                return
            if not message.get("more_body", False):
                break
        pending = iter(messages)

        async def replay() -> Message:
            return next(pending, None) or await receive()

        await self.app(scope, replay, send)
