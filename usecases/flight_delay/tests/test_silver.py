"""The collect transforms on hand-made rows, with values worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipelines.collect import parse
from usecases.contract import PROBLEMS, SilverContext
from usecases.flight_delay import SOURCES
from usecases.flight_delay.silver import flights_to_silver

FLIGHTS = next(source for source in SOURCES if source.name == "flights")

COLUMNS = FLIGHTS.column_names


def flight(
    month: int, day: int, sched_dep: int, sched_arr: int, dest: str, **extra: str | None
) -> dict[str, str | None]:
    row: dict[str, str | None] = dict.fromkeys(COLUMNS)
    row |= {
        "year": "2013",
        "month": str(month),
        "day": str(day),
        "sched_dep_time": str(sched_dep),
        "sched_arr_time": str(sched_arr),
        "dep_delay": "0",
        "arr_delay": "0",
        "carrier": "UA",
        "flight": "100",
        "origin": "EWR",
        "dest": dest,
        "distance": "1000",
        "time_hour": "2013-01-01T00:00:00Z",
    }
    return row | extra


@pytest.fixture
def silver_of(spark):
    zones = spark.createDataFrame(
        [
            ("EWR", "America/New_York"),
            ("LAX", "America/Los_Angeles"),
            ("SJU", "America/Puerto_Rico"),
        ],
        "faa string, tzone string",
    )

    def run(*rows: dict[str, str | None]) -> list[dict]:
        raw = spark.createDataFrame(rows, ", ".join(f"{c} string" for c in COLUMNS)).selectExpr(
            "*", "CAST(NULL AS STRING) AS _corrupt_record"
        )
        context = SilverContext(
            table={"airports": zones}.__getitem__, params={"extra_timezones": {}}
        )
        frame = flights_to_silver(parse(raw, FLIGHTS), context)
        return [r.asDict() for r in frame.orderBy("sched_dep_utc").collect()]

    return run


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_winter_departure_and_arrival_in_another_zone(silver_of) -> None:
    (row,) = silver_of(flight(1, 1, 515, 819, "LAX", dep_delay="2", arr_delay="11"))
    assert row["sched_dep_utc"] == utc("2013-01-01 10:15")  # EST is UTC-5
    assert row["sched_arr_utc"] == utc("2013-01-01 16:19")  # PST is UTC-8
    assert row["dep_utc"] == utc("2013-01-01 10:17")
    assert row["arr_utc"] == utc("2013-01-01 16:30")
    assert row["flight_id"] == "UA-100-20130101T1015Z"
    assert row["sched_dep_local_hour"] == 5
    assert (row["cancelled"], row["diverted"], row[PROBLEMS]) == (False, False, [])


def test_clocks_going_forward(silver_of) -> None:
    before, after = silver_of(
        flight(3, 10, 159, 500, "LAX"), flight(3, 10, 300, 600, "LAX", flight="101")
    )
    assert before["sched_dep_utc"] == utc("2013-03-10 06:59")  # 01:59 EST
    assert after["sched_dep_utc"] == utc("2013-03-10 07:00")  # 03:00 EDT, one minute later


def test_arrival_after_local_midnight_is_the_next_day(silver_of) -> None:
    (row,) = silver_of(flight(6, 1, 2200, 105, "LAX"))
    assert row["sched_dep_utc"] == utc("2013-06-02 02:00")  # 22:00 EDT
    assert row["sched_arr_utc"] == utc("2013-06-02 08:05")  # 01:05 PDT on June 2
    assert row["flight_date"].isoformat() == "2013-06-01"  # the local departure date


def test_zone_from_the_extra_table(silver_of) -> None:
    (row,) = silver_of(flight(1, 1, 800, 1200, "SJU"))
    assert row["sched_arr_utc"] == utc("2013-01-01 16:00")  # AST is UTC-4, no DST


def test_cancelled_and_diverted(silver_of) -> None:
    cancelled, diverted = silver_of(
        flight(1, 1, 600, 900, "LAX", dep_delay=None, arr_delay=None),
        flight(1, 1, 700, 1000, "LAX", flight="102", arr_delay=None),
    )
    assert (cancelled["cancelled"], cancelled["diverted"], cancelled["dep_utc"]) == (
        True,
        False,
        None,
    )
    assert (diverted["cancelled"], diverted["diverted"], diverted["arr_utc"]) == (False, True, None)


def test_unknown_zone_and_unparseable_values_are_flagged(silver_of) -> None:
    (row,) = silver_of(flight(1, 1, 600, 900, "XXX", dep_delay="late"))
    assert "no time zone for destination XXX" in row[PROBLEMS]
    assert "dep_delay: late is not a double" in row[PROBLEMS]


def test_a_request_with_its_flight_number_gets_the_id_silver_gives(silver_of) -> None:
    """Served predictions meet their outcomes only if the request names the flight: the id
    the service builds from a request equals the one silver holds (in winter, in summer time,
    and departing from another zone)."""
    from usecases.flight_delay.request import Flight, flight_row

    rows = silver_of(
        flight(1, 10, 600, 900, "LAX"),
        flight(7, 1, 2359, 300, "SJU", flight="42"),
        flight(3, 10, 830, 1100, "EWR", origin="LAX", carrier="AA", tailnum="N1"),
    )
    assert len(rows) == 3
    for row in rows:
        request = Flight(
            carrier=row["carrier"],
            flight=int(row["flight"]),
            tailnum=row["tailnum"],
            origin=row["origin"],
            dest=row["dest"],
            distance=row["distance"],
            scheduled_departure=row["sched_dep_utc"].replace(tzinfo=UTC),
        )
        assert flight_row(request)["flight_id"] == row["flight_id"]
    unnamed = Flight(
        carrier="UA",
        origin="EWR",
        dest="IAH",
        scheduled_departure="2013-03-01T05:15:00-05:00",
        distance=1400,
    )
    assert "flight_id" not in flight_row(unnamed)
