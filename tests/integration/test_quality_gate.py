"""The quality gate on hand-made drops of the platform's own use case: each rule catches what it is for, in the drop that
breaks it and no other; uniqueness sees published rows and earlier drops; `mostly` and the
rows-per-drop bounds hold per drop; GX keeps one result per run and Data Docs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from configs.settings import Range, RowCount, TableQuality
from pipelines import data_docs
from pipelines.adapters.quality import ROWS, QualityGate, rules_for
from tests.conftest import platform_settings

TABLE = "meter_readings"


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> QualityGate:
    return QualityGate(str(tmp_path_factory.mktemp("reports")))


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> TableQuality:
    settings = platform_settings(tmp_path_factory.mktemp("settings"))
    return settings.quality.tables[TABLE].model_copy(update={"rows_per_drop": None})


def readings(drop_id: str, prefix: str) -> pd.DataFrame:
    """Two good readings of one drop; keys start with `prefix`."""
    return pd.DataFrame(
        {
            "drop_id": [drop_id, drop_id],
            "reading_id": [f"{prefix}-1", f"{prefix}-2"],
            "meter_id": ["S1M1", "S2M1"],
            "facility_id": ["S1", "S2"],
            "reading_utc": pd.to_datetime(["2024-01-01T10:00", "2024-01-01T11:00"]),
            "reading_date": ["2024-01-01", "2024-01-01"],
            "value": [0.5, -1.25],
        }
    )


def to_spark(spark, frame: pd.DataFrame):
    """A pandas frame as Spark rows, missing values as nulls (PySpark 4.0 keeps pandas' NaN as
    NaN, which is a value, and out of every range)."""
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return spark.createDataFrame(rows)


def two_drops(spark, second: pd.DataFrame | None = None):
    """Drop 2024-01 (good) and drop 2024-02 (good, or `second`) as one Spark frame."""
    return to_spark(
        spark,
        pd.concat(
            [readings("2024-01", "a"), readings("2024-02", "b") if second is None else second]
        ),
    )


def test_suite_has_one_rule_per_config_entry(spark, rules: TableQuality) -> None:
    expected = len(rules.not_null) + len(rules.unique) + len(rules.ranges) + len(rules.in_set)
    found = rules_for(rules)
    assert len(found) == expected
    assert len({rule.label for rule in found}) == expected  # one measurement column each


def test_good_drops_pass_and_the_record_is_kept(spark, gate: QualityGate, rules) -> None:
    result = gate.check(TABLE, two_drops(spark), rules, "good")
    assert result.success, result.failures
    assert result.groups == ["2024-01", "2024-02"]
    (saved,) = (json.loads(Path(f).read_text()) for f in result.result_files)
    assert saved["success"] is True
    assert len(saved["results"]) == len(rules_for(rules)) == result.evaluated
    descriptions = {r["expectation_config"]["description"] for r in saved["results"]}
    assert "Every value value (where given) is within [-20, 20]." in descriptions
    assert "Every row has a meter_id." in descriptions
    index = Path(data_docs.publish(gate.reports_dir, "a use case"))
    page = (index.parent / "results" / f"{TABLE}_good.html").read_text()
    assert "Every row has a meter_id." in page and "2024-02" in page  # its rules, each drop


@pytest.mark.parametrize(
    ("column", "value", "expectation"),
    [
        ("meter_id", None, "expect_column_values_to_not_be_null"),
        ("reading_id", "b-1", "expect_column_values_to_be_unique"),
        ("value", 99.0, "expect_column_values_to_be_between"),
        ("value", -500.0, "expect_column_values_to_be_between"),
        ("facility_id", "S9", "expect_column_values_to_be_in_set"),
    ],
)
def test_each_rule_fails_the_drop_that_breaks_it_and_names_it(
    spark, gate: QualityGate, rules, column, value, expectation
) -> None:
    bad = readings("2024-02", "b")
    bad.loc[1, column] = value
    label = f"bad_{column}_{expectation[-8:]}_{value}"
    result = gate.check(TABLE, two_drops(spark, bad), rules, label)
    assert not result.success
    assert set(result.failures) == {"2024-02"}  # the good drop is not held back
    named = {(f.expectation, f.column) for f in result.failures["2024-02"]}
    assert named == {(expectation, column)}
    (failure,) = result.failures["2024-02"]
    assert "1 of " in failure.detail
    if value is not None:
        assert repr(value) in failure.detail or str(value) in failure.detail  # an example


def test_a_key_is_taken_by_published_rows_and_by_earlier_drops(spark, gate: QualityGate, rules):
    published = to_spark(spark, readings("2023-12", "p"))
    # Drop 2024-01 repeats a published key; drop 2024-02 repeats a key of drop 2024-01.
    first = readings("2024-01", "a").assign(reading_id=["p-1", "a-2"])
    second = readings("2024-02", "b").assign(reading_id=["b-1", "a-2"])
    frame = to_spark(spark, pd.concat([first, second]))
    result = gate.check(TABLE, frame, rules, "taken", published=published)
    assert set(result.failures) == {"2024-01", "2024-02"}
    assert "p-1" in result.failures["2024-01"][0].detail
    assert "a-2" in result.failures["2024-02"][0].detail
    # Without the published rows, only the later of two drops with the same key fails.
    again = gate.check(TABLE, frame, rules, "taken_again")
    assert set(again.failures) == {"2024-02"}


def test_mostly_and_rows_per_drop_hold_per_drop(spark, gate: QualityGate) -> None:
    quality = TableQuality(
        ranges={"speed": Range(min=0, max=150, mostly=0.99)},
        rows_per_drop=RowCount(min=100, max=200),
    )
    rows = [("ok", 10.0)] * 100 + [("one-bad", 10.0)] * 99 + [("one-bad", 1048.0)]
    rows += [("two-bad", 10.0)] * 98 + [("two-bad", 1048.0)] * 2 + [("few", 10.0)] * 3
    frame = spark.createDataFrame(rows, "drop_id string, speed double")
    result = gate.check("sensor", frame, quality, "mostly")
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
