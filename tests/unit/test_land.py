"""Land: drops per month, never overwritten, exactly the source's text (on the platform's own
use case, `synthetic`); a scale factor needs the use case's `replicate`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from configs import Settings, load_settings
from pipelines import land
from pipelines.adapters.storage import StorageLayout
from pipelines.context import SparkProvider, StageContext
from tests.conftest import layout_overrides
from usecases import load
from usecases.project import bind

USECASE = load("synthetic")
READINGS, FACILITIES = (USECASE.source(name) for name in ("meter_readings", "facilities"))
DATA = Path(USECASE.default_source_dir())


def settings_for(root: Path, **overrides: object) -> Settings:
    settings = load_settings("local", environ={}, usecase="synthetic")
    return settings.with_overrides(layout_overrides(root)).with_overrides(overrides)


def run_land(settings: Settings):
    return land.run(StageContext(bind(settings), SparkProvider(settings)))


def test_monthly_source_splits_into_one_drop_per_month() -> None:
    frame = pd.DataFrame(
        {"year": ["2024", "2024", "2024"], "month": ["1", "2", "1"], "x": ["a", "b", "c"]}
    )
    drops = land.split_into_drops(frame, READINGS, "2024", months=[])
    assert list(drops) == ["2024-01", "2024-02"]
    assert drops["2024-01"]["x"].tolist() == ["a", "c"]
    assert list(land.split_into_drops(frame, READINGS, "2024", months=["2024-02"])) == ["2024-02"]


def test_reference_source_is_one_snapshot_drop() -> None:
    frame = pd.DataFrame({"facility_id": ["S1", "S2"]})
    assert list(land.split_into_drops(frame, FACILITIES, "2024", months=["2024-01"])) == ["2024"]


def test_land_writes_drops_that_keep_the_source_text(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    result = run_land(settings)
    layout = StorageLayout(settings.paths)
    assert result.ok
    assert [d.drop_id for d in layout.landed_drops("meter_readings")] == [
        "2024-01",
        "2024-02",
        "2024-03",
    ]
    assert [d.drop_id for d in layout.landed_drops("facilities")] == ["2024"]
    source_rows = (DATA / READINGS.file).read_text().splitlines()
    landed_rows = [
        line
        for drop in layout.landed_drops("meter_readings")
        for line in Path(drop.path).read_text().splitlines()[1:]
    ]
    assert sorted(landed_rows) == sorted(source_rows[1:])  # every value as delivered
    assert (
        result.rows_out
        == result.rows_in
        == sum(len((DATA / s.file).read_text().splitlines()) - 1 for s in USECASE.sources)
    )


def test_landing_again_changes_nothing_and_never_overwrites(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    run_land(settings)
    january = Path(StorageLayout(settings.paths).landing_file("meter_readings", "2024-01"))
    january.write_text(january.read_text() + "tampered\n")
    before = january.read_bytes()
    again = run_land(settings)
    assert again.ok and again.rows_out == 0
    assert january.read_bytes() == before


def test_months_filter_that_matches_nothing_fails(tmp_path: Path) -> None:
    result = run_land(settings_for(tmp_path, land={"months": ["2014-01"]}))
    assert not result.ok
    assert "2014-01" in result.problems[0]


def test_missing_source_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(land.StageFailed, match="source file for facilities not found"):
        run_land(settings_for(tmp_path, land={"source_dir": str(tmp_path / "nowhere")}))


def test_a_scale_factor_without_a_replicate_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(land.StageFailed, match="declares no `replicate`"):
        run_land(settings_for(tmp_path, land={"scale_factor": 2}))
