"""Days labelled with their highest temperature (the entity rows are the weather use case's)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from usecases.seattle_weather.rows import entity_frame

LABEL = "temp_max_c"
SILVER_COLUMNS = ("day_id", "station", "day", "temp_max")


def labelled(days: pd.DataFrame, params: Mapping[str, Any]) -> pd.DataFrame:
    """Every observed day, labelled with its highest temperature (°C)."""
    rows = entity_frame(days)
    rows[LABEL] = days["temp_max"].astype("float64").to_numpy()
    return rows
