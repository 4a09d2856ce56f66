"""An open-loop HTTP load: request i is due at start + i/rate, whatever happened to earlier ones.

A slow server therefore shows up as latency, refusals and errors, never as a lower rate (the
closed-loop mistake of waiting for an answer before sending the next). Latency is counted
from the moment a request was due, not from when the client got round to sending it, so a
client that falls behind cannot hide the server's queue either; the client's own lag is
reported beside it.

Bodies are prepared once (bytes) and sent round-robin: many different entities, so no cache
on the server sees the same request twice in a row.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

JSON_HEADERS = {"content-type": "application/json"}
REFUSED = frozenset({429, 503})  # "not now": the service's fast refusal past capacity


@dataclass
class Outcomes:
    """What happened to every request of one run."""

    sent: int
    answered_ms: list[float] = field(default_factory=list)  # 200s
    refused_ms: list[float] = field(default_factory=list)  # 429 or 503
    errors: dict[str, int] = field(default_factory=dict)  # anything else, by kind
    client_lag_ms: float = 0.0  # the latest the client was in sending a request

    def figures(self) -> dict[str, Any]:
        answered = np.asarray(self.answered_ms)
        refused = np.asarray(self.refused_ms)
        everything = np.concatenate([answered, refused]) if len(refused) else answered

        def pct(values: np.ndarray, q: float) -> float:
            return float(np.percentile(values, q)) if len(values) else float("nan")

        return {
            "requests": self.sent,
            "answered": len(answered),
            "refused": len(refused),
            "errors": sum(self.errors.values()),
            "error_kinds": dict(self.errors),
            "answered_share": len(answered) / self.sent if self.sent else float("nan"),
            "p50_ms": pct(answered, 50),
            "p99_ms": pct(answered, 99),
            "p999_ms": pct(answered, 99.9),
            "max_ms": float(answered.max()) if len(answered) else float("nan"),
            "refused_p99_ms": pct(refused, 99),
            # every answer, a refusal included: past capacity, how fast a client hears
            "all_p99_ms": pct(everything, 99),
            "slowest_ms": float(everything.max()) if len(everything) else float("nan"),
            "client_lag_ms": self.client_lag_ms,
        }


async def _run(
    url: str, bodies: Sequence[bytes], rate: float, seconds: float, timeout: float
) -> Outcomes:
    total = max(1, int(rate * seconds))
    outcomes = Outcomes(sent=total)
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:

        async def one(index: int, due: float) -> None:
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                outcomes.client_lag_ms = max(outcomes.client_lag_ms, -delay * 1000)
            body = bodies[index % len(bodies)]
            try:
                async with session.post(url, data=body, headers=JSON_HEADERS) as response:
                    await response.read()
                    status = response.status
            except TimeoutError:
                status = -1
            except aiohttp.ClientError as err:
                outcomes.errors[type(err).__name__] = outcomes.errors.get(type(err).__name__, 0) + 1
                return
            took = (time.perf_counter() - due) * 1000
            if status == 200:
                outcomes.answered_ms.append(took)
            elif status in REFUSED:
                outcomes.refused_ms.append(took)
            else:
                kind = "timeout" if status == -1 else f"http {status}"
                outcomes.errors[kind] = outcomes.errors.get(kind, 0) + 1

        start = time.perf_counter() + 0.2
        await asyncio.gather(*(one(i, start + i / rate) for i in range(total)))
    return outcomes


def run(
    url: str, bodies: Sequence[bytes], rate: float, seconds: float, timeout: float = 5.0
) -> dict[str, Any]:
    """Send `rate` requests per second for `seconds` (bodies round-robin); the figures."""
    return asyncio.run(_run(url, bodies, rate, seconds, timeout)).figures()


# The CPUs this process could run on when it started: a process pinned to the client's CPU
# still starts its servers on theirs (pinning against its own, narrowed, set would leave them
# sharing the client's CPU).
MACHINE_CPUS = frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def pin(cpus: set[int]) -> None:
    """Run this process (and what it starts afterwards) on `cpus` only, where the OS allows."""
    if hasattr(os, "sched_setaffinity") and MACHINE_CPUS is not None:
        available = MACHINE_CPUS
        chosen = cpus & available
        if chosen and len(available) > 1:
            os.sched_setaffinity(0, chosen)
