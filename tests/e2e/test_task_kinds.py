"""A regression and a multiclass target, end to end through the same generic stages as the
yes/no use cases: `seattle_temperature` (the day's highest temperature, °C) and `seattle_rainfall`
(a dry day, light or heavy rain), on the Seattle weather data. Each trains and passes the gate
by its task's metrics, its report reads in plain words, it serves an answer that the service's
own OpenAPI document describes, and batch scoring plus the monitor judge it once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from jsonschema import Draft202012Validator

from configs import Settings, load_settings
from configs.settings import _deep_merge
from models.tracking import CHAMPION, Tracker
from monitoring import decisions
from pipelines.chain import CHAIN, run_chain
from serving import smoke
from tests.e2e.test_second_usecase import overrides
from tests.lake_helpers import problems
from tests.serving_helpers import serving
from usecases import load

# The month batch-predict scores and the monitor then judges (its outcomes are in silver).
SCORED_MONTH = "2015-06"
# A window holding the scored month and the days served by the tests before (the use case's
# example day, 2015-12-31, among them); bounds small enough for a month of days, so the
# monitor gives a verdict and measures live metrics.
MONITORED = {
    "monitoring": {
        "drift": {"min_rows": 20, "window_days": 400},
        "retrain": {"min_outcomes": 20},
    }
}


@pytest.fixture(scope="module", params=["seattle_temperature", "seattle_rainfall"])
def trained(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, spark
) -> Iterator[tuple[str, Path]]:
    """(the use case, the root it was trained in): the whole chain, once per use case."""
    name = request.param
    root = tmp_path_factory.mktemp(name)
    results = run_chain(settings_of(name, root), CHAIN, spark=spark)
    assert [r.stage for r in results] == list(CHAIN), problems(results)
    assert all(r.ok for r in results), problems(results)
    yield name, root


def settings_of(name: str, root: Path) -> Settings:
    return load_settings("local", environ={}, usecase=name).with_overrides(
        _deep_merge(overrides(root), MONITORED)
    )


def test_it_trains_and_passes_the_gate_by_its_tasks_metrics(trained: tuple[str, Path]) -> None:
    name, root = trained
    settings = settings_of(name, root)
    target = load(name).target
    tracker = Tracker(settings)
    champion = tracker.alias(CHAMPION)
    assert champion is not None and champion.version == "1"
    metrics = tracker.run_metrics(champion.run_id)
    params = tracker.run_params(champion.run_id)
    assert "threshold" not in params  # a decision threshold is a yes/no target's only
    if target.kind == "regression":
        assert metrics["test_mae"] <= settings.promotion.maximum["mae"]
        assert metrics["test_rmse"] >= metrics["test_mae"] > 0
        assert float(params["interval"]) > 0 and params["interval_coverage"] == "0.9"
    else:
        assert metrics["test_accuracy"] >= settings.promotion.minimum["accuracy"]
        assert 0 < metrics["test_macro_f1"] <= 1
        assert params["classes"] == ",".join(target.classes)
    assert "roc_auc" not in " ".join(metrics)


def test_its_report_reads_in_plain_words(trained: tuple[str, Path]) -> None:
    name, root = trained
    settings = settings_of(name, root)
    usecase = load(name)
    page = (Path(settings.paths.reports) / "model" / "version-1" / "index.html").read_text()
    assert usecase.outcome.question in page
    if usecase.target.kind == "regression":
        assert "It is off by " in page and " °C on average." in page
        assert "in the test period it held" in page  # the interval's coverage, measured
        assert 'src="predicted_actual.png"' in page
    else:
        assert "It names the right one of 3 answers" in page and "times in 10." in page
        assert "Answering the most common one" in page
        assert 'src="confusion.png"' in page
    # no yes/no words leak into another task's page
    assert "flags" not in page and "ROC" not in page
    for chart in ("feature_importance.png",):
        assert (Path(settings.paths.reports) / "model" / "version-1" / chart).is_file()


def response_validator(document: dict[str, Any]) -> Draft202012Validator:
    """The /predict 200 response's schema from the service's OpenAPI document. BentoML labels
    it 3.0 but writes pydantic's JSON Schema 2020-12: read as such."""
    schema = document["paths"]["/predict"]["post"]["responses"]["200"]["content"][
        "application/json"
    ]["schema"]
    return Draft202012Validator({**schema, "components": document["components"]})


def test_it_serves_an_answer_its_openapi_document_describes(trained: tuple[str, Path]) -> None:
    name, root = trained
    usecase = load(name)
    outcome, target = usecase.outcome, usecase.target
    with serving(root, _deep_merge(overrides(root), MONITORED), usecase=name) as (url, _, _):
        document = requests.get(f"{url}/docs.json", timeout=10).json()
        # the release's smoke check, as a deploy runs it, with the use case's example
        sent, _, score_field = smoke.example_request(name)
        smoke.smoke(url, sent, score_field, ready_within_s=30, task=target.kind)
        with pytest.raises(smoke.SmokeFailed, match="answered"):  # judged as its own task
            smoke.smoke(url, sent, score_field, ready_within_s=30, task="binary")
        answer = requests.post(
            f"{url}/predict", json={"days": [{"station": "SEA", "day": "2015-07-01"}]}, timeout=30
        )
    assert answer.status_code == 200, answer.text
    validator = response_validator(document)
    validator.validate(answer.json())
    (prediction,) = answer.json()["predictions"]
    assert prediction["missing_features"] == []
    assert "threshold" not in prediction
    if target.kind == "regression":
        value = prediction[outcome.score_field]
        low, high = (
            prediction[f"{outcome.score_field}_low"],
            prediction[f"{outcome.score_field}_high"],
        )
        assert low < value < high and high - value == pytest.approx(value - low)
        assert 5 < value < 40  # a Seattle July day, in °C
    else:
        probabilities = prediction[outcome.score_field]
        assert set(probabilities) == set(target.classes)
        assert sum(probabilities.values()) == pytest.approx(1.0)
        assert prediction[outcome.decision_field] == max(probabilities, key=probabilities.get)
    # the schema is the task's: a yes/no answer would not validate
    wrong = {**prediction, outcome.score_field: True if target.kind == "multiclass" else "warm"}
    assert not validator.is_valid({**answer.json(), "predictions": [wrong]})


def test_batch_scoring_and_the_monitor_judge_it(trained: tuple[str, Path], spark) -> None:
    name, root = trained
    settings = settings_of(name, root)
    usecase = load(name)
    scored = run_chain(settings, ("batch-predict",), spark=spark, handoff={"period": SCORED_MONTH})
    assert all(r.ok for r in scored), problems(scored)
    judged = run_chain(settings, ("monitor",), spark=spark)
    assert all(r.ok for r in judged), problems(judged)
    (verdict,) = decisions.every(settings.paths.monitoring)
    assert verdict["rows"] >= 30  # the days of June (and the days served by the tests before)
    assert verdict["decision"] in ("retrain", "keep")
    assert verdict["score_drift"] is not None
    live = verdict["live"]["1"]
    # every prediction carries its day's id (batch scores and the days served alike); a day's
    # outcome is due a day later (label_delay P1D): June's days are (but for the newest when
    # nothing later was served) and have arrived; a day served past the data has none
    counted = verdict["outcomes"]
    assert counted["joinable"] == verdict["rows"] and counted["joinable_share"] == 1.0
    assert counted["arrived"] == live["rows"] >= 29, (counted, live)
    assert counted["due"] >= counted["arrived"]
    assert counted["coverage"] == pytest.approx(counted["arrived"] / counted["due"])
    if usecase.target.kind == "regression":
        assert 0 < live["mae"] <= live["rmse"]
        assert verdict["score_drift"]["column"] == "score"
    else:
        assert 0 <= live["macro_f1"] <= 1 and 0 <= live["accuracy"] <= 1
        assert verdict["score_drift"]["column"] == "predicted_class"  # the class mix
