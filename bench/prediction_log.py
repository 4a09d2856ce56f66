"""The prediction log's cost to the requests it records: the service with its log on against the
same service with it off, at the rate that keeps the worker about 75% busy, in the same run.

    make bench BENCHES=prediction_log        # after `make train`
    .venv/bin/python -m bench.prediction_log --size 100 --busy 0.75 --seconds 20 --repeats 3

The rate comes from the machine of the day, not from a figure: the service (log off) answers
`--calibrate` requests of `--size` flights one after another; at half the rate that time
allows, the CPU its processes use says what rate keeps them `--busy` busy. Then, `--repeats` times, each server alone and started fresh
(alternating which goes first, so a drift of the machine falls on both), an open-loop load of
the newest week's flights as requests (`bench.serving_latency`'s bodies, servers and CPU
pinning). "Busy" is measured, not assumed: the CPU time of the server's processes (its worker
and, log on, the log's writer) over the run's wall time, on the one CPU they are pinned to.
Target: the median p99 with the log on within 10% of the median p99 with it off, and no record
dropped (the service's own counters, `/metrics`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

import requests

from bench.common import RESULTS, print_table, tree_cpu_seconds, usecase_of, write_result
from bench.load import JSON_HEADERS, pin, run
from bench.serving_latency import (
    CLIENT_CPUS,
    bodies,
    request_items,
    start,
    wait_until_up,
)

LOG_ON, LOG_OFF = "bentoml", "bentoml-nolog"
P99_RATIO_TARGET = 1.10


def service_seconds(url: str, payloads: list[bytes], count: int) -> float:
    """The median time the service takes to answer one request when nothing else waits."""
    took = []
    with requests.Session() as session:
        for index in range(count):
            begun = time.perf_counter()
            answer = session.post(url, data=payloads[index % len(payloads)], headers=JSON_HEADERS)
            answer.raise_for_status()
            took.append(time.perf_counter() - begun)
    return statistics.median(took)


def loaded(
    process: Any, url: str, payloads: list[bytes], rate: float, seconds: float
) -> tuple[float, dict[str, Any]]:
    """An open-loop run (`bench.load.run`), and the share of one CPU the server's processes
    used meanwhile."""
    before, begun = tree_cpu_seconds(process.pid), time.perf_counter()
    figures = run(url, payloads, rate, seconds)
    return (tree_cpu_seconds(process.pid) - before) / (time.perf_counter() - begun), figures


def log_counters(url: str, metric_prefix: str) -> dict[str, float]:
    """The prediction log's own counters on the service's /metrics (written, dropped)."""
    text = requests.get(f"{url.rsplit('/', 1)[0]}/metrics", timeout=5).text
    counters = {}
    for kind in ("written", "dropped"):
        name = f"{metric_prefix}_prediction_log_{kind}_total"
        values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name)]
        counters[kind] = sum(values)
    return counters


def calibrate(process: Any, url: str, payloads: list[bytes], args: Any) -> float:
    """The rate that keeps the server's processes `args.busy` of a CPU busy: a first guess from
    the time one request takes alone, corrected by the CPU the server used at that guess."""
    took = service_seconds(url, payloads, args.calibrate)
    guess = 0.5 / took
    busy, _ = loaded(process, url, payloads, guess, 10)
    rate = guess * args.busy / busy
    print(
        f"one request of {args.size} takes {took * 1000:.1f} ms alone; at {guess:.1f}/s the "
        f"server was {busy:.0%} busy: {rate:.1f} requests/s for {args.busy:.0%}",
        file=sys.stderr,
    )
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=100, help="flights per request")
    parser.add_argument("--busy", type=float, default=0.75, help="share of the worker kept busy")
    parser.add_argument("--seconds", type=float, default=20, help="per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calibrate", type=int, default=60, help="requests timed one by one")
    args = parser.parse_args()

    from configs import load_settings
    from serving.__main__ import champion_model_tag

    settings = load_settings()
    usecase = usecase_of(settings)
    os.environ["BENTOML_HOME"] = settings.paths.bentoml_home
    tag = champion_model_tag(settings)
    items = request_items(settings, usecase)
    payloads = bodies(items, usecase.request.items_field, args.size)
    print(f"{len(items):,} different items, {len(payloads)} requests; model {tag}", file=sys.stderr)
    env = {
        **os.environ,
        settings.names.model_tag_variable: tag,
        "OMP_NUM_THREADS": "1",
        "BENTOML_DO_NOT_TRACK": "true",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    pin(CLIENT_CPUS)
    prefix = settings.names.metric_prefix

    rate = 0.0
    runs: dict[str, list[dict[str, Any]]] = {LOG_ON: [], LOG_OFF: []}
    for repeat in range(args.repeats):
        order = (LOG_OFF, LOG_ON) if repeat % 2 == 0 else (LOG_ON, LOG_OFF)
        for server in order:
            process, url = start(server, env, RESULTS / f"prediction_log_{server}.log")
            try:
                wait_until_up(url, payloads[0], process)
                if not rate:  # the first server up is the log-off one: the day's rate
                    rate = calibrate(process, url, payloads, args)
                run(url, payloads, rate, 3)  # warm-up, not counted
                busy, figures = loaded(process, url, payloads, rate, args.seconds)
                figures["busy"] = busy
                if server == LOG_ON:
                    time.sleep(1)  # the writer reports what it wrote
                    figures["log"] = log_counters(url, prefix)
                runs[server].append(figures)
                print(
                    f"  run {repeat + 1} {server}: {busy:.0%} busy, p50 {figures['p50_ms']:.1f} "
                    f"p99 {figures['p99_ms']:.1f} ms, {figures['answered_share']:.1%} answered"
                    + (f", log {figures['log']}" if "log" in figures else ""),
                    file=sys.stderr,
                )
            finally:
                process.terminate()
                process.wait(timeout=60)

    p99 = {server: statistics.median(r["p99_ms"] for r in runs[server]) for server in runs}
    p50 = {server: statistics.median(r["p50_ms"] for r in runs[server]) for server in runs}
    ratio = p99[LOG_ON] / p99[LOG_OFF]
    answered = min(r["answered_share"] for rs in runs.values() for r in rs)
    dropped = sum(r["log"]["dropped"] for r in runs[LOG_ON])
    met = ratio <= P99_RATIO_TARGET and dropped == 0
    record = {
        "size": args.size,
        "busy": args.busy,
        "rate_per_s": rate,
        "seconds": args.seconds,
        "repeats": args.repeats,
        "model": tag,
        "p50_ms": p50,
        "p99_ms": p99,
        "p99_ratio": ratio,
        "target_ratio": P99_RATIO_TARGET,
        "answered_share": answered,
        "dropped": dropped,
        "met": met,
        "runs": runs,
    }
    write_result("prediction_log", record)
    print_table(
        ["log", "busy", "p50 ms", "p99 ms", "answered"],
        [
            [
                server,
                statistics.median(r["busy"] for r in runs[server]),
                p50[server],
                p99[server],
                min(r["answered_share"] for r in runs[server]),
            ]
            for server in (LOG_ON, LOG_OFF)
        ],
    )
    print(json.dumps({"p99_ratio": ratio, "dropped": dropped, "met": met}))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
