"""The monitor's newest figures as Prometheus gauges on the service's `/metrics`: what the
last `monitor` run measured (drift per input and of the score, the share of inputs drifted,
live metrics per model version, its decision), beside the service's own counters, so one
dashboard and one alert rule read both.

The monitor writes its decisions to `paths.monitoring` (local or S3); each worker reads the
newest one in the background every `monitoring.gauges_refresh_s` seconds. A decision that
cannot be read leaves the gauges as they were (and is logged), never a failed request.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from configs import handoff
from monitoring import decisions

log = logging.getLogger("serving")

# The decisions a monitor makes, one gauge series each: 1 for the newest.
DECISIONS = (handoff.RETRAIN, handoff.KEEP, handoff.NO_VERDICT)


# Each gauge (exported as `<metric prefix>_monitor_<name>`): its labels and what it shows.
GAUGES: dict[str, tuple[tuple[str, ...], str]] = {
    "drifted_share": ((), "Share of the model's inputs that drifted in the monitor's last window"),
    "input_drift": (("input",), "Drift statistic of each input in the monitor's last window"),
    "score_drift": ((), "Drift statistic of the score in the monitor's last window"),
    "live": (
        ("model_version", "metric"),
        "Live performance per model version once outcomes arrived (rows: how many outcomes)",
    ),
    "shadow": (
        ("model_version", "metric"),
        "Champion and challenger on the same requests scored in shadow, once outcomes arrived",
    ),
    "decision": (("decision",), "The monitor's last decision (1 for the one it made)"),
    "window_rows": ((), "Predictions in the monitor's last window"),
    "window_end_seconds": ((), "End of the monitor's last window (seconds since the epoch)"),
}


@dataclass(frozen=True)
class Reading:
    """One gauge's series: its labels and value."""

    gauge: str
    labels: dict[str, str]
    value: float


def readings(decision: dict[str, Any]) -> list[Reading]:
    """The series the gauges show for `decision` (a recorded verdict)."""
    found = [
        Reading("drifted_share", {}, float(decision.get("drifted_share", 0.0))),
        Reading("window_rows", {}, float(decision.get("rows", 0))),
        Reading(
            "window_end_seconds",
            {},
            pd.Timestamp(decision["window_to"], tz="UTC").timestamp(),
        ),
    ]
    found += [
        Reading("decision", {"decision": name}, float(decision.get("decision") == name))
        for name in DECISIONS
    ]
    found += [
        Reading("input_drift", {"input": d["column"]}, float(d["value"]))
        for d in decision.get("drift", [])
    ]
    if decision.get("score_drift"):
        found.append(Reading("score_drift", {}, float(decision["score_drift"]["value"])))
    for kind in ("live", "shadow"):
        for version, figures in decision.get(kind, {}).items():
            found += [
                Reading(
                    kind,
                    {"model_version": str(version), "metric": metric},
                    float(value),
                )
                for metric, value in figures.items()
            ]
    return found


@dataclass
class MonitorGauges:
    """Keeps gauges (name -> a Prometheus gauge, labelled as `readings` says) showing the
    newest decision under `location`."""

    location: str
    gauges: dict[str, Any]
    refresh_s: float
    shown: str | None = None  # the decision shown now (its decided_at)
    _series: set[tuple[str, tuple[tuple[str, str], ...]]] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)

    def refresh(self) -> bool:
        """Show the newest decision if it is not shown yet; True when the gauges changed."""
        try:
            decision = decisions.newest(self.location)
        except Exception:  # an unreadable store or file: keep what is shown
            log.warning("monitoring gauges: cannot read %s", self.location, exc_info=True)
            return False
        if decision is None or decision.get("decided_at") == self.shown:
            return False
        now = readings(decision)
        # Series of inputs or versions the new decision no longer has are set to NaN (BentoML's
        # workers export in Prometheus's multi-process mode, which cannot remove a series).
        current = {(r.gauge, tuple(sorted(r.labels.items()))) for r in now}
        stale = [Reading(gauge, dict(labels), math.nan) for gauge, labels in self._series - current]
        for reading in [*stale, *now]:
            gauge = self.gauges[reading.gauge]
            (gauge.labels(**reading.labels) if reading.labels else gauge).set(reading.value)
        self._series = current
        self.shown = decision.get("decided_at")
        return True

    def start(self) -> MonitorGauges:
        self.refresh()
        threading.Thread(target=self._run, name="monitor-gauges", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_s):
            self.refresh()
