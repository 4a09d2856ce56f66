"""Days as rows to predict: entity rows and labels (pandas), and request-time features."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date
from typing import Any

import pandas as pd

from usecases.contract import EVENT_TIMESTAMP, RowFeatures

ROW_ID = "day_id"
SPLIT_COLUMN = "day"
LABEL = "wet"
SILVER_COLUMNS = ("day_id", "station", "day", "precipitation")
# Measured during the day being predicted: never an input.
SAME_DAY_COLUMNS = frozenset({"precipitation", "temp_max", "temp_min", "wind", "weather"})


def day_id(station: str, day: date) -> str:
    """A day's id as silver spells it (`spark.py`): the station, then the day, e.g. SEA-2015-12-31."""
    return f"{station}-{day.isoformat()}"


def entity_frame(days: pd.DataFrame) -> pd.DataFrame:
    """Silver days as entity rows: predicted at the start of the day (UTC midnight)."""
    start = pd.to_datetime(days["day"]).dt.tz_localize("UTC")
    return pd.DataFrame(
        {
            ROW_ID: days["day_id"],
            "station": days["station"],
            EVENT_TIMESTAMP: start,
            SPLIT_COLUMN: pd.to_datetime(days["day"]),
        }
    ).reset_index(drop=True)


def labelled(days: pd.DataFrame, params: Mapping[str, Any]) -> pd.DataFrame:
    """Every observed day, labelled wet when more than `wet_mm` of rain or snow fell."""
    rows = entity_frame(days)
    rows[LABEL] = (days["precipitation"] > params["wet_mm"]).astype("int64").to_numpy()
    return rows


def request_features(params: Mapping[str, Any]) -> RowFeatures:
    """The month and the time of year (a point on a circle, so December is next to January)."""

    def features(day: Mapping[str, Any]) -> tuple[float, float, float]:
        when = day[EVENT_TIMESTAMP]
        angle = 2 * math.pi * (when.timetuple().tm_yday - 1) / 365.25
        return float(when.month), math.sin(angle), math.cos(angle)

    return features
