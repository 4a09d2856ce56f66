"""land -> collect -> validate on the platform's own use case: what lands in silver,
idempotency, good drops beside bad ones, the quarantine threshold, quarantines judged again,
and a crash at any point of collect. Every kind of bad drop, one by one, is in
tests/e2e/test_bad_data.py."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipelines.adapters.storage import StorageLayout
from tests.conftest import platform_settings
from tests.lake_helpers import (
    chain,
    land_new_drop,
    new_month,
    problems,
    silver_digest,
    tree_digest,
)
from usecases.synthetic import data

READINGS, FACILITIES = "meter_readings", "facilities"
MONTHS = ["2024-01", "2024-02", "2024-03"]


def silver_readings(settings) -> pd.DataFrame:
    return pd.read_parquet(Path(StorageLayout(settings.paths).silver(READINGS)))


def land_month(settings, drop_id: str, frame: pd.DataFrame | None = None) -> Path:
    return land_new_drop(
        settings, READINGS, drop_id, new_month(drop_id) if frame is None else frame
    )


def test_baseline_silver_holds_every_reading_once_in_utc(lake) -> None:
    source = data.readings()
    silver = silver_readings(lake)
    assert len(silver) == len(source) == silver["reading_id"].nunique()
    assert sorted(silver["drop_id"].unique()) == MONTHS
    # The upstream's own UTC instant agrees with our local-to-UTC placement on every row,
    # across March's changes of clock in New York and Berlin (and none in Tokyo).
    upstream = pd.to_datetime(silver["reading_id"].str.split("-").str[1], format="%Y%m%dT%H%MZ")
    assert (silver["reading_utc"].dt.tz_localize(None) == upstream).all()
    assert {"_content_hash", "_ingested_at", "_source_file", "date"} <= set(silver.columns)


def test_each_drop_is_one_file_in_date_order_in_bronze_and_silver(lake) -> None:
    """Few files at scale (one per drop, not per day or task), with rows in date order so that
    parquet's statistics prune by date; markers count what the file holds."""
    layout = StorageLayout(lake.paths)
    for zone in (layout.bronze(READINGS), layout.silver(READINGS)):
        for drop_id, marker in layout.drops_in(zone).items():
            files = list(Path(StorageLayout.drop_dir(zone, drop_id)).glob("*.parquet"))
            assert len(files) == 1, (zone, drop_id, files)
            rows = pd.read_parquet(files[0], columns=["date"])
            assert rows["date"].is_monotonic_increasing, (zone, drop_id)
            bronze = zone == layout.bronze(READINGS)  # bronze keeps exact duplicates
            assert len(rows) == (marker.rows_in if bronze else marker.rows_out)


def test_every_zone_has_its_gate_results_and_data_docs(lake) -> None:
    layout = StorageLayout(lake.paths)
    results = list((Path(layout.reports) / "validation").glob("*.json"))
    assert {p.name.split("_2")[0] for p in results} >= {READINGS, FACILITIES}
    assert all(json.loads(p.read_text())["success"] for p in results)
    assert (Path(layout.reports) / "data_docs" / "index.html").is_file()
    assert len(layout.drops_in(layout.bronze(READINGS))) == 3
    assert layout.drops_in(layout.staging(READINGS)) == {}


def test_running_again_changes_nothing(lake, spark) -> None:
    layout = StorageLayout(lake.paths)
    before = tree_digest(Path(layout.lake))
    results = chain(lake, spark)
    assert all(r.ok for r in results)
    assert results[1].notes[0].startswith("0 collected, 4 already collected")
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


def test_exact_duplicate_rows_are_dropped_and_the_drop_goes_through(lake, spark) -> None:
    april = new_month("2024-04")
    land_month(lake, "2024-04", append_copy_of_row(7)(april))
    results = chain(lake, spark)
    assert all(r.ok for r in results), problems(results)
    marker = StorageLayout(lake.paths).drops_in(StorageLayout(lake.paths).silver(READINGS))[
        "2024-04"
    ]
    assert (marker.rows_in, marker.rows_out, marker.duplicates_dropped) == (
        len(april) + 1,
        len(april),
        1,
    )
    assert silver_readings(lake)["reading_id"].is_unique


def test_good_drops_are_published_beside_a_bad_one(lake, spark) -> None:
    land_month(lake, "2024-04")
    land_month(lake, "2024-05", mutate_row("value", "99")(new_month("2024-05")))
    results = chain(lake, spark)
    assert not results[-1].ok and f"{READINGS}/2024-05 failed the quality gate" in problems(results)
    layout = StorageLayout(lake.paths)
    assert set(layout.drops_in(layout.silver(READINGS))) == {*MONTHS, "2024-04"}


def test_the_quarantine_threshold_is_configurable(lake, spark) -> None:
    target = land_month(lake, "2024-04")
    target.write_bytes(b"")
    tolerant = platform_settings(
        Path(StorageLayout(lake.paths).landing).parent, collect={"max_quarantined_share": 0.5}
    )
    results = chain(tolerant, spark)
    assert all(r.ok for r in results), problems(results)
    assert "1 quarantined (of 5 landed)" in results[1].notes[-1]


def test_a_quarantined_drop_keeps_failing_until_it_is_replaced(lake, spark) -> None:
    target = land_month(lake, "2024-04")
    good = target.read_bytes()
    target.write_bytes(good[:-40])
    assert not chain(lake, spark)[1].ok
    again = chain(lake, spark)
    assert not again[1].ok and "still quarantined" in problems(again)
    target.write_bytes(good)  # upstream delivers a fixed file under the same id
    fixed = chain(lake, spark)
    assert all(r.ok for r in fixed), problems(fixed)
    assert "2024-04" in StorageLayout(lake.paths).drops_in(
        StorageLayout(lake.paths).silver(READINGS)
    )


def test_a_drop_refused_by_the_use_case_is_judged_again_when_the_use_case_changes(
    lake, spark
) -> None:
    """A drop refused by a rule (not for its content) comes back once the rule is fixed:
    the quarantine records the use case's digest, and a new digest judges the drop again."""
    land_month(lake, "2024-04")
    layout = StorageLayout(lake.paths)
    strict = lake.with_overrides(
        {"quality": {"tables": {READINGS: {"ranges": {"value": {"max": 1}}}}}}
    )
    refused = chain(strict, spark)
    assert not refused[2].ok and f"{READINGS}/2024-04 failed the quality gate" in problems(refused)
    reason_files = list(Path(layout.quarantine_root).glob(f"{READINGS}/2024-04-*/reason.json"))
    assert len(reason_files) == 1
    assert json.loads(reason_files[0].read_text())["usecase_digest"]
    again = chain(strict, spark)
    assert "still quarantined" in problems(again)
    fixed = chain(lake, spark)  # the rule as it was: another digest
    assert all(r.ok for r in fixed), problems(fixed)
    assert f"judged again: the use case changed since: {READINGS}/2024-04" in fixed[1].notes[0]
    assert "2024-04" in layout.drops_in(layout.silver(READINGS))
    assert not reason_files[0].exists()  # accepted: the quarantine copy is history


def test_retry_quarantined_judges_every_quarantined_drop_again(lake, spark) -> None:
    target = land_month(lake, "2024-04")
    target.write_bytes(target.read_bytes()[:-40])
    assert not chain(lake, spark)[1].ok
    retried = chain(lake.with_value("collect.retry_quarantined", True), spark)
    assert (
        f"judged again: as asked (--retry-quarantined): {READINGS}/2024-04" in retried[1].notes[0]
    )
    assert "still quarantined" not in problems(retried)
    assert f"{READINGS}/2024-04 quarantined" in problems(retried)  # the same content, refused again


# Two new drops collected in one job make six moves: bronze 04 and 05, staging 04 and 05,
# then the gate publishes silver 04 and 05. A crash is simulated just before each of them.
MOVES = 6


@pytest.mark.parametrize("crash_before", range(1, MOVES + 1))
def test_a_crash_at_any_point_leaves_whole_drops_and_the_next_run_recovers(
    lake, spark, monkeypatch: pytest.MonkeyPatch, crash_before: int
) -> None:
    from storage import files as filesystem

    before = silver_digest(lake)
    land_month(lake, "2024-04")
    land_month(lake, "2024-05")
    real_move = filesystem.move
    moves: list[str] = []

    def crash_on_a_move(source: str, target: str, **kwargs) -> None:
        moves.append(target)
        if len(moves) == crash_before:
            raise KeyboardInterrupt(f"simulated crash before moving into {target}")
        real_move(source, target, **kwargs)

    monkeypatch.setattr(filesystem, "move", crash_on_a_move)
    with pytest.raises(KeyboardInterrupt):
        chain(lake, spark)
    monkeypatch.setattr(filesystem, "move", real_move)

    # What was published stays, byte for byte; silver holds whole drops only and reads.
    after = silver_digest(lake)
    assert before.items() <= after.items()
    silver = silver_readings(lake)
    per_drop = silver.groupby("drop_id").size().to_dict()
    whole = {"2024-04": len(new_month("2024-04")), "2024-05": len(new_month("2024-05"))}
    assert all(per_drop[d] == whole[d] for d in per_drop if d not in MONTHS)

    results = chain(lake, spark)
    assert all(r.ok for r in results), problems(results)
    silver = silver_readings(lake)
    assert silver["reading_id"].is_unique
    assert {d: (silver["drop_id"] == d).sum() for d in whole} == whole
    layout = StorageLayout(lake.paths)
    for zone in (layout.bronze(READINGS), layout.silver(READINGS)):
        assert set(layout.drops_in(zone)) == {*MONTHS, "2024-04", "2024-05"}
    assert layout.drops_in(layout.staging(READINGS)) == {}
    leftovers = [p for p in Path(layout.lake).rglob("*") if p.name.startswith(("_tmp-", "_trash-"))]
    assert leftovers == []


def test_a_run_with_two_new_drops_makes_the_moves_the_crash_test_expects(
    lake, spark, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keeps MOVES honest: if collect or the gate moves more, the crash test must cover it."""
    from storage import files as filesystem

    land_month(lake, "2024-04")
    land_month(lake, "2024-05")
    real_move = filesystem.move
    moves: list[str] = []

    def counting_move(source: str, target: str, **kwargs) -> None:
        moves.append(target)
        real_move(source, target, **kwargs)

    monkeypatch.setattr(filesystem, "move", counting_move)
    results = chain(lake, spark)
    assert all(r.ok for r in results), problems(results)
    assert len(moves) == MOVES, moves
