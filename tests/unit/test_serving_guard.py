"""Past capacity the service refuses at once (503, Retry-After, counted) instead of queueing."""

from __future__ import annotations

import asyncio
from typing import Any

from serving.guard import ShedLoad

PATHS = frozenset({"/predict"})


class Worker:
    """An ASGI app that answers one request at a time, each taking `seconds` of work."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.lock = asyncio.Lock()
        self.answered = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async with self.lock:
            await asyncio.sleep(self.seconds)
        self.answered += 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


async def call(app: Any, path: str = "/predict") -> tuple[int, dict[bytes, bytes]]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app({"type": "http", "path": path, "headers": []}, receive, send)
    return sent[0]["status"], dict(sent[0]["headers"])


def test_requests_past_the_queue_budget_are_refused_at_once_and_counted() -> None:
    async def scenario() -> tuple[list[tuple[int, dict]], int, int]:
        refusals: list[int] = []
        worker = Worker(seconds=0.02)
        guard = ShedLoad(
            worker, PATHS, max_queue_s=0.05, retry_after_s=2, on_refused=lambda: refusals.append(1)
        )
        # learn the worker's time per request from a few answered one at a time
        for _ in range(20):
            assert (await call(guard))[0] == 200
        answers = await asyncio.gather(*(call(guard) for _ in range(10)))
        return answers, len(refusals), worker.answered - 20

    answers, counted, answered = asyncio.run(scenario())
    statuses = [status for status, _ in answers]
    # 20 ms each against a 50 ms budget: the first few are admitted, the rest refused
    assert 2 <= statuses.count(200) <= 4, statuses
    assert statuses.count(503) == counted == 10 - answered
    assert all(headers[b"retry-after"] == b"2" for status, headers in answers if status == 503)


def test_an_idle_worker_takes_any_request_and_other_paths_pass() -> None:
    async def scenario() -> list[int]:
        worker = Worker(seconds=0.0)
        guard = ShedLoad(worker, PATHS, max_queue_s=0.0001, retry_after_s=1, on_refused=list)
        guard.service_s = 10.0  # even after very slow requests
        first = (await call(guard))[0]
        health = await asyncio.gather(*(call(guard, "/readyz") for _ in range(5)))
        return [first, *(status for status, _ in health)]

    assert asyncio.run(scenario()) == [200] * 6
