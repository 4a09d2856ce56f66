"""Seattle rainfall: how much rain or snow will fall in Seattle on a given day? Multiclass.

The platform's multiclass example, on the Seattle weather data the `seattle_weather` use case
collects (the `vega_datasets` package's NOAA file): the same source, silver table and feature
view, imported from that use case rather than copied, with another target: whether the day is
dry, has light rain or snow (up to 5 mm) or heavy (more), predicted at the start of the day
from the weather of the days before and the time of year. The service answers the likeliest
one and each one's probability.

Why not the file's own `weather` column (drizzle, fog, rain, snow, sun)? Its labelling changed
over the years (191 days of rain in 2012, 3 in 2014; 5 of fog in 2012, 151 in 2014): no model
learns from 2014 what 2015 calls rain. Amounts of rain are measured the same way every year.
"""

from __future__ import annotations

from importlib import resources

from usecases.contract import Entity, Examples, Feature, Outcome, Request, Target, UseCase
from usecases.seattle_rainfall import rows
from usecases.seattle_weather import OBSERVATIONS, RECENT_WEATHER, Params
from usecases.seattle_weather import request as days
from usecases.seattle_weather import rows as weather_rows

NAME = "seattle_rainfall"

USECASE = UseCase(
    name=NAME,
    description="How much rain or snow will fall in Seattle on a given day?",
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
    target=Target("multiclass", classes=rows.CLASSES),
    outcome=Outcome(
        score_field="rainfall_probabilities",
        decision_field="rainfall",
        question="How much rain or snow will fall in Seattle on this day?",
        items="days",
        explanation=(
            "For a day in Seattle, will it be dry (no more than {wet_mm} mm of rain or snow), "
            "light (up to 5 mm) or heavy (more)? The model answers at the start of the day, "
            "from the weather of the days before and the time of year, with how likely each "
            "one is."
        ),
    ),
    default_source_dir=lambda: str(resources.files("vega_datasets") / "_data"),
    params=Params,
)
