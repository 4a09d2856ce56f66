"""Batch predict: score a day's or a month's scheduled flights with the champion.

Spark reads the scheduled flights from silver and writes the scores; features come from the
offline store point-in-time, as of each flight's scheduled departure, through the same
`feature_frame` as training; the model is the exact version `champion` points to.
Output: `lake/predictions/period=<day or month>/` (parquet) and a `_summary.json` beside it.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from configs import Settings
from features.store import feature_store
from pipelines.adapters import filesystem as fs
from pipelines.adapters.lake import read_silver
from pipelines.adapters.storage import StorageLayout
from pipelines.adapters.tracking import CHAMPION, Tracker
from pipelines.results import StageFailed, StageResult
from pipelines.train import ROW_ID, entity_frame, feature_frame

SUMMARY = "_summary.json"
PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?$")


def predictions_dir(settings: Settings, period: str) -> str:
    return fs.join(settings.paths.lake, "predictions", f"period={period}")


def scheduled_flights(spark: SparkSession, layout: StorageLayout, period: str) -> pd.DataFrame:
    """Every flight scheduled in `period` (a day YYYY-MM-DD or a month YYYY-MM), as known at scheduling."""
    silver = read_silver(spark, layout, "flights")
    if silver is None:
        raise StageFailed("no published silver flights: run the chain first")
    selected = silver.where(F.col("date").startswith(period)).select(
        "flight_id",
        "tailnum",
        "origin",
        "dest",
        "carrier",
        "distance",
        "sched_dep_utc",
        "flight_date",
    )
    frame = pd.DataFrame(selected.toPandas())
    frame["sched_dep_utc"] = pd.to_datetime(frame["sched_dep_utc"], utc=True)
    return entity_frame(frame)


def run(
    settings: Settings, spark_session: Callable[[], SparkSession], period: str | None
) -> StageResult:
    result = StageResult("batch-predict")
    if not period or not PERIOD.match(period):
        raise StageFailed(
            f"batch-predict needs --date YYYY-MM-DD or --month YYYY-MM, got {period!r}"
        )
    tracker = Tracker(settings.mlflow)
    champion = tracker.alias(CHAMPION)
    if champion is None:
        raise StageFailed("there is no champion model yet: run `make train` first")
    spark = spark_session()
    layout = StorageLayout(settings.paths)
    flights = scheduled_flights(spark, layout, period)
    if flights.empty:
        raise StageFailed(f"no scheduled flights in silver for {period}")
    frame = feature_frame(feature_store(settings), settings, flights)
    booster = tracker.load_booster(champion)
    inputs = list(booster.feature_name())
    threshold = float(tracker.run_params(champion.run_id)["threshold"])
    scores = booster.predict(frame[inputs])
    scored_at = datetime.now(UTC).replace(microsecond=0)
    output = pd.DataFrame(
        {
            ROW_ID: frame[ROW_ID],
            "carrier": frame["carrier"],
            "origin": frame["origin"],
            "route": frame["route"],
            "sched_dep_utc": frame["sched_dep_utc"],
            "probability_late": scores,
            "late": scores >= threshold,
            "threshold": threshold,
            "model_version": champion.version,
            "scored_at": scored_at,
            "date": frame["flight_date"].dt.strftime("%Y-%m-%d"),
        }
    )
    target = predictions_dir(settings, period)
    temp = fs.join(fs.parent(target), f"_tmp-{uuid.uuid4().hex[:8]}")
    spark.createDataFrame(output).coalesce(1).write.partitionBy("date").parquet(temp)
    missing = frame[inputs].isna().sum()
    flagged = int(output["late"].sum())
    summary = {
        "period": period,
        "flights": len(output),
        "flagged_late": flagged,
        "mean_probability_late": float(output["probability_late"].mean()),
        "model": settings.mlflow.registered_model,
        "model_version": champion.version,
        "run_id": champion.run_id,
        "threshold": threshold,
        "missing_features": {name: int(count) for name, count in missing.items() if count},
        "scored_at": scored_at.isoformat(),
    }
    fs.write_text(fs.join(temp, SUMMARY), json.dumps(summary, indent=2))
    layout.publish(temp, target, commit_last=SUMMARY)
    result.rows_in = len(flights)
    result.rows_out = len(output)
    result.notes.append(
        f"{period}: {len(output):,} flights scored with version {champion.version}; "
        f"{flagged:,} flagged late ({flagged / len(output):.0%})"
    )
    result.outputs["predictions"] = target
    return result
