"""Feature tables of the flight use case (Spark): pure functions of silver, frame out.

Every table has its entity key and an `event_timestamp`: the moment the values became
known. The point-in-time join then gives a flight only the rows stamped at or before its
scheduled departure, so nothing from the future can reach a training example.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from usecases.contract import EVENT_TIMESTAMP, FeatureContext
from usecases.flight_delay.rows import ROUTE_SEPARATOR

# The weather measures the model reads, at the scheduled hour and the hour before.
WEATHER_FEATURES = ("temp", "wind_speed", "precip", "visib")


def completed_arrivals(flights: DataFrame) -> DataFrame:
    """Flights that arrived: cancelled and diverted flights have no arrival to learn from."""
    return flights.where(
        ~F.col("cancelled")
        & ~F.col("diverted")
        & F.col("arr_utc").isNotNull()
        & F.col("arr_delay").isNotNull()
    )


def aircraft_delay_history(context: FeatureContext) -> DataFrame:
    """Per aircraft, its delay record as of each of its arrivals.

    A row is stamped with the arrival time (`arr_utc`), so an arrival counts only from the
    moment it happened, never from the departure of the flight being predicted.
    """
    params = context.params
    arrivals = completed_arrivals(context.silver("flights")).where(F.col("tailnum").isNotNull())
    by_arrival = Window.partitionBy("tailnum").orderBy("arr_utc", "flight_id")
    recent = by_arrival.rowsBetween(-(params["aircraft_recent_arrivals"] - 1), Window.currentRow)
    late_window = by_arrival.rowsBetween(
        -(params["aircraft_late_rate_arrivals"] - 1), Window.currentRow
    )
    last_day = (
        Window.partitionBy("tailnum")
        .orderBy(F.unix_timestamp("arr_utc"))
        .rangeBetween(-24 * 3600 + 1, Window.currentRow)
    )
    late = (F.col("arr_delay") > params["late_minutes"]).cast("double")
    history = arrivals.select(
        "tailnum",
        F.col("arr_utc").alias(EVENT_TIMESTAMP),
        "flight_id",
        F.col("arr_delay").alias("tail_arr_delay_last"),
        F.avg("arr_delay").over(recent).alias("tail_arr_delay_mean_recent"),
        F.avg(late).over(late_window).alias("tail_late_rate_recent"),
        F.count(F.lit(1)).over(last_day).cast("long").alias("tail_arrivals_last_24h"),
    )
    # Two arrivals of one aircraft stamped the same minute: keep the later state only.
    latest_first = Window.partitionBy("tailnum", EVENT_TIMESTAMP).orderBy(F.col("flight_id").desc())
    return (
        history.withColumn("_rank", F.row_number().over(latest_first))
        .where(F.col("_rank") == 1)
        .drop("_rank", "flight_id")
    )


def origin_weather(context: FeatureContext) -> DataFrame:
    """Per origin airport and hour: the weather then, and the hour before."""
    weather = context.silver("weather")
    current = weather.select(
        "origin",
        F.col("time_hour").alias(EVENT_TIMESTAMP),
        *[F.col(m).alias(f"weather_{m}") for m in WEATHER_FEATURES],
    )
    previous = weather.select(
        "origin",
        (F.col("time_hour") + F.expr("INTERVAL 1 HOUR")).alias(EVENT_TIMESTAMP),
        *[F.col(m).alias(f"weather_prev_{m}") for m in WEATHER_FEATURES],
    )
    return current.join(previous, ["origin", EVENT_TIMESTAMP], "left")


def _rolling_on_time(
    flights: DataFrame, key: str, key_column: Column, days: int, prefix: str, late_minutes: float
) -> DataFrame:
    """Share of arrivals on time over the `days` UTC days up to and including each day.

    Stamped at the end of the day (midnight UTC after it): a day's record is known only once
    the day is over.
    """
    daily = (
        completed_arrivals(flights)
        .withColumn(key, key_column)
        .groupBy(key, F.to_date("arr_utc").alias("day"))
        .agg(
            F.count(F.lit(1)).alias("arrivals"),
            F.sum((F.col("arr_delay") <= late_minutes).cast("long")).alias("on_time"),
        )
    )
    window = (
        Window.partitionBy(key)
        .orderBy(F.unix_date("day"))
        .rangeBetween(-(days - 1), Window.currentRow)
    )
    return daily.select(
        key,
        F.date_add("day", 1).cast("timestamp").alias(EVENT_TIMESTAMP),
        (F.sum("on_time").over(window) / F.sum("arrivals").over(window)).alias(
            f"{prefix}_on_time_rate"
        ),
        F.sum("arrivals").over(window).cast("long").alias(f"{prefix}_arrivals"),
    )


def carrier_on_time(context: FeatureContext) -> DataFrame:
    params = context.params
    return _rolling_on_time(
        context.silver("flights"),
        "carrier",
        F.col("carrier"),
        params["carrier_window_days"],
        "carrier",
        params["late_minutes"],
    )


def route_on_time(context: FeatureContext) -> DataFrame:
    params = context.params
    key = F.concat_ws(ROUTE_SEPARATOR, F.col("origin"), F.col("dest"))
    return _rolling_on_time(
        context.silver("flights"),
        "route",
        key,
        params["route_window_days"],
        "route",
        params["late_minutes"],
    )


def plane_attributes(context: FeatureContext) -> DataFrame:
    """Static plane attributes, valid from the start of the snapshot's year."""
    return context.silver("planes").select(
        "tailnum",
        F.lit(f"{context.snapshot_id}-01-01 00:00:00").cast("timestamp").alias(EVENT_TIMESTAMP),
        F.col("year").cast("long").alias("plane_year"),
        F.col("seats").cast("long").alias("plane_seats"),
        F.col("engines").cast("long").alias("plane_engines"),
    )
