"""The monitor's figures and decision, on small frames: no drift where the live window is the
reference's own distribution, drift found and named where one input shifts, live metrics as
computed by hand, and the retrain decision both ways."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from configs.settings import DriftConfig, RetrainConfig
from monitoring.monitor import (
    KEEP,
    NO_VERDICT,
    REFERENCE_MOMENT,
    REFERENCE_PART,
    RETRAIN,
    SCORE,
    ColumnDrift,
    Verdict,
    decide,
    drift_reference,
    drift_report,
    drifted,
    due,
    live_metrics,
    outcome_coverage,
)

FEATURES = ["distance", "dep_hour", "temp"]


def frame(rows: int, seed: int, temp_shift: float = 0.0, temp_scale: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(
        {
            "distance": rng.gamma(4.0, 300.0, rows),
            "dep_hour": rng.integers(5, 23, rows).astype("float64"),
            "temp": rng.normal(55.0, 15.0, rows) * temp_scale + temp_shift,
        }
    )
    data[SCORE] = 1 / (1 + np.exp(-(data["dep_hour"] - 14) / 4))
    return data


@pytest.mark.slow
def test_no_drift_on_a_sample_of_the_reference_distribution() -> None:
    reference, current = frame(5000, seed=1), frame(2000, seed=2)
    drift, snapshot = drift_report(reference, current, [*FEATURES, SCORE], DriftConfig())
    assert [d.column for d in drift] == [*FEATURES, SCORE]
    assert not [d.column for d in drift if d.drifted], drift
    assert snapshot is not None


def test_a_shifted_input_is_found_and_named() -> None:
    """The weather in the wrong unit (Celsius where the model learnt Fahrenheit)."""
    reference = frame(5000, seed=1)
    current = frame(2000, seed=2, temp_scale=5 / 9, temp_shift=-32 * 5 / 9)
    drift, _ = drift_report(reference, current, [*FEATURES, SCORE], DriftConfig())
    assert [d.column for d in drift if d.drifted] == ["temp"]


def test_a_column_empty_on_one_side_is_left_out() -> None:
    reference, current = frame(500, seed=1), frame(500, seed=2)
    current["temp"] = np.nan
    drift, _ = drift_report(reference, current, FEATURES, DriftConfig())
    assert [d.column for d in drift] == ["distance", "dep_hour"]


@pytest.mark.parametrize(
    ("method", "value", "expected"),
    [("psi", 0.25, True), ("psi", 0.05, False), ("ks", 0.01, True), ("ks", 0.5, False)],
)
def test_distances_drift_above_the_threshold_p_values_below(method, value, expected) -> None:
    threshold = 0.2 if method == "psi" else 0.05
    assert drifted(method, value, threshold) is expected
    assert drifted(method, float("nan"), threshold) is False


def test_live_metrics_equal_those_computed_by_hand() -> None:
    logged = pd.DataFrame(
        {
            "row_id": ["a", "b", "c", "d", "e", "f", "g"],
            "model_version": ["1", "1", "1", "1", "2", "2", "2"],
            "score": [0.9, 0.2, 0.7, 0.4, 0.8, 0.3, 0.6],
            "decision": [True, False, True, False, True, False, True],
        }
    )
    # "g" has no outcome yet; "z" was never scored
    outcomes = pd.DataFrame(
        {"row_id": ["a", "b", "c", "d", "e", "f", "z"], "late": [1, 0, 0, 1, 1, 0, 1]}
    )
    live = live_metrics(logged, outcomes, "late")
    assert set(live) == {"1", "2"}
    one = live["1"]
    assert one["rows"] == 4
    assert one["roc_auc"] == pytest.approx(skm.roc_auc_score([1, 0, 0, 1], [0.9, 0.2, 0.7, 0.4]))
    assert one["precision"] == pytest.approx(0.5)  # a (late) and c (on time) flagged
    assert one["recall"] == pytest.approx(0.5)  # a of a, d
    assert live["2"]["rows"] == 2 and live["2"]["roc_auc"] == 1.0


def test_live_metrics_of_a_regression_and_a_multiclass_target_by_hand() -> None:
    logged = pd.DataFrame(
        {
            "row_id": ["a", "b", "c", "d"],
            "model_version": ["1"] * 4,
            "score": [10.0, 12.0, 8.0, 20.0],
            "predicted_class": ["dry", "light", "heavy", "dry"],
        }
    )
    values = pd.DataFrame({"row_id": ["a", "b", "c", "d"], "y": [11.0, 12.0, 5.0, 20.0]})
    live = live_metrics(logged, values, "y", "regression")["1"]
    assert live["rows"] == 4
    assert live["mae"] == pytest.approx((1 + 0 + 3 + 0) / 4)
    assert live["rmse"] == pytest.approx(np.sqrt((1 + 0 + 9 + 0) / 4))
    classes = ("dry", "light", "heavy")
    happened = pd.DataFrame({"row_id": ["a", "b", "c", "d"], "y": [0, 1, 1, 2]})
    live = live_metrics(logged, happened, "y", "multiclass", classes)["1"]
    assert live["accuracy"] == pytest.approx(0.5)  # a and b named right
    truth, served = ["dry", "light", "light", "heavy"], ["dry", "light", "heavy", "dry"]
    assert live["macro_f1"] == pytest.approx(
        skm.f1_score(truth, served, labels=list(classes), average="macro")
    )


@pytest.mark.parametrize(("mae", "expected"), [(2.5, KEEP), (3.0, KEEP), (3.01, RETRAIN)])
def test_a_lower_is_better_live_metric_retrains_only_above_its_bound(mae, expected) -> None:
    """The live MAE of a regression is a ceiling: on the bound keeps, above it retrains."""
    judged = verdict(live={"3": {"rows": 1000.0, "mae": mae}})
    done = decide(
        judged, RetrainConfig(min_live_metric=3.0), DriftConfig(), "mae", lower_is_better=True
    )
    assert done.decision == expected, done.reasons
    if expected == RETRAIN:
        assert "live mae 3.010 of version 3 is above 3.0" in done.reasons


def verdict(**changes) -> Verdict:
    base = Verdict("2013-12-01", "2013-12-07", rows=5000, champion_version="3")
    base.drift = [ColumnDrift(c, 0.01, False) for c in FEATURES]
    base.score_drift = ColumnDrift(SCORE, 0.01, False)
    base.live = {"3": {"rows": 1000.0, "roc_auc": 0.71}}
    base.model_age_days = 30
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def test_the_decision_keeps_a_healthy_champion() -> None:
    done = decide(verdict(), RetrainConfig(), DriftConfig(), "roc_auc")
    assert done.decision == KEEP and done.reasons


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        (
            {
                "drift": [
                    ColumnDrift("temp", 0.9, True),
                    ColumnDrift("distance", 0.3, True),
                    ColumnDrift("dep_hour", 0.01, False),
                ]
            },
            "2 of 3 inputs drifted (temp, distance",
        ),
        ({"score_drift": ColumnDrift(SCORE, 0.4, True)}, "the score drifted"),
        ({"live": {"3": {"rows": 1000.0, "roc_auc": 0.6}}}, "live roc_auc 0.600 of version 3"),
        ({"model_age_days": 120}, "120 days old"),
    ],
)
def test_the_decision_retrains_and_says_why(changes, reason) -> None:
    done = decide(verdict(**changes), RetrainConfig(), DriftConfig(), "roc_auc")
    assert done.decision == RETRAIN
    assert any(reason in r for r in done.reasons), done.reasons


def test_too_few_outcomes_or_rows_decide_nothing_on_them() -> None:
    # a bad live metric on too few outcomes is not a reason
    few = decide(
        verdict(live={"3": {"rows": 10.0, "roc_auc": 0.5}}),
        RetrainConfig(),
        DriftConfig(),
        "roc_auc",
    )
    assert few.decision == KEEP
    # too few predictions in the window: no verdict at all
    empty = decide(verdict(rows=20), RetrainConfig(), DriftConfig(), "roc_auc")
    assert empty.decision == NO_VERDICT and "only 20 predictions" in empty.reasons[0]


def test_cloudwatch_figures_are_what_the_alarms_read() -> None:
    from configs import cloudwatch
    from monitoring.monitor import cloudwatch_figures

    drifting = verdict(
        drift=[ColumnDrift("temp", 0.9, True), ColumnDrift("distance", 0.01, False)],
        live={"3": {"rows": 1000.0, "roc_auc": 0.61}, "4": {"rows": 900.0, "roc_auc": 0.7}},
    )
    decide(drifting, RetrainConfig(), DriftConfig(), "roc_auc")
    figures = {f["MetricName"]: f for f in cloudwatch_figures(drifting, "my_case", "roc_auc", 500)}
    assert figures[cloudwatch.DRIFTED_SHARE]["Value"] == 0.5
    assert figures[cloudwatch.CHAMPION_LIVE_METRIC]["Value"] == 0.61  # the champion's, v3
    assert figures[cloudwatch.RETRAIN]["Value"] == 1.0
    assert figures[cloudwatch.SCORE_DRIFT]["Value"] == 0.01
    assert all(
        f["Dimensions"] == [{"Name": cloudwatch.USECASE_DIMENSION, "Value": "my_case"}]
        for f in figures.values()
    )
    # too few outcomes: no live figure for the decay alarm to read
    few = {f["MetricName"] for f in cloudwatch_figures(drifting, "my_case", "roc_auc", 5000)}
    assert cloudwatch.CHAMPION_LIVE_METRIC not in few


def test_the_monitor_publishes_its_figures_to_the_project_namespace(monkeypatch) -> None:
    import boto3

    from configs import load_settings
    from pipelines import monitor

    sent: list[dict] = []

    class CloudWatch:
        def put_metric_data(self, **request: object) -> None:
            sent.append(request)

    monkeypatch.setattr(boto3, "client", lambda service: CloudWatch())
    settings = load_settings("local", environ={}, usecase="synthetic")
    done = decide(verdict(), RetrainConfig(), DriftConfig(), "roc_auc")
    monitor._publish_to_cloudwatch(settings, done)
    (request,) = sent
    assert request["Namespace"] == settings.names.cloudwatch_namespace
    assert {f["MetricName"] for f in request["MetricData"]} >= {"DriftedShare", "RetrainDecision"}


def test_shadow_scores_are_paired_with_the_answers_they_shadow() -> None:
    from monitoring import prediction_log as pl
    from pipelines.monitor import paired

    answered = pd.DataFrame(
        {
            pl.PREDICTION_ID: ["a", "b", "c"],
            pl.ROW_ID: ["f1", "f2", None],
            pl.MODEL_VERSION: "1",
        }
    )
    shadowed = pd.DataFrame(
        {
            pl.PREDICTION_ID: [f"b{pl.SHADOW_ID_SUFFIX}", f"c{pl.SHADOW_ID_SUFFIX}"],
            pl.ROW_ID: ["f2", None],
            pl.MODEL_VERSION: "2",
        }
    )
    both = paired(answered, shadowed)
    # "a" was never shadowed; "c" names no row, so no outcome can be joined
    assert sorted(zip(both[pl.PREDICTION_ID], both[pl.MODEL_VERSION], strict=True)) == [
        ("b", "1"),
        (f"b{pl.SHADOW_ID_SUFFIX}", "2"),
    ]


def test_live_metrics_count_only_predictions_whose_outcome_is_due() -> None:
    """Outcomes known 6 hours after the moment predicted; the window ends at 12:00. Of four
    predictions with an id: `a` (due, arrived) and `b` (due on the dot, not arrived: late) are
    due; `c` and `d` are not due yet although their outcomes are already in (a replay lands
    them early): they are not judged. `e` has no id: it cannot be joined."""
    end = pd.Timestamp("2024-03-10 12:00", tz="UTC")
    delay = timedelta(hours=6)
    logged = pd.DataFrame(
        {
            "row_id": ["a", "b", "c", "d", None],
            "event_time": pd.to_datetime(
                [
                    "2024-03-09 20:00",
                    "2024-03-10 06:00",
                    "2024-03-10 06:01",
                    "2024-03-10 11:00",
                    "2024-03-10 11:00",
                ],
                utc=True,
            ),
            "model_version": ["1"] * 5,
            "score": [0.9, 0.2, 0.8, 0.3, 0.5],
            "decision": [True, False, True, False, True],
        }
    )
    outcomes = pd.DataFrame({"row_id": ["a", "c", "d"], "late": [1, 0, 1]})
    assert list(due(logged, end, delay)) == [True, True, False, False, False]
    assert outcome_coverage(logged, outcomes, end, delay) == {
        "predictions": 5.0,
        "joinable": 4.0,
        "due": 2.0,
        "arrived": 1.0,
        "joinable_share": 0.8,
        "coverage": 0.5,
    }
    judged = logged[logged["row_id"].notna() & due(logged, end, delay)]
    live = live_metrics(judged, outcomes, "late")["1"]
    assert live["rows"] == 1  # `a` only: `c` and `d`, early, are not counted
    assert live["precision"] == 1.0
    # with no delay, every prediction up to the window's end is due
    assert due(logged, end, timedelta(0)).all()


def test_an_input_s_own_bound_overrides_the_common_one() -> None:
    reference = frame(5000, seed=1)
    current = frame(2000, seed=2, temp_scale=5 / 9, temp_shift=-32 * 5 / 9)
    drift, _ = drift_report(reference, current, FEATURES, DriftConfig())
    (temp,) = [d for d in drift if d.drifted]
    lenient = DriftConfig(thresholds={"temp": temp.value * 1.01})
    assert not [d for d in drift_report(reference, current, FEATURES, lenient)[0] if d.drifted]
    with pytest.raises(ValueError, match="above 0"):
        DriftConfig(thresholds={"temp": 0})


def seasonal_reference(days: int, start: str = "2012-01-02") -> pd.DataFrame:
    """A reference set with a row every hour from `start` for `days` days: the newest 10% of
    the days are the test part, the 10% before validation, the rest training."""
    moments = pd.date_range(start, periods=days * 24, freq="h", tz="UTC")
    rows = frame(len(moments), seed=3)
    rows[REFERENCE_MOMENT] = moments
    day = (moments - moments[0]).days
    rows[REFERENCE_PART] = np.select(
        [day >= days * 0.9, day >= days * 0.8], ["test", "validation"], "train"
    )
    return rows


def test_the_seasonal_reference_is_the_same_weeks_a_year_earlier() -> None:
    kept = seasonal_reference(500)  # 2012-01-02 .. 2013-05-15
    config = DriftConfig(reference="seasonal", seasonal_margin_days=7)
    start, end = pd.Timestamp("2013-03-04", tz="UTC"), pd.Timestamp("2013-03-10 23:00", tz="UTC")
    chosen = drift_reference(kept, start, end, config)
    # 52 weeks earlier: 2012-03-05 .. 2012-03-11 (the same weekdays), a week each side
    assert (chosen.kind, chosen.first, chosen.last) == ("seasonal", "2012-02-27", "2012-03-18")
    assert len(chosen.rows) == 21 * 24 and "a year earlier" in chosen.why
    assert chosen.describe()["rows"] == 21 * 24


def test_without_a_year_of_data_the_reference_is_the_newest_weeks_then_training() -> None:
    kept = seasonal_reference(240, start="2013-01-01")  # 2013-01-01 .. 2013-08-28
    start, end = pd.Timestamp("2013-09-01", tz="UTC"), pd.Timestamp("2013-09-30", tz="UTC")
    chosen = drift_reference(kept, start, end, DriftConfig(reference="seasonal", recent_days=28))
    assert (chosen.kind, chosen.first, chosen.last) == ("recent", "2013-08-01", "2013-08-28")
    assert "do not reach a year back" in chosen.why and "newest 28 days" in chosen.why
    # December 2013 against rows from January 2013: the margin reaches a week of them, the
    # window's own weeks a year earlier (December 2012) are not there
    december = pd.Timestamp("2013-12-01", tz="UTC"), pd.Timestamp("2013-12-31", tz="UTC")
    assert drift_reference(kept, *december, DriftConfig(min_reference_rows=24)).kind == "recent"
    # too few rows for either: the training part, and why
    strict = DriftConfig(reference="seasonal", min_reference_rows=28 * 24 + 1)
    fallen = drift_reference(kept, start, end, strict)
    assert fallen.kind == "training" and set(fallen.rows[REFERENCE_PART]) == {"train"}
    assert "rows in the newest 28 days" in fallen.why
    # asked for: the training rows; an older model's reference set, with no moments: all of it
    assert drift_reference(kept, start, end, DriftConfig(reference="training")).kind == "training"
    old = drift_reference(frame(100, seed=1), start, end, DriftConfig())
    assert (old.kind, len(old.rows)) == ("training", 100) and "no moments" in old.why
