"""Feast's point-in-time join on hand-made feature tables: no value from after a flight's
scheduled departure reaches its training row, and expired values are not used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.definitions import build_repo, feature_table_path
from features.store import feature_store
from pipelines.fit import feature_frame
from tests.conftest import settings_for


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
    settings = settings_for(tmp_path)
    write(
        settings,
        "aircraft_delay_history",
        pd.DataFrame(
            {
                "tailnum": ["N1", "N1"],
                "event_timestamp": ts("2013-01-01T09:00", "2013-01-01T10:00"),
                "tail_arr_delay_last": [5.0, 99.0],
                "tail_arr_delay_mean_recent": [5.0, 52.0],
                "tail_late_rate_recent": [0.0, 0.5],
                "tail_arrivals_last_24h": [1, 2],
            }
        ),
    )
    write(
        settings,
        "origin_weather",
        pd.DataFrame(
            {
                "origin": ["EWR", "EWR"],
                "event_timestamp": ts("2013-01-01T08:00", "2013-01-01T10:00"),
                "weather_temp": [30.0, 40.0],
            }
        ),
    )
    write(
        settings,
        "carrier_on_time",
        pd.DataFrame(
            {
                "carrier": ["UA", "UA"],
                "event_timestamp": ts("2013-01-01T00:00", "2013-01-02T00:00"),
                "carrier_on_time_rate": [0.8, 0.1],
                "carrier_arrivals": [100, 100],
            }
        ),
    )
    write(
        settings,
        "route_on_time",
        pd.DataFrame(
            {
                "route": ["EWR-LAX"],
                "event_timestamp": ts("2013-01-01T00:00"),
                "route_on_time_rate": [0.7],
                "route_arrivals": [10],
            }
        ),
    )
    write(
        settings,
        "plane_attributes",
        pd.DataFrame(
            {
                "tailnum": ["N1"],
                "event_timestamp": ts("2013-01-01T00:00"),
                "plane_year": [1999],
                "plane_seats": [149],
                "plane_engines": [2],
            }
        ),
    )
    store = feature_store(settings)
    store.apply(build_repo(settings).objects)
    return settings, store


def labels_at(*times: str) -> pd.DataFrame:
    n = len(times)
    stamps = ts(*times)
    return pd.DataFrame(
        {
            "flight_id": [f"f{i}" for i in range(n)],
            "tailnum": ["N1"] * n,
            "origin": ["EWR"] * n,
            "carrier": ["UA"] * n,
            "route": ["EWR-LAX"] * n,
            "distance": [2454.0] * n,
            "sched_dep_utc": stamps,
            "event_timestamp": stamps,
            "flight_date": pd.to_datetime(["2013-01-01"] * n),
            "late": [0] * n,
        }
    )


def test_no_value_from_after_the_departure_gets_in(store_with_history) -> None:
    settings, store = store_with_history
    frame = feature_frame(
        store,
        settings,
        labels_at(
            "2013-01-01T08:30:00",
            "2013-01-01T09:59",
            "2013-01-01T10:00",
            "2013-01-01T11:59",
            "2013-01-01T12:30",
        ),
    )
    by_id = frame.set_index("flight_id")
    # the arrival at 10:00 (delay 99) is invisible one minute before, visible at 10:00
    assert by_id["tail_arr_delay_last"].tolist()[:3] == [
        pytest.approx(np.nan, nan_ok=True),
        5.0,
        99.0,
    ]
    # weather: the latest reading at or before departure, and none older than the 2 h TTL
    assert by_id["weather_temp"].tolist() == [
        30.0,
        30.0,
        40.0,
        40.0,
        pytest.approx(np.nan, nan_ok=True),
    ]
    # the carrier's record for Jan 1 is stamped at midnight after it: not known on Jan 1
    assert set(by_id["carrier_on_time_rate"]) == {0.8}
    assert len(frame) == 5 and frame["flight_id"].is_unique


def test_training_rows_carry_no_post_departure_columns(store_with_history) -> None:
    settings, store = store_with_history
    frame = feature_frame(store, settings, labels_at("2013-01-01T09:30"))
    assert not {
        "dep_delay",
        "arr_delay",
        "air_time",
        "dep_utc",
        "arr_utc",
        "cancelled",
        "diverted",
    } & set(frame.columns)


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
        "2013-01-01T08:00:00",  # a weather reading exactly then
        "2013-01-01T08:30:00",
        "2013-01-01T09:00:00",  # an arrival exactly then
        "2013-01-01T10:00:00",
        "2013-01-01T12:00:00",  # exactly the weather view's 2 h TTL after the 10:00 reading
        "2013-01-01T12:00:01",  # one second past it
        "2013-01-02T00:00:00",
        "2013-02-01T00:00:00",  # everything but the plane's attributes expired
    )[["flight_id", "tailnum", "origin", "carrier", "route", "event_timestamp"]]
    entities.loc[1, "tailnum"] = "N404"  # an aircraft the tables never saw
    service = store.get_feature_service(build_repo(settings).service.name)
    job = store.get_historical_features(
        entity_df=entities, features=service, full_feature_names=full_feature_names
    )
    assert isinstance(job, ArrowRetrievalJob)  # the fast path, not a silent fallback
    ours = job.to_df().set_index("flight_id").sort_index()
    feasts = (
        stock.get_historical_features(
            entity_df=entities, features=service, full_feature_names=full_feature_names
        )
        .to_df()
        .set_index("flight_id")
        .sort_index()
    )
    assert sorted(ours.columns) == sorted(feasts.columns)
    assert ours.index.tolist() == feasts.index.tolist() == sorted(entities["flight_id"])
    features = [c for c in feasts.columns if c not in entities.columns]
    assert len(features) == len(build_repo(settings).feature_names)
    for column in features:
        left = pd.to_numeric(ours[column]).to_numpy("float64")
        right = pd.to_numeric(feasts[column]).to_numpy("float64")
        assert np.array_equal(left, right, equal_nan=True), column
    weather = "origin_weather__weather_temp" if full_feature_names else "weather_temp"
    assert ours[weather].tolist()[4:6] == [40.0, pytest.approx(np.nan, nan_ok=True)]
