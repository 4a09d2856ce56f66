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
            worker,
            PATHS,
            max_queue_s=0.05,
            overload_queue_s=0.05,
            retry_after_s=2,
            on_refused=lambda: refusals.append(1),
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
        guard = ShedLoad(
            worker,
            PATHS,
            max_queue_s=0.0001,
            overload_queue_s=0.0001,
            retry_after_s=1,
            on_refused=list,
        )
        guard.service_s = 10.0  # even after very slow requests
        first = (await call(guard))[0]
        health = await asyncio.gather(*(call(guard, "/readyz") for _ in range(5)))
        return [first, *(status for status, _ in health)]

    assert asyncio.run(scenario()) == [200] * 6


class Held:
    """An ASGI app whose requests are answered when the test releases them, oldest first."""

    def __init__(self) -> None:
        self.held: list[asyncio.Event] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        done = asyncio.Event()
        self.held.append(done)
        await done.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def release(self, count: int) -> None:
        for _ in range(count):
            self.held.pop(0).set()
        await asyncio.sleep(0)  # let the released requests finish


def test_past_capacity_the_budget_shrinks_until_the_queue_empties() -> None:
    """A burst after idle may queue up to the burst budget; once the worker has been busy
    without a break for longer than that, only the overload budget, until it has been idle for
    a tenth of the burst budget (not merely once).
    On a clock of the test's own: each answer takes 10 ms of it."""
    now = [0.0]
    worker = Held()
    guard = ShedLoad(
        worker,
        PATHS,
        max_queue_s=0.1,
        overload_queue_s=0.02,
        retry_after_s=1,
        on_refused=list,
        clock=lambda: now[0],
    )
    guard.SMOOTHING = 0.0  # the time per request stays at 10 ms
    guard.service_s = 0.01

    async def scenario() -> list[int]:
        arrivals: list[asyncio.Task] = []

        async def arrive(count: int) -> list[asyncio.Task]:
            tasks = [asyncio.create_task(call(guard)) for _ in range(count)]
            await asyncio.sleep(0)
            arrivals.extend(tasks)
            return tasks

        async def answer(count: int) -> None:
            for _ in range(count):
                now[0] += 0.01
                await worker.release(1)

        def waiting(tasks: list[asyncio.Task]) -> int:
            # a refused request is answered at once; an admitted one waits for the worker
            return sum(not task.done() for task in tasks)

        admitted: list[int] = []
        burst = await arrive(15)  # idle worker: up to 100 ms of work (11 requests) is admitted
        admitted.append(waiting(burst))
        await answer(10)  # t = 100 ms, busy all along but not longer than the burst budget
        admitted.append(waiting(await arrive(15)))
        await answer(1)  # t = 110 ms: busy for longer than 100 ms, the overload budget
        admitted.append(waiting(await arrive(15)))
        await answer(9)  # t = 200 ms, 1 queued: what waits at most 20 ms is still admitted
        admitted.append(waiting(await arrive(15)))
        await answer(len(worker.held))  # the queue empties for a moment: still overloaded
        admitted.append(waiting(await arrive(15)))
        await answer(len(worker.held))
        now[0] += 0.009  # idle 9 ms of the last 100: not yet the 10% that ends the overload
        admitted.append(waiting(await arrive(15)))
        await answer(len(worker.held))
        now[0] += 0.01  # idle 19 ms of the last 100: the overload is over, the burst budget
        admitted.append(waiting(await arrive(15)))
        await answer(len(worker.held))
        await asyncio.gather(*arrivals)
        return admitted

    # 11 of the burst; at 100 ms 1 still queued, 10 more; at 110 ms 10 queued (100 ms of work)
    # against a 20 ms budget: none; at 200 ms 1 queued, 2 more wait at most 20 ms; the queue
    # emptied, 1 + 2 while the worker has been idle less than 10 ms of the last 100, then 11
    assert asyncio.run(scenario()) == [11, 10, 0, 2, 3, 3, 11]
