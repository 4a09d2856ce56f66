"""Batch predict: score a day's or a month's rows of the use case with the champion.

Spark reads the rows to score from silver and writes the scores; features come from the
offline store point-in-time, as of each row's event time, through the same model-input
assembly as training; the model is the exact version `champion` points to.
Output: `lake/predictions/period=<day or month>/` (parquet) and a `_summary.json` beside it;
every score is also recorded in the prediction log (`paths.prediction_log`, source "batch"),
where the monitor reads served and batch predictions alike.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from configs import Settings
from features.inputs import InputsError, offline_frame
from features.store import feature_store
from models.answers import Answers, fields
from models.tracking import CHAMPION, Tracker
from monitoring.prediction_log import BATCH_SOURCE, Batch, PredictionLog, new_prediction_id
from pipelines.adapters.lake import read_silver
from pipelines.adapters.storage import StorageLayout
from pipelines.context import StageContext
from pipelines.results import StageFailed, StageResult
from storage import files as fs
from usecases.contract import EVENT_TIMESTAMP, UseCase

SUMMARY = "_summary.json"
PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?$")


def predictions_dir(settings: Settings, period: str) -> str:
    return fs.join(settings.paths.lake, "predictions", f"period={period}")


def rows_to_score(
    spark: SparkSession, layout: StorageLayout, usecase: UseCase, period: str
) -> pd.DataFrame:
    """Every row of the use case's examples table dated in `period` (a day YYYY-MM-DD or a
    month YYYY-MM), as entity rows."""
    return usecase.examples.entity_frame(silver_rows(spark, layout, usecase, period))


def silver_rows(
    spark: SparkSession, layout: StorageLayout, usecase: UseCase, period: str
) -> pd.DataFrame:
    """The examples' columns of every silver row dated in `period`, instants aware (UTC)."""
    examples = usecase.examples
    silver = read_silver(spark, layout, examples.table)
    if silver is None:
        raise StageFailed(f"no published silver {examples.table}: run the chain first")
    frame = pd.DataFrame(
        silver.where(F.col("date").startswith(period)).select(*examples.columns).toPandas()
    )
    for column, kind in frame.dtypes.items():
        if pd.api.types.is_datetime64_any_dtype(kind) and getattr(kind, "tz", None) is None:
            frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def run(ctx: StageContext) -> StageResult:
    settings, spark_session, period = ctx.settings, ctx.spark, ctx.handoff.period
    result = StageResult("batch-predict")
    if not period or not PERIOD.match(period):
        raise StageFailed(
            f"batch-predict needs --date YYYY-MM-DD or --month YYYY-MM, got {period!r}"
        )
    tracker = Tracker(settings)
    champion = tracker.alias(CHAMPION)
    if champion is None:
        raise StageFailed("there is no champion model yet: run `make train` first")
    spark = spark_session()
    layout = StorageLayout(settings.paths)
    usecase = ctx.usecase
    row_id, outcome = usecase.examples.row_id, usecase.outcome
    rows = rows_to_score(spark, layout, usecase, period)
    if rows.empty:
        raise StageFailed(f"no {usecase.examples.table} in silver for {period}")
    try:
        frame = offline_frame(feature_store(settings), settings, rows)
    except InputsError as err:
        raise StageFailed(str(err)) from err
    model, answering = tracker.load_answering_model(champion)
    inputs = model.features
    answers = answering.answer(model.predict(frame))
    scored_at = datetime.now(UTC).replace(microsecond=0)
    keys = [key for key in usecase.join_keys if key in frame.columns]
    output = pd.DataFrame(
        {
            row_id: frame[row_id],
            **{key: frame[key] for key in keys},
            EVENT_TIMESTAMP: frame[EVENT_TIMESTAMP],
            **answer_columns(answers, usecase),
            **answering.shown,
            "model_version": champion.version,
            "scored_at": scored_at,
            "date": pd.to_datetime(frame[usecase.examples.split_column]).dt.strftime("%Y-%m-%d"),
        }
    )
    target = predictions_dir(settings, period)
    temp = fs.join(fs.parent(target), f"_tmp-{uuid.uuid4().hex[:8]}")
    spark.createDataFrame(output).coalesce(1).write.partitionBy("date").parquet(temp)
    missing = frame[inputs].isna().sum()
    in_short, in_words = summary_of(answers, usecase)
    summary = {
        "period": period,
        "rows": len(output),
        **in_short,
        "model": settings.names.registered_model,
        "model_version": champion.version,
        "run_id": champion.run_id,
        **answering.shown,
        "missing_features": {name: int(count) for name, count in missing.items() if count},
        "scored_at": scored_at.isoformat(),
    }
    fs.write_text(fs.join(temp, SUMMARY), json.dumps(summary, indent=2))
    layout.publish(temp, target, commit_last=SUMMARY)
    logged = log_predictions(settings, frame, inputs, answers, champion.version, row_id)
    result.rows_in = len(rows)
    result.rows_out = len(output)
    result.notes.append(
        f"{period}: {len(output):,} {outcome.items} scored with version {champion.version}; "
        + in_words
    )
    result.outputs["predictions"] = target
    result.outputs["prediction log"] = f"{logged:,} records in {settings.paths.prediction_log}"
    return result


def answer_columns(answers: Answers, usecase: UseCase) -> dict[str, Any]:
    """The answers as columns of the scores table, under the use case's names: binary, the
    probability and the decision; multiclass, the class and one probability column per class
    (`<score_field>_<class>`); regression, the value and its interval's bounds."""
    outcome = usecase.outcome
    if answers.probabilities is not None:
        return {
            outcome.decision_field: answers.label,
            **{
                f"{outcome.score_field}_{name}": [row[name] for row in answers.probabilities]
                for name in usecase.target.classes
            },
        }
    rows = fields(answers, outcome.score_field, outcome.decision_field)
    return {name: [row[name] for row in rows] for name in rows[0]} if rows else {}


def summary_of(answers: Answers, usecase: UseCase) -> tuple[dict[str, Any], str]:
    """What the answers add up to: figures for the summary file, and a line for people."""
    outcome, count = usecase.outcome, len(answers.score)
    if answers.decision is not None:
        flagged = sum(answers.decision)
        return (
            {"flagged": flagged, f"mean_{outcome.score_field}": float(np.mean(answers.score))},
            f"{flagged:,} flagged {outcome.positive} ({flagged / count:.0%})",
        )
    if answers.label is not None:
        mix = pd.Series(answers.label).value_counts()
        return (
            {"classes": {str(name): int(n) for name, n in mix.items()}},
            "answered " + ", ".join(f"{name} {n / count:.0%}" for name, n in mix.items()),
        )
    mean = float(np.mean(answers.score))
    return (
        {f"mean_{outcome.score_field}": mean},
        f"on average {mean:.1f} {usecase.target.unit} predicted",
    )


def log_predictions(
    settings: Settings,
    frame: pd.DataFrame,
    inputs: list[str],
    answers: Answers,
    version: str,
    row_id: str,
) -> int:
    """Record each answer in the prediction log, as the service does for what it answers."""
    if not settings.monitoring.prediction_log.enabled:
        return 0
    values = frame[inputs].to_numpy(dtype="float64")
    absent = pd.isna(values)
    events = pd.to_datetime(frame[EVENT_TIMESTAMP], utc=True).dt.to_pydatetime()
    batch = Batch(
        [new_prediction_id() for _ in range(len(frame))],
        datetime.now(UTC).timestamp(),
        list(events),
        version,
        [str(identifier) for identifier in frame[row_id]],
        answers,
        [
            [name for name, gone in zip(inputs, line_absent, strict=True) if gone]
            for line_absent in absent
        ],
        values,
    )
    log = PredictionLog(
        settings.paths.prediction_log, inputs, source=BATCH_SOURCE, capacity=batch.size or 1
    )
    log.log(batch)
    written = log.flush()
    if written != batch.size:
        raise StageFailed(
            f"the prediction log kept {written:,} of {batch.size:,} scores "
            f"({settings.paths.prediction_log}): see the log above"
        )
    return written
