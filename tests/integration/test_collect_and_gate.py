"""land -> collect -> validate on the slice: what lands in silver, idempotency, and every kind
of bad drop quarantined or gated while the silver that was there stays exactly as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipelines.adapters.storage import StorageLayout
from tests.conftest import SLICE_DIR, settings_for
from tests.lake_helpers import (
    chain,
    land_new_flights_drop,
    problems,
    read_landed,
    silver_digest,
    tree_digest,
)


def silver_flights(settings) -> pd.DataFrame:
    folder = Path(StorageLayout(settings.paths).silver("flights"))
    return pd.read_parquet(folder)


def test_baseline_silver_holds_every_flight_once_in_utc(lake) -> None:
    source = pd.read_csv(SLICE_DIR / "flights.csv")
    silver = silver_flights(lake)
    assert len(silver) == len(source) == silver["flight_id"].nunique()
    assert sorted(silver["drop_id"].unique()) == ["2013-01", "2013-02", "2013-03"]
    # The upstream's own UTC hour agrees with our local-to-UTC conversion on every row,
    # across the change to daylight saving time on 2013-03-10.
    sched_hour = silver["sched_dep_utc"].dt.floor("h")
    assert (sched_hour == silver["time_hour"]).all()
    duration = silver["sched_arr_utc"] - silver["sched_dep_utc"]
    assert duration.min() > pd.Timedelta(minutes=30) and duration.max() < pd.Timedelta(hours=12)
    assert silver["cancelled"].sum() == source["dep_time"].isna().sum()
    assert (
        silver["diverted"].sum() == (source["dep_time"].notna() & source["arr_delay"].isna()).sum()
    )
    assert {"_content_hash", "_ingested_at", "_source_file", "date"} <= set(silver.columns)


def test_every_zone_has_its_gate_results_and_data_docs(lake) -> None:
    layout = StorageLayout(lake.paths)
    results = list((Path(layout.reports) / "validation").glob("*.json"))
    assert {p.name.split("_2")[0] for p in results} >= {
        "flights",
        "weather",
        "airports",
        "airlines",
        "planes",
    }
    assert all(json.loads(p.read_text())["success"] for p in results)
    assert (Path(layout.reports) / "data_docs" / "index.html").is_file()
    assert len(layout.drops_in(layout.bronze("flights"))) == 3
    assert layout.drops_in(layout.staging("flights")) == {}


def test_running_again_changes_nothing(lake, spark) -> None:
    layout = StorageLayout(lake.paths)
    before = tree_digest(Path(layout.lake))
    results = chain(lake, spark)
    assert all(r.ok for r in results)
    assert "0 collected, 27 already collected" not in results[1].notes[0]  # the slice has 9 drops
    assert results[1].notes[0].startswith("0 collected, 9 already collected")
    assert tree_digest(Path(layout.lake)) == before


def mutate_row(column: str, value: str, row: int = 3):
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[row, column] = value
        return frame

    return change


def append_copy_of_row(row: int, **changes: str):
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        copy = frame.iloc[[row]].copy()
        for column, value in changes.items():
            copy[column] = value
        return pd.concat([frame, copy], ignore_index=True)

    return change


# (name, how the April drop is corrupted, the stage that stops it, what the message says)
CORRUPTIONS = [
    (
        "missing column",
        lambda f: f.drop(columns=["air_time"]),
        "collect",
        "missing column(s): air_time",
    ),
    ("extra column", lambda f: f.assign(gate="B12"), "collect", "unexpected column(s): gate"),
    ("wrong type", mutate_row("dep_delay", "late"), "collect", "do not parse"),
    ("unknown airport", mutate_row("dest", "QQQ"), "collect", "cannot be placed in time"),
    (
        "null key",
        mutate_row("carrier", "NA"),
        "validate",
        "expect_column_values_to_not_be_null on carrier",
    ),
    (
        "out of range",
        mutate_row("distance", "99999"),
        "validate",
        "expect_column_values_to_be_between on distance",
    ),
    (
        "unknown carrier",
        mutate_row("carrier", "ZZ"),
        "validate",
        "expect_column_values_to_be_in_set on carrier",
    ),
    (
        "duplicate flight",
        append_copy_of_row(5, arr_delay="999"),
        "validate",
        "expect_column_values_to_be_unique on flight_id",
    ),
]


@pytest.mark.parametrize(
    ("name", "corrupt", "stage", "message"), CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS]
)
def test_a_corrupted_drop_stops_the_run_and_silver_is_untouched(
    lake, spark, name, corrupt, stage, message
) -> None:
    before = silver_digest(lake)
    january = read_landed(lake, "flights", "2013-01").assign(month="4")
    land_new_flights_drop(lake, "2013-04", corrupt(january))

    results = chain(lake, spark)

    assert results[-1].stage == stage and not results[-1].ok
    assert message in problems(results)
    assert silver_digest(lake) == before
    layout = StorageLayout(lake.paths)
    (reason_file,) = (Path(layout.quarantine_root) / "flights").glob("2013-04-*/reason.json")
    reason = json.loads(reason_file.read_text())
    assert reason["stage"] == stage
    assert (reason_file.parent / "2013-04.csv").is_file()
    assert layout.drops_in(layout.staging("flights")) == {}
    assert Path(layout.landing_file("flights", "2013-04")).is_file()  # the delivery itself is kept


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (None, "looks truncated"),
        (b"year,month\n\xff\xfe,1\n", "not valid UTF-8"),
    ],
    ids=["empty", "truncated", "encoding"],
)
def test_broken_files_are_quarantined(lake, spark, content, message) -> None:
    before = silver_digest(lake)
    target = land_new_flights_drop(lake, "2013-04")
    if content is None:
        content = target.read_bytes()[:-40]
    target.write_bytes(content)
    results = chain(lake, spark)
    assert results[1].stage == "collect" and not results[1].ok
    assert message in json.dumps(
        [
            json.loads(p.read_text())
            for p in Path(StorageLayout(lake.paths).quarantine_root).rglob("reason.json")
        ]
    )
    assert silver_digest(lake) == before


def test_exact_duplicate_rows_are_dropped_and_the_drop_goes_through(lake, spark) -> None:
    january = read_landed(lake, "flights", "2013-01").assign(month="4")
    land_new_flights_drop(lake, "2013-04", append_copy_of_row(7)(january))
    results = chain(lake, spark)
    assert all(r.ok for r in results), problems(results)
    marker = StorageLayout(lake.paths).drops_in(StorageLayout(lake.paths).silver("flights"))[
        "2013-04"
    ]
    assert (marker.rows_in, marker.rows_out, marker.duplicates_dropped) == (
        len(january) + 1,
        len(january),
        1,
    )
    assert silver_flights(lake)["flight_id"].is_unique


def test_a_changed_redelivery_under_the_same_id_is_a_conflict(lake, spark) -> None:
    before = silver_digest(lake)
    january = Path(StorageLayout(lake.paths).landing_file("flights", "2013-01"))
    january.write_text(january.read_text().replace(",UA,", ",AA,", 1))
    results = chain(lake, spark)
    assert not results[1].ok
    assert "already collected with content sha256:" in problems(results)
    assert silver_digest(lake) == before


def test_good_drops_are_published_beside_a_bad_one(lake, spark) -> None:
    january = read_landed(lake, "flights", "2013-01")
    land_new_flights_drop(lake, "2013-04", january.assign(month="4"))
    land_new_flights_drop(lake, "2013-05", mutate_row("carrier", "NA")(january.assign(month="5")))
    results = chain(lake, spark)
    assert not results[-1].ok and "flights/2013-05 failed the quality gate" in problems(results)
    layout = StorageLayout(lake.paths)
    assert set(layout.drops_in(layout.silver("flights"))) == {
        "2013-01",
        "2013-02",
        "2013-03",
        "2013-04",
    }


def test_the_quarantine_threshold_is_configurable(lake, spark) -> None:
    target = land_new_flights_drop(lake, "2013-04")
    target.write_bytes(b"")
    tolerant = settings_for(
        Path(StorageLayout(lake.paths).landing).parent, collect={"max_quarantined_share": 0.5}
    )
    results = chain(tolerant, spark)
    assert all(r.ok for r in results), problems(results)
    assert "1 quarantined (of 10 landed)" in results[1].notes[-1]


def test_a_quarantined_drop_keeps_failing_until_it_is_replaced(lake, spark) -> None:
    target = land_new_flights_drop(lake, "2013-04")
    good = target.read_bytes()
    target.write_bytes(good[:-40])
    assert not chain(lake, spark)[1].ok
    again = chain(lake, spark)
    assert not again[1].ok and "still quarantined" in problems(again)
    target.write_bytes(good)  # upstream delivers a fixed file under the same id
    fixed = chain(lake, spark)
    assert all(r.ok for r in fixed), problems(fixed)
    assert "2013-04" in StorageLayout(lake.paths).drops_in(
        StorageLayout(lake.paths).silver("flights")
    )


def test_a_crash_mid_collect_leaves_silver_readable_and_the_next_run_recovers(
    lake, spark, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = silver_digest(lake)
    land_new_flights_drop(lake, "2013-04")
    real_publish = StorageLayout.publish
    calls = {"n": 0}

    def crash_on_the_staging_write(self, source, target):
        calls["n"] += 1
        if "_staging" in str(target):
            raise KeyboardInterrupt("simulated crash")
        return real_publish(self, source, target)

    monkeypatch.setattr(StorageLayout, "publish", crash_on_the_staging_write)
    with pytest.raises(KeyboardInterrupt):
        chain(lake, spark)
    monkeypatch.setattr(StorageLayout, "publish", real_publish)

    assert silver_digest(lake) == before
    assert len(silver_flights(lake)) == len(
        pd.read_csv(SLICE_DIR / "flights.csv")
    )  # still readable
    results = chain(lake, spark)
    assert all(r.ok for r in results), problems(results)
    assert "leftover temporary" in " ".join(results[1].notes)
    silver = silver_flights(lake)
    assert silver["flight_id"].is_unique
    assert (silver["drop_id"] == "2013-04").sum() == len(read_landed(lake, "flights", "2013-01"))
