"""The second use case, `seattle_weather` (real NOAA data, one station, a scikit-learn model):
its whole chain runs through the same generic stages as flights, and it serves over HTTP.
This is the proof that the seam holds: nothing generic was edited to add it."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

from configs import Settings, load_settings
from configs.settings import _deep_merge
from models.tracking import CHAMPION, Tracker
from pipelines.chain import CHAIN, run_chain
from tests.conftest import layout_overrides
from tests.lake_helpers import problems
from tests.serving_helpers import serving
from usecases import load

NAME = "seattle_weather"
# Eighteen monthly drops: train on 2014-01..06, validate on 2014-07..12, test on 2015-01..06.
MONTHS = [f"2014-{m:02d}" for m in range(1, 13)] + [f"2015-{m:02d}" for m in range(1, 7)]


def overrides(root: Path) -> dict[str, Any]:
    return _deep_merge(layout_overrides(root), {"land": {"months": MONTHS}})


def weather_settings(root: Path) -> Settings:
    return load_settings("local", environ={}, usecase=NAME).with_overrides(overrides(root))


@pytest.fixture(scope="module")
def weather_root(tmp_path_factory: pytest.TempPathFactory, spark) -> Path:
    root = tmp_path_factory.mktemp("seattle")
    results = run_chain(weather_settings(root), CHAIN, spark=spark)
    assert [r.stage for r in results] == list(CHAIN), problems(results)
    assert all(r.ok for r in results), problems(results)
    return root


def test_the_chain_trains_promotes_and_packages_a_scikit_learn_model(weather_root: Path) -> None:
    settings = weather_settings(weather_root)
    assert settings.names.registered_model == "seattle_weather"
    tracker = Tracker(settings)
    champion = tracker.alias(CHAMPION)
    assert champion is not None and champion.version == "1"
    params = tracker.run_params(champion.run_id)
    assert params["model_family"] == "sklearn"
    assert params["model.estimator"] == "sklearn.linear_model.LogisticRegression"
    metrics = tracker.run_metrics(champion.run_id)
    assert metrics["test_roc_auc"] >= settings.promotion.minimum["roc_auc"]
    report = Path(settings.paths.reports) / "model" / "version-1" / "index.html"
    assert "Will it rain or snow in Seattle on this day?" in report.read_text()


def independent_score(settings: Settings, day: str) -> float:
    """The champion's score for `day`, computed outside the platform: the features from the
    package's raw CSV with pandas, the logged pipeline called directly."""
    import mlflow.sklearn

    raw = pd.read_csv(resources.files("vega_datasets") / "_data" / "seattle-weather.csv")
    raw["day"] = pd.to_datetime(raw["date"], format="%Y/%m/%d")
    target = pd.Timestamp(day)
    before = raw[raw["day"] < target].sort_values("day")
    yesterday = before.iloc[-1]
    assert yesterday["day"] == target - pd.Timedelta(days=1)
    week = before[before["day"] > target - pd.Timedelta(days=8)]
    angle = 2 * np.pi * (target.dayofyear - 1) / 365.25
    row = pd.DataFrame(
        [
            {
                "month": float(target.month),
                "season_sin": np.sin(angle),
                "season_cos": np.cos(angle),
                "precip_yesterday": yesterday["precipitation"],
                "temp_max_yesterday": yesterday["temp_max"],
                "temp_min_yesterday": yesterday["temp_min"],
                "wind_yesterday": yesterday["wind"],
                "precip_week": week["precipitation"].sum(),
                "wet_days_week": float((week["precipitation"] > 0).mean()),
            }
        ]
    )
    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
    pipeline = mlflow.sklearn.load_model(f"models:/{settings.names.registered_model}@champion")
    return float(pipeline.predict_proba(row[load(NAME).model_inputs])[0, 1])


def test_it_serves_over_http_the_score_computed_independently(weather_root: Path) -> None:
    settings = weather_settings(weather_root)
    # The newest feature row is stamped 2015-07-01 00:00 (the end of 2015-06-30): the online
    # store answers for that day.
    day = "2015-07-01"
    expected = independent_score(settings, day)
    with serving(weather_root, overrides(weather_root), usecase=NAME) as (url, _, _):
        answer = requests.post(
            f"{url}/predict", json={"days": [{"station": "SEA", "day": day}]}, timeout=30
        )
        assert answer.status_code == 200, answer.text
        (prediction,) = answer.json()["predictions"]
        assert prediction["missing_features"] == []
        assert prediction["probability_wet"] == pytest.approx(expected, abs=1e-9)
        assert prediction["wet"] == (prediction["probability_wet"] >= prediction["threshold"])
        # The use case's own request schema: a flight is a client mistake here.
        refused = requests.post(f"{url}/predict", json={"flights": [{"x": 1}]}, timeout=30)
        assert refused.status_code == 400, refused.text
