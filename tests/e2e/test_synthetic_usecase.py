"""The platform's own use case, `synthetic` (generated meters: a snapshot table the silver
transform reads, a monthly table, two views on two entities, a categorical request feature):
its whole chain runs, and the service answers its example request from the online store with
no feature missing."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from configs import Settings, load_settings
from models.tracking import CHAMPION, Tracker
from pipelines.chain import CHAIN, run_chain
from tests.conftest import layout_overrides
from tests.lake_helpers import problems
from tests.serving_helpers import serving
from usecases import load

NAME = "synthetic"


def synthetic_settings(root: Path) -> Settings:
    return load_settings("local", environ={}, usecase=NAME).with_overrides(layout_overrides(root))


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory, spark) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    results = run_chain(synthetic_settings(root), CHAIN, spark=spark)
    assert [r.stage for r in results] == list(CHAIN), problems(results)
    assert all(r.ok for r in results), problems(results)
    return root


def test_the_chain_trains_and_promotes_a_model_that_learned_something(synthetic_root) -> None:
    settings = synthetic_settings(synthetic_root)
    tracker = Tracker(settings)
    champion = tracker.alias(CHAMPION)
    assert champion is not None and champion.version == "1"
    metrics = tracker.run_metrics(champion.run_id)
    assert metrics["test_roc_auc"] >= settings.promotion.minimum["roc_auc"]
    report = Path(settings.paths.reports) / "model" / "version-1" / "index.html"
    assert "above 0.8" in report.read_text()  # the explanation, filled from params


def test_the_example_request_is_answered_with_every_feature(synthetic_root) -> None:
    usecase = load(NAME)
    request = usecase.request
    with serving(synthetic_root, layout_overrides(synthetic_root), usecase=NAME) as (url, _, _):
        answer = requests.post(
            f"{url}/predict", json={request.items_field: [dict(request.example)]}, timeout=30
        )
        assert answer.status_code == 200, answer.text
        (prediction,) = answer.json()["predictions"]
        assert prediction["missing_features"] == []
        score = prediction[usecase.outcome.score_field]
        assert 0.0 <= score <= 1.0
        assert prediction[usecase.outcome.decision_field] == (score >= prediction["threshold"])
