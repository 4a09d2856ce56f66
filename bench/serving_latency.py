"""Serving latency under an open-loop load of many different real requests: the platform's
BentoML service beside a plain FastAPI app doing the same work, on the SQLite (`local`) and
Redis online stores.

    make bench BENCHES=serving_latency        # after `make train`; Redis on 127.0.0.1:6379
    .venv/bin/python -m bench.serving_latency --rates 50,100,200,400 --sizes 1,100 \\
        --seconds 15 --repeats 3 --stores sqlite,redis --servers bentoml,fastapi

Requests: the configured use case's newest week of examples in silver, each as the item a
client would have sent for it (`Request.from_silver`: thousands of different ones); request i
carries the next `size` of them, round-robin, so no cache sees one body twice in a row.

Servers, each alone and started fresh per repeat, pinned to CPU 0 while the client runs on
CPU 1 (on a machine with one CPU both share it):
- `bentoml`: `POST /predict` of the platform's service (`python -m serving`);
- `fastapi`: `bench/fastapi_baseline.py`: the same model-input assembly, model and schema in
  plain FastAPI + uvicorn, none of the serving framework around it;
- `bentoml-batching` (on request): `POST /predict_batch` of the same service, adaptive batching.
Stores: `sqlite` is the trained workspace's online store; `redis` holds the same features,
materialized by this benchmark into its own Redis database (`--redis-db`, emptied first), and
the servers read it through a config override.

Per point (store, server, items per request, rate): the median over repeats of p50, p99,
p99.9 and max of the answered requests (counted from when each request was due), the
refusals (429/503, past capacity) and their p99, and anything else as errors.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

from bench.common import (
    RESULTS,
    ROOT,
    WORK,
    newest,
    print_table,
    save_figure,
    silver_examples,
    tree_cpu_seconds,
    usecase_of,
    write_result,
)
from bench.load import pin, run

SERVER_CPUS, CLIENT_CPUS = {0}, {1}
PORTS = {
    "bentoml": 3100,
    "bentoml-batching": 3100,
    "bentoml-nolog": 3100,
    "bentoml-explain": 3100,
    "bentoml-baseline": 3100,
    "fastapi": 3101,
}
# Where each server takes the request (bentoml-batching: the same service's adaptive batching;
# bentoml-nolog: the same service with its prediction log switched off; bentoml-explain: every
# request asks for its explanations).
ROUTES = {
    "bentoml": "/predict",
    "bentoml-batching": "/predict_batch",
    "bentoml-nolog": "/predict",
    "bentoml-explain": "/predict",
    # The same service from another checkout (`--baseline-tree`): a change's cost, same run.
    "bentoml-baseline": "/predict",
    "fastapi": "/predict",
}
# What a server's requests carry besides the items.
EXTRA_FIELDS: dict[str, dict[str, Any]] = {"bentoml-explain": {"explain": True}}
P99_BOUNDS_MS = (10.0, 50.0)
# Capacity against the baseline (the same run): the highest rate at which every request was
# answered and p99 stayed within this many times the baseline's p99 at that rate.
BASELINE = "fastapi"
WITHIN_BASELINE_P99 = 2.0


def request_items(settings: Any, usecase: Any, days: int = 7) -> list[dict[str, Any]]:
    """The newest `days` of the use case's examples in silver, in time order, as the request
    items a client would have sent for them (`Request.from_silver`)."""
    from usecases.contract import EVENT_TIMESTAMP

    if usecase.request.from_silver is None:
        raise SystemExit(
            f"use case {settings.usecase!r} declares no Request.from_silver: the serving "
            "benchmarks send its silver rows as requests"
        )
    silver = silver_examples(settings, usecase).reset_index(drop=True)
    moments = usecase.examples.entity_frame(silver)[[EVENT_TIMESTAMP]]
    recent = newest(moments, EVENT_TIMESTAMP, days).sort_values(EVENT_TIMESTAMP, kind="stable")
    return list(usecase.request.from_silver(silver.loc[recent.index]))


def bodies(
    items: Sequence[dict[str, Any]], field: str, size: int, extra: dict[str, Any] | None = None
) -> list[bytes]:
    """Request bodies of `size` items each, walking through `items` (wrapping around), with
    the `extra` fields."""
    count = max(1, len(items) // size) if size < len(items) else 1
    return [
        json.dumps(
            {field: [items[(i * size + k) % len(items)] for k in range(size)], **(extra or {})}
        ).encode()
        for i in range(count)
    ]


def redis_overrides(db: int) -> dict[str, Any]:
    registry = WORK / "serving-redis" / "registry.db"
    return {
        "features": {
            "registry": {"path": str(registry)},
            "online_store": {
                "type": "redis",
                "connection_string": f"127.0.0.1:6379,db={db}",
            },
        }
    }


def prepare_redis(settings: Any, db: int) -> dict[str, Any]:
    """The trained features, materialized into Redis database `db` (emptied first), with a
    copy of the registry: the workspace itself is left as it was. Returns the overrides."""
    import redis

    from features.store import feature_store

    overrides = redis_overrides(db)
    try:
        redis.Redis(host="127.0.0.1", port=6379, db=db, socket_connect_timeout=2).ping()
    except redis.RedisError as err:
        raise SystemExit(
            f"Redis is not answering on 127.0.0.1:6379 ({err}): start it, or run with "
            "--stores sqlite"
        ) from None
    registry = Path(overrides["features"]["registry"]["path"])
    registry.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(settings.features.registry["path"], registry)
    redis.Redis(host="127.0.0.1", port=6379, db=db).flushdb()
    local_store = feature_store(settings)
    store = feature_store(settings.with_overrides(overrides))
    for view in local_store.list_feature_views():
        intervals = view.materialization_intervals
        if intervals:
            start = min(s for s, _ in intervals)
            end = max(e for _, e in intervals)
            store.materialize(start_date=start, end_date=end, feature_views=[view.name])
    return overrides


def workspace_overrides(settings: Any) -> dict[str, Any]:
    """Every location of this checkout's workspace, absolute (the settings resolve them): a
    server started from another checkout (`--baseline-tree`, whose working directory is that
    checkout) serves the same model from the same store instead of finding no champion."""
    paths = ("landing", "lake", "quarantine", "reports", "monitoring", "bentoml_home")
    return {
        "paths": {name: getattr(settings.paths, name) for name in paths},
        "run_lock": {"path": settings.run_lock.path},
        "features": {
            "registry": dict(settings.features.registry),
            "online_store": dict(settings.features.online_store),
        },
        "mlflow": {
            "tracking_uri": settings.mlflow.tracking_uri,
            "artifact_location": settings.mlflow.artifact_location,
        },
    }


def command(server: str, port: int) -> list[str]:
    if server.startswith("bentoml"):
        return [sys.executable, "-m", "serving", "--port", str(port)]
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.fastapi_baseline:app",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]


def server_env(server: str, env: dict[str, str]) -> dict[str, str]:
    """The server's environment: the service logs its predictions under bench/work (never
    into the workspace's own log); `bentoml-nolog` runs it with the log switched off."""
    overrides = json.loads(env.get("MLOPS_OVERRIDES", "{}"))
    overrides.setdefault("paths", {})["prediction_log"] = str(WORK / "serving_prediction_log")
    if server == "bentoml-nolog":
        overrides.setdefault("monitoring", {})["prediction_log"] = {"enabled": False}
    return {**env, "MLOPS_OVERRIDES": json.dumps(overrides)}


def start(
    server: str, env: dict[str, str], log: Path, baseline_tree: Path | None = None
) -> tuple[subprocess.Popen, str]:
    port = PORTS[server]
    if server == "bentoml-baseline" and baseline_tree is None:
        raise SystemExit("the bentoml-baseline server needs --baseline-tree (another checkout)")
    process = subprocess.Popen(
        command(server, port),
        # Python puts the working directory first on the path: the other checkout's code runs.
        cwd=baseline_tree if server == "bentoml-baseline" else ROOT,
        env=server_env(server, env),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: pin(SERVER_CPUS),
    )
    return process, f"http://127.0.0.1:{port}{ROUTES[server]}"


def wait_until_up(url: str, body: bytes, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            response = requests.post(
                url, data=body, headers={"content-type": "application/json"}, timeout=5
            )
            if response.status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} not answering after {timeout} s")


def full_gc_pauses(url: str, metric_prefix: str) -> dict[str, Any] | None:
    """The service's own record of its full garbage collections (serving/service.py): how
    many, their total time, and the bucket the longest fell in; None where it has none."""
    base = url.rsplit("/", 1)[0]
    try:
        text = requests.get(f"{base}/metrics", timeout=5).text
    except requests.RequestException:
        return None
    name = f"{metric_prefix}_full_gc_pause_seconds"
    values: dict[str, float] = {}
    buckets: list[tuple[float, float]] = []
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            upper = float("inf") if bound == "+Inf" else float(bound)
            buckets.append((upper, float(line.split()[-1])))
        elif line.startswith((f"{name}_count", f"{name}_sum")):
            values[line.split()[0].rsplit("_", 1)[1]] = float(line.split()[-1])
    if "count" not in values:
        return None
    buckets.sort()
    longest = (
        next((bound for bound, count in buckets if count >= values["count"]), None)
        if values["count"]
        else None
    )
    return {
        "collections": int(values["count"]),
        "total_ms": values.get("sum", 0.0) * 1000,
        "longest_at_most_ms": None if longest in (None, float("inf")) else longest * 1000,
    }


def measured_run(
    process: subprocess.Popen, url: str, payloads: list[bytes], rate: float, seconds: float
) -> dict[str, Any]:
    """An open-loop run (`bench.load.run`) with the server's CPU time per request sent: its
    process tree's user + system time over the run, workers and helper processes included
    (the server has its CPU to itself: the client runs on another)."""
    before = tree_cpu_seconds(process.pid)
    figures = run(url, payloads, rate, seconds)
    spent = tree_cpu_seconds(process.pid) - before
    sent = figures["requests"]
    figures["cpu_ms_per_request"] = 1000 * spent / sent if sent else math.nan
    return figures


def median_point(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each figure over repeated runs (errors and refusals summed)."""
    # A figure a run has no sample for (no refusal, nothing answered) is NaN: the median is
    # over the runs that have it, NaN when none has.
    point: dict[str, Any] = {}
    for key in (
        "p50_ms",
        "p99_ms",
        "p999_ms",
        "max_ms",
        "refused_p99_ms",
        "all_p99_ms",
        "slowest_ms",
        "cpu_ms_per_request",
    ):
        # (results recorded before a figure existed lack it)
        values = [r[key] for r in runs if key in r and not math.isnan(r[key])]
        point[key] = statistics.median(values) if values else math.nan
    # the median run's share too: one run's stall of the machine (a few refusals in 15 s, the
    # other server hit by it as often) says nothing of the server; the counts below sum all.
    point["answered_share"] = statistics.median(r["answered_share"] for r in runs)
    for key in ("requests", "answered", "refused", "errors"):
        point[key] = sum(int(r[key]) for r in runs)
    point["runs"] = runs
    return point


def capacity(by_rate: dict[str, dict[str, Any]], bound_ms: float) -> float | None:
    """The highest rate at which every request was answered and p99 stayed under the bound
    (and at every lower rate too)."""
    best = None
    for rate in sorted(by_rate, key=float):
        point = by_rate[rate]
        if point["answered_share"] < 1.0 or not point["p99_ms"] <= bound_ms:
            break
        best = float(rate)
    return best


def baseline_capacity(baseline: dict[str, dict[str, Any]]) -> float | None:
    """The baseline's own capacity: the highest rate at which it answered every request with
    p99 within WITHIN_BASELINE_P99 x its p99 at the lowest rate tried (before it queues)."""
    rates = sorted(baseline, key=float)
    if not rates:
        return None
    bound = WITHIN_BASELINE_P99 * baseline[rates[0]]["p99_ms"]
    return capacity(baseline, bound)


def capacity_against(
    by_rate: dict[str, dict[str, Any]], baseline: dict[str, dict[str, Any]]
) -> float | None:
    """The highest rate at which every request was answered and p99 stayed within
    WITHIN_BASELINE_P99 x the baseline's p99 at that rate (and at every lower rate too); past
    the baseline's own capacity, within that factor of its p99 at its capacity."""
    knee = baseline_capacity(baseline)
    best = None
    for rate in sorted(by_rate, key=float):
        if rate not in baseline or knee is None:
            break
        reference = baseline[rate] if float(rate) <= knee else baseline[f"{knee:g}"]
        point = by_rate[rate]
        if point["answered_share"] < 1.0 or not (
            point["p99_ms"] <= WITHIN_BASELINE_P99 * reference["p99_ms"]
        ):
            break
        best = float(rate)
    return best


def cpu_per_request(by_rate: dict[str, dict[str, Any]]) -> float | None:
    """A server's CPU time per request (ms), the median over the rates at which it answered
    every request (past capacity, refusals cost less than answers); None if not measured."""
    values = [
        point["cpu_ms_per_request"]
        for point in by_rate.values()
        if point["answered_share"] >= 1.0
        and not math.isnan(point.get("cpu_ms_per_request", math.nan))
    ]
    return statistics.median(values) if values else None


def capacities_against_baseline(results: dict[str, Any]) -> dict[str, Any]:
    """store -> items per request -> {server: capacity, ..., "ratio": {server: its capacity
    over the baseline's}}, for the stores and sizes the baseline ran."""
    out: dict[str, Any] = {}
    for store, by_server in results.items():
        for size, baseline in by_server.get(BASELINE, {}).items():
            own = baseline_capacity(baseline)
            entry: dict[str, Any] = {BASELINE: own, "ratio": {}, "cpu_ms_per_request": {}}
            for server, by_size in by_server.items():
                if size in by_size:
                    entry["cpu_ms_per_request"][server] = cpu_per_request(by_size[size])
                if server == BASELINE or size not in by_size:
                    continue
                entry[server] = capacity_against(by_size[size], baseline)
                entry["ratio"][server] = (
                    None if not own or entry[server] is None else entry[server] / own
                )
            out.setdefault(store, {})[size] = entry
    return out


TABLE_HEADERS = [
    "store",
    "server",
    "items/request",
    "req/s",
    "p50 ms",
    "p99 ms",
    "p99.9 ms",
    "max ms",
    "answered",
    "refused",
    "refused p99 ms",
    "errors",
]


def table_rows(results: dict[str, Any]) -> list[list[Any]]:
    """One row per point of `results` (store -> server -> size -> rate), as TABLE_HEADERS."""
    return [
        [
            store,
            server,
            size,
            rate,
            p["p50_ms"],
            p["p99_ms"],
            p["p999_ms"],
            p["max_ms"],
            f"{p['answered_share']:.2%}",
            p["refused"],
            p["refused_p99_ms"],
            p["errors"],
        ]
        for store, by_server in results.items()
        for server, by_size in by_server.items()
        for size, by_rate in by_size.items()
        for rate, p in by_rate.items()
    ]


def aggregate(runs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every run's figures (store -> server -> size -> rate -> runs) -> the medians per point,
    and the capacity per bound."""
    results = {
        store: {
            server: {
                size: {rate: median_point(r) for rate, r in by_rate.items()}
                for size, by_rate in by_size.items()
            }
            for server, by_size in by_server.items()
        }
        for store, by_server in runs.items()
    }
    capacities = {
        store: {
            server: {
                size: {f"{bound:g}": capacity(by_rate, bound) for bound in P99_BOUNDS_MS}
                for size, by_rate in by_size.items()
            }
            for server, by_size in by_server.items()
        }
        for store, by_server in results.items()
    }
    return results, capacities


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="50,100,200,400", help="requests per second")
    parser.add_argument("--sizes", default="1,100", help="items per request")
    parser.add_argument("--seconds", type=float, default=15, help="per rate")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--servers", default="bentoml,fastapi")
    parser.add_argument("--stores", default="sqlite,redis")
    parser.add_argument("--redis-db", type=int, default=15)
    parser.add_argument(
        "--baseline-tree",
        type=Path,
        default=None,
        help="another checkout of the project (`git worktree add`), served as bentoml-baseline "
        "on the same model and store: what a change costs, measured in the same run",
    )
    parser.add_argument(
        "--name",
        default="serving_latency",
        help="the result's name (bench/results/<name>.json), e.g. serving_log for the "
        "prediction log's cost: --servers bentoml,bentoml-nolog --rates 50",
    )
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    servers = args.servers.split(",")
    stores = args.stores.split(",")

    from configs import load_settings
    from configs.settings import _deep_merge
    from serving.__main__ import champion_model_tag

    settings = load_settings()
    usecase = usecase_of(settings)
    os.environ["BENTOML_HOME"] = settings.paths.bentoml_home
    tag = champion_model_tag(settings)
    items = request_items(settings, usecase)
    payloads_of = {
        server: {
            size: bodies(items, usecase.request.items_field, size, EXTRA_FIELDS.get(server))
            for size in sizes
        }
        for server in servers
    }
    print(f"{len(items):,} different items; model {tag}", file=sys.stderr)
    workspace = workspace_overrides(settings)
    base_env = {
        **os.environ,
        "MLOPS_OVERRIDES": json.dumps(workspace),
        settings.names.model_tag_variable: tag,
        "OMP_NUM_THREADS": "1",
        "BENTOML_DO_NOT_TRACK": "true",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    pin(CLIENT_CPUS)
    runs: dict[str, dict[str, dict[str, dict[str, list[dict[str, Any]]]]]] = {}
    failures: list[str] = []
    gc_pauses: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for store in stores:
        env = dict(base_env)
        if store == "redis":
            redis_store = prepare_redis(settings, args.redis_db)
            env["MLOPS_OVERRIDES"] = json.dumps(_deep_merge(workspace, redis_store))
        # One server at a time; alternating per repeat spreads drift of the machine over all.
        for repeat in range(args.repeats):
            for server in servers:
                log = RESULTS / f"serving_{store}_{server}.log"
                payloads = payloads_of[server]
                process, url = start(server, env, log, args.baseline_tree)
                try:
                    try:
                        wait_until_up(url, payloads[sizes[0]][0], process)
                    except RuntimeError as err:  # one server failing must not lose the others
                        failures.append(f"{store}/{server} run {repeat + 1}: {err}")
                        print(f"  {failures[-1]}", file=sys.stderr)
                        continue
                    run(url, payloads[sizes[0]], rates[0], 3)  # warm-up, not counted
                    for size in sizes:
                        for rate in rates:
                            figures = measured_run(process, url, payloads[size], rate, args.seconds)
                            by_rate = runs.setdefault(store, {}).setdefault(server, {})
                            by_rate.setdefault(str(size), {}).setdefault(f"{rate:g}", []).append(
                                figures
                            )
                            print(
                                f"  run {repeat + 1}: {store} {server} {size}/req {rate:g}/s: "
                                f"p50 {figures['p50_ms']:.1f} p99 {figures['p99_ms']:.1f} "
                                f"p99.9 {figures['p999_ms']:.1f} max {figures['max_ms']:.1f} ms, "
                                f"{figures['answered_share']:.1%} answered, "
                                f"{figures['refused']} refused (p99 "
                                f"{figures['refused_p99_ms']:.1f} ms), {figures['errors']} errors, "
                                f"p99 of every answer {figures['all_p99_ms']:.1f} ms, "
                                f"CPU {figures['cpu_ms_per_request']:.2f} ms/request",
                                file=sys.stderr,
                            )
                    gc_record = full_gc_pauses(url, settings.names.metric_prefix)
                    if gc_record is not None:
                        gc_pauses.setdefault(store, {}).setdefault(server, []).append(gc_record)
                finally:
                    process.terminate()
                    process.wait(timeout=60)
    results, capacities = aggregate(runs)
    record = {
        "rates_per_s": rates,
        "sizes": sizes,
        "seconds": args.seconds,
        "repeats": args.repeats,
        "model": tag,
        "items": len(items),
        "cpus": {"server": sorted(SERVER_CPUS), "client": sorted(CLIENT_CPUS)},
        "results": results,
        "capacity_p99": capacities,
        "capacity_against_baseline": capacities_against_baseline(results),
        # per server run, over all its rates and sizes: the service's full GC pauses
        "full_gc": gc_pauses,
        "failures": failures,
    }
    write_result(args.name, record)
    _plot(results, rates, args.name)
    print_table(TABLE_HEADERS, table_rows(results))
    print(json.dumps(capacities, indent=1))
    print(json.dumps(record["capacity_against_baseline"], indent=1))
    return 1 if failures else 0


def _plot(results: dict[str, Any], rates: list[float], name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        (store, size)
        for store, by_server in results.items()
        for size in next(iter(by_server.values()))
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for axis, (store, size) in zip(axes[0], panels, strict=True):
        for server, by_size in results[store].items():
            by_rate = by_size.get(size, {})
            shown = [r for r in rates if f"{r:g}" in by_rate]
            axis.plot(
                shown,
                [by_rate[f"{r:g}"]["p99_ms"] for r in shown],
                marker="o",
                label=f"{server} p99",
            )
            axis.plot(
                shown,
                [by_rate[f"{r:g}"]["p50_ms"] for r in shown],
                marker=".",
                linestyle=":",
                label=f"{server} p50",
            )
        axis.axhline(10, color="grey", linestyle="--", label="10 ms")
        axis.set(
            xlabel="requests per second",
            ylabel="ms (log), answered requests",
            title=f"{store}, {size} item(s) per request",
            yscale="log",
        )
        axis.legend(fontsize=7)
    save_figure(fig, name)


if __name__ == "__main__":
    raise SystemExit(main())
