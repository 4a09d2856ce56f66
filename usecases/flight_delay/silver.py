"""Silver transforms of the flight data (Spark): typed rows in, clean rows out, one per flight.

Each keeps the platform's bookkeeping columns (`PROBLEMS`, `carried`): a row that cannot be
placed in time gets a problem, which quarantines its whole drop.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from usecases.contract import PROBLEMS, SilverContext, carried
from usecases.flight_delay import WEATHER_MEASURES


def timezones(context: SilverContext) -> DataFrame:
    """Airport -> time zone: the airports table, plus `extra_timezones` for those it lacks."""
    airports = context.table("airports")
    extra = airports.sparkSession.createDataFrame(
        sorted(context.params["extra_timezones"].items()), "faa string, tzone string"
    )
    known = airports.where(F.col("tzone").isNotNull()).select("faa", "tzone")
    return known.join(extra, "faa", "left_anti").unionByName(extra)


def _local_to_utc(day: Column, hhmm: Column, zone: Column, plus_days: Column | int = 0) -> Column:
    """A local wall-clock time (date + hhmm) in `zone` as a UTC instant."""
    wall_clock = F.timestamp_seconds(
        F.unix_timestamp(F.date_add(day, plus_days).cast("timestamp"))
        + (F.floor(hhmm / 100) * 3600 + (hhmm % 100) * 60)
    )
    return F.to_utc_timestamp(wall_clock, zone)


def _plus_minutes(instant: Column, minutes: Column) -> Column:
    return F.timestamp_seconds(F.unix_timestamp(instant) + minutes.cast("long") * 60)


def flights_to_silver(flights: DataFrame, context: SilverContext) -> DataFrame:
    """Clean flights: UTC instants, a flight key, cancelled/diverted flags, one row per flight.

    Scheduled times are local clock times (departure at the origin, arrival at the
    destination); actual times are the schedule plus the reported delay, which avoids
    guessing the day of an after-midnight arrival.
    """
    zones = F.broadcast(timezones(context))
    origin_tz = zones.select(F.col("faa").alias("origin"), F.col("tzone").alias("_origin_tz"))
    dest_tz = zones.select(F.col("faa").alias("dest"), F.col("tzone").alias("_dest_tz"))
    day = F.make_date("year", "month", "day")
    sched_dep = _local_to_utc(day, F.col("sched_dep_time"), F.col("_origin_tz"))
    arr_same_day = _local_to_utc(day, F.col("sched_arr_time"), F.col("_dest_tz"))
    arr_next_day = _local_to_utc(day, F.col("sched_arr_time"), F.col("_dest_tz"), 1)
    frame = (
        flights.join(origin_tz, "origin", "left")
        .join(dest_tz, "dest", "left")
        .withColumn("sched_dep_utc", sched_dep)
        .withColumn(
            "sched_arr_utc",
            F.when(arr_same_day > F.col("sched_dep_utc"), arr_same_day).otherwise(arr_next_day),
        )
    )
    tz_problems = F.array(
        F.when(
            F.col("_origin_tz").isNull(),
            F.concat(F.lit("no time zone for origin "), F.col("origin")),
        ),
        F.when(
            F.col("_dest_tz").isNull(),
            F.concat(F.lit("no time zone for destination "), F.col("dest")),
        ),
    )
    return frame.select(
        F.concat_ws(
            "-",
            F.col("carrier"),
            F.col("flight"),
            F.date_format("sched_dep_utc", "yyyyMMdd'T'HHmm'Z'"),
        ).alias("flight_id"),
        day.alias("flight_date"),
        "carrier",
        "flight",
        "tailnum",
        "origin",
        "dest",
        "distance",
        F.floor(F.col("sched_dep_time") / 100).cast("int").alias("sched_dep_local_hour"),
        "sched_dep_utc",
        "sched_arr_utc",
        "dep_delay",
        "arr_delay",
        "air_time",
        _plus_minutes(F.col("sched_dep_utc"), F.col("dep_delay")).alias("dep_utc"),
        _plus_minutes(F.col("sched_arr_utc"), F.col("arr_delay")).alias("arr_utc"),
        F.col("dep_delay").isNull().alias("cancelled"),
        (F.col("dep_delay").isNotNull() & F.col("arr_delay").isNull()).alias("diverted"),
        "time_hour",
        F.date_format(day, "yyyy-MM-dd").alias("date"),
        F.concat(F.col(PROBLEMS), F.filter(tz_problems, lambda p: p.isNotNull())).alias(PROBLEMS),
        *carried(flights.columns),
    )


def weather_to_silver(weather: DataFrame, context: SilverContext) -> DataFrame:
    """Hourly weather keyed by origin and the upstream's UTC hour (`time_hour`).

    The local hour is ambiguous when clocks go back; the upstream's UTC stamp is not.
    """
    day = F.make_date("year", "month", "day")
    return weather.select(
        "origin",
        "time_hour",
        *WEATHER_MEASURES,
        F.date_format(day, "yyyy-MM-dd").alias("date"),
        PROBLEMS,
        *carried(weather.columns),
    )
