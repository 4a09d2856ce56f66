"""Readings to predict: entity rows and labels (pandas), and request-time features."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from usecases.contract import EVENT_TIMESTAMP, RowFeatures

ROW_ID = "reading_id"
SPLIT_COLUMN = "reading_date"
LABEL = "spike"
SILVER_COLUMNS = ("reading_id", "meter_id", "facility_id", "reading_utc", "reading_date", "value")
# The value is the reading itself: known only once read.
AFTER_THE_READING = frozenset({"value", LABEL})
# A reading is predicted this long before it is taken.
LEAD = timedelta(hours=1)
UNKNOWN_CODE = -1


def entity_frame(readings: pd.DataFrame) -> pd.DataFrame:
    """Silver readings as entity rows, predicted `LEAD` before each reading."""
    taken = pd.to_datetime(readings["reading_utc"], utc=True)
    return pd.DataFrame(
        {
            ROW_ID: readings["reading_id"],
            "meter_id": readings["meter_id"],
            "facility_id": readings["facility_id"],
            "reading_utc": taken,
            EVENT_TIMESTAMP: taken - LEAD,
            SPLIT_COLUMN: pd.to_datetime(readings["reading_date"]),
        }
    ).reset_index(drop=True)


def labelled(readings: pd.DataFrame, params: Mapping[str, Any]) -> pd.DataFrame:
    """Every reading, with its label: its value above `spike_above`."""
    rows = entity_frame(readings)
    rows[LABEL] = (readings["value"] > params["spike_above"]).astype("int64").to_numpy()
    return rows


def request_features(params: Mapping[str, Any]) -> RowFeatures:
    """The reading's hour on its facility's clock (NaN for a facility with no known zone) and the
    facility's code (its rank among the known facilities; unknown: -1)."""
    zones = {facility: ZoneInfo(zone) for facility, zone in params["facility_timezones"].items()}
    codes = {facility: code for code, facility in enumerate(sorted(zones))}

    def features(row: Mapping[str, Any]) -> tuple[float, float]:
        zone = zones.get(row["facility_id"])
        hour = math.nan if zone is None else float(row["reading_utc"].astimezone(zone).hour)
        return hour, float(codes.get(row["facility_id"], UNKNOWN_CODE))

    return features
