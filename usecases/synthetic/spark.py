"""Spark code of the synthetic use case: silver readings, and the meters' and facilities' features."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from usecases.contract import EVENT_TIMESTAMP, PROBLEMS, FeatureContext, SilverContext, carried


def readings_to_silver(readings: DataFrame, context: SilverContext) -> DataFrame:
    """One row per meter and reading, its local time placed in UTC by its facility's time zone
    (the facilities table); a reading at a facility with no known zone refuses its drop."""
    zones = F.broadcast(
        context.table("facilities").where(F.col("tz").isNotNull()).select("facility_id", "tz")
    )
    day = F.make_date("year", "month", "day")
    wall_clock = F.timestamp_seconds(
        F.unix_timestamp(day.cast("timestamp"))
        + F.floor(F.col("hhmm") / 100) * 3600
        + (F.col("hhmm") % 100) * 60
    )
    placed = readings.join(zones, "facility_id", "left").withColumn(
        "reading_utc", F.to_utc_timestamp(wall_clock, F.col("tz"))
    )
    no_zone = F.when(
        F.col("tz").isNull(), F.concat(F.lit("no time zone for facility "), "facility_id")
    )
    return placed.select(
        F.concat_ws("-", "meter_id", F.date_format("reading_utc", "yyyyMMdd'T'HHmm'Z'")).alias(
            "reading_id"
        ),
        "meter_id",
        "facility_id",
        "reading_utc",
        day.alias("reading_date"),
        "value",
        F.date_format(day, "yyyy-MM-dd").alias("date"),
        F.concat(F.col(PROBLEMS), F.filter(F.array(no_zone), lambda p: p.isNotNull())).alias(
            PROBLEMS
        ),
        *carried(readings.columns),
    )


def meter_recent(context: FeatureContext) -> DataFrame:
    """Per meter, at each reading: its value, and the mean and spike rate of its last
    `recent_readings` readings, known once the reading is taken."""
    params = context.params
    recent = (
        Window.partitionBy("meter_id")
        .orderBy("reading_utc")
        .rowsBetween(-(params["recent_readings"] - 1), Window.currentRow)
    )
    spike = (F.col("value") > params["spike_above"]).cast("double")
    return context.silver("meter_readings").select(
        "meter_id",
        F.col("reading_utc").alias(EVENT_TIMESTAMP),
        F.col("value").alias("meter_value_last"),
        F.avg("value").over(recent).alias("meter_value_mean_recent"),
        F.avg(spike).over(recent).alias("meter_spike_rate_recent"),
    )


def facility_week(context: FeatureContext) -> DataFrame:
    """Per facility and day, the share of its readings above the spike bound over the week up to
    that day, stamped at the day's end (midnight UTC after it)."""
    params = context.params
    spike = (F.col("value") > params["spike_above"]).cast("double")
    days = (
        context.silver("meter_readings")
        .groupBy("facility_id", "reading_date")
        .agg(F.sum(spike).alias("spikes"), F.count("*").alias("readings"))
    )
    week = (
        Window.partitionBy("facility_id")
        .orderBy(F.unix_date("reading_date"))
        .rangeBetween(-(params["facility_window_days"] - 1), Window.currentRow)
    )
    return days.select(
        "facility_id",
        F.date_add("reading_date", 1).cast("timestamp").alias(EVENT_TIMESTAMP),
        (F.sum("spikes").over(week) / F.sum("readings").over(week)).alias(
            "facility_spike_rate_week"
        ),
    )
