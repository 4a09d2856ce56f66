"""The training set's and the model's schema, as MLflow infers them, without MLflow's pass in
Python over every value (`frame_schema`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow.data.digest_utils import compute_pandas_digest
from mlflow.models import infer_signature

from models.tracking import frame_digest, frame_schema


def _frame(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {
            "distance": rng.integers(80, 5000, rows),
            "hour": rng.integers(0, 24, rows).astype("int32"),
            "dep_delay": rng.normal(10, 30, rows),
            "carrier": rng.choice(["AA", "B6", "DL", "UA"], rows).astype(object),
            "tailnum": rng.choice(["N101", "N202", "N303"], rows).astype(object),
            "cancelled": rng.random(rows) < 0.02,
            "sched_dep_utc": pd.date_range("2013-01-01", periods=rows, freq="h", tz="UTC"),
            "weather_precip": rng.random(rows).astype("float32"),
        }
    )
    # Missing values, late in the frame (the types come from the first values; whether a
    # column is required, from every row).
    frame.loc[rows - 3, "dep_delay"] = np.nan
    frame.loc[rows - 2, "tailnum"] = None
    frame.loc[rows - 1, "sched_dep_utc"] = pd.NaT
    frame.loc[rows - 1, "weather_precip"] = np.nan
    return frame


@pytest.mark.parametrize("rows", [5, 500])
def test_frame_schema_is_mlflows_own_inference(rows: int) -> None:
    frame = _frame(rows)
    expected = infer_signature(frame).inputs
    assert frame_schema(frame).to_dict() == expected.to_dict()
    optional = {spec.name for spec in frame_schema(frame).inputs if not spec.required}
    assert optional == {"dep_delay", "tailnum", "sched_dep_utc", "weather_precip"}


def test_a_column_missing_at_the_start_still_gets_its_type() -> None:
    frame = _frame(50)
    frame.loc[:9, "carrier"] = None
    assert frame_schema(frame).to_dict() == infer_signature(frame).inputs.to_dict()


def test_a_column_with_no_value_at_all_is_optional_of_any_type() -> None:
    frame = _frame(20).assign(empty=[None] * 20)
    schema = frame_schema(frame)
    assert schema.to_dict() == infer_signature(frame).inputs.to_dict()
    assert not schema.input_dict()["empty"].required


@pytest.mark.parametrize("rows", [5, 500, 12_000])
def test_frame_digest_is_mlflows_own(rows: int) -> None:
    frame = _frame(rows).assign(
        route=lambda f: (f["carrier"] + "-" + f["tailnum"].fillna("?")).astype("category"),
        text=lambda f: f["carrier"].astype("string"),
    )
    assert frame_digest(frame) == compute_pandas_digest(frame)
    # A text column with a missing value is not text to MLflow's digest, even past its
    # first rows.
    changed = frame.copy()
    changed.loc[rows - 1, "carrier"] = "ZZ"
    assert frame_digest(changed) == compute_pandas_digest(changed)
