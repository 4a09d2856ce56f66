"""The benchmarks' own arithmetic: reading the chain's summary, growth, and met/missed verdicts."""

from __future__ import annotations

import math

import pytest

from bench import report
from bench.scale import _growth
from bench.train_stages import stage_seconds
from pipelines.cli import render_summary
from pipelines.results import StageResult


def test_stage_times_are_read_from_the_chains_own_summary() -> None:
    results = []
    for name, seconds in (("land", 3.4), ("collect", 67.2), ("batch-predict", 0.5)):
        result = StageResult(name)
        result.seconds = seconds
        results.append(result)
    printed = render_summary(results, ["land", "collect", "batch-predict", "fit"])
    assert stage_seconds(printed) == {"land": 3.4, "collect": 67.2, "batch-predict": 0.5}


def _factor(flights: int, collect: float, features: float, peak: float) -> dict:
    return {
        "flights": flights,
        "spark_collect_features_seconds": collect + features,
        "spark_all_seconds": collect + features + 1.0,
        "spark_peak_gib": peak,
        "steps": {"duckdb": {"seconds": flights / 1e5}},
        "scale_factor": flights // 100,
    }


def test_growth_is_the_exponent_of_time_against_data() -> None:
    growth = _growth([_factor(100, 10, 10, 1.0), _factor(1000, 100, 100, 2.0)])
    assert growth["spark collect+features"] == pytest.approx(1.0)
    assert growth["duckdb"] == pytest.approx(1.0)
    quadratic = _growth([_factor(100, 10, 10, 1.0), _factor(1000, 1000, 1000, 2.0)])
    assert quadratic["spark collect+features"] == pytest.approx(2.0)
    assert _growth([_factor(100, 1, 1, 1.0)]) == {}


def _results(**overrides: dict | None) -> dict:
    base: dict = {name: None for name in ("scale", "pit_join", "serving_latency")}
    base |= {"online_read_sqlite": None, "online_read_redis": None, "train_stages": None}
    base |= {"soak": None}
    return base | overrides


def test_targets_are_marked_met_or_missed_from_the_figures() -> None:
    serving = {
        "results": {
            "bentoml": {"50": {"p99_ms": 49.0, "success_rate": 0.9995, "requests": 6000}},
        },
        "bentoml_p50_over_fastapi": {"50": 1.6},
    }
    pit = {
        "ratios": {"time": 1.3, "memory": 0.9},
        "check": {"identical": False},
    }
    rows = dict(report.targets(_results(serving_latency=serving, pit_join=pit)))
    assert rows["Serving: p99 <= 50 ms at 50 req/s, >= 99.9% success (2 cores)"].startswith(
        "**met**"
    )
    assert rows["BentoML p50 <= 1.5x the FastAPI baseline (50 req/s)"].startswith("**missed**")
    # fast enough, but a different answer is a miss
    assert rows["Point-in-time join <= 2x the DuckDB baseline, identical output"].startswith(
        "**missed**"
    )
    assert rows["Collect + features scaling"] == "not run"


def test_scaling_target_needs_both_linear_time_and_bounded_memory() -> None:
    scale = {
        "factors": [_factor(100, 10, 10, 1.0), _factor(3000, 100, 100, 17.0)],
        "growth": {"spark collect+features": math.log(10) / math.log(30)},
    }
    (row,) = [
        r for r in report.targets(_results(scale=scale)) if r[0].startswith("Collect + features")
    ]
    assert row[1].startswith("**missed**") and "peak 17.0 GiB" in row[1]
