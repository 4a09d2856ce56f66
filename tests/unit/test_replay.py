"""The replay's injected shift: only the chosen period's values of the chosen column change,
by the configured formula; every other row and every other upstream file lands as it was."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.replay import ReplayFailed, shifted_source
from configs.settings import ReplayShift
from pipelines.land import read_source
from tests.conftest import platform_settings
from usecases import load

# February's readings sent in another unit (value * 1000 + 5).
RESCALED = ReplayShift(
    source="meter_readings",
    column="value",
    period="2024-02",
    scale=1000.0,
    offset=5.0,
    expect="meter_value_last",
)


def test_only_the_period_s_column_is_shifted(tmp_path: Path) -> None:
    settings = platform_settings(tmp_path / "platform")
    usecase = load(settings.usecase)
    original = Path(usecase.default_source_dir())
    folder = shifted_source(settings, RESCALED, tmp_path / "source")
    readings = usecase.source("meter_readings")
    assert readings is not None and readings.drop_period is not None
    before, after = read_source(original, readings), read_source(folder, readings)
    assert before.shape == after.shape
    chosen = readings.drop_period(before) == "2024-02"
    assert chosen.any() and (~chosen).any()
    expected = pd.to_numeric(before.loc[chosen, "value"]) * 1000 + 5
    assert list(pd.to_numeric(after.loc[chosen, "value"])) == pytest.approx(list(expected))
    assert after.loc[~chosen, "value"].tolist() == before.loc[~chosen, "value"].tolist()
    others = before.columns.drop("value")
    assert after[others].equals(before[others])
    for source in usecase.sources:  # every other file is there to land
        if source.name != "meter_readings":
            assert read_source(folder, source).equals(read_source(original, source))


def test_a_shift_on_a_period_with_no_values_is_refused(tmp_path: Path) -> None:
    settings = platform_settings(tmp_path / "platform")
    with pytest.raises(ReplayFailed, match="no value values in 2014-06"):
        shifted_source(
            settings, RESCALED.model_copy(update={"period": "2014-06"}), tmp_path / "source"
        )
