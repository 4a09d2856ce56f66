"""Each release's figures, what the canary alarms on AWS read: every serving worker counts the
requests to its API and their 5xx answers, keeps their latencies and the scores it answered,
and writes them as CloudWatch embedded metrics (one JSON line on its standard output, which the
task's log driver sends to CloudWatch Logs, where the figures become metrics) with the use case
and its release (the image tag: `configs.cloudwatch.RELEASE_VARIABLE`) as dimensions.

A line is written once `interval_s` has passed or a figure holds 100 values (the format's
limit per line), on the request that completes it: no thread, nothing on the request path but
appending to lists. Switched on by `serving.canary.publish_figures` (the aws profile).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from configs import cloudwatch

# Embedded metric format: at most 100 values per metric in one line.
MAX_VALUES = 100


class ReleaseFigures:
    def __init__(
        self,
        namespace: str,
        usecase: str,
        release: str,
        interval_s: float,
        write: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.namespace, self.usecase, self.release = namespace, usecase, release
        self.interval_s = interval_s
        self.write = write or (lambda line: print(line, file=sys.stdout, flush=True))
        self.clock, self.now_ms = clock, now_ms
        self._reset(self.clock())

    def _reset(self, started: float) -> None:
        self.started = started
        self.requests = 0
        self.errors = 0
        self.latencies: list[float] = []
        self.scores: list[float] = []

    def scored(self, scores: Iterable[float]) -> None:
        """The scores of one request's answers (`serving.canary.score_of` of each)."""
        self.scores.extend(round(float(s), 4) for s in scores)

    def answered(self, status: int, latency_ms: float) -> None:
        """One request answered with `status` after `latency_ms`; writes a line when due."""
        self.requests += 1
        self.errors += status >= 500
        self.latencies.append(round(latency_ms, 2))
        now = self.clock()
        if (
            now - self.started >= self.interval_s
            or len(self.latencies) >= MAX_VALUES
            or len(self.scores) >= MAX_VALUES
        ):
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        if self.requests:
            self.write(json.dumps(self.line()))
        self._reset(self.clock() if now is None else now)

    def line(self) -> dict[str, Any]:
        """The embedded-metric-format record of the figures so far."""
        metrics = [
            {"Name": cloudwatch.RELEASE_REQUESTS, "Unit": "Count"},
            {"Name": cloudwatch.RELEASE_ERRORS, "Unit": "Count"},
            {"Name": cloudwatch.RELEASE_LATENCY, "Unit": "Milliseconds"},
        ]
        record: dict[str, Any] = {
            cloudwatch.USECASE_DIMENSION: self.usecase,
            cloudwatch.RELEASE_DIMENSION: self.release,
            cloudwatch.RELEASE_REQUESTS: self.requests,
            cloudwatch.RELEASE_ERRORS: self.errors,
            cloudwatch.RELEASE_LATENCY: self.latencies[:MAX_VALUES],
        }
        if self.scores:
            metrics.append({"Name": cloudwatch.RELEASE_SCORE, "Unit": "None"})
            record[cloudwatch.RELEASE_SCORE] = self.scores[:MAX_VALUES]
        record["_aws"] = {
            "Timestamp": self.now_ms(),
            "CloudWatchMetrics": [
                {
                    "Namespace": self.namespace,
                    "Dimensions": [[cloudwatch.USECASE_DIMENSION, cloudwatch.RELEASE_DIMENSION]],
                    "Metrics": metrics,
                }
            ],
        }
        return record


class CountFigures:
    """ASGI middleware: each request to `paths` answered (its status and time) into
    `figures()` (late-bound: the worker makes its figures when it starts)."""

    def __init__(
        self, app: Any, paths: frozenset[str], figures: Callable[[], ReleaseFigures | None]
    ) -> None:
        self.app, self.paths, self.figures = app, paths, figures

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        figures = self.figures() if scope["type"] == "http" else None
        if figures is None or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception before the answer started is a 500 to the client

        async def sending(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            figures.answered(status, (time.perf_counter() - started) * 1000)
