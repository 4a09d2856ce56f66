"""Data Docs from the gate's kept results: every gate of every run, newest first, a failed drop
marked on its rule, and a result that cannot be read left out by name without hiding the rest.
(The real gate writing real results, rendered, is in tests/integration/test_quality_gate.py.)"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from pipelines import data_docs as dd


def kept(
    table: str, when: str, run: str, *, by_drop: bool, shares: dict[str, float], failed: list[str]
) -> dict[str, Any]:
    """A result as the gate keeps it: GX's validation result, with what was checked in `meta`."""
    label = "meter_id is null"
    return {
        "success": not failed,
        "suite_name": f"{table}_{run}",
        "meta": {
            "validation_time": when,
            dd.CHECKED: {
                dd.CHECKED_TABLE: table,
                dd.CHECKED_BY_DROP: by_drop,
                dd.CHECKED_RUN: run,
                dd.MEASURED: [
                    {dd.GROUP: drop, dd.ROWS: 1000, label: share} for drop, share in shares.items()
                ],
            },
        },
        "results": [
            {
                "success": not failed,
                "expectation_config": {
                    "kwargs": {"column": label, "min_value": 0, "max_value": 0.0},
                    "description": "Every row has a meter_id.",
                },
                "result": {"unexpected_index_list": [{dd.GROUP: drop} for drop in failed]},
            }
        ],
    }


@pytest.fixture
def reports(tmp_path: Path) -> Path:
    folder = Path(dd.results_dir(str(tmp_path)))
    folder.mkdir(parents=True)
    records = {
        "readings_a_1": kept(
            "readings", "2024-04-01T10:00:00+00:00", "a", by_drop=True,
            shares={"2024-01": 0.0, "2024-02": 0.0}, failed=[],
        ),
        "readings_b_1": kept(
            "readings", "2024-05-01T10:00:00+00:00", "b", by_drop=True,
            shares={"2024-03": 0.25}, failed=["2024-03"],
        ),
        "meter_recent_c": kept(
            "meter_recent", "2024-04-01T10:01:00+00:00", "c", by_drop=False,
            shares={"meter_recent": 0.0}, failed=[],
        ),
    }  # fmt: skip
    for name, record in records.items():
        (folder / f"{name}.json").write_text(json.dumps(record))
    return tmp_path


def test_every_gate_of_every_run_is_listed_newest_first(reports: Path) -> None:
    index = Path(dd.publish(str(reports), "meters")).read_text()
    newest, feature_run, oldest = (
        index.index("2024-05-01 10:00:00"),
        index.index("2024-04-01 10:01:00"),
        index.index("2024-04-01 10:00:00"),
    )
    assert newest < feature_run < oldest
    assert index.count(dd.SILVER_GATE) == 2 and index.count(dd.FEATURES_GATE) == 1
    assert '<span class="drops-checked">2</span> drop(s) checked' in index
    assert "failed: 2024-03" in index
    for name in ("readings_a_1", "readings_b_1", "meter_recent_c"):
        assert f'href="results/{name}.html"' in index
        assert (reports / dd.FOLDER / "results" / f"{name}.html").is_file()


def test_a_failed_drop_is_marked_on_the_rule_it_broke(reports: Path) -> None:
    dd.publish(str(reports), "meters")
    page = (reports / dd.FOLDER / "results" / "readings_b_1.html").read_text()
    assert "Every row has a meter_id." in page and "no row breaks it" in page
    assert '<td class="num broken">25%</td>' in page
    passed = (reports / dd.FOLDER / "results" / "readings_a_1.html").read_text()
    assert "broken" not in passed.split("</style>")[1]


def test_a_result_that_cannot_be_read_is_named_and_the_others_still_shown(
    reports: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (Path(dd.results_dir(str(reports))) / "cut_short.json").write_text('{"success": tr')
    with caplog.at_level(logging.WARNING):
        index = Path(dd.publish(str(reports), "meters")).read_text()
    assert "cut_short.json left out" in caplog.text
    assert index.count("details</a>") == 3
