"""Seattle temperature: how warm will it get in Seattle on a given day? A regression.

The platform's regression example, on the Seattle weather data the `seattle_weather` use case
collects (the `vega_datasets` package's NOAA file): the same source, silver table and feature
view, imported from that use case rather than copied, with another target: the day's highest
temperature in degrees Celsius, predicted at the start of the day from the weather of the days
before and the time of year. The service answers the value and a range around it that held
the configured share of the validation days (`training.interval_coverage`).
"""

from __future__ import annotations

from importlib import resources

from usecases.contract import Entity, Examples, Feature, Outcome, Request, Target, UseCase
from usecases.seattle_temperature import rows
from usecases.seattle_weather import OBSERVATIONS, RECENT_WEATHER, Params
from usecases.seattle_weather import request as days
from usecases.seattle_weather import rows as weather_rows

NAME = "seattle_temperature"

USECASE = UseCase(
    name=NAME,
    description="How warm will it get in Seattle on a given day?",
    sources=(OBSERVATIONS,),
    entities=(Entity("station", "station", "A weather station, by its code"),),
    views=(RECENT_WEATHER,),
    examples=Examples(
        table="observations",
        columns=rows.SILVER_COLUMNS,
        row_id=weather_rows.ROW_ID,
        split_column=weather_rows.SPLIT_COLUMN,
        entity_frame=weather_rows.entity_frame,
        labelled=rows.labelled,
        label=rows.LABEL,
        never_inputs=weather_rows.SAME_DAY_COLUMNS,
    ),
    request=Request(
        item=days.Day,
        items_field="days",
        max_items=366,
        row=days.day_row,
        compute=weather_rows.request_features,
        features=(
            Feature("month", "float", "the month"),
            Feature("season_sin", "float", "the time of year (first of two parts)"),
            Feature("season_cos", "float", "the time of year (second of two parts)"),
        ),
        example=days.EXAMPLE,
        probe_row={"station": "READYZ"},
    ),
    target=Target("regression", unit="°C"),
    outcome=Outcome(
        score_field="temp_max_c",
        question="How warm will it get in Seattle on this day?",
        items="days",
        explanation=(
            "For a day in Seattle, the highest temperature of the day, in degrees Celsius. The "
            "model answers at the start of the day, from the weather of the days before and "
            "the time of year, with a range the day's highest temperature usually falls in."
        ),
    ),
    default_source_dir=lambda: str(resources.files("vega_datasets") / "_data"),
    params=Params,
)
