"""Flights as rows to predict (pandas): entity rows, labels and request-time features.

Training, batch scoring and serving all build their rows here, so they cannot differ.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from usecases.contract import EVENT_TIMESTAMP

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


def category_codes(values: pd.Series, known: Sequence[str]) -> pd.Series:
    """A stable integer code per known value (its rank in sorted order); unknown -> -1."""
    mapping = {value: code for code, value in enumerate(sorted(known))}
    return values.map(mapping).fillna(UNKNOWN_CODE).astype("int64")


def request_features(flights: pd.DataFrame, params: Mapping[str, Any]) -> pd.DataFrame:
    """From carrier, origin, distance and `sched_dep_utc` (tz-aware), the request features,
    on the origin's local clock."""
    zones: dict[str, str] = params["origin_timezones"]
    local = pd.Series(pd.NaT, index=flights.index, dtype="datetime64[ns]")
    for origin, zone in zones.items():
        rows = flights["origin"] == origin
        if rows.any():
            local[rows] = (
                flights.loc[rows, "sched_dep_utc"].dt.tz_convert(zone).dt.tz_localize(None)
            )
    return pd.DataFrame(
        {
            "sched_dep_local_hour": local.dt.hour.astype("float64"),
            "sched_dep_weekday": local.dt.weekday.astype("float64"),
            "sched_month": local.dt.month.astype("float64"),
            "distance": flights["distance"].astype("float64"),
            "carrier_code": category_codes(flights["carrier"], params["carriers"]),
            "origin_code": category_codes(flights["origin"], list(zones)),
        },
        index=flights.index,
    )
