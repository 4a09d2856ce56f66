"""Days become rows labelled with their class of rain or snow, at the bands' edges."""

from __future__ import annotations

import pandas as pd

from usecases.seattle_rainfall import USECASE, rows


def days(*precipitation: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "day_id": [f"SEA-2015-01-{n + 1:02d}" for n in range(len(precipitation))],
            "station": "SEA",
            "day": [f"2015-01-{n + 1:02d}" for n in range(len(precipitation))],
            "precipitation": precipitation,
        }
    )


def test_each_band_and_its_edges() -> None:
    labelled = rows.labelled(days(0.0, 0.1, 5.0, 5.1, 42.0), {"wet_mm": 0.0})
    named = [rows.CLASSES[index] for index in labelled[rows.LABEL]]
    assert named == ["dry", "light", "light", "heavy", "heavy"]
    # a wetter bound for "dry" moves the first edge
    assert list(rows.labelled(days(0.5), {"wet_mm": 1.0})[rows.LABEL]) == [0]


def test_the_target_names_the_labels_classes() -> None:
    assert USECASE.target.kind == "multiclass"
    assert USECASE.target.classes == rows.CLASSES
