"""Feature transforms on tiny hand-made frames, with values worked out by hand, edges included."""

from __future__ import annotations

from datetime import datetime

import pytest

from usecases.contract import FeatureContext
from usecases.flight_delay import features as transforms

PARAMS = {
    "aircraft_recent_arrivals": 2,
    "aircraft_late_rate_arrivals": 3,
    "carrier_window_days": 2,
    "route_window_days": 2,
    "late_minutes": 15,
}


def context(**tables) -> FeatureContext:
    return FeatureContext(silver=tables.__getitem__, params=PARAMS, snapshot_id="2013")


FLIGHT_COLUMNS = "flight_id string, tailnum string, carrier string, origin string, dest string, arr_utc timestamp, arr_delay double, cancelled boolean, diverted boolean"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.fixture
def flights(spark):
    rows = [
        # tail N1: four arrivals, the 2nd exactly 24h after the 1st; one cancelled and one diverted flight
        ("f1", "N1", "UA", "EWR", "LAX", at("2013-01-01 10:00"), 10.0, False, False),
        ("f2", "N1", "UA", "LAX", "EWR", at("2013-01-02 10:00"), 30.0, False, False),
        ("f3", "N1", "UA", "EWR", "LAX", at("2013-01-02 20:00"), -5.0, False, False),
        ("f4", "N1", "UA", "LAX", "EWR", at("2013-01-03 08:00"), 20.0, False, False),
        ("f5", "N1", "UA", "EWR", "LAX", None, None, True, False),
        ("f6", "N1", "UA", "EWR", "LAX", None, None, False, True),
        ("g1", "N2", "AA", "JFK", "LAX", at("2013-01-03 09:00"), 0.0, False, False),
    ]
    return spark.createDataFrame(rows, FLIGHT_COLUMNS)


def test_aircraft_history_counts_arrivals_from_when_they_happened(flights) -> None:
    rows = (
        transforms.aircraft_delay_history(context(flights=flights))
        .where("tailnum = 'N1'")
        .orderBy("event_timestamp")
        .collect()
    )
    assert [r.event_timestamp for r in rows] == [
        at("2013-01-01 10:00"),
        at("2013-01-02 10:00"),
        at("2013-01-02 20:00"),
        at("2013-01-03 08:00"),
    ]
    assert [r.tail_arr_delay_last for r in rows] == [10.0, 30.0, -5.0, 20.0]
    # mean of the last 2 arrivals (the window's edge drops the older ones)
    assert [r.tail_arr_delay_mean_recent for r in rows] == [10.0, 20.0, 12.5, 7.5]
    # late (> 15 min) share of the last 3 arrivals
    assert [round(r.tail_late_rate_recent, 4) for r in rows] == [0.0, 0.5, 0.3333, 0.6667]
    # arrivals in the 24 h up to and including this one: exactly 24 h earlier is outside
    assert [r.tail_arrivals_last_24h for r in rows] == [1, 1, 2, 3]


def test_carrier_on_time_is_known_only_after_the_day_ends(flights) -> None:
    rows = (
        transforms.carrier_on_time(context(flights=flights))
        .where("carrier = 'UA'")
        .orderBy("event_timestamp")
        .collect()
    )
    assert [r.event_timestamp for r in rows] == [
        at("2013-01-02 00:00"),
        at("2013-01-03 00:00"),
        at("2013-01-04 00:00"),
    ]
    # day 1: 1 of 1 on time; days 1-2: 2 of 3; days 2-3 (window of 2 days drops day 1): 1 of 3
    assert [round(r.carrier_on_time_rate, 4) for r in rows] == [1.0, 0.6667, 0.3333]
    assert [r.carrier_arrivals for r in rows] == [1, 3, 3]


def test_route_key_and_rate(flights) -> None:
    rows = (
        transforms.route_on_time(context(flights=flights))
        .where("route = 'EWR-LAX'")
        .orderBy("event_timestamp")
        .collect()
    )
    assert [(r.route, r.route_on_time_rate, r.route_arrivals) for r in rows] == [
        ("EWR-LAX", 1.0, 1),
        ("EWR-LAX", 1.0, 2),
    ]


def test_weather_has_the_hour_before(spark) -> None:
    weather = spark.createDataFrame(
        [
            ("EWR", at("2013-01-01 10:00"), 30.0, 5.0, 0.0, 10.0),
            ("EWR", at("2013-01-01 11:00"), 32.0, 6.0, 0.1, 9.0),
        ],
        "origin string, time_hour timestamp, temp double, wind_speed double, precip double, visib double",
    )
    rows = transforms.origin_weather(context(weather=weather)).orderBy("event_timestamp").collect()
    assert (rows[0].weather_temp, rows[0].weather_prev_temp) == (30.0, None)
    assert (rows[1].weather_temp, rows[1].weather_prev_temp, rows[1].weather_prev_visib) == (
        32.0,
        30.0,
        10.0,
    )


def test_plane_attributes_are_valid_from_the_snapshot_year(spark) -> None:
    planes = spark.createDataFrame(
        [("N1", 1999, 149, 2)], "tailnum string, year int, seats int, engines int"
    )
    (row,) = transforms.plane_attributes(context(planes=planes)).collect()
    assert (row.event_timestamp, row.plane_year, row.plane_seats, row.plane_engines) == (
        at("2013-01-01 00:00"),
        1999,
        149,
        2,
    )
