"""The replay's injected shift: only the chosen period's values of the chosen column change,
by the configured formula; every other row and every other upstream file lands as it was."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.replay import ReplayFailed, shifted_source
from configs.settings import ReplayShift
from pipelines.land import read_source
from tests.conftest import SLICE_DIR, settings_for
from usecases import load

CELSIUS = ReplayShift(
    source="weather",
    column="temp",
    period="2013-02",
    scale=0.5555556,
    offset=-17.777778,
    expect="weather_temp",
)


def test_only_the_period_s_column_is_shifted(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "platform")
    folder = shifted_source(settings, CELSIUS, tmp_path / "source")
    weather = next(s for s in load(settings.usecase).sources if s.name == "weather")
    before, after = read_source(SLICE_DIR, weather), read_source(folder, weather)
    assert before.shape == after.shape
    assert weather.drop_period is not None
    chosen = (weather.drop_period(before) == "2013-02") & ~before["temp"].isin(["", "NA"])
    assert chosen.any() and (~chosen).any()
    fahrenheit = pd.to_numeric(before.loc[chosen, "temp"])
    celsius = pd.to_numeric(after.loc[chosen, "temp"])
    assert list(celsius) == pytest.approx(list((fahrenheit - 32) * 5 / 9), abs=0.01)
    assert after.loc[~chosen, "temp"].tolist() == before.loc[~chosen, "temp"].tolist()
    others = before.columns.drop("temp")
    assert after[others].equals(before[others])
    for source in load(settings.usecase).sources:  # every other file is there to land
        if source.name != "weather":
            assert read_source(folder, source).equals(read_source(SLICE_DIR, source))


def test_a_shift_on_a_period_with_no_values_is_refused(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "platform")
    with pytest.raises(ReplayFailed, match="no temp values in 2014-06"):
        shifted_source(
            settings, CELSIUS.model_copy(update={"period": "2014-06"}), tmp_path / "source"
        )
