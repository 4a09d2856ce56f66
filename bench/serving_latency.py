"""Serving latency at constant request rates: the BentoML service (with and without adaptive
batching) against a plain FastAPI app and `mlflow models serve`, in the same run.

    make bench    # or: .venv/bin/python -m bench.serving_latency --rates 25,50,100 --seconds 60

Needs `make train` first. Servers, each alone on the machine, started fresh per repeat:
- `bentoml`: `POST /predict`, the platform's service (one worker);
- `bentoml-batching`: `POST /predict_batch` of the same service, adaptive batching on;
- `fastapi`: the same model file, feature read and schema in plain FastAPI (async endpoint);
- `mlflow`: `mlflow models serve` of the champion from the registry. It cannot read the online
  store, so it is sent the finished model inputs: it measures the model server alone, a floor
  under what the feature-reading servers can reach.
A 5 s warm-up per server is not counted; then each rate runs in turn. The client is
open-loop: request i is sent at start + i/rate whatever happened to earlier ones, so a slow
server shows up as latency and errors, not as a lower rate. Client and servers share the
machine's cores: compare the servers, not absolute figures across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import RESULTS, ROOT, print_table, write_result

FLIGHT = {
    "carrier": "UA",
    "tailnum": "N14228",
    "origin": "EWR",
    "dest": "IAH",
    "scheduled_departure": "2013-12-31T08:00:00-05:00",
    "distance": 1400,
}
BODY = {"flights": [FLIGHT]}


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )


def wait_until_up(
    url: str, body: dict[str, Any], process: subprocess.Popen, timeout: float = 180
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            response = httpx.post(url, json=body, timeout=5)
            if response.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} not answering after {timeout} s")


async def constant_rate(
    url: str, body: dict[str, Any], rate: float, seconds: float
) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    total = int(rate * seconds)
    async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=200)) as client:

        async def one(at: float) -> None:
            nonlocal errors
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            sent = time.perf_counter()
            try:
                response = await client.post(url, json=body)
                if response.status_code != 200:
                    errors += 1
                    return
            except httpx.HTTPError:
                errors += 1
                return
            latencies.append((time.perf_counter() - sent) * 1000)

        start_at = time.perf_counter() + 0.5
        await asyncio.gather(*(one(start_at + i / rate) for i in range(total)))
    latencies.sort()
    return {
        "requests": total,
        "errors": errors,
        "success_rate": (total - errors) / total,
        "p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        if latencies
        else float("nan"),
    }


def mlflow_body(settings: Any, tag: str) -> dict[str, Any]:
    """The model inputs the feature-reading servers compute for FLIGHT, as MLflow's scoring
    server takes them (`dataframe_split`)."""
    import bentoml
    import pandas as pd

    from features.definitions import service_name
    from features.online import online_features
    from features.store import feature_store
    from usecases.flight_delay import USECASE
    from usecases.flight_delay.request import Flight, flights_frame
    from usecases.flight_delay.rows import request_features

    features = [str(f) for f in bentoml.models.get(tag).info.metadata["features"]]  # type: ignore[union-attr]
    store = feature_store(settings, online_only=True)
    frame = flights_frame([Flight(**FLIGHT)])
    request = request_features(frame, settings.params)
    service = store.get_feature_service(service_name(settings))
    online = online_features(store, service, USECASE, frame)
    inputs = pd.concat([request, online], axis=1)[features].astype("float64")
    return {"dataframe_split": json.loads(inputs.to_json(orient="split", index=False))}


def servers(settings: Any, tag: str) -> dict[str, tuple[list[str], str, dict[str, Any]]]:
    """name -> (command, URL to post to, body)."""
    model_uri = f"models:/{settings.names.registered_model}@champion"
    return {
        "bentoml": (
            [sys.executable, "-m", "serving", "--port", "3100"],
            "http://127.0.0.1:3100/predict",
            BODY,
        ),
        "bentoml-batching": (
            [sys.executable, "-m", "serving", "--port", "3100"],
            "http://127.0.0.1:3100/predict_batch",
            BODY,
        ),
        "fastapi": (
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bench.fastapi_baseline:app",
                "--port",
                "3101",
                "--log-level",
                "warning",
            ],
            "http://127.0.0.1:3101/predict",
            BODY,
        ),
        "mlflow": (
            [
                sys.executable,
                "-m",
                "mlflow",
                "models",
                "serve",
                "-m",
                model_uri,
                "--env-manager",
                "local",
                "--workers",
                "1",
                "--port",
                "3102",
            ],
            "http://127.0.0.1:3102/invocations",
            mlflow_body(settings, tag),
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="25,50,100", help="requests per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=60, help="per rate")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--servers", default="bentoml,bentoml-batching,fastapi,mlflow")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]

    from configs import load_settings
    from serving.__main__ import champion_model_tag

    settings = load_settings()
    os.environ["BENTOML_HOME"] = settings.paths.bentoml_home
    tag = champion_model_tag(settings)
    env = {
        **os.environ,
        "FLIGHT_DELAY_MODEL_TAG": tag,
        "OMP_NUM_THREADS": "1",
        "BENTOML_DO_NOT_TRACK": "true",
        "MLFLOW_TRACKING_URI": settings.mlflow.tracking_uri,
        # `mlflow models serve` runs `uvicorn` by name: the venv's scripts must be on the PATH.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    chosen = {n: v for n, v in servers(settings, tag).items() if n in args.servers.split(",")}
    runs: dict[str, dict[float, list[dict[str, float]]]] = {
        name: {rate: [] for rate in rates} for name in chosen
    }
    failures: dict[str, list[str]] = {}
    # One server at a time: with two up, the idle one's background work skewed the other's
    # tail. Alternating per repeat spreads drift of the machine over all alike.
    for repeat in range(args.repeats):
        for name, (command, url, body) in chosen.items():
            process = start(command, env, RESULTS / f"serving_{name}.log")
            try:
                try:
                    wait_until_up(url, body, process)
                except RuntimeError as err:  # one server failing must not lose the others' runs
                    failures.setdefault(name, []).append(str(err))
                    print(f"  run {repeat + 1}: {name} did not start: {err}", file=sys.stderr)
                    continue
                asyncio.run(constant_rate(url, body, rates[0], 5))  # warm-up, not counted
                for rate in rates:
                    figures = asyncio.run(constant_rate(url, body, rate, args.seconds))
                    runs[name][rate].append(figures)
                    print(
                        f"  run {repeat + 1}: {name} at {rate:g}/s: p50 {figures['p50_ms']:.1f} ms,"
                        f" p99 {figures['p99_ms']:.1f} ms, {figures['success_rate']:.2%} ok"
                    )
            finally:
                process.terminate()
                process.wait(timeout=30)
    summary: dict[str, dict[str, Any]] = {
        name: {
            f"{rate:g}": {
                "p50_ms": statistics.median(r["p50_ms"] for r in results),
                "p99_ms": statistics.median(r["p99_ms"] for r in results),
                "success_rate": min(r["success_rate"] for r in results),
                "errors": sum(int(r["errors"]) for r in results),
                "requests": sum(int(r["requests"]) for r in results),
                "runs": results,
            }
            for rate, results in by_rate.items()
            if results
        }
        for name, by_rate in runs.items()
        if any(by_rate.values())
    }
    record: dict[str, Any] = {
        "rates_per_s": rates,
        "seconds": args.seconds,
        "repeats": args.repeats,
        "model": tag,
        "results": summary,
        "failures": failures,
    }
    if "bentoml" in summary and "fastapi" in summary:
        record["bentoml_p50_over_fastapi"] = {
            key: summary["bentoml"][key]["p50_ms"] / summary["fastapi"][key]["p50_ms"]
            for key in summary["bentoml"]
        }
    write_result("serving_latency", record)
    _plot(summary, rates)
    print(
        f"constant rate, {args.seconds:g} s per rate, median of {args.repeats} run(s), model {tag}"
    )
    print_table(
        ["server", "rate/s", "p50 ms", "p99 ms", "success", "errors"],
        [
            [name, key, f["p50_ms"], f["p99_ms"], f"{f['success_rate']:.2%}", f["errors"]]
            for name, by_rate in summary.items()
            for key, f in by_rate.items()
        ],
    )
    for key, ratio in record.get("bentoml_p50_over_fastapi", {}).items():
        print(f"at {key}/s: BentoML p50 / FastAPI p50 = {ratio:.2f}")
    return 0


def _plot(summary: dict[str, Any], rates: list[float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    for name, by_rate in summary.items():
        for axis, stat in zip(axes, ("p50_ms", "p99_ms"), strict=True):
            axis.plot(rates, [by_rate[f"{r:g}"][stat] for r in rates], marker="o", label=name)
    # Log scale: a saturated server is seconds, the others milliseconds.
    axes[0].set(xlabel="requests per second", ylabel="ms (log)", title="p50 latency", yscale="log")
    axes[1].set(xlabel="requests per second", ylabel="ms (log)", title="p99 latency", yscale="log")
    axes[1].axhline(50, color="grey", linestyle="--", label="p99 target (50 req/s)")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "serving_latency.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
