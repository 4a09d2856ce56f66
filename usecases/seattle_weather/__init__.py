"""Seattle weather: will it rain (or snow) in Seattle on a given day?

The second use case of the platform, on real data: the daily weather recorded in Seattle from
2012 to 2015 (NOAA, public domain), as shipped by the `vega_datasets` package. One station is
one entity; its recent weather, as known at the start of the day, is served by Feast; the
model is a scikit-learn logistic regression. It is small on purpose: `make test` runs its
whole chain.
"""

from __future__ import annotations

from datetime import timedelta
from importlib import resources

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from usecases.contract import (
    Entity,
    Examples,
    Feature,
    Outcome,
    Request,
    Source,
    UseCase,
    View,
)
from usecases.seattle_weather import request, rows

NAME = "seattle_weather"
_SPARK = f"usecases.{NAME}"


class Params(BaseModel):
    """`params` in config.yaml: what this use case's code reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    station: str = Field(min_length=1)
    wet_mm: float = Field(ge=0)


def _month_of(frame: pd.DataFrame) -> pd.Series:
    return frame["date"].str[:7].str.replace("/", "-", regex=False)


OBSERVATIONS = Source(
    name="observations",
    file="seattle-weather.csv",
    monthly=True,
    columns={
        "date": "string",
        "precipitation": "double",
        "temp_max": "double",
        "temp_min": "double",
        "wind": "double",
        "weather": "string",
    },
    date_sql="to_date(date, 'yyyy/MM/dd')",
    drop_period=_month_of,
    silver=f"{_SPARK}.spark:observations_to_silver",
    silver_columns=(
        "day_id",
        "station",
        "day",
        "precipitation",
        "temp_max",
        "temp_min",
        "wind",
        "weather",
        "date",
    ),
)

RECENT_WEATHER = View(
    name="station_recent_weather",
    entity="station",
    # A day's record is stamped at its end; two days later it is too old to describe "yesterday".
    ttl=timedelta(days=2),
    features=(
        Feature("precip_yesterday", "float", "rain or snow the day before"),
        Feature("temp_max_yesterday", "float", "the highest temperature the day before"),
        Feature("temp_min_yesterday", "float", "the lowest temperature the day before"),
        Feature("wind_yesterday", "float", "the wind the day before"),
        Feature("precip_week", "float", "rain or snow over the past week"),
        Feature("wet_days_week", "float", "share of the past week's days with rain or snow"),
    ),
    transform=f"{_SPARK}.spark:station_recent_weather",
    inputs=("observations",),
)

USECASE = UseCase(
    name=NAME,
    description="Will it rain or snow in Seattle on a given day?",
    sources=(OBSERVATIONS,),
    entities=(Entity("station", "station", "A weather station, by its code"),),
    views=(RECENT_WEATHER,),
    examples=Examples(
        table="observations",
        columns=rows.SILVER_COLUMNS,
        row_id=rows.ROW_ID,
        split_column=rows.SPLIT_COLUMN,
        entity_frame=rows.entity_frame,
        labelled=rows.labelled,
        label=rows.LABEL,
        never_inputs=rows.SAME_DAY_COLUMNS,
    ),
    request=Request(
        item=request.Day,
        items_field="days",
        max_items=366,
        row=request.day_row,
        compute=rows.request_features,
        features=(
            Feature("month", "float", "the month"),
            Feature("season_sin", "float", "the time of year (first of two parts)"),
            Feature("season_cos", "float", "the time of year (second of two parts)"),
        ),
        example=request.EXAMPLE,
        probe_row={"station": "READYZ"},
    ),
    outcome=Outcome(
        score_field="probability_wet",
        decision_field="wet",
        question="Will it rain or snow in Seattle on this day?",
        items="days",
        positive="wet",
        explanation=(
            "For a day in Seattle, will any rain or snow fall (more than {wet_mm} mm)? The "
            "model answers with a probability at the start of the day, from the weather of the "
            "days before and the time of year."
        ),
    ),
    default_source_dir=lambda: str(resources.files("vega_datasets") / "_data"),
    params=Params,
)
