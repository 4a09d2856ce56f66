"""The benchmarks' own arithmetic: reading the chain's summary, growth, and met/missed verdicts."""

from __future__ import annotations

import math

import pytest

from bench import report
from bench.common import stage_seconds
from bench.load import Outcomes
from bench.scale import _growth
from bench.serving_latency import (
    bodies,
    capacities_against_baseline,
    capacity,
    median_point,
    workspace_overrides,
)
from configs import load_settings
from pipelines.cli import render_summary
from pipelines.results import StageResult
from tests.conftest import PLATFORM_USECASE


def test_stage_times_are_read_from_the_chains_own_summary() -> None:
    results = []
    for name, seconds in (("land", 3.4), ("collect", 67.2), ("batch-predict", 0.5)):
        result = StageResult(name)
        result.seconds = seconds
        results.append(result)
    printed = render_summary(results, ["land", "collect", "batch-predict", "fit"])
    assert stage_seconds(printed) == {"land": 3.4, "collect": 67.2, "batch-predict": 0.5}


def _factor(examples: int, collect: float, features: float, peak: float) -> dict:
    return {
        "examples": examples,
        "spark_collect_features_seconds": collect + features,
        "spark_all_seconds": collect + features + 1.0,
        "spark_peak_gib": peak,
        "steps": {"duckdb": {"seconds": examples / 1e5}},
        "scale_factor": examples // 100,
        "features_identical": True,
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
    base |= {"soak": None, "prediction_log": None, "serving_capacity": None}
    return base | overrides


def _point(p99: float, answered: float = 1.0, **extra: float) -> dict:
    return {
        "p50_ms": p99 / 3,
        "p99_ms": p99,
        "p999_ms": p99 * 2,
        "max_ms": p99 * 3,
        "answered_share": answered,
        "requests": 3000,
        "answered": int(3000 * answered),
        "refused": 3000 - int(3000 * answered),
        "errors": 0,
        "refused_p99_ms": float("nan"),
        "slowest_ms": p99 * 3,
    } | extra


def test_targets_are_marked_met_or_missed_from_the_figures() -> None:
    serving = {
        "results": {
            "sqlite": {
                "bentoml": {
                    "1": {
                        "200": _point(9.0),
                        "400": _point(30.0, 0.8, refused_p99_ms=25.0, slowest_ms=400.0),
                    }
                },
                "fastapi": {"1": {"200": _point(5.0)}},
            }
        }
    }
    pit = {
        "ratios": {"time": 1.3, "memory": 0.9},
        "check": {"identical": False},
    }
    rows = dict(report.targets(_results(serving_latency=serving, pit_join=pit)))
    at200 = "Serving: p99 <= 10 ms at 200 req/s, one flight per request, 100% answered (SQLite)"
    assert rows[at200].startswith("**met**")
    # 9 ms against 5 ms: 1.8x the baseline
    assert rows["BentoML p99 <= 1.5x the FastAPI baseline's (200 req/s)"].startswith("**missed**")
    # refusals at 25 ms are not fast
    (past,) = [v for k, v in rows.items() if k.startswith("Past capacity")]
    assert past.startswith("**missed**") and "600 refused" in past
    # fast enough, but a different answer is a miss
    assert rows["Point-in-time join <= 2x the DuckDB baseline, identical output"].startswith(
        "**missed**"
    )
    assert rows["Collect + features scaling"] == "not run"
    assert rows["Prediction log's cost"] == "not run"


@pytest.mark.parametrize(
    ("on", "dropped", "met"), [(52.0, 0, True), (56.0, 0, False), (50, 3, False)]
)
def test_the_prediction_log_target_is_p99_within_10_percent_and_nothing_dropped(
    on: float, dropped: int, met: bool
) -> None:
    logged = {
        "size": 100,
        "busy": 0.75,
        "p99_ms": {"bentoml": on, "bentoml-nolog": 50.0},
        "p99_ratio": on / 50.0,
        "target_ratio": 1.10,
        "dropped": dropped,
    }
    (row,) = [v for k, v in report.targets(_results(prediction_log=logged)) if "log" in k]
    assert row.startswith("**met**" if met else "**missed**"), row


def test_load_figures_count_answers_refusals_and_errors_apart() -> None:
    outcomes = Outcomes(sent=6, answered_ms=[1.0, 2.0, 3.0, 100.0], refused_ms=[0.5])
    outcomes.errors["timeout"] = 1
    figures = outcomes.figures()
    assert (figures["answered"], figures["refused"], figures["errors"]) == (4, 1, 1)
    assert figures["answered_share"] == pytest.approx(4 / 6)
    assert figures["p50_ms"] == pytest.approx(2.5)
    assert figures["max_ms"] == 100.0 and figures["slowest_ms"] == 100.0


def test_capacity_is_the_highest_rate_below_the_bound_with_everything_answered() -> None:
    by_rate = {"50": _point(3.0), "100": _point(8.0), "200": _point(12.0), "400": _point(5.0, 0.9)}
    assert capacity(by_rate, 10.0) == 100.0
    assert capacity(by_rate, 50.0) == 200.0  # 400 refused some: not counted, though fast
    assert capacity({"50": _point(11.0)}, 10.0) is None


def test_a_point_is_the_median_run_s_so_one_stalled_run_does_not_decide_it() -> None:
    stalled = _point(120.0, 0.998)
    point = median_point([_point(6.0), stalled, _point(8.0)])
    assert point["p99_ms"] == 8.0
    assert point["answered_share"] == 1.0
    assert point["refused"] == stalled["refused"]  # every refusal still counted
    assert median_point([_point(6.0), stalled, _point(8.0, 0.99)])["answered_share"] == 0.998


def test_request_bodies_walk_through_different_items() -> None:
    items = [{"n": i} for i in range(10)]
    singles = bodies(items, "things", 1)
    assert len(singles) == 10 and len(set(singles)) == 10
    (whole,) = bodies(items, "things", 100)  # larger than the items: one body, wrapping around
    assert whole.count(b'"n"') == 100


def test_scaling_target_needs_both_linear_time_and_bounded_memory() -> None:
    scale = {
        "factors": [_factor(100, 10, 10, 1.0), _factor(3000, 100, 100, 17.0)],
        "growth": {"spark collect+features": math.log(10) / math.log(30)},
    }
    (row,) = [
        r for r in report.targets(_results(scale=scale)) if r[0].startswith("Collect + features")
    ]
    assert row[1].startswith("**missed**") and "peak 17.0 GiB" in row[1]


def test_the_spark_profile_reads_each_stage_s_jobs_actions_and_scans(tmp_path) -> None:
    """Jobs attributed to their stage's job group; Spark time as the union of overlapping jobs;
    scans counted from each action's plan once, whichever of its jobs ran it."""
    import json

    from bench.spark_profile import JOB_END, JOB_START, PROJECT, SQL_START, read_event_logs

    plan = "== Physical Plan ==\n* Scan csv (1)\n\n(1) Scan csv \nOutput [2]\n(2) Scan parquet \n"

    def job(job_id: int, group: str, sql: int, start: int, end: int) -> list[dict]:
        properties = {
            "spark.jobGroup.id": group,
            "spark.sql.execution.id": str(sql),
            "callSite.short": f"collect at {PROJECT}/pipelines/stage_{group}.py:{job_id}",
        }
        return [
            {
                "Event": JOB_START,
                "Job ID": job_id,
                "Submission Time": start,
                "Properties": properties,
            },
            {"Event": JOB_END, "Job ID": job_id, "Completion Time": end},
        ]

    events = [
        {"Event": SQL_START, "executionId": 1, "physicalPlanDescription": plan},
        {"Event": SQL_START, "executionId": 2, "physicalPlanDescription": "(1) Scan parquet \n"},
        *job(0, "collect", 1, 1_000, 3_000),
        *job(1, "collect", 1, 2_000, 4_000),  # overlaps the first: 3 s of Spark, not 4
        *job(2, "validate", 2, 5_000, 5_500),
    ]
    (tmp_path / "local-1").write_text("\n".join(json.dumps(e) for e in events))
    profile = read_event_logs(tmp_path)["stages"]
    assert profile["collect"] == {
        "jobs": 2,
        "actions": 1,
        "spark_seconds": 3.0,
        "csv_scans": 1,
        "parquet_scans": 1,
        # by call site, the longest first, named from the project's root
        "call_sites": [
            {"site": "collect at pipelines/stage_collect.py:0", "jobs": 1, "spark_seconds": 2.0},
            {"site": "collect at pipelines/stage_collect.py:1", "jobs": 1, "spark_seconds": 2.0},
        ],
    }
    assert profile["validate"]["spark_seconds"] == 0.5 and profile["validate"]["parquet_scans"] == 1


def test_the_spark_stage_targets_read_the_largest_factor_and_the_train_median() -> None:
    small = _factor(100, 1, 1, 1.0)
    large = _factor(3000, 30, 18, 2.0)  # 49 s of Spark
    large["steps"]["duckdb"]["seconds"] = 10.0
    train = {"repeats": 3, "summary": {"total_seconds": 61.0}}
    target = (
        "Spark collect + validate + features <= 5x the DuckDB baseline at 30x, same feature tables"
    )
    rows = dict(report.targets(_results(scale={"factors": [small, large]}, train_stages=train)))
    assert rows[target] == "**met** (4.9x: 49 s against 10.0 s; feature tables identical)"
    assert rows["`make train` from nothing <= 60 s (median of 3 runs)"] == "**missed** (61.0 s)"
    large["steps"]["duckdb_layers"] = {"seconds": 12.25}  # the like-for-like figure, beside it
    rows = dict(report.targets(_results(scale={"factors": [small, large]})))
    assert "; 4.0x the same script writing bronze and silver too (12.2 s);" in rows[target]
    large["features_identical"] = False  # fast enough, but other feature tables: a miss
    rows = dict(report.targets(_results(scale={"factors": [small, large]})))
    assert rows[target].startswith("**missed**")


def test_capacity_is_measured_against_the_baseline_at_each_rate() -> None:
    """The service's capacity: the highest rate with everything answered and p99 within 2x
    the baseline's at that rate; the baseline's own: before its p99 doubles. Past capacity,
    every answer (refusals included) within 20 ms at p99."""
    cpu = "cpu_ms_per_request"
    baseline = {
        "100": _point(4.0, **{cpu: 1.2}),
        "200": _point(5.0, **{cpu: 1.2}),
        "300": _point(7.0, **{cpu: 1.2}),
        "400": _point(30.0, **{cpu: 1.0}),
    }
    service = {
        "100": _point(6.0, **{cpu: 1.5}),
        "200": _point(9.5, **{cpu: 1.6}),
        "300": _point(15.0, **{cpu: 1.7}),  # more than 2 x 7
        # refusing some: refusals cost less than answers, so not counted in the work
        "400": _point(50.0, 0.9, all_p99_ms=18.0, **{cpu: 0.5}),
    }
    results = {"sqlite": {"fastapi": {"1": baseline}, "bentoml": {"1": service}}}
    (entry,) = capacities_against_baseline(results)["sqlite"].values()
    assert entry["fastapi"] == 300.0  # 30 ms at 400 is past 2 x 4 ms
    assert entry["bentoml"] == 200.0
    assert entry["ratio"]["bentoml"] == pytest.approx(2 / 3)
    # each server's work per request: the median over the rates where it answered everything
    assert entry["cpu_ms_per_request"] == {"fastapi": 1.2, "bentoml": 1.6}
    for point in service.values():
        point.setdefault("all_p99_ms", point["p99_ms"])
    record = {"results": results, "capacity_against_baseline": {"sqlite": {"1": entry}}}
    rows = dict(report.targets(_results(serving_capacity=record)))
    (share,) = [v for k, v in rows.items() if k.startswith("Serving capacity >= 0.8x")]
    assert share.startswith("**missed**") and "0.67x" in share
    assert "CPU per request 1.60 against 1.20 ms" in share
    (past,) = [v for k, v in rows.items() if k.startswith("Past capacity (sqlite)")]
    assert past.startswith("**met**") and "worst at 400 req/s: p99 18.0 ms" in past
    service["300"]["all_p99_ms"] = 25.0
    rows = dict(report.targets(_results(serving_capacity=record)))
    (past,) = [v for k, v in rows.items() if k.startswith("Past capacity (sqlite)")]
    assert past.startswith("**missed**") and "worst at 300 req/s: p99 25.0 ms" in past


def test_a_server_from_another_checkout_reads_this_workspace(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--baseline-tree` starts the service in another checkout: its relative locations would
    resolve there (no champion, no store); the workspace's, passed as overrides, win."""
    here = load_settings("local", environ={}, usecase=PLATFORM_USECASE)
    monkeypatch.chdir(tmp_path)
    there = load_settings("local", environ={}, usecase=PLATFORM_USECASE)
    assert there.features.online_store != here.features.online_store
    served = there.with_overrides(workspace_overrides(here))
    assert served.features.online_store == here.features.online_store
    assert served.features.registry == here.features.registry
    assert served.mlflow.tracking_uri == here.mlflow.tracking_uri
    assert served.paths.bentoml_home == here.paths.bentoml_home
    assert served.paths.lake == here.paths.lake
