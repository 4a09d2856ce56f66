"""The flight use case end to end on the committed slice: the whole chain trains, promotes and
packages a model, and the service answers its own request schema over HTTP (the platform's
behaviour is tested on its own use case; this is the proof that flights still run on it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from models.tracking import CHAMPION, Tracker
from pipelines.chain import CHAIN, run_chain
from tests.lake_helpers import problems
from tests.serving_helpers import serving
from usecases import load
from usecases.flight_delay.tests.slice import NAME, slice_overrides, slice_settings

USECASE = load(NAME)
# The use case's example request, on a day the slice covers.
FLIGHT = {**USECASE.request.example, "scheduled_departure": "2013-03-10T08:00:00-04:00"}


@pytest.fixture(scope="module")
def flights_root(tmp_path_factory: pytest.TempPathFactory, spark) -> Path:
    root = tmp_path_factory.mktemp("flights")
    results = run_chain(slice_settings(root), CHAIN, spark=spark)
    assert [r.stage for r in results] == list(CHAIN), problems(results)
    assert all(r.ok for r in results), problems(results)
    return root


def test_the_chain_trains_promotes_and_reports_a_model(flights_root: Path) -> None:
    settings = slice_settings(flights_root)
    tracker = Tracker(settings)
    champion = tracker.alias(CHAMPION)
    assert champion is not None and champion.version == "1"
    metrics = tracker.run_metrics(champion.run_id)
    assert metrics["test_roc_auc"] >= settings.promotion.minimum["roc_auc"]
    report = Path(settings.paths.reports) / "model" / "version-1" / "index.html"
    assert USECASE.outcome.question in report.read_text()


def test_it_serves_flights_and_refuses_what_a_flight_cannot_be(flights_root: Path) -> None:
    unknown_plane = {**FLIGHT, "tailnum": "N00000", "carrier": "AA"}
    with serving(flights_root, slice_overrides(flights_root), usecase=NAME) as (url, _, _):
        answer = requests.post(
            f"{url}/predict", json={"flights": [FLIGHT, unknown_plane]}, timeout=30
        )
        assert answer.status_code == 200, answer.text
        first, second = answer.json()["predictions"]
        assert 0.0 <= first["probability_late"] <= 1.0
        assert first["late"] == (first["probability_late"] >= first["threshold"])
        assert "tail_arr_delay_last" in second["missing_features"]  # never seen by the store
        good = json.dumps({"flights": [FLIGHT]})
        assert str(FLIGHT["distance"]) in good
        for bad in ("-5", "NaN", "Infinity", "1e999"):
            sent = good.replace(str(FLIGHT["distance"]), bad)
            refused = requests.post(
                f"{url}/predict",
                data=sent,
                headers={"Content-Type": "application/json"},
                timeout=30,
            )
            assert refused.status_code == 400, (bad, refused.text)
            assert "distance" in refused.text
