"""What a client sends: one `MeterReading` per reading to predict."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from usecases.contract import EVENT_TIMESTAMP
from usecases.synthetic.rows import LEAD, ROW_ID

EARLIEST, LATEST = datetime(1900, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)
EXAMPLE = {"meter_id": "S1M1", "facility_id": "S1", "reading_at": "2024-04-01T08:00:00-04:00"}


class MeterReading(BaseModel):
    model_config = ConfigDict(extra="forbid")

    meter_id: str = Field(min_length=1, max_length=16, pattern=r"^[A-Z0-9]+$", examples=["S1M1"])
    facility_id: str = Field(min_length=1, max_length=8, pattern=r"^[A-Z0-9]+$", examples=["S1"])
    # When the reading will be taken, with its UTC offset.
    reading_at: AwareDatetime = Field(examples=["2024-04-01T08:00:00-04:00"])

    @field_validator("reading_at")
    @classmethod
    def _plausible(cls, value: datetime) -> datetime:
        if not EARLIEST <= value < LATEST:
            raise ValueError(
                f"must be on or after {EARLIEST:%Y-%m-%d} and before {LATEST:%Y-%m-%d}"
            )
        return value


def reading_id(meter_id: str, taken: datetime) -> str:
    """The reading's id, as silver spells it (`spark.readings_to_silver`): the prediction log
    keeps it, so a served prediction meets its outcome once the reading lands."""
    return f"{meter_id}-{taken.astimezone(UTC):%Y%m%dT%H%MZ}"


def reading_row(item: MeterReading) -> dict[str, Any]:
    """A validated item as an entity row (the columns `rows.entity_frame` makes)."""
    taken = item.reading_at.astimezone(UTC)
    return {
        ROW_ID: reading_id(item.meter_id, taken),
        "meter_id": item.meter_id,
        "facility_id": item.facility_id,
        "reading_utc": taken,
        EVENT_TIMESTAMP: taken - LEAD,
    }


def readings_as_items(readings: pd.DataFrame) -> list[dict[str, Any]]:
    """Silver readings as the items a client would have sent for them."""
    return [
        {
            "meter_id": row.meter_id,
            "facility_id": row.facility_id,
            "reading_at": row.reading_utc.isoformat(),
        }
        for row in readings.itertuples(index=False)
    ]
