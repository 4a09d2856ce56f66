"""The GX suites built from configs: each rule catches what it is for (pandas, no JVM)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from configs import load_settings
from pipelines.adapters.quality import QualityGate, drop_count_expectations, row_expectations


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> QualityGate:
    return QualityGate(tmp_path_factory.mktemp("reports"))


@pytest.fixture(scope="module")
def rules():
    return load_settings("local", environ={}).quality.tables["flights"]


def good_flights() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "flight_id": ["UA-1-a", "AA-2-b"],
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


def test_suite_has_one_expectation_per_rule(rules) -> None:
    expected = len(rules.not_null) + len(rules.unique) + len(rules.ranges) + len(rules.in_set)
    assert len(row_expectations(rules)) == expected
    assert len(drop_count_expectations(rules)) == 1


def test_good_data_passes_and_results_are_kept(gate: QualityGate, rules) -> None:
    result = gate.validate("flights", good_flights(), row_expectations(rules), "good")
    assert result.success, [str(f) for f in result.failures]
    saved = json.loads(Path(result.result_files[0]).read_text())
    assert saved["success"] is True
    assert (Path(gate.docs_dir) / "index.html").is_file()


@pytest.mark.parametrize(
    ("column", "value", "expectation"),
    [
        ("carrier", None, "expect_column_values_to_not_be_null"),
        ("flight_id", "UA-1-a", "expect_column_values_to_be_unique"),
        ("distance", 99999.0, "expect_column_values_to_be_between"),
        ("dep_delay", -500.0, "expect_column_values_to_be_between"),
        ("origin", "BOS", "expect_column_values_to_be_in_set"),
        ("carrier", "ZZ", "expect_column_values_to_be_in_set"),
    ],
)
def test_each_rule_fails_bad_data_and_names_it(
    gate: QualityGate, rules, column, value, expectation
) -> None:
    frame = good_flights()
    frame.loc[1, column] = value
    result = gate.validate(
        "flights", frame, row_expectations(rules), f"bad_{column}_{expectation[-8:]}"
    )
    assert not result.success
    named = {(f.expectation, f.column) for f in result.failures}
    assert (expectation, column) in named, named
    # Pass/fail of the whole suite first, then the failed expectations alone, with counts.
    verdict, details = (json.loads(Path(f).read_text()) for f in result.result_files)
    assert len(verdict["results"]) == len(row_expectations(rules))
    assert len(details["results"]) == len(result.failures) < len(verdict["results"])
    assert all(r["result"]["unexpected_count"] >= 1 for r in details["results"])


def test_rows_per_drop_bounds(gate: QualityGate, rules) -> None:
    counts = pd.DataFrame({"drop_id": ["2013-01", "2013-02"], "rows": [27004, 12]})
    result = gate.validate("flights_rows", counts, drop_count_expectations(rules), "counts")
    assert not result.success
    assert "1 unexpected of 2 rows" in str(result.failures[0])
