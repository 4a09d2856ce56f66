"""Days become rows labelled with their highest temperature, never an input."""

from __future__ import annotations

import pandas as pd

from usecases.seattle_temperature import USECASE, rows


def test_the_label_is_the_days_highest_temperature() -> None:
    days = pd.DataFrame(
        {
            "day_id": ["SEA-2015-07-01", "SEA-2015-07-02"],
            "station": "SEA",
            "day": ["2015-07-01", "2015-07-02"],
            "temp_max": [31.7, 26.1],
        }
    )
    labelled = rows.labelled(days, {})
    assert list(labelled[rows.LABEL]) == [31.7, 26.1]
    assert labelled["event_timestamp"].dt.tz is not None
    # measured during the day: never one of the model's inputs
    assert "temp_max" in USECASE.examples.never_inputs
    assert "temp_max" not in USECASE.model_inputs
    assert USECASE.target.kind == "regression" and USECASE.target.unit == "°C"
