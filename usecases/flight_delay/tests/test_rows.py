"""The flight use case's rows: nothing known after departure is a model input, request features
on the origin's clock, and which flights are labelled."""

from __future__ import annotations

import pandas as pd

from features.inputs import with_request_features
from usecases import load
from usecases.flight_delay.rows import POST_DEPARTURE_COLUMNS, labelled, request_features


def test_no_post_departure_column_is_a_model_input() -> None:
    features = load("flight_delay").model_inputs
    assert not POST_DEPARTURE_COLUMNS & set(features)
    assert not {"dep_delay", "arr_delay", "air_time", "dep_utc", "arr_utc"} & set(features)


def test_request_features_use_the_origin_local_clock() -> None:
    flights = pd.DataFrame(
        {
            "carrier": ["UA", "ZZ", "AA"],
            "origin": ["EWR", "JFK", "XYZ"],
            "distance": [1400.0, 100.0, 50.0],
            # 10:15Z in January is 05:15 in New York; 03:30Z on a Saturday in July is Friday 23:30.
            "sched_dep_utc": pd.to_datetime(
                ["2013-01-01T10:15Z", "2013-07-06T03:30Z", "2013-07-06T03:30Z"]
            ),
        }
    )
    params = {
        "carriers": ["AA", "UA"],
        "origin_timezones": {"EWR": "America/New_York", "JFK": "America/New_York"},
    }
    features = with_request_features(flights, load("flight_delay"), params)
    assert features["sched_dep_local_hour"].tolist()[:2] == [5.0, 23.0]
    assert features["sched_dep_weekday"].tolist()[:2] == [1.0, 4.0]  # Tuesday, Friday
    assert features["sched_month"].tolist()[:2] == [1.0, 7.0]
    # an origin with no known time zone has no local clock
    assert features.loc[2, ["sched_dep_local_hour", "sched_month"]].isna().all()
    assert features["carrier_code"].tolist() == [1, -1, 0]  # unknown carriers are "missing"
    assert features["origin_code"].tolist() == [0, 1, -1]
    assert features["distance"].tolist() == [1400.0, 100.0, 50.0]
    # one row at a time, as serving computes them, gives the same values
    compute = request_features(params)
    first = flights.iloc[0].to_dict()
    assert compute(first) == (5.0, 1.0, 1.0, 1400.0, 1.0, 0.0)


def test_cancelled_and_diverted_flights_are_not_labelled() -> None:
    flights = pd.DataFrame(
        {
            "flight_id": ["a", "b", "c", "d"],
            "tailnum": ["N1", None, "N3", "N4"],
            "origin": ["EWR"] * 4,
            "dest": ["LAX"] * 4,
            "carrier": ["UA"] * 4,
            "distance": [1.0] * 4,
            "sched_dep_utc": pd.to_datetime(["2013-01-01T10:00Z"] * 4),
            "flight_date": ["2013-01-01"] * 4,
            "arr_delay": [16.0, 15.0, None, None],
            "cancelled": [False, False, True, False],
            "diverted": [False, False, False, True],
        }
    )
    labels = labelled(flights, {"late_minutes": 15})
    assert labels["flight_id"].tolist() == ["a", "b"]
    assert labels["late"].tolist() == [1, 0]  # more than 15 minutes is late; exactly 15 is not
    assert labels["tailnum"].tolist() == ["N1", "UNKNOWN"]
    assert labels["route"].tolist() == ["EWR-LAX", "EWR-LAX"]
