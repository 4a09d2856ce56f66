"""What the monitor computes, on frames: drift of each model input and of the score (the live
window against the champion's reference set, with Evidently), live performance per model
version once outcomes have arrived, and the decision to retrain or not, with its reasons.

No I/O here: `pipelines/monitor.py` reads the prediction log, the reference set and the
outcomes, and records what this returns.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from configs import cloudwatch, handoff
from configs.settings import DriftConfig, RetrainConfig
from models import BINARY, MULTICLASS, REGRESSION

# Evidently's methods whose value is a p-value: a column has drifted when it is BELOW the
# threshold; for the others (distances, PSI) when it is at or above it.
P_VALUE_METHODS = frozenset(
    {
        "ks",
        "chisquare",
        "z",
        "fisher_exact",
        "g_test",
        "t_test",
        "mannw",
        "cramer_von_mises",
        "anderson",
        "epps_singleton",
        "empirical_mmd",
    }
)
SCORE = "score"
RETRAIN, KEEP, NO_VERDICT = handoff.RETRAIN, handoff.KEEP, handoff.NO_VERDICT
# The reference set's own columns beside the model's inputs and answer (`pipelines.fit`): the
# moment each row is about, and the part of the split it was in.
REFERENCE_MOMENT, REFERENCE_PART = "event_time", "part"
TRAIN_PART = "train"
# "A year earlier": 52 weeks, so that a Monday is compared with Mondays.
YEAR = timedelta(weeks=52)


@dataclass(frozen=True)
class Reference:
    """The rows the window is compared with, and which they are, in words."""

    kind: str  # seasonal | recent | training (`monitoring.drift.reference`)
    rows: pd.DataFrame
    first: str | None  # the first and last day of the rows' moments, when known
    last: str | None
    why: str

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "from": self.first,
            "to": self.last,
            "rows": len(self.rows),
            "why": self.why,
        }


def drift_reference(
    reference: pd.DataFrame, window_from: pd.Timestamp, window_to: pd.Timestamp, config: DriftConfig
) -> Reference:
    """The reference rows the window `window_from`..`window_to` is judged against, as
    `config.reference` says: the same weeks a year earlier, else the newest weeks the champion
    was built on, else its training rows; each needs `min_reference_rows` rows, and a choice
    that falls back says why. A reference set with no moments (kept by an older model) is
    used whole."""
    if REFERENCE_MOMENT not in reference.columns:
        return Reference(
            "training", reference, None, None, "the champion's reference set has no moments"
        )
    moments = pd.to_datetime(reference[REFERENCE_MOMENT], utc=True)
    enough = config.min_reference_rows
    notes = []
    if config.reference == "seasonal":
        margin = timedelta(days=config.seasonal_margin_days)
        start = (window_from - YEAR - margin).normalize()
        end = (window_to - YEAR + margin).normalize() + timedelta(days=1)
        chosen = (moments >= start) & (moments < end)
        # the rows must cover the window's own weeks a year earlier, not only a margin of them
        covered = moments.min() <= window_from - YEAR and moments.max() >= window_to - YEAR
        if covered and chosen.sum() >= enough:
            return _reference(
                "seasonal", reference, moments, chosen, "the same weeks a year earlier"
            )
        year_earlier = f"{(window_from - YEAR).date()}..{(window_to - YEAR).date()}"
        notes.append(
            f"{int(chosen.sum())} rows in the same weeks a year earlier ({year_earlier}; "
            f"fewer than {enough})"
            if covered
            else f"the rows do not reach a year back ({year_earlier}; the first is of "
            f"{moments.min().date()})"
        )
    if config.reference in ("seasonal", "recent"):
        newest = moments.max().normalize() + timedelta(days=1)
        chosen = moments >= newest - timedelta(days=config.recent_days)
        if chosen.sum() >= enough:
            why = f"the newest {config.recent_days} days the champion was built on"
            return _reference("recent", reference, moments, chosen, "; ".join([*notes, why]))
        notes.append(f"{int(chosen.sum())} rows in the newest {config.recent_days} days")
    trained = (
        reference[REFERENCE_PART] == TRAIN_PART
        if REFERENCE_PART in reference.columns
        else pd.Series(True, index=reference.index)
    )
    return _reference(
        "training", reference, moments, trained, "; ".join([*notes, "the champion's training rows"])
    )


def _reference(
    kind: str, reference: pd.DataFrame, moments: pd.Series, chosen: pd.Series, why: str
) -> Reference:
    picked = moments[chosen]
    return Reference(
        kind,
        reference[chosen].reset_index(drop=True),
        str(picked.min().date()) if len(picked) else None,
        str(picked.max().date()) if len(picked) else None,
        why,
    )


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    value: float
    drifted: bool


@dataclass
class Verdict:
    """One run of the monitor: what it saw, what it measured, what it decided and why."""

    window_from: str
    window_to: str
    rows: int
    champion_version: str
    drift: list[ColumnDrift] = field(default_factory=list)
    score_drift: ColumnDrift | None = None
    # model version -> {"rows": n, "roc_auc": ..., "precision": ..., "recall": ...}
    live: dict[str, dict[str, float]] = field(default_factory=dict)
    # The outcomes behind `live`: served predictions, those carrying the row id outcomes are
    # joined by, those of them whose outcome is due (the label delay past their moment, by the
    # window's end) and those whose outcome has arrived; the shares of the two.
    outcomes: dict[str, float] = field(default_factory=dict)
    # With a challenger scored in shadow: champion and challenger per version, measured on the
    # same answered requests (the pairs both scored), as `live`.
    shadow: dict[str, dict[str, float]] = field(default_factory=dict)
    model_age_days: int | None = None
    # Which reference the drift was judged against (`Reference.describe`).
    reference: dict[str, Any] = field(default_factory=dict)
    decision: str = NO_VERDICT
    reasons: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> list[str]:
        return [d.column for d in self.drift if d.drifted]

    @property
    def drifted_share(self) -> float:
        return len(self.drifted) / len(self.drift) if self.drift else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["drifted"] = self.drifted
        data["drifted_share"] = self.drifted_share
        return data


def drifted(method: str, value: float, threshold: float) -> bool:
    if math.isnan(value):
        return False
    return value < threshold if method in P_VALUE_METHODS else value >= threshold


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str],
    config: DriftConfig,
    categorical: Sequence[str] = (),
) -> tuple[list[ColumnDrift], Any]:
    """Each column's drift (Evidently's ValueDrift with the configured method and threshold),
    and the Evidently snapshot (its HTML report). Columns among `categorical` (a multiclass
    model's predicted class) are compared as categories: their mix. Columns with no value on
    one side are left out (nothing to compare)."""
    with warnings.catch_warnings():
        # Evidently imports its UI's web framework, which warns of its own deprecations.
        warnings.filterwarnings("ignore", message=".*[Dd]eprecated in litestar")
        from evidently import DataDefinition, Dataset, Report
        from evidently.metrics import ValueDrift

    usable = [c for c in columns if reference[c].notna().any() and current[c].notna().any()]
    definition = DataDefinition(
        numerical_columns=[c for c in usable if c not in categorical],
        categorical_columns=[c for c in usable if c in categorical],
    )
    report = Report(
        [
            ValueDrift(column=c, method=config.method, threshold=config.threshold_of(c))
            for c in usable
        ]
    )
    snapshot = report.run(
        current_data=Dataset.from_pandas(current[usable], data_definition=definition),
        reference_data=Dataset.from_pandas(reference[usable], data_definition=definition),
    )
    values = _drift_values(snapshot, usable)
    return [
        ColumnDrift(c, values[c], drifted(config.method, values[c], config.threshold_of(c)))
        for c in usable
    ], snapshot


def _drift_values(snapshot: Any, columns: Sequence[str]) -> dict[str, float]:
    """The drift value of each column, from the snapshot's metric results."""
    found: dict[str, float] = {}
    for result in snapshot.dict()["metrics"]:
        config = result.get("config", {})
        column = config.get("column")
        if column in columns:
            value = result["value"]
            found[column] = float(value if not isinstance(value, dict) else value["value"])
    missing = set(columns) - set(found)
    if missing:
        raise RuntimeError(f"Evidently reported no drift value for {sorted(missing)}")
    return found


def due(logged: pd.DataFrame, end: pd.Timestamp, delay: timedelta) -> pd.Series:
    """Which logged predictions' outcomes are due by `end`: their moment plus the label delay
    is at or before it."""
    return (logged["event_time"] + delay) <= end


def outcome_coverage(
    logged: pd.DataFrame, outcomes: pd.DataFrame, end: pd.Timestamp, delay: timedelta
) -> dict[str, float]:
    """How many predictions could be judged: carrying a row id (joinable), of those with the
    outcome due by `end`, of those with the outcome arrived; `joinable_share` and `coverage`
    (arrived among due) as shares."""
    joinable = logged[logged["row_id"].notna()]
    expected = joinable[due(joinable, end, delay)]
    arrived = int(expected["row_id"].astype(str).isin(set(outcomes["row_id"])).sum())
    return {
        "predictions": float(len(logged)),
        "joinable": float(len(joinable)),
        "due": float(len(expected)),
        "arrived": float(arrived),
        "joinable_share": len(joinable) / len(logged) if len(logged) else 0.0,
        "coverage": arrived / len(expected) if len(expected) else 0.0,
    }


def live_metrics(
    logged: pd.DataFrame,
    outcomes: pd.DataFrame,
    label: str,
    task: str = BINARY,
    classes: Sequence[str] = (),
) -> dict[str, dict[str, float]]:
    """Per model version, on the logged predictions whose outcome has arrived (joined by row
    id): how many, and how right the answers were by the task's measures. Binary: ROC AUC of
    the scores (when both outcomes occur), precision and recall of the decisions served (at
    the threshold served). Multiclass: accuracy and macro F1 of the classes served.
    Regression: mean absolute error and root mean squared error of the values served."""
    joined = logged.merge(outcomes, on="row_id", how="inner")
    live: dict[str, dict[str, float]] = {}
    for version, rows in joined.groupby("model_version", sort=True):
        figures = {"rows": float(len(rows))}
        if task == REGRESSION:
            errors = rows["score"].to_numpy("float64") - rows[label].to_numpy("float64")
            figures["mae"] = float(np.mean(np.abs(errors)))
            figures["rmse"] = float(np.sqrt(np.mean(errors**2)))
        elif task == MULTICLASS:
            happened = [classes[int(index)] for index in rows[label]]
            served = rows["predicted_class"].astype(str).tolist()
            figures["accuracy"] = float(skm.accuracy_score(happened, served))
            figures["macro_f1"] = float(
                skm.f1_score(
                    happened, served, labels=list(classes), average="macro", zero_division=0
                )
            )
        else:
            labels = rows[label].astype(int).to_numpy()
            figures["positive_rate"] = float(labels.mean())
            if len(np.unique(labels)) == 2:
                figures["roc_auc"] = float(skm.roc_auc_score(labels, rows["score"]))
            decisions = rows["decision"].astype(bool).to_numpy()
            figures["precision"] = float(skm.precision_score(labels, decisions, zero_division=0))
            figures["recall"] = float(skm.recall_score(labels, decisions, zero_division=0))
        live[str(version)] = figures
    return live


def decide(
    verdict: Verdict,
    config: RetrainConfig,
    drift: DriftConfig,
    metric: str,
    lower_is_better: bool = False,
) -> Verdict:
    """Fill in the decision: retrain when the inputs or the score drifted beyond the bounds,
    when the champion's live `metric` fell below its bound (rose above it, for a metric where
    lower is better), or when the model is too old; no verdict on drift with too few rows.
    Every reason is kept."""
    reasons = []
    if verdict.rows < drift.min_rows:
        verdict.reasons = [f"only {verdict.rows} predictions in the window (< {drift.min_rows})"]
        verdict.decision = NO_VERDICT
        return verdict
    if verdict.drift and verdict.drifted_share > config.max_drifted_share:
        reasons.append(
            f"{len(verdict.drifted)} of {len(verdict.drift)} inputs drifted "
            f"({', '.join(verdict.drifted)}; bound {config.max_drifted_share:.0%})"
        )
    if config.on_score_drift and verdict.score_drift and verdict.score_drift.drifted:
        reasons.append(f"the score drifted ({drift.method} {verdict.score_drift.value:.3f})")
    live = verdict.live.get(verdict.champion_version, {})
    bound = config.min_live_metric
    if bound is not None and live.get("rows", 0) >= config.min_outcomes and metric in live:
        worse = live[metric] > bound if lower_is_better else live[metric] < bound
        if worse:
            reasons.append(
                f"live {metric} {live[metric]:.3f} of version {verdict.champion_version} is "
                f"{'above' if lower_is_better else 'below'} {bound}"
            )
    if (
        config.max_model_age_days is not None
        and verdict.model_age_days is not None
        and verdict.model_age_days > config.max_model_age_days
    ):
        reasons.append(
            f"the champion's newest example is {verdict.model_age_days} days old "
            f"(> {config.max_model_age_days})"
        )
    verdict.decision = RETRAIN if reasons else KEEP
    verdict.reasons = reasons or ["no input or score drift beyond the bounds, no decay"]
    return verdict


def cloudwatch_figures(
    verdict: Verdict, usecase: str, metric: str, min_outcomes: int
) -> list[dict[str, Any]]:
    """The verdict as CloudWatch metric data (configs/cloudwatch.py): what the alarms read.
    The champion's live `metric` only when measured on at least `min_outcomes` outcomes."""
    dimensions = [{"Name": cloudwatch.USECASE_DIMENSION, "Value": usecase}]
    figures = {cloudwatch.RETRAIN: 1.0 if verdict.decision == RETRAIN else 0.0}
    if verdict.drift:
        figures[cloudwatch.DRIFTED_SHARE] = verdict.drifted_share
    if verdict.score_drift is not None and not math.isnan(verdict.score_drift.value):
        figures[cloudwatch.SCORE_DRIFT] = verdict.score_drift.value
    live = verdict.live.get(verdict.champion_version, {})
    if live.get("rows", 0) >= min_outcomes and metric in live:
        figures[cloudwatch.CHAMPION_LIVE_METRIC] = live[metric]
    return [
        {"MetricName": name, "Dimensions": dimensions, "Value": float(value), "Unit": "None"}
        for name, value in sorted(figures.items())
    ]
