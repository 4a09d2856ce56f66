"""Days labelled with how much rain or snow fell (the entity rows are the weather use case's)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from usecases.seattle_weather.rows import entity_frame

LABEL = "rainfall"
# The answers, in the order of the labels (a label is its index here): no more than `wet_mm`
# (the params'), up to HEAVY_MM, more.
CLASSES = ("dry", "light", "heavy")
HEAVY_MM = 5.0
SILVER_COLUMNS = ("day_id", "station", "day", "precipitation")


def labelled(days: pd.DataFrame, params: Mapping[str, Any]) -> pd.DataFrame:
    """Every observed day, labelled with the index of its class of rain or snow."""
    rows = entity_frame(days)
    fell = days["precipitation"].to_numpy("float64")
    rows[LABEL] = np.select([fell <= params["wet_mm"], fell <= HEAVY_MM], [0, 1], default=2)
    return rows
