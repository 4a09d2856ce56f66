"""The flight use case's `replicate` (scale-factor runs): each copy is new data, its dates moved
by whole years, its fleet its own."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from configs import load_settings
from pipelines import land
from pipelines.adapters.storage import StorageLayout
from pipelines.context import SparkProvider, StageContext
from usecases.flight_delay import SOURCES, replicate
from usecases.flight_delay.tests.slice import SLICE_DIR, slice_overrides
from usecases.project import bind

FLIGHTS, PLANES, WEATHER = (
    next(s for s in SOURCES if s.name == name) for name in ("flights", "planes", "weather")
)


def test_a_copy_moves_dates_by_whole_years_and_flies_its_own_fleet() -> None:
    flights = pd.DataFrame(
        {
            "year": ["2013", "2013"],
            "month": ["12", "1"],
            "day": ["31", "1"],
            "tailnum": ["N14228", "NA"],
            "time_hour": ["2014-01-01T02:00:00Z", "2013-01-01T10:00:00Z"],
        }
    )
    moved = replicate(flights, FLIGHTS, 3, "NA")
    assert moved["year"].tolist() == ["2016", "2016"]
    # A late-December departure is in January UTC: its stamp moves with its own year.
    assert moved["time_hour"].tolist() == ["2017-01-01T02:00:00Z", "2016-01-01T10:00:00Z"]
    assert moved["tailnum"].tolist() == ["N14228S03", "NA"]  # missing stays missing
    assert flights["year"].tolist() == ["2013", "2013"]  # the source frame is not touched
    planes = replicate(pd.DataFrame({"tailnum": ["N1"], "year": ["1999"]}), PLANES, 2, "NA")
    assert planes.to_dict("records") == [{"tailnum": "N1S02", "year": "1999"}]  # built in 1999


def test_a_copy_in_a_leap_year_keeps_each_stamp_next_to_its_row_s_date() -> None:
    # 28 February 2013, 19:00 in New York is 1 March 00:00 UTC; three years later (2016 has
    # a 29 February) it must be 29 February 00:00 UTC, a day after its row's date, not 1 March.
    flights = pd.DataFrame(
        {
            "year": ["2013", "2013", "2013"],
            "month": ["2", "7", "3"],
            "day": ["28", "4", "1"],
            "tailnum": ["N1", "N2", "N3"],
            "time_hour": ["2013-03-01T00:00:00Z", "2013-07-04T12:00:00Z", "not a stamp"],
        }
    )
    moved = replicate(flights, FLIGHTS, 3, "NA")
    assert moved["time_hour"].tolist() == [
        "2016-02-29T00:00:00Z",
        "2016-07-04T12:00:00Z",
        "not a stamp",  # left for collect to refuse
    ]
    # The night clocks went back in 2013 has two 01:00s in New York, an hour apart in UTC;
    # their copies must stay distinct (weather is unique per airport and UTC hour).
    night = pd.DataFrame(
        {
            "year": ["2013", "2013"],
            "month": ["11", "11"],
            "day": ["3", "3"],
            "time_hour": ["2013-11-03T05:00:00Z", "2013-11-03T06:00:00Z"],
        }
    )
    assert replicate(night, WEATHER, 3, "NA")["time_hour"].tolist() == [
        "2016-11-03T05:00:00Z",
        "2016-11-03T06:00:00Z",
    ]


def test_scale_factor_lands_every_copy_as_new_drops(tmp_path: Path) -> None:
    settings = (
        load_settings("local", environ={}, usecase="flight_delay")
        .with_overrides(slice_overrides(tmp_path))
        .with_overrides({"land": {"scale_factor": 3}})
    )
    result = land.run(StageContext(bind(settings), SparkProvider(settings)))
    layout = StorageLayout(settings.paths)
    assert result.ok
    assert [d.drop_id for d in layout.landed_drops("flights")] == [
        f"{year}-{month:02d}" for year in (2013, 2014, 2015) for month in (1, 2, 3)
    ]
    assert [d.drop_id for d in layout.landed_drops("planes")] == ["2013"]
    planes = pd.read_csv(layout.landing_file("planes", "2013"), dtype=str)
    source_planes = pd.read_csv(SLICE_DIR / "planes.csv", dtype=str)
    assert len(planes) == 3 * len(source_planes) and planes["tailnum"].is_unique
    airports = pd.read_csv(layout.landing_file("airports", "2013"), dtype=str)
    assert len(airports) == len(pd.read_csv(SLICE_DIR / "airports.csv", dtype=str))
    source_flights = pd.read_csv(SLICE_DIR / "flights.csv", dtype=str, keep_default_na=False)
    copy = pd.read_csv(layout.landing_file("flights", "2015-02"), dtype=str, keep_default_na=False)
    original = source_flights[source_flights["month"] == "2"]
    assert len(copy) == len(original)
    assert copy["dep_delay"].tolist() == original["dep_delay"].tolist()
    expected_tails = [t if t in ("", "NA") else f"{t}S02" for t in original["tailnum"]]
    assert copy["tailnum"].tolist() == expected_tails
