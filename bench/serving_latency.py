"""Serving latency at a constant request rate: the BentoML service against a plain FastAPI app
with the same model and feature read, measured in the same run.

    make bench            # or: .venv/bin/python -m bench.serving_latency --rate 50 --seconds 30

Needs `make train` first. Each server runs alone, started fresh for each repeat, with a 5 s
warm-up that is not counted. The client is open-loop: request i is sent at start + i/rate whatever
happened to earlier ones, so a slow server shows up as latency, not as a lower rate. Client and
servers share the machine's cores: compare the two servers, not absolute figures across machines.
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

import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BODY = {
    "flights": [
        {
            "carrier": "UA",
            "tailnum": "N14228",
            "origin": "EWR",
            "dest": "IAH",
            "scheduled_departure": "2013-12-31T08:00:00-05:00",
            "distance": 1400,
        }
    ]
}


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            response = httpx.post(f"{url}/predict", json=BODY, timeout=5)
            if response.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} not answering after {timeout} s")


async def constant_rate(url: str, rate: float, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    total = int(rate * seconds)
    async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=200)) as client:

        async def one(at: float) -> None:
            nonlocal errors
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            sent = time.perf_counter()
            try:
                response = await client.post(f"{url}/predict", json=BODY)
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


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

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
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    servers = {
        "bentoml": ([sys.executable, "-m", "serving", "--port", "3100"], "http://127.0.0.1:3100"),
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
            "http://127.0.0.1:3101",
        ),
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
    # One server at a time: with both up, the idle one's background work skewed the other's tail.
    # Alternating per repeat spreads drift of the machine over both alike.
    for _ in range(args.repeats):
        for name, (command, url) in servers.items():
            process = start(command, env, RESULTS / f"serving_{name}.log")
            try:
                wait_until_up(url, process)
                asyncio.run(constant_rate(url, args.rate, 5))  # warm-up, not counted
                runs[name].append(asyncio.run(constant_rate(url, args.rate, args.seconds)))
            finally:
                process.terminate()
                process.wait(timeout=30)
    summary = {
        name: {
            "p50_ms": statistics.median(r["p50_ms"] for r in results),
            "p99_ms": statistics.median(r["p99_ms"] for r in results),
            "success_rate": min(r["success_rate"] for r in results),
            "runs": results,
        }
        for name, results in runs.items()
    }
    record = {
        "rate_per_s": args.rate,
        "seconds": args.seconds,
        "repeats": args.repeats,
        "model": tag,
        "results": summary,
    }
    (RESULTS / "serving_latency.json").write_text(json.dumps(record, indent=2))
    print(
        f"constant {args.rate:g} req/s, {args.seconds:g} s x {args.repeats} (median of runs), model {tag}"
    )
    print(f"{'server':<10} {'p50 ms':>8} {'p99 ms':>8} {'success':>9}")
    for name, figures in summary.items():
        print(
            f"{name:<10} {figures['p50_ms']:>8.1f} {figures['p99_ms']:>8.1f} {figures['success_rate']:>9.2%}"
        )
    ratio = summary["bentoml"]["p50_ms"] / summary["fastapi"]["p50_ms"]
    print(f"BentoML p50 / FastAPI p50 = {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
