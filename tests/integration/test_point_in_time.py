"""Feast's point-in-time join on hand-made feature tables (the platform's own use case): no
value from after a row's moment of prediction reaches its training row, expired values are not
used, and the platform's offline store answers exactly as Feast's own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.definitions import build_repo, feature_table_path
from features.store import feature_store
from pipelines.fit import feature_frame
from tests.conftest import platform_settings
from usecases.synthetic.rows import LEAD


def ts(*values: str) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values), utc=True, format="ISO8601"))


def write(settings, view: str, frame: pd.DataFrame) -> None:
    path = Path(feature_table_path(settings, view))
    path.parent.mkdir(parents=True, exist_ok=True)
    declared = next(v for v in build_repo(settings).usecase.views if v.name == view)
    for name in (
        f.name for f in declared.features
    ):  # features a test does not care about are missing values
        if name not in frame:
            frame[name] = np.nan
    frame.to_parquet(path, coerce_timestamps="us", allow_truncated_timestamps=True, index=False)


@pytest.fixture
def store_with_history(tmp_path: Path):
    settings = platform_settings(tmp_path)
    write(
        settings,
        "meter_recent",
        pd.DataFrame(
            {
                "meter_id": ["M1", "M1"],
                "event_timestamp": ts("2024-01-01T09:00", "2024-01-01T10:00"),
                "meter_value_last": [5.0, 99.0],
                "meter_value_mean_recent": [5.0, 52.0],
                "meter_spike_rate_recent": [0.0, 0.5],
            }
        ),
    )
    write(
        settings,
        "facility_week",
        pd.DataFrame(
            {
                "facility_id": ["S1", "S1"],
                "event_timestamp": ts("2024-01-01T00:00", "2024-01-02T00:00"),
                "facility_spike_rate_week": [0.8, 0.1],
            }
        ),
    )
    store = feature_store(settings)
    store.apply(build_repo(settings).objects)
    return settings, store


def labels_at(*times: str) -> pd.DataFrame:
    """Entity rows of meter M1 at facility S1, each predicted at one of `times`."""
    n = len(times)
    stamps = ts(*times)
    return pd.DataFrame(
        {
            "reading_id": [f"r{i}" for i in range(n)],
            "meter_id": ["M1"] * n,
            "facility_id": ["S1"] * n,
            "reading_utc": stamps + LEAD,
            "event_timestamp": stamps,
            "reading_date": pd.to_datetime(["2024-01-01"] * n),
            "spike": [0] * n,
        }
    )


def test_no_value_from_after_the_moment_of_prediction_gets_in(store_with_history) -> None:
    settings, store = store_with_history
    frame = feature_frame(
        store,
        settings,
        labels_at(
            "2024-01-01T08:30:00",
            "2024-01-01T09:59",
            "2024-01-01T10:00",
            "2024-01-03T10:00",  # exactly the meter view's 2-day TTL after the 10:00 reading
            "2024-01-03T10:00:01",  # one second past it
        ),
    )
    by_id = frame.set_index("reading_id")
    # the reading at 10:00 (99) is invisible one minute before, visible at 10:00
    assert by_id["meter_value_last"].tolist() == [
        pytest.approx(np.nan, nan_ok=True),
        5.0,
        99.0,
        99.0,
        pytest.approx(np.nan, nan_ok=True),
    ]
    # the facility's week up to Jan 1 is stamped at midnight after it: not known on Jan 1
    assert by_id["facility_spike_rate_week"].tolist()[:3] == [0.8, 0.8, 0.8]
    assert len(frame) == 5 and frame["reading_id"].is_unique


def test_training_rows_carry_nothing_known_only_after_the_reading(store_with_history) -> None:
    settings, store = store_with_history
    frame = feature_frame(store, settings, labels_at("2024-01-01T09:30"))
    assert "value" not in frame.columns
    assert not build_repo(settings).usecase.examples.never_inputs - {"spike"} & set(frame.columns)


@pytest.mark.parametrize("full_feature_names", [False, True])
def test_the_asof_join_store_answers_exactly_as_feasts_own(
    store_with_history, full_feature_names: bool
) -> None:
    """The platform's offline store (an ASOF JOIN) against Feast's own DuckDB store (a range
    join, then the newest row): same rows, same values, at the TTL's edges too."""
    from features.offline_store import ArrowRetrievalJob

    settings, store = store_with_history
    stock = feature_store(
        settings.with_overrides({"features": {"offline_store": {"type": "duckdb"}}})
    )
    entities = labels_at(
        "2024-01-01T00:00:00",  # a facility row exactly then
        "2024-01-01T08:30:00",
        "2024-01-01T09:00:00",  # a reading exactly then
        "2024-01-01T10:00:00",
        "2024-01-03T10:00:00",  # exactly the meter view's 2-day TTL after the 10:00 reading
        "2024-01-03T10:00:01",  # one second past it
        "2024-01-02T00:00:00",
        "2024-02-01T00:00:00",  # everything expired
    )[["reading_id", "meter_id", "facility_id", "event_timestamp"]]
    entities.loc[1, "meter_id"] = "M404"  # a meter the tables never saw
    service = store.get_feature_service(build_repo(settings).service.name)
    job = store.get_historical_features(
        entity_df=entities, features=service, full_feature_names=full_feature_names
    )
    assert isinstance(job, ArrowRetrievalJob)  # the fast path, not a silent fallback
    ours = job.to_df().set_index("reading_id").sort_index()
    feasts = (
        stock.get_historical_features(
            entity_df=entities, features=service, full_feature_names=full_feature_names
        )
        .to_df()
        .set_index("reading_id")
        .sort_index()
    )
    assert sorted(ours.columns) == sorted(feasts.columns)
    assert ours.index.tolist() == feasts.index.tolist() == sorted(entities["reading_id"])
    features = [c for c in feasts.columns if c not in entities.columns]
    assert len(features) == len(build_repo(settings).feature_names)
    for column in features:
        left = pd.to_numeric(ours[column]).to_numpy("float64")
        right = pd.to_numeric(feasts[column]).to_numpy("float64")
        assert np.array_equal(left, right, equal_nan=True), column
    last = "meter_recent__meter_value_last" if full_feature_names else "meter_value_last"
    assert ours[last].tolist()[4:6] == [99.0, pytest.approx(np.nan, nan_ok=True)]
