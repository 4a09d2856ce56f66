"""The quality gate on hand-made drops: each rule catches what it is for, in the drop that
breaks it and no other; uniqueness sees published rows and earlier drops; `mostly` and the
rows-per-drop bounds hold per drop; GX keeps one result per run and Data Docs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from configs import load_settings
from configs.settings import Range, RowCount, TableQuality
from pipelines.adapters.quality import ROWS, QualityGate, rules_for


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> QualityGate:
    return QualityGate(str(tmp_path_factory.mktemp("reports")))


@pytest.fixture(scope="module")
def rules() -> TableQuality:
    flights = load_settings("local", environ={}).quality.tables["flights"]
    return flights.model_copy(update={"rows_per_drop": None})


def flights(drop_id: str, prefix: str) -> pd.DataFrame:
    """Two good flights of one drop; keys start with `prefix`."""
    return pd.DataFrame(
        {
            "drop_id": [drop_id, drop_id],
            "flight_id": [f"{prefix}-UA-1", f"{prefix}-AA-2"],
            "carrier": ["UA", "AA"],
            "flight": [1, 2],
            "origin": ["EWR", "JFK"],
            "dest": ["IAH", "LAX"],
            "sched_dep_utc": pd.to_datetime(["2013-01-01T10:00", "2013-01-01T11:00"]),
            "sched_arr_utc": pd.to_datetime(["2013-01-01T14:00", "2013-01-01T17:00"]),
            "flight_date": ["2013-01-01", "2013-01-01"],
            "dep_delay": [2.0, None],
            "arr_delay": [11.0, None],
            "air_time": [227.0, None],
            "distance": [1400.0, 2475.0],
            "sched_dep_local_hour": [5, 6],
        }
    )


def to_spark(spark, frame: pd.DataFrame):
    """A pandas frame as Spark rows, missing values as nulls (PySpark 4.0 keeps pandas' NaN as
    NaN, which is a value, and out of every range)."""
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return spark.createDataFrame(rows)


def two_drops(spark, second: pd.DataFrame | None = None):
    """Drop 2013-01 (good) and drop 2013-02 (good, or `second`) as one Spark frame."""
    return to_spark(
        spark,
        pd.concat([flights("2013-01", "a"), flights("2013-02", "b") if second is None else second]),
    )


def test_suite_has_one_rule_per_config_entry(spark, rules: TableQuality) -> None:
    expected = len(rules.not_null) + len(rules.unique) + len(rules.ranges) + len(rules.in_set)
    found = rules_for(rules)
    assert len(found) == expected
    assert len({rule.label for rule in found}) == expected  # one measurement column each


def test_good_drops_pass_and_the_record_is_kept(spark, gate: QualityGate, rules) -> None:
    result = gate.check("flights", two_drops(spark), rules, "good")
    assert result.success, result.failures
    assert result.groups == ["2013-01", "2013-02"]
    (saved,) = (json.loads(Path(f).read_text()) for f in result.result_files)
    assert saved["success"] is True
    assert len(saved["results"]) == len(rules_for(rules)) == result.evaluated
    descriptions = {r["expectation_config"]["description"] for r in saved["results"]}
    assert "Every distance value (where given) is within [10, 5000]." in descriptions
    assert "Every row has a carrier." in descriptions
    gate.publish_docs()
    page = (Path(gate.docs_dir) / "index.html").read_text()
    assert "flights_good" in page  # the run's result is listed


@pytest.mark.parametrize(
    ("column", "value", "expectation"),
    [
        ("carrier", None, "expect_column_values_to_not_be_null"),
        ("flight_id", "b-UA-1", "expect_column_values_to_be_unique"),
        ("distance", 99999.0, "expect_column_values_to_be_between"),
        ("dep_delay", -500.0, "expect_column_values_to_be_between"),
        ("origin", "BOS", "expect_column_values_to_be_in_set"),
        ("carrier", "ZZ", "expect_column_values_to_be_in_set"),
    ],
)
def test_each_rule_fails_the_drop_that_breaks_it_and_names_it(
    spark, gate: QualityGate, rules, column, value, expectation
) -> None:
    bad = flights("2013-02", "b")
    bad.loc[1, column] = value
    result = gate.check("flights", two_drops(spark, bad), rules, f"bad_{column}_{expectation[-8:]}")
    assert not result.success
    assert set(result.failures) == {"2013-02"}  # the good drop is not held back
    named = {(f.expectation, f.column) for f in result.failures["2013-02"]}
    assert named == {(expectation, column)}
    (failure,) = result.failures["2013-02"]
    assert "1 of " in failure.detail
    if value is not None:
        assert repr(value) in failure.detail or str(value) in failure.detail  # an example


def test_a_key_is_taken_by_published_rows_and_by_earlier_drops(spark, gate: QualityGate, rules):
    published = to_spark(spark, flights("2012-12", "p"))
    # Drop 2013-01 repeats a published key; drop 2013-02 repeats a key of drop 2013-01.
    first = flights("2013-01", "a").assign(flight_id=["p-UA-1", "a-AA-2"])
    second = flights("2013-02", "b").assign(flight_id=["b-UA-1", "a-AA-2"])
    frame = to_spark(spark, pd.concat([first, second]))
    result = gate.check("flights", frame, rules, "taken", published=published)
    assert set(result.failures) == {"2013-01", "2013-02"}
    assert "p-UA-1" in result.failures["2013-01"][0].detail
    assert "a-AA-2" in result.failures["2013-02"][0].detail
    # Without the published rows, only the later of two drops with the same key fails.
    again = gate.check("flights", frame, rules, "taken_again")
    assert set(again.failures) == {"2013-02"}


def test_mostly_and_rows_per_drop_hold_per_drop(spark, gate: QualityGate) -> None:
    quality = TableQuality(
        ranges={"speed": Range(min=0, max=150, mostly=0.99)},
        rows_per_drop=RowCount(min=100, max=200),
    )
    rows = [("ok", 10.0)] * 100 + [("one-bad", 10.0)] * 99 + [("one-bad", 1048.0)]
    rows += [("two-bad", 10.0)] * 98 + [("two-bad", 1048.0)] * 2 + [("few", 10.0)] * 3
    frame = spark.createDataFrame(rows, "drop_id string, speed double")
    result = gate.check("weather", frame, quality, "mostly")
    assert set(result.failures) == {"two-bad", "few"}
    (speed,) = result.failures["two-bad"]
    assert (speed.expectation, speed.column) == ("expect_column_values_to_be_between", "speed")
    assert speed.detail.startswith("2 of 100 rows (2%)")
    (count,) = result.failures["few"]
    assert (count.column, count.detail) == ("rows per drop", "3 rows; expected 100 to 200")


def test_a_table_without_drops_is_checked_whole(spark, gate: QualityGate) -> None:
    quality = TableQuality(not_null=["key"], unique=[["key", "at"]])
    frame = spark.createDataFrame([("a", 1), ("a", 2), ("a", 2)], "key string, at int")
    result = gate.check("history", frame, quality, "whole", by_drop=False)
    assert result.groups == ["history"]
    (failure,) = result.all_failures()
    assert failure.expectation == "expect_compound_columns_to_be_unique"
    assert failure.detail.startswith("1 of 3 rows") and "a, 2" in failure.detail
    saved = json.loads(Path(result.result_files[0]).read_text())
    assert ROWS not in {r["expectation_config"]["kwargs"]["column"] for r in saved["results"]}
