"""What reaches the prediction APIs: JSON bodies of bounded size, and no more than the worker
can answer in time (`ShedLoad`).

BentoML parses a body by its Content-Type: it reads `text/plain` or a missing type as JSON,
answers 500 to `multipart/form-data` it cannot match to the schema, and reads the whole body
into memory whatever its size. This ASGI middleware stands in front of the API routes and
answers the client's mistake itself: 415 for a body that is not `application/json`, 413 for
one larger than the largest valid request. Other routes (health, metrics, docs) pass through.
"""

from __future__ import annotations

import hmac
import json
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON = "application/json"
# The API keys a service opened to the internet accepts (comma-separated, so that a new key can
# be added before the old one is removed); set from Secrets Manager by the serving stack when
# `aws.serving.public` is on. Unset: no key is asked for (local, or behind an internal load
# balancer). The smoke request sends the first one.
API_KEYS_VARIABLE = "MLOPS_API_KEYS"  # pragma: allowlist secret


async def _answer(
    send: Send, status: int, error: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"error": error}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", JSON.encode()),
                (b"content-length", b"%d" % len(body)),
                *(headers or []),
            ],
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


class ShedLoad:
    """Refuse at once what the worker cannot answer in time, instead of queueing it.

    One worker answers its requests one after the other, so a new request waits for the work
    admitted before it. That wait is estimated as (requests admitted and not yet answered) x
    (the worker's recent time per request); past the budget the request is answered 503 with
    `Retry-After` in microseconds, never read or parsed, and counted by `on_refused`. A request
    that finds the worker idle is always admitted, however large.

    The budget is a controlled delay, as in CoDel and the server queues of "Fail at Scale"
    (Maurer, ACM Queue 2015): a request may wait up to `max_queue_s`, so a burst below capacity
    is absorbed rather than refused; once the worker has been busy without a break for longer
    than that, the load is past what it can take, and a request may wait only
    `overload_queue_s`: what is admitted is answered quickly, the rest refused quickly. The
    overload ends when the worker has been idle for `RECOVERY_SHARE` of the last `max_queue_s`,
    not at the first moment its queue empties: just past capacity the queue empties every few
    milliseconds, and granting the burst budget again at each would let the queue grow back.

    The time per request is measured, not configured: each completion's share of busy time
    (from when it arrived or the previous one finished, whichever is later), smoothed over
    about the last ten requests, so it follows the traffic's mix of request sizes.
    """

    SMOOTHING = 0.2
    INITIAL_SERVICE_S = 0.005
    RECOVERY_SHARE = 0.1

    def __init__(
        self,
        app: ASGIApp,
        paths: frozenset[str],
        max_queue_s: float,
        overload_queue_s: float,
        retry_after_s: int,
        on_refused: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < overload_queue_s <= max_queue_s:
            raise ValueError(
                f"overload_queue_s ({overload_queue_s}) must be in (0, max_queue_s ({max_queue_s})]"
            )
        self.app = app
        self.paths = paths
        self.max_queue_s = max_queue_s
        self.overload_queue_s = overload_queue_s
        self.retry_after = str(retry_after_s).encode()
        self.on_refused = on_refused
        self.clock = clock
        self.admitted = 0
        self.service_s = self.INITIAL_SERVICE_S
        self.last_finished = clock()
        self.idle_at = self.last_finished  # the last arrival that found nothing admitted
        self.overloaded = False
        # The worker's idle stretches (from, to) of the last `max_queue_s`, oldest first.
        self.idle: deque[tuple[float, float]] = deque()

    def queued_s(self) -> float:
        """The work admitted and not yet answered, in seconds (an estimate)."""
        return self.admitted * self.service_s

    def idle_s(self, now: float) -> float:
        """How long the worker was idle within the last `max_queue_s`."""
        horizon = now - self.max_queue_s
        while self.idle and self.idle[0][1] <= horizon:
            self.idle.popleft()
        return sum(end - max(start, horizon) for start, end in self.idle)

    def admits(self, now: float) -> bool:
        if not self.admitted:  # idle since the last answer: admitted, however large
            self.idle.append((self.last_finished, now))
            self.idle_at = now
            if self.overloaded and self.idle_s(now) >= self.RECOVERY_SHARE * self.max_queue_s:
                self.overloaded = False
            return True
        if now - self.idle_at > self.max_queue_s:
            self.overloaded = True
        budget = self.overload_queue_s if self.overloaded else self.max_queue_s
        return self.queued_s() <= budget

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        arrived = self.clock()
        if not self.admits(arrived):
            self.on_refused()
            await _answer(
                send,
                503,
                "the service is at capacity; retry later",
                [(b"retry-after", self.retry_after)],
            )
            return
        self.admitted += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.admitted -= 1
            finished = self.clock()
            took = finished - max(arrived, self.last_finished)
            self.last_finished = finished
            self.service_s += self.SMOOTHING * (took - self.service_s)


def api_keys(environ: Mapping[str, str] | None = None) -> list[str]:
    """The accepted API keys, from API_KEYS_VARIABLE (none: no key is asked for)."""
    value = (os.environ if environ is None else environ).get(API_KEYS_VARIABLE, "")
    return [key.strip() for key in value.split(",") if key.strip()]


class ApiKeys:
    """401 for a request to `paths` without one of `keys` as `Authorization: Bearer <key>`.

    Checked before anything reads the body, in constant time; the answer never says whether a
    key was close. With no keys, every request passes (the variable is unset locally)."""

    def __init__(self, app: ASGIApp, paths: frozenset[str], keys: list[str]) -> None:
        self.app = app
        self.paths = paths
        self.keys = [key.encode() for key in keys]

    def accepts(self, authorization: bytes) -> bool:
        scheme, _, presented = authorization.partition(b" ")
        if scheme.lower() != b"bearer" or not presented.strip():
            return False
        # every key compared, so the time taken does not say which one nearly matched
        matched = [hmac.compare_digest(presented.strip(), key) for key in self.keys]
        return any(matched)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.keys or scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        headers = {key.lower(): value for key, value in scope["headers"]}
        if not self.accepts(headers.get(b"authorization", b"")):
            await _answer(
                send,
                401,
                "an API key is required: Authorization: Bearer <key>",
                [(b"www-authenticate", b'Bearer realm="predict"')],
            )
            return
        await self.app(scope, receive, send)
