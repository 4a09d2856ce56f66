"""Synthetic meters: the platform's own use case, on generated data.

The platform's tests (`tests/`) run on it, so that they hold for any use case and stay when a
fork deletes the examples; keep it. It has the shapes a use case can have, small: a reference
table delivered as a snapshot (facilities and their time zones) that the silver transform reads, a
monthly table (meter readings, local times placed in UTC, an instant checked against the row's
date), two feature views on two entities (a meter's recent readings, a facility's week), and
request-time features with a category. Will a meter's next reading spike (its value
above `spike_above`)? It is predicted an hour ahead. The data is made by `data.py`.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from usecases.contract import (
    Entity,
    Examples,
    Feature,
    Governance,
    Outcome,
    Request,
    Slice,
    Source,
    UseCase,
    View,
)
from usecases.synthetic import request, rows

NAME = "synthetic"
_SPARK = f"usecases.{NAME}.spark"


class Params(BaseModel):
    """`params` in config.yaml, read by rows.py and spark.py."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spike_above: float
    recent_readings: int = Field(ge=1)
    facility_window_days: int = Field(ge=1)
    # The facilities the model knows (its category codes) and their clocks.
    facility_timezones: dict[str, str] = Field(min_length=1)


def _month_of(frame: pd.DataFrame) -> pd.Series:
    return frame["year"].str.zfill(4) + "-" + frame["month"].str.zfill(2)


SOURCES = (
    Source(
        name="facilities",
        file="facilities.csv",
        monthly=False,
        columns={"facility_id": "string", "tz": "string", "district": "string"},
    ),
    Source(
        name="meter_readings",
        file="meter_readings.csv",
        monthly=True,
        columns={
            "meter_id": "string",
            "facility_id": "string",
            "year": "int",
            "month": "int",
            "day": "int",
            "hhmm": "int",
            "value": "double",
            "read_utc": "timestamp",
        },
        date_sql="make_date(year, month, day)",
        drop_period=_month_of,
        instant_column="read_utc",
        silver=f"{_SPARK}:readings_to_silver",
        silver_columns=(*rows.SILVER_COLUMNS, "date"),
    ),
)

VIEWS = (
    View(
        name="meter_recent",
        entity="meter",
        ttl=timedelta(days=2),
        features=(
            Feature("meter_value_last", "float", "the meter's last reading"),
            Feature(
                "meter_value_mean_recent", "float", "the meter's average over its last readings"
            ),
            Feature(
                "meter_spike_rate_recent", "float", "how often the meter's last readings spiked"
            ),
        ),
        transform=f"{_SPARK}:meter_recent",
        inputs=("meter_readings",),
    ),
    View(
        name="facility_week",
        entity="facility",
        ttl=timedelta(days=3),
        features=(
            Feature(
                "facility_spike_rate_week",
                "float",
                "how often the facility's readings spiked this week",
            ),
        ),
        transform=f"{_SPARK}:facility_week",
        inputs=("meter_readings",),
    ),
)

USECASE = UseCase(
    name=NAME,
    description="Will a meter's next reading spike? (synthetic: the platform's tests run on it)",
    sources=SOURCES,
    entities=(
        Entity("meter", "meter_id", "A meter, by its id"),
        Entity("facility", "facility_id", "A facility, by its id"),
    ),
    views=VIEWS,
    examples=Examples(
        table="meter_readings",
        columns=rows.SILVER_COLUMNS,
        row_id=rows.ROW_ID,
        split_column=rows.SPLIT_COLUMN,
        entity_frame=rows.entity_frame,
        labelled=rows.labelled,
        label=rows.LABEL,
        never_inputs=rows.AFTER_THE_READING,
    ),
    request=Request(
        item=request.MeterReading,
        items_field="meter_readings",
        max_items=1000,
        row=request.reading_row,
        compute=rows.request_features,
        features=(
            Feature("local_hour", "float", "the hour of the reading on the facility's clock"),
            Feature("facility_code", "float", "which facility"),
        ),
        categorical=("facility_code",),
        example=request.EXAMPLE,
        probe_row={"meter_id": "READYZ", "facility_id": "READYZ"},
        from_silver=request.readings_as_items,
    ),
    outcome=Outcome(
        score_field="probability_spike",
        decision_field="spike",
        question="Will this reading spike?",
        items="meter readings",
        positive="over the bound",
        explanation=(
            "For a meter's next reading, will its value be above {spike_above}? The model "
            "answers an hour ahead from the meter's recent readings, its facility's spikes over the "
            "past week and the time of day on the facility's clock."
        ),
    ),
    default_source_dir=lambda: str(Path(__file__).resolve().parent / "data"),
    params=Params,
    slices=(
        Slice("facility", "facility_id", "the facility"),
        Slice("hour", "local_hour", "the hour of the reading", bands=(6.0, 12.0, 18.0)),
    ),
    governance=Governance(
        intended_use=(
            "Exercising the platform: a made-up meter, answering whether its next reading "
            "spikes. Not for any real decision."
        ),
        limits=("The readings are generated, with spikes planted by a known rule.",),
    ),
)
