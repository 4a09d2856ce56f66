"""The monitor's newest decision as gauges: the series each decision gives, the newest one
shown (series of inputs it no longer judges removed), and an unreadable store kept as is."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge

from monitoring import decisions
from serving.gauges import GAUGES, MonitorGauges, readings


def decision(window_to: str, drifted_share: float, inputs: dict[str, float], **more) -> dict:
    return {
        "window_from": "2013-12-01",
        "window_to": window_to,
        "rows": 1200,
        "champion_version": "3",
        "drift": [{"column": c, "value": v, "drifted": v >= 0.2} for c, v in inputs.items()],
        "score_drift": {"column": "score", "value": 0.05, "drifted": False},
        "live": {"3": {"rows": 800.0, "roc_auc": 0.68}},
        "shadow": {},
        "decision": "retrain",
        "drifted_share": drifted_share,
        **more,
    }


@pytest.fixture
def gauges() -> tuple[CollectorRegistry, dict[str, Gauge]]:
    registry = CollectorRegistry()
    made = {
        name: Gauge(f"test_monitor_{name}", doc, list(labels), registry=registry)
        for name, (labels, doc) in GAUGES.items()
    }
    return registry, made


def test_every_reading_has_a_gauge_with_its_labels() -> None:
    for reading in readings(decision("2013-12-31", 0.5, {"temp": 0.9, "distance": 0.01})):
        labels, _ = GAUGES[reading.gauge]
        assert set(reading.labels) == set(labels), reading


def test_the_newest_decision_is_shown(tmp_path: Path, gauges) -> None:
    registry, made = gauges
    location = str(tmp_path)
    shown = MonitorGauges(location, made, refresh_s=60)
    assert shown.refresh() is False  # nothing decided yet: nothing shown
    decisions.record(location, decision("2013-12-24", 0.1, {"temp": 0.05, "visib": 0.3}))
    assert shown.refresh() is True
    value = registry.get_sample_value
    assert value("test_monitor_input_drift", {"input": "visib"}) == 0.3
    decisions.record(location, decision("2013-12-31", 0.5, {"temp": 0.9}, decision="keep"))
    assert shown.refresh() is True and shown.refresh() is False  # once per new decision
    assert value("test_monitor_drifted_share") == 0.5
    assert value("test_monitor_input_drift", {"input": "temp"}) == 0.9
    assert math.isnan(value("test_monitor_input_drift", {"input": "visib"}))  # no longer judged
    assert value("test_monitor_decision", {"decision": "keep"}) == 1.0
    assert value("test_monitor_decision", {"decision": "retrain"}) == 0.0
    assert value("test_monitor_live", {"model_version": "3", "metric": "roc_auc"}) == 0.68
    assert value("test_monitor_window_end_seconds") == 1388448000.0  # 2013-12-31 UTC


def test_an_unreadable_decision_leaves_the_gauges_as_they_were(tmp_path: Path, gauges) -> None:
    registry, made = gauges
    location = str(tmp_path)
    decisions.record(location, decision("2013-12-24", 0.1, {"temp": 0.05}))
    shown = MonitorGauges(location, made, refresh_s=60)
    assert shown.refresh() is True
    (tmp_path / decisions.FOLDER / "2013-12-31-broken.json").write_text("{not json")
    assert shown.refresh() is False
    assert registry.get_sample_value("test_monitor_drifted_share") == 0.1
