"""Flights as rows to predict (pandas): entity rows, labels and request-time features.

Training, batch scoring and serving all build their rows here, so they cannot differ.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from usecases.contract import EVENT_TIMESTAMP, RowFeatures

ROW_ID = "flight_id"
SPLIT_COLUMN = "flight_date"
LABEL = "late"
# A flight with no tail number is looked up as this aircraft (which has no features).
UNKNOWN_TAILNUM = "UNKNOWN"
# A route's key, e.g. JFK-LAX: built by `route_key` (pandas, text) and the Spark features.
ROUTE_SEPARATOR = "-"
UNKNOWN_CODE = -1  # LightGBM treats negative categories as missing
# What silver holds per flight that the rows are built from.
SILVER_COLUMNS = (
    "flight_id",
    "flight",
    "tailnum",
    "origin",
    "dest",
    "carrier",
    "distance",
    "sched_dep_utc",
    "flight_date",
    "arr_delay",
    "cancelled",
    "diverted",
)
# Known only after the plane has left: never an input.
POST_DEPARTURE_COLUMNS = frozenset(
    {
        "dep_delay",
        "arr_delay",
        "dep_utc",
        "arr_utc",
        "air_time",
        "dep_time",
        "arr_time",
        "cancelled",
        "diverted",
    }
)


def route_key(origin: Any, dest: Any) -> Any:
    """An origin-destination pair's key, for strings and pandas Series alike."""
    return origin + ROUTE_SEPARATOR + dest


def entity_frame(flights: pd.DataFrame) -> pd.DataFrame:
    """Silver flights as entity rows: keys, event time (the scheduled departure) and the
    request inputs. Used for training (with a label added) and for batch scoring."""
    return pd.DataFrame(
        {
            ROW_ID: flights["flight_id"],
            "tailnum": flights["tailnum"].fillna(UNKNOWN_TAILNUM),
            "origin": flights["origin"],
            "carrier": flights["carrier"],
            "route": route_key(flights["origin"], flights["dest"]),
            "distance": flights["distance"],
            "sched_dep_utc": flights["sched_dep_utc"],
            EVENT_TIMESTAMP: flights["sched_dep_utc"],
            SPLIT_COLUMN: pd.to_datetime(flights["flight_date"]),
        }
    ).reset_index(drop=True)


def labelled(flights: pd.DataFrame, params: Mapping[str, Any]) -> pd.DataFrame:
    """Every flight that arrived, with its label: late by more than `late_minutes`.

    Cancelled and diverted flights have no arrival delay to learn from: the model answers
    "will it arrive late, if it flies"."""
    arrived = flights[~flights["cancelled"] & ~flights["diverted"] & flights["arr_delay"].notna()]
    rows = entity_frame(arrived)
    rows[LABEL] = (arrived["arr_delay"] > params["late_minutes"]).astype("int64").to_numpy()
    return rows


def request_features(params: Mapping[str, Any]) -> RowFeatures:
    """The request features of one flight (carrier, origin, distance, `sched_dep_utc` aware),
    with the scheduled departure on the origin's local clock: local hour, weekday, month,
    the distance, and the carrier's and origin's codes (a known value's rank in sorted order;
    unknown -> -1). An origin with no known time zone has no local clock: NaN."""
    zones = {origin: ZoneInfo(zone) for origin, zone in params["origin_timezones"].items()}
    carriers = _codes(params["carriers"])
    origins = _codes(zones)
    nan = math.nan

    def features(flight: Mapping[str, Any]) -> tuple[float, ...]:
        origin = flight["origin"]
        zone = zones.get(origin)
        if zone is None:
            hour = weekday = month = nan
        else:
            local = flight["sched_dep_utc"].astimezone(zone)
            hour, weekday, month = float(local.hour), float(local.weekday()), float(local.month)
        return (
            hour,
            weekday,
            month,
            float(flight["distance"]),
            float(carriers.get(flight["carrier"], UNKNOWN_CODE)),
            float(origins.get(origin, UNKNOWN_CODE)),
        )

    return features


def _codes(known: Iterable[str]) -> dict[str, int]:
    """A stable integer code per known value: its rank in sorted order."""
    return {value: code for code, value in enumerate(sorted(known))}
