"""The synthetic use case: its data is what its generator makes, its declarations agree with
its settings, and rows, labels and request features come out of the data as declared."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from configs import load_settings
from usecases.project import bind
from usecases.synthetic import data, request, rows


def test_the_committed_data_is_what_the_generator_makes(tmp_path: Path) -> None:
    for made in data.write(tmp_path):
        assert made.read_bytes() == (data.FOLDER / made.name).read_bytes(), made.name


def test_the_use_case_agrees_with_its_settings() -> None:
    project = bind(load_settings("local", environ={}, usecase="synthetic"))
    assert project.settings.params["spike_above"] == 0.8
    assert not project.usecase.examples.never_inputs & set(project.usecase.model_inputs)


def test_labels_are_readings_above_the_bound_predicted_an_hour_ahead() -> None:
    readings = (
        data.readings()
        .head(20)
        .assign(
            reading_id=lambda f: f["meter_id"] + f.index.astype(str),
            reading_utc=lambda f: pd.to_datetime(f["read_utc"], utc=True),
            reading_date=lambda f: f["read_utc"].str[:10],
        )
    )
    labelled = rows.labelled(readings, {"spike_above": 0.0})
    assert (labelled[rows.LABEL] == (readings["value"] > 0.0).astype(int)).all()
    assert (labelled["reading_utc"] - labelled["event_timestamp"] == rows.LEAD).all()


def test_request_features_use_the_facility_clock_and_code() -> None:
    params = {"facility_timezones": {"S1": "America/New_York", "S2": "Europe/Berlin"}}
    features = rows.request_features(params)
    row = request.reading_row(request.MeterReading(**request.EXAMPLE))
    assert row["reading_utc"] == datetime(2024, 4, 1, 12, tzinfo=UTC)
    assert features(row) == (8.0, 0.0)  # 08:00 in New York; S1 is the first code
    hour, code = features({**row, "facility_id": "S9"})
    assert math.isnan(hour) and code == -1.0
