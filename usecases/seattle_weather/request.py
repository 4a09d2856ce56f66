"""What a client sends: one `Day` per item, the station and the day to predict."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from usecases.contract import EVENT_TIMESTAMP

EXAMPLE = {"station": "SEA", "day": "2015-12-31"}


class Day(BaseModel):
    model_config = ConfigDict(extra="forbid")

    station: str = Field(min_length=3, max_length=8, pattern=r"^[A-Z0-9]+$", examples=["SEA"])
    day: date = Field(ge=date(1900, 1, 1), lt=date(2200, 1, 1), examples=["2015-12-31"])


def days_frame(days: Sequence[Day]) -> pd.DataFrame:
    """Validated days as entity rows (the columns `rows.entity_frame` makes)."""
    return pd.DataFrame(
        {
            "station": [d.station for d in days],
            EVENT_TIMESTAMP: pd.to_datetime([d.day for d in days]).tz_localize("UTC"),
        }
    )
