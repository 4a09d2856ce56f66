"""Days as rows to predict (pandas): entity rows, labels and request-time features."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from usecases.contract import EVENT_TIMESTAMP

ROW_ID = "day_id"
SPLIT_COLUMN = "day"
LABEL = "wet"
SILVER_COLUMNS = ("day_id", "station", "day", "precipitation")
# Measured during the day being predicted: never an input.
SAME_DAY_COLUMNS = frozenset({"precipitation", "temp_max", "temp_min", "wind", "weather"})


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


def request_features(days: pd.DataFrame, params: Mapping[str, Any]) -> pd.DataFrame:
    """The month and the time of year (a point on a circle, so December is next to January)."""
    when = days[EVENT_TIMESTAMP]
    angle = 2 * np.pi * (when.dt.dayofyear.to_numpy() - 1) / 365.25
    return pd.DataFrame(
        {
            "month": when.dt.month.astype("float64").to_numpy(),
            "season_sin": np.sin(angle),
            "season_cos": np.cos(angle),
        },
        index=days.index,
    )
