"""Where the Spark stages' time goes: each stage's wall time split into Spark's own work (its
jobs, from Spark's event log) and the rest (Python, the JVM's start, the driver between jobs),
with how many jobs and actions (SQL executions) each stage starts and how many times it scans
CSV and parquet.

    .venv/bin/python -m bench.spark_profile                 # `make train`, 1x, one process
    .venv/bin/python -m bench.spark_profile --factor 10     # collect, validate, features at 10x

At 1x it runs `python -m pipelines train` from an empty workspace, as a new user does (one
process, one Spark session); at a larger factor it lands, then runs the data stages in one
process, as `bench.scale` does (fit on millions of rows is not what is profiled). Spark's event log
(`spark.eventLog.enabled`) is written to the workspace and read back; each job carries the
pipeline stage that started it as its job group (`pipelines/context.py`).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.common import (
    WORK,
    measure,
    print_table,
    python,
    stage_seconds,
    workspace_env,
    write_result,
)
from configs.chain import SPARK_STAGES

JOB_START, JOB_END = "SparkListenerJobStart", "SparkListenerJobEnd"
APP_START, APP_END = "SparkListenerApplicationStart", "SparkListenerApplicationEnd"
SQL_START = "org.apache.spark.sql.execution.ui.SparkListenerSQLExecutionStart"
GROUP = "spark.jobGroup.id"
SCAN = re.compile(r"^\(\d+\) Scan (csv|parquet)", re.MULTILINE)
PARQUET_SCAN = re.compile(r"^\(\d+\) Scan parquet", re.MULTILINE)
SQL_ID = "spark.sql.execution.id"
CALL_SITE = "callSite.short"
PROJECT = str(Path(__file__).resolve().parents[1])
TOP_SITES = 6


def _call_site(short: str) -> str:
    """ "collect at <project>/pipelines/collect.py:327" -> "collect at pipelines/collect.py:327"
    (and a library's file from its package down)."""
    action, _, where = short.partition(" at ")
    if not where:
        return short or "(unknown)"
    for prefix in ("site-packages/", f"{PROJECT}/"):
        if prefix in where:
            where = where.split(prefix, 1)[1]
            break
    return f"{action} at {where}"


def _union_seconds(intervals: list[tuple[int, int]]) -> float:
    """Seconds covered by at least one of the [start, end] millisecond intervals."""
    covered, end_of_last = 0, None
    for start, end in sorted(intervals):
        if end_of_last is None or start > end_of_last:
            covered += end - start
            end_of_last = end
        elif end > end_of_last:
            covered += end - end_of_last
            end_of_last = end
    return covered / 1000


def read_event_logs(folder: Path) -> dict[str, Any]:
    """Per pipeline stage (job group): jobs, actions, Spark-busy seconds, scans; and how many
    Spark applications (JVM start-ups) there were, with their up-time."""
    jobs: dict[int, dict[str, Any]] = {}
    plans: dict[str, str] = {}
    applications = []
    logs = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]
    if not logs:
        raise SystemExit(f"no Spark event log in {folder}")
    for log in sorted(logs):
        app_jobs: dict[int, dict[str, Any]] = {}
        started = ended = None
        for line in log.read_text().splitlines():
            event = json.loads(line)
            kind = event["Event"]
            if kind == JOB_START:
                properties = event.get("Properties") or {}
                app_jobs[event["Job ID"]] = {
                    "group": properties.get(GROUP) or "(none)",
                    "sql": properties.get(SQL_ID),
                    "site": _call_site(properties.get(CALL_SITE, "")),
                    "start": event["Submission Time"],
                }
            elif kind == JOB_END and event["Job ID"] in app_jobs:
                app_jobs[event["Job ID"]]["end"] = event["Completion Time"]
            elif kind == SQL_START:
                plans[f"{log.name}:{event['executionId']}"] = event.get(
                    "physicalPlanDescription", ""
                )
            elif kind == APP_START:
                started = event["Timestamp"]
            elif kind == APP_END:
                ended = event["Timestamp"]
        for job_id, job in app_jobs.items():
            job["sql"] = f"{log.name}:{job['sql']}" if job["sql"] is not None else None
            jobs[hash((log.name, job_id))] = job
        applications.append(
            {"log": log.name, "seconds": (ended - started) / 1000 if started and ended else None}
        )
    by_stage: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"jobs": 0, "actions": set(), "intervals": [], "sites": defaultdict(list)}
    )
    for job in jobs.values():
        stage = by_stage[job["group"]]
        stage["jobs"] += 1
        if job["sql"]:
            stage["actions"].add(job["sql"])
        if "end" in job:
            stage["intervals"].append((job["start"], job["end"]))
            stage["sites"][job["site"]].append((job["start"], job["end"]))
    profile = {}
    for group, stage in by_stage.items():
        text = "\n".join(plans.get(sql, "") for sql in stage["actions"])
        profile[group] = {
            "jobs": stage["jobs"],
            "actions": len(stage["actions"]),
            "spark_seconds": _union_seconds(stage["intervals"]),
            # each scan's own line in the plan's formatted description: "(3) Scan parquet"
            "csv_scans": len(SCAN.findall(text)) - len(PARQUET_SCAN.findall(text)),
            "parquet_scans": len(PARQUET_SCAN.findall(text)),
            # where the Spark time goes: the call sites whose jobs took longest
            "call_sites": [
                {"site": site, "jobs": len(spans), "spark_seconds": _union_seconds(spans)}
                for site, spans in sorted(
                    stage["sites"].items(), key=lambda item: -_union_seconds(item[1])
                )[:TOP_SITES]
            ],
        }
    return {"stages": profile, "applications": applications}


def profile_run(factor: int, folder: Path) -> dict[str, Any]:
    """Run the chain (1x: `train`, one process) or land, then the data stages (one process,
    as `bench.scale` runs them) with Spark's event log on; the profile of each stage."""
    shutil.rmtree(folder, ignore_errors=True)
    events = folder / "spark-events"
    events.mkdir(parents=True)
    extra = {
        "spark": {
            "conf": {
                "spark.eventLog.enabled": "true",
                "spark.eventLog.dir": str(events),
                # one plain JSON-lines file per application (Spark 4 rolls and compresses them)
                "spark.eventLog.rolling.enabled": "false",
                "spark.eventLog.compress": "false",
            }
        },
        "land": {"scale_factor": factor},
    }
    env = workspace_env(folder, extra)
    first, last = SPARK_STAGES[0], SPARK_STAGES[-1]
    commands = (
        [("train",)] if factor == 1 else [("land",), ("train", "--from", first, "--to", last)]
    )
    wall: dict[str, float] = {}
    processes = []
    for command in commands:
        run = measure(python("-m", "pipelines", *command), env)  # raises when it fails
        wall |= stage_seconds(run.output)
        processes.append(
            {"command": " ".join(command), "seconds": run.seconds, "peak_gib": run.peak_gib}
        )
    spark = read_event_logs(events)
    stages = {}
    for name, seconds in wall.items():
        found = spark["stages"].get(
            name,
            {"jobs": 0, "actions": 0, "spark_seconds": 0.0, "csv_scans": 0, "parquet_scans": 0},
        )
        stages[name] = {
            "seconds": seconds,
            **found,
            "outside_spark_seconds": max(0.0, seconds - found["spark_seconds"]),
        }
    return {
        "factor": factor,
        "stages": stages,
        "processes": processes,
        "spark_applications": spark["applications"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--factor", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the workspace and event logs")
    parser.add_argument(
        "--name", default=None, help="result name (default spark_profile_<factor>x)"
    )
    args = parser.parse_args()
    folder = WORK / f"spark_profile_{args.factor}x"
    result = profile_run(args.factor, folder)
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    print_table(
        [
            "stage",
            "seconds",
            "in Spark jobs",
            "outside",
            "jobs",
            "actions",
            "CSV scans",
            "parquet scans",
        ],
        [
            [
                name,
                f"{s['seconds']:.1f}",
                f"{s['spark_seconds']:.1f}",
                f"{s['outside_spark_seconds']:.1f}",
                s["jobs"],
                s["actions"],
                s["csv_scans"],
                s["parquet_scans"],
            ]
            for name, s in result["stages"].items()
        ],
    )
    for name, s in result["stages"].items():
        for site in s.get("call_sites", []):
            print(
                f"  {name}: {site['spark_seconds']:7.1f} s in {site['jobs']:4d} job(s)  {site['site']}"
            )
    print(f"Spark applications (JVM start-ups): {len(result['spark_applications'])}")
    write_result(args.name or f"spark_profile_{args.factor}x", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
