"""The platform's own use case, `synthetic` (generated meters: a snapshot table the silver
transform reads, a monthly table, two views on two entities, a categorical request feature):
its whole chain runs (the session's trained platform), and the service answers its example
request from the online store with no feature missing."""

from __future__ import annotations

from pathlib import Path

import requests

from models.tracking import CHAMPION, Tracker
from tests.conftest import platform_settings
from tests.serving_helpers import DECISION, EXAMPLE, SCORE, body


def test_the_chain_trains_and_promotes_a_model_that_learned_something(
    platform_trained_root: Path,
) -> None:
    settings = platform_settings(platform_trained_root)
    tracker = Tracker(settings)
    champion = tracker.alias(CHAMPION)
    assert champion is not None and champion.version == "1"
    metrics = tracker.run_metrics(champion.run_id)
    assert metrics["test_roc_auc"] >= settings.promotion.minimum["roc_auc"]
    report = Path(settings.paths.reports) / "model" / "version-1" / "index.html"
    assert f"above {settings.params['spike_above']}" in report.read_text()  # filled from params


def test_the_example_request_is_answered_with_every_feature(server: str) -> None:
    answer = requests.post(f"{server}/predict", json=body(EXAMPLE), timeout=30)
    assert answer.status_code == 200, answer.text
    (prediction,) = answer.json()["predictions"]
    assert prediction["missing_features"] == []
    assert 0.0 <= prediction[SCORE] <= 1.0
    assert prediction[DECISION] == (prediction[SCORE] >= prediction["threshold"])
