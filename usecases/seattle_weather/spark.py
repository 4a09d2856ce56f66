"""Spark code of the Seattle weather use case: silver days and the station's recent weather."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from usecases.contract import EVENT_TIMESTAMP, PROBLEMS, FeatureContext, SilverContext, carried


def observations_to_silver(rows: DataFrame, context: SilverContext) -> DataFrame:
    """One row per station and day, keyed `<station>-<day>`."""
    station = F.lit(context.params["station"])
    day = F.to_date("date", "yyyy/MM/dd")
    return rows.select(
        F.concat_ws("-", station, F.date_format(day, "yyyy-MM-dd")).alias("day_id"),
        station.alias("station"),
        day.alias("day"),
        "precipitation",
        "temp_max",
        "temp_min",
        "wind",
        "weather",
        F.date_format(day, "yyyy-MM-dd").alias("date"),
        PROBLEMS,
        *carried(rows.columns),
    )


def station_recent_weather(context: FeatureContext) -> DataFrame:
    """Per station and day, that day's weather and the week's up to it, stamped at the day's
    end (midnight UTC after it): known only once the day is over."""
    wet_mm = context.params["wet_mm"]
    days = context.silver("observations")
    week = (
        Window.partitionBy("station")
        .orderBy(F.unix_date("day"))
        .rangeBetween(-6, Window.currentRow)
    )
    wet = (F.col("precipitation") > wet_mm).cast("double")
    return days.select(
        "station",
        F.date_add("day", 1).cast("timestamp").alias(EVENT_TIMESTAMP),
        F.col("precipitation").alias("precip_yesterday"),
        F.col("temp_max").alias("temp_max_yesterday"),
        F.col("temp_min").alias("temp_min_yesterday"),
        F.col("wind").alias("wind_yesterday"),
        F.sum("precipitation").over(week).alias("precip_week"),
        F.avg(wet).over(week).alias("wet_days_week"),
    )
