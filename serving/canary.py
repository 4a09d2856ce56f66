"""The canary decision: does a new release, serving a share of the traffic beside the stable
one, keep its promises? Rolled back when it answers more errors, answers slower, or scores
differently; promoted when it has answered enough requests and broke no rule.

On AWS the rules are CloudWatch alarms over the figures each release publishes (`Figures`,
as embedded metrics: `serving.figures`), wired to the ECS deployment's automatic rollback
(infra/stacks/serving.py). Here they run as `judge` over two running services behind
`Router`, a weighted reverse proxy standing in for the load balancer's weighted target groups
(tests/e2e/test_canary.py: one fault each, injected into the canary). The thresholds are one
config, `serving.canary` (`configs.settings.CanaryConfig`), read by both.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from configs.settings import CanaryConfig

STABLE, CANARY = "stable", "canary"
ROLLBACK, PROMOTE, WAIT = "rollback", "promote", "wait"
# The score deciles compared (the alarms compare the same percentiles).
SCORE_QUANTILES = (0.1, 0.5, 0.9)


def score_of(value: Any) -> float | None:
    """One item's score as the release compares it: a probability or an amount as it is; a
    multiclass answer's likeliest class's probability; None when there is none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, Mapping) and value:
        return float(max(value.values()))
    return None


@dataclass
class Figures:
    """What one release answered: requests, 5xx answers, latencies (ms) and scores."""

    requests: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    def add(self, status: int, latency_ms: float, scores: list[float]) -> None:
        self.requests += 1
        self.errors += status >= 500
        self.latencies_ms.append(latency_ms)
        self.scores.extend(scores)

    @property
    def error_share(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def p99_ms(self) -> float:
        return float(np.percentile(self.latencies_ms, 99)) if self.latencies_ms else 0.0

    def score_quantiles(self) -> tuple[float, ...]:
        if not self.scores:
            return ()
        return tuple(float(q) for q in np.quantile(self.scores, SCORE_QUANTILES))


@dataclass(frozen=True)
class Verdict:
    action: str  # rollback | promote | wait
    reasons: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.action}: " + "; ".join(self.reasons)


def judge(stable: Figures, canary: Figures, rules: CanaryConfig) -> Verdict:
    """Whether the canary is rolled back (naming every rule it broke), promoted, or left to
    answer more requests first."""
    if canary.requests < rules.min_requests or stable.requests < rules.min_requests:
        return Verdict(
            WAIT,
            (
                f"{canary.requests} canary and {stable.requests} stable requests so far: "
                f"judged after {rules.min_requests} each",
            ),
        )
    broken = []
    errors = canary.error_share - stable.error_share
    if errors > rules.max_error_share:
        broken.append(
            f"errors: {canary.error_share:.1%} of the canary's answers were 5xx against "
            f"{stable.error_share:.1%} of the stable release's (at most "
            f"{rules.max_error_share:.1%} more)"
        )
    bound = stable.p99_ms * rules.max_p99_ratio + rules.p99_slack_ms
    if canary.p99_ms > bound:
        broken.append(
            f"latency: the canary's p99 {canary.p99_ms:.0f} ms is above {bound:.0f} ms "
            f"({rules.max_p99_ratio}x the stable release's {stable.p99_ms:.0f} ms + "
            f"{rules.p99_slack_ms:.0f} ms)"
        )
    shift = score_shift(stable, canary)
    if shift is not None and shift > rules.max_score_shift:
        broken.append(
            f"scores: a decile of the canary's scores moved {shift:.2f} of the stable "
            f"release's 10-90 spread (at most {rules.max_score_shift})"
        )
    if broken:
        return Verdict(ROLLBACK, tuple(broken))
    return Verdict(
        PROMOTE,
        (
            f"over {canary.requests} requests the canary answered {canary.error_share:.1%} "
            f"5xx, p99 {canary.p99_ms:.0f} ms (stable {stable.p99_ms:.0f} ms), scores within "
            f"{shift if shift is not None else 0:.2f} of the spread",
        ),
    )


def score_shift(stable: Figures, canary: Figures) -> float | None:
    """The largest difference between the two releases' score deciles, in units of the stable
    release's 10-90 spread (None when either answered no score)."""
    before, after = stable.score_quantiles(), canary.score_quantiles()
    if not before or not after:
        return None
    spread = max(before[-1] - before[0], 1e-9)
    return max(abs(a - b) for a, b in zip(after, before, strict=True)) / spread


# -- the weighted router (the load balancer's stand-in) ---------------------------------------
class Router:
    """A reverse proxy sending `canary_percent` of the requests to the canary and the rest to
    the stable release (a seeded draw per request, as weighted target groups do), recording
    each side's `Figures` as the client sees them: status, latency through the proxy, and the
    scores in `score_field` of each answered prediction."""

    def __init__(
        self,
        stable_url: str,
        canary_url: str,
        canary_percent: float,
        score_field: str,
        seed: int = 0,
    ) -> None:
        self.upstreams = {STABLE: stable_url.rstrip("/"), CANARY: canary_url.rstrip("/")}
        self.canary_share = canary_percent / 100
        self.score_field = score_field
        self.draw = random.Random(seed)
        self.figures = {STABLE: Figures(), CANARY: Figures()}
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.figures = {STABLE: Figures(), CANARY: Figures()}

    def app(self) -> Any:
        """The ASGI app: every path and method proxied to the side drawn for the request."""
        import httpx
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import Response
        from starlette.routing import Route

        client = httpx.AsyncClient(timeout=30)

        async def proxy(request: Request) -> Response:
            with self._lock:
                side = CANARY if self.draw.random() < self.canary_share else STABLE
            body = await request.body()
            started = time.perf_counter()
            try:
                answer = await client.request(
                    request.method,
                    f"{self.upstreams[side]}{request.url.path}",
                    content=body,
                    headers={"content-type": request.headers.get("content-type", "")},
                )
                status, content = answer.status_code, answer.content
                kind = answer.headers.get("content-type", "application/json")
            except httpx.HTTPError as err:
                status, content, kind = 502, str(err).encode(), "text/plain"
            latency_ms = (time.perf_counter() - started) * 1000
            with self._lock:
                self.figures[side].add(status, latency_ms, self._scores(status, content))
            return Response(content, status_code=status, media_type=kind)

        @contextlib.asynccontextmanager
        async def lifespan(_: Any) -> Any:
            yield
            await client.aclose()

        return Starlette(
            routes=[Route("/{path:path}", proxy, methods=["GET", "POST"])], lifespan=lifespan
        )

    def _scores(self, status: int, content: bytes) -> list[float]:
        if status != 200:
            return []
        try:
            answer = json.loads(content)
        except ValueError:
            return []
        predictions = answer.get("predictions", []) if isinstance(answer, dict) else answer
        found = (score_of(p.get(self.score_field)) for p in predictions if isinstance(p, dict))
        return [s for s in found if s is not None]

    @contextlib.contextmanager
    def serving(self, port: int) -> Iterator[str]:
        """The router listening on 127.0.0.1:`port` in a thread, while the block runs."""
        import uvicorn

        server = uvicorn.Server(
            uvicorn.Config(self.app(), host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, name="canary-router", daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"the canary router did not start on port {port}")
            time.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(timeout=10)


__all__ = [
    "CANARY",
    "PROMOTE",
    "ROLLBACK",
    "STABLE",
    "WAIT",
    "Figures",
    "Router",
    "Verdict",
    "judge",
    "score_of",
    "score_shift",
]
