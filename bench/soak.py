"""Soak: the BentoML service at a constant rate for a long time, counting every error and
watching its memory.

    .venv/bin/python -m bench.soak --rate 50 --minutes 5     # after `make train`

One server (`python -m serving`, as `make serve` runs it), one item per request drawn from
the configured use case's newest week of examples (`bench.serving_latency`), an open-loop client (bench/load.py), the server and the
client on CPUs of their own (see bench.serving_latency). The resident memory of the server's process tree
is sampled every second; "bounded" means the last minute's peak is within 10% of the peak of
the first minute after warm-up (no steady growth).
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from typing import Any

import psutil

from bench.common import GIB, RESULTS, bar_chart, print_table, usecase_of, write_result
from bench.load import pin, run
from bench.serving_latency import CLIENT_CPUS, bodies, request_items, start, wait_until_up

GROWTH_ALLOWED = 1.10


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--minutes", type=float, default=5)
    args = parser.parse_args()

    from configs import load_settings
    from serving.__main__ import champion_model_tag

    settings = load_settings()
    usecase = usecase_of(settings)
    os.environ["BENTOML_HOME"] = settings.paths.bentoml_home
    tag = champion_model_tag(settings)
    payloads = bodies(request_items(settings, usecase), usecase.request.items_field, 1)
    env = {**os.environ, settings.names.model_tag_variable: tag, "OMP_NUM_THREADS": "1"}
    pin(CLIENT_CPUS)
    process, url = start("bentoml", env, RESULTS / "soak_server.log")
    samples: list[tuple[float, float]] = []
    done = threading.Event()
    try:
        wait_until_up(url, payloads[0], process)
        run(url, payloads, args.rate, 10)  # warm-up, not counted
        watched = psutil.Process(process.pid)
        started = time.monotonic()

        def sample() -> None:
            while not done.is_set():
                members = [watched, *watched.children(recursive=True)]
                rss = 0
                for member in members:
                    try:
                        rss += member.memory_info().rss
                    except psutil.NoSuchProcess:
                        continue
                samples.append((time.monotonic() - started, rss / GIB))
                done.wait(1.0)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        figures = run(url, payloads, args.rate, args.minutes * 60)
        done.set()
        sampler.join()
    finally:
        done.set()
        process.terminate()
        process.wait(timeout=30)
    first = [gib for at, gib in samples if at <= 60]
    last = [gib for at, gib in samples if at >= samples[-1][0] - 60]
    growth = max(last) / max(first)
    record: dict[str, Any] = {
        "rate_per_s": args.rate,
        "minutes": args.minutes,
        "model": tag,
        "latency": figures,
        "memory_gib": {
            "first_minute_peak": max(first),
            "last_minute_peak": max(last),
            "growth": growth,
            "bounded": growth <= GROWTH_ALLOWED,
            "samples": [[round(at, 1), round(gib, 4)] for at, gib in samples],
        },
    }
    write_result("soak", record)
    minutes = sorted({int(at // 60) for at, _ in samples})
    bar_chart(
        "soak",
        f"Soak at {args.rate:g} req/s: server memory by minute",
        "peak resident memory (GiB)",
        [f"min {m + 1}" for m in minutes],
        {"server": [max(g for at, g in samples if int(at // 60) == m) for m in minutes]},
    )
    print_table(
        ["requests", "errors", "p50 ms", "p99 ms", "memory 1st min GiB", "last min GiB"],
        [
            [
                int(figures["requests"]),
                int(figures["errors"]) + int(figures["refused"]),
                figures["p50_ms"],
                figures["p99_ms"],
                max(first),
                max(last),
            ]
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
