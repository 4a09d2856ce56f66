"""What a client sends to score flights: one `Flight` per item (pydantic, checked by the service)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from usecases.contract import EVENT_TIMESTAMP
from usecases.flight_delay.rows import ROW_ID, UNKNOWN_TAILNUM, route_key

# Departures the service scores: well inside what pandas' nanosecond timestamps hold
# (1677-2262); anything outside is a client mistake, not a flight.
EARLIEST_DEPARTURE = datetime(1900, 1, 1, tzinfo=UTC)
LATEST_DEPARTURE = datetime(2200, 1, 1, tzinfo=UTC)

EXAMPLE = {
    "carrier": "UA",
    "tailnum": "N14228",
    "origin": "EWR",
    "dest": "IAH",
    "scheduled_departure": "2013-12-30T05:15:00-05:00",
    "distance": 1400,
    "flight": 1545,
}


class Flight(BaseModel):
    model_config = ConfigDict(extra="forbid")

    carrier: str = Field(min_length=2, max_length=3, pattern=r"^[A-Z0-9]{2,3}$", examples=["UA"])
    tailnum: str | None = Field(None, max_length=10, pattern=r"^[A-Z0-9]+$", examples=["N14228"])
    origin: str = Field(min_length=3, max_length=4, pattern=r"^[A-Z0-9]{3,4}$", examples=["EWR"])
    dest: str = Field(min_length=3, max_length=4, pattern=r"^[A-Z0-9]{3,4}$", examples=["IAH"])
    # With its UTC offset, e.g. 2013-12-30T05:15:00-05:00.
    scheduled_departure: AwareDatetime = Field(examples=["2013-12-30T05:15:00-05:00"])
    distance: float = Field(gt=0, le=10000, allow_inf_nan=False, examples=[1400])
    # The flight number, when the client knows it: the prediction is then logged under the
    # flight's id, so the monitor can join it with the flight's arrival once it lands.
    flight: int | None = Field(None, ge=1, le=9999, examples=[1545])

    @field_validator("scheduled_departure")
    @classmethod
    def _plausible_departure(cls, value: datetime) -> datetime:
        if not EARLIEST_DEPARTURE <= value < LATEST_DEPARTURE:
            raise ValueError(
                f"must be on or after {EARLIEST_DEPARTURE:%Y-%m-%d} and before "
                f"{LATEST_DEPARTURE:%Y-%m-%d} (UTC)"
            )
        return value


def flight_id(flight: Flight, departure_utc: datetime) -> str:
    """The flight's id as silver spells it (carrier-number-departure in UTC, to the minute)."""
    return f"{flight.carrier}-{flight.flight}-{departure_utc:%Y%m%dT%H%MZ}"


def flight_row(flight: Flight) -> dict[str, Any]:
    """A validated flight as an entity row (the columns `rows.entity_frame` makes)."""
    departure = flight.scheduled_departure.astimezone(UTC)
    identified = {} if flight.flight is None else {ROW_ID: flight_id(flight, departure)}
    return identified | {
        "carrier": flight.carrier,
        "tailnum": flight.tailnum or UNKNOWN_TAILNUM,
        "origin": flight.origin,
        "route": route_key(flight.origin, flight.dest),
        "distance": flight.distance,
        "sched_dep_utc": departure,
        EVENT_TIMESTAMP: departure,
    }


def flights_as_items(flights: pd.DataFrame) -> list[dict[str, Any]]:
    """Silver flights as the items a client would have sent for them, flight number included
    (their predictions join the flights' outcomes)."""
    return [
        {
            "carrier": row.carrier,
            "tailnum": row.tailnum if isinstance(row.tailnum, str) else None,
            "origin": row.origin,
            "dest": row.dest,
            "scheduled_departure": row.sched_dep_utc.isoformat(),
            "distance": float(row.distance),
            "flight": int(row.flight),
        }
        for row in flights.itertuples(index=False)
    ]
