"""Request-time features: what is known about a flight when it is scheduled.

Training and serving both call `request_features`, so the two can never compute them apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

REQUEST_FEATURES = [
    "sched_dep_local_hour",
    "sched_dep_weekday",
    "sched_month",
    "distance",
    "carrier_code",
    "origin_code",
]
REQUEST_DESCRIPTIONS = {
    "sched_dep_local_hour": "the hour of the scheduled departure",
    "sched_dep_weekday": "the day of the week",
    "sched_month": "the month",
    "distance": "the flight's distance",
    "carrier_code": "the airline",
    "origin_code": "the departure airport",
}
CATEGORICAL_FEATURES = ["carrier_code", "origin_code"]
UNKNOWN_CODE = -1  # LightGBM treats negative categories as missing


def category_codes(values: pd.Series, known: Sequence[str]) -> pd.Series:
    """A stable integer code per known value (its rank in sorted order); unknown -> -1."""
    mapping = {value: code for code, value in enumerate(sorted(known))}
    return values.map(mapping).fillna(UNKNOWN_CODE).astype("int64")


def request_features(
    flights: pd.DataFrame,
    *,
    carriers: Sequence[str],
    origins: Sequence[str],
    origin_timezones: dict[str, str],
) -> pd.DataFrame:
    """From carrier, origin, distance and `sched_dep_utc` (tz-aware), the request features."""
    local = pd.Series(pd.NaT, index=flights.index, dtype="datetime64[ns]")
    for origin, zone in origin_timezones.items():
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
            "carrier_code": category_codes(flights["carrier"], carriers),
            "origin_code": category_codes(flights["origin"], origins),
        },
        index=flights.index,
    )
