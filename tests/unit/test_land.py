"""Land: drops per month, never overwritten, exactly the source's text."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipelines import land
from pipelines.adapters.storage import StorageLayout
from pipelines.sources import FLIGHTS, PLANES
from tests.conftest import SLICE_DIR


def test_monthly_source_splits_into_one_drop_per_month() -> None:
    frame = pd.DataFrame(
        {"year": ["2013", "2013", "2013"], "month": ["1", "2", "1"], "x": ["a", "b", "c"]}
    )
    drops = land.split_into_drops(frame, FLIGHTS, "2013", months=[])
    assert list(drops) == ["2013-01", "2013-02"]
    assert drops["2013-01"]["x"].tolist() == ["a", "c"]
    assert list(land.split_into_drops(frame, FLIGHTS, "2013", months=["2013-02"])) == ["2013-02"]


def test_reference_source_is_one_snapshot_drop() -> None:
    frame = pd.DataFrame({"tailnum": ["N1", "N2"]})
    assert list(land.split_into_drops(frame, PLANES, "2013", months=["2013-01"])) == ["2013"]


def test_land_writes_drops_that_keep_the_source_text(make_settings) -> None:
    settings = make_settings()
    result = land.run(settings)
    layout = StorageLayout(settings.paths)
    assert result.ok
    assert [d.drop_id for d in layout.landed_drops("flights")] == ["2013-01", "2013-02", "2013-03"]
    assert [d.drop_id for d in layout.landed_drops("airports")] == ["2013"]
    source_rows = (SLICE_DIR / "flights.csv").read_text().splitlines()
    landed_rows = [
        line
        for drop in layout.landed_drops("flights")
        for line in Path(drop.path).read_text().splitlines()[1:]
    ]
    assert sorted(landed_rows) == sorted(source_rows[1:])  # "NA" and every number as delivered
    assert (
        result.rows_out
        == result.rows_in
        == sum(
            len((SLICE_DIR / f"{t}.csv").read_text().splitlines()) - 1
            for t in ("flights", "weather", "airports", "airlines", "planes")
        )
    )


def test_landing_again_changes_nothing_and_never_overwrites(make_settings) -> None:
    settings = make_settings()
    land.run(settings)
    january = Path(StorageLayout(settings.paths).landing_file("flights", "2013-01"))
    january.write_text(january.read_text() + "tampered\n")
    before = january.read_bytes()
    again = land.run(settings)
    assert again.ok and again.rows_out == 0
    assert january.read_bytes() == before


def test_months_filter_that_matches_nothing_fails(make_settings) -> None:
    result = land.run(make_settings(land={"months": ["2014-01"]}))
    assert not result.ok
    assert "2014-01" in result.problems[0]


def test_missing_source_file_is_named(make_settings, tmp_path) -> None:
    with pytest.raises(land.StageFailed, match="source file for airlines not found"):
        land.run(make_settings(land={"source_dir": str(tmp_path / "nowhere")}))
