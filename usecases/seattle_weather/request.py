"""What a client sends: one `Day` per item, the station and the day to predict."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from usecases.contract import EVENT_TIMESTAMP
from usecases.seattle_weather.rows import ROW_ID, day_id

EXAMPLE = {"station": "SEA", "day": "2015-12-31"}


class Day(BaseModel):
    model_config = ConfigDict(extra="forbid")

    station: str = Field(min_length=3, max_length=8, pattern=r"^[A-Z0-9]+$", examples=["SEA"])
    day: date = Field(ge=date(1900, 1, 1), lt=date(2200, 1, 1), examples=["2015-12-31"])


def day_row(day: Day) -> dict[str, Any]:
    """A validated day as an entity row (the columns `rows.entity_frame` makes): predicted at
    the start of the day, UTC."""
    return {
        ROW_ID: day_id(day.station, day.day),
        "station": day.station,
        EVENT_TIMESTAMP: datetime(day.day.year, day.day.month, day.day.day, tzinfo=UTC),
    }
