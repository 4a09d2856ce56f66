"""Monitor: is the champion still right? The newest window of the prediction log against the
champion's reference set (a sample of its training rows, kept with its run), and, once the
outcomes of those predictions have arrived in silver, how well each model version did.

    python -m pipelines monitor              # the newest `monitoring.drift.window_days` days
    python -m pipelines monitor --retrain    # and run the chain when it decides to retrain
    python -m pipelines monitoring           # every decision so far, and why

It writes an HTML drift report beside the model reports, logs its figures to MLflow (the
`<experiment>-monitoring` experiment), and records its decision (retrain, keep, or no verdict,
with every reason) in `paths.monitoring`. The window ends at the newest logged prediction,
never at the wall clock: a replay of past months is judged as it happened.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from datetime import timedelta
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from configs import Settings, handoff
from models import MULTICLASS, evaluation
from models.tracking import Tracker
from monitoring import decisions as recorded
from monitoring import prediction_log as pl
from monitoring.monitor import (
    NO_VERDICT,
    REFERENCE_MOMENT,
    REFERENCE_PART,
    SCORE,
    Verdict,
    cloudwatch_figures,
    decide,
    drift_reference,
    drift_report,
    due,
    live_metrics,
    outcome_coverage,
)
from pipelines.adapters.storage import StorageLayout
from pipelines.context import StageContext
from pipelines.fit import REFERENCE_ARTIFACT, REFERENCE_CLASS, REFERENCE_SET
from pipelines.results import StageFailed, StageResult
from storage import files as fs

log = logging.getLogger(__name__)
REPORTS_FOLDER = "monitoring"  # drift reports, under the use case's reports


def run(ctx: StageContext) -> StageResult:
    settings, usecase = ctx.settings, ctx.usecase
    result = StageResult("monitor")
    tracker = Tracker(settings)
    champion = tracker.champion(ctx.handoff.champion_version)
    if champion is None:
        raise StageFailed("there is no champion model yet: run `make train` first")
    _compact(settings, result)
    logged = _read_window(settings)
    if logged is None:
        # Nothing served or scored yet (a first deploy before any traffic): nothing to judge,
        # which is no failure of the run that asked.
        result.notes.append(
            f"no predictions logged yet in {settings.paths.prediction_log}: nothing to judge "
            "(serve or batch-predict first)"
        )
        result.handoff[handoff.DECISION_KEY] = NO_VERDICT
        return result
    kept = _reference(tracker, champion.run_id)
    ignored = set(settings.monitoring.drift.ignore)
    task = evaluation.task(usecase.target.kind)
    # The answer's drift: the predicted value or score, or a multiclass model's class mix.
    answer = REFERENCE_CLASS if task.kind == MULTICLASS else SCORE
    bookkeeping = {SCORE, REFERENCE_CLASS, REFERENCE_MOMENT, REFERENCE_PART}
    features = [c for c in kept.columns if c not in bookkeeping and c not in ignored]
    # Drift is judged on what clients were answered with; the challenger's shadow scores are
    # measured beside them (live metrics), never mixed into the window.
    shadowed = logged[logged[pl.SOURCE] == pl.SHADOW_SOURCE]
    window = logged[logged[pl.SOURCE] != pl.SHADOW_SOURCE]
    if window.empty:
        raise StageFailed("the window holds only shadow scores: nothing answered to judge")
    end = window[pl.EVENT_TIME].max()
    verdict = Verdict(
        window_from=str(window[pl.EVENT_TIME].min().date()),
        window_to=str(end.date()),
        rows=len(window),
        champion_version=champion.version,
    )
    answered_with = pl.PREDICTED_CLASS if answer == REFERENCE_CLASS else pl.SCORE
    current = pd.DataFrame(
        {name: window[pl.input_column(name)] for name in features} | {answer: window[answered_with]}
    )
    reference = drift_reference(kept, window[pl.EVENT_TIME].min(), end, settings.monitoring.drift)
    verdict.reference = reference.describe()
    snapshot = None
    if len(window) >= settings.monitoring.drift.min_rows:
        drift, snapshot = drift_report(
            reference.rows,
            current,
            [*features, answer],
            settings.monitoring.drift,
            categorical=[REFERENCE_CLASS],
        )
        verdict.drift = [d for d in drift if d.column != answer]
        verdict.score_drift = next((d for d in drift if d.column == answer), None)
    outcomes = _outcomes(settings, ctx)
    if outcomes is not None:
        # Only predictions whose outcome is due by the window's end are judged: one still
        # in the air is no miss, even when a replay has its outcome in silver already.
        delay = settings.monitoring.label_delay
        named = window.rename(columns={pl.ROW_ID: "row_id"})
        verdict.outcomes = outcome_coverage(named, outcomes, end, delay)
        answered = named[named["row_id"].notna() & due(named, end, delay)]
        label, classes = usecase.examples.label, usecase.target.classes
        verdict.live = live_metrics(answered, outcomes, label, task.kind, classes)
        if not shadowed.empty:
            pairs = paired(window, shadowed).rename(columns={pl.ROW_ID: "row_id"})
            verdict.shadow = live_metrics(
                pairs[due(pairs, end, delay)],
                outcomes,
                label,
                task.kind,
                classes,
            )
    last_example = tracker.client.get_run(champion.run_id).data.tags.get("last_example_date")
    if last_example:
        verdict.model_age_days = (end.date() - pd.Timestamp(last_example).date()).days
    decide(
        verdict,
        settings.monitoring.retrain,
        settings.monitoring.drift,
        settings.promotion.primary_metric,
        lower_is_better=settings.promotion.primary_metric in task.lower_is_better,
    )
    report = _write_report(settings, verdict, snapshot)
    _log_to_mlflow(tracker, settings, verdict, report)
    record = record_decision(settings, verdict)
    if settings.monitoring.publish_to_cloudwatch:
        _publish_to_cloudwatch(settings, verdict)
    result.rows_in = len(window)
    result.notes.append(
        f"{verdict.window_from}..{verdict.window_to}: {verdict.rows:,} predictions; "
        f"{len(verdict.drifted)} of {len(verdict.drift)} inputs drifted"
        + (f" ({', '.join(verdict.drifted)})" if verdict.drifted else "")
    )
    result.notes.append(f"drift reference: {describe_reference(verdict.reference)}")
    if verdict.outcomes:
        counted = verdict.outcomes
        result.notes.append(
            f"outcomes: {counted['joinable_share']:.0%} of predictions carry an id to join "
            f"outcomes by; {int(counted['arrived']):,} of {int(counted['due']):,} due "
            f"({counted['coverage']:.0%}) have arrived (label delay "
            f"{settings.monitoring.label_delay})"
        )
    for version, figures in verdict.live.items():
        result.notes.append(
            f"live, version {version}: "
            + ", ".join(
                f"{k} {v:.3f}" if k != "rows" else f"{int(v):,} outcomes"
                for k, v in figures.items()
            )
        )
    if verdict.shadow:
        result.notes.append(
            "shadow, on the same answered requests: "
            + "; ".join(
                f"version {version} "
                + ", ".join(f"{k} {v:.3f}" for k, v in figures.items() if k != "rows")
                for version, figures in verdict.shadow.items()
            )
            + f" ({int(next(iter(verdict.shadow.values()))['rows']):,} outcomes)"
        )
    result.notes.append(f"decision: {verdict.decision.upper()}: {'; '.join(verdict.reasons)}")
    result.outputs |= {"drift report": str(report), "decision": record}
    result.handoff[handoff.DECISION_KEY] = verdict.decision
    return result


def paired(answered: pd.DataFrame, shadowed: pd.DataFrame) -> pd.DataFrame:
    """The answered predictions that were also scored in shadow, and their shadow twins: the
    rows on which champion and challenger are compared (the same requests, the same inputs
    read at the same moment)."""
    twins = shadowed[pl.PREDICTION_ID].str.removesuffix(pl.SHADOW_ID_SUFFIX)
    both = set(twins) & set(answered[pl.PREDICTION_ID])
    return pd.concat(
        [
            answered[answered[pl.PREDICTION_ID].isin(both)],
            shadowed[twins.isin(both)],
        ],
        ignore_index=True,
    ).loc[lambda rows: rows[pl.ROW_ID].notna()]


def describe_reference(reference: dict[str, Any]) -> str:
    """Which rows the drift was judged against, in words (`Reference.describe`)."""
    if not reference:
        return "none (no verdict on drift)"
    span = f", {reference['from']}..{reference['to']}" if reference.get("from") else ""
    return f"{reference['kind']} ({reference['rows']:,} rows{span}): {reference['why']}"


def _compact(settings: Settings, result: StageResult) -> None:
    """One file per day and source in the prediction log (each worker's flush wrote one):
    the daily compaction, run by the monitor wherever it runs. A failure is reported, and
    leaves the log as it was; the monitor goes on."""
    try:
        done = pl.compact(settings.paths.prediction_log)
    except Exception as err:  # the parts stay as they were: nothing is deleted before written
        log.warning("the prediction log's compaction failed", exc_info=True)
        result.notes.append(f"prediction log not compacted: {type(err).__name__}: {err}")
        return
    if done:
        result.notes.append(
            f"prediction log: {len(done)} day(s) compacted, "
            f"{sum(d.files_before for d in done):,} files into {sum(d.files_after for d in done):,}"
        )


def _read_window(settings: Settings) -> pd.DataFrame | None:
    """The newest `window_days` days of the prediction log (ending at its newest record);
    None when nothing is logged yet."""
    location = settings.paths.prediction_log
    days = pl.logged_days(location)
    if not days:
        return None
    newest = pd.Timestamp(days[-1])
    window = settings.monitoring.drift.window_days
    wanted = [d for d in days if pd.Timestamp(d) > newest - timedelta(days=window)]
    table = pl.read_log(location, days=wanted)
    assert table is not None  # the days were listed
    return table.to_pandas()


def _reference(tracker: Tracker, run_id: str) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = tracker.download(run_id, REFERENCE_ARTIFACT, Path(tmp))
        except Exception as err:  # the run predates reference sets, or the store lost it
            raise StageFailed(
                f"the champion's run {run_id} holds no {REFERENCE_SET} ({err}): "
                "train a new version to monitor against"
            ) from None
        return pd.read_parquet(path)


def _outcomes(settings: Settings, ctx: StageContext) -> pd.DataFrame | None:
    """Row id and label of every example whose outcome is in silver (None: no silver yet)."""
    examples = ctx.usecase.examples
    silver = StorageLayout(settings.paths).read_silver_columns(
        examples.table, list(examples.columns)
    )
    if silver is None:
        return None
    labelled = examples.labelled(silver, settings.params)
    return pd.DataFrame(
        {"row_id": labelled[examples.row_id].astype(str), examples.label: labelled[examples.label]}
    )


def report_page(reports_dir: str, window_to: str, champion_version: str) -> str:
    """Where the drift report (Evidently's page) of a decision on a window is."""
    return fs.join(reports_dir, REPORTS_FOLDER, f"monitor-{window_to}-v{champion_version}.html")


def _write_report(settings: Settings, verdict: Verdict, snapshot: Any) -> str:
    page_location = report_page(settings.paths.reports, verdict.window_to, verdict.champion_version)
    folder, name = fs.parent(page_location), fs.name(page_location).removesuffix(".html")
    if snapshot is not None:
        with tempfile.TemporaryDirectory() as tmp:
            page = Path(tmp) / f"{name}.html"
            snapshot.save_html(str(page))
            _say_the_reference(page, verdict)
            fs.upload(page, fs.join(folder, page.name))
    summary = fs.join(folder, f"{name}.json")
    fs.write_text(summary, json.dumps(verdict.as_dict(), indent=2, default=str))
    return page_location if snapshot is not None else summary


def _say_the_reference(page: Path, verdict: Verdict) -> None:
    """Open Evidently's page with which rows the window was judged against, and why."""
    html = page.read_text(encoding="utf-8")
    said = (
        '<p style="font-family: sans-serif; margin: 1em">'
        f"Window {verdict.window_from}..{verdict.window_to}: drift judged against "
        f"{escape(describe_reference(verdict.reference))}.</p>"
    )
    opened = re.search(r"<body[^>]*>", html, re.IGNORECASE)
    at = opened.end() if opened else 0
    page.write_text(html[:at] + said + html[at:], encoding="utf-8")


def _log_to_mlflow(tracker: Tracker, settings: Settings, verdict: Verdict, report: str) -> None:
    metrics = {f"drift.{d.column}": d.value for d in verdict.drift}
    if verdict.score_drift is not None:
        metrics["drift.score"] = verdict.score_drift.value
    metrics["drifted_share"] = verdict.drifted_share
    metrics |= {f"outcomes.{k}": v for k, v in verdict.outcomes.items()}
    metrics["rows"] = float(verdict.rows)
    for version, figures in verdict.live.items():
        metrics |= {f"live.v{version}.{k}": v for k, v in figures.items()}
    for version, figures in verdict.shadow.items():
        metrics |= {f"shadow.v{version}.{k}": v for k, v in figures.items()}
    tracker.monitoring_run(
        name=f"monitor {verdict.window_from}..{verdict.window_to}",
        metrics=metrics,
        tags={
            "decision": verdict.decision,
            "reasons": "; ".join(verdict.reasons)[:5000],
            "champion_version": verdict.champion_version,
            "window_from": verdict.window_from,
            "window_to": verdict.window_to,
            "reference": describe_reference(verdict.reference)[:5000],
            "report": report,
        },
    )


def _publish_to_cloudwatch(settings: Settings, verdict: Verdict) -> None:
    """The verdict's figures to CloudWatch, where the aws profile's alarms watch them."""
    import boto3

    boto3.client("cloudwatch").put_metric_data(
        Namespace=settings.names.cloudwatch_namespace,
        MetricData=cloudwatch_figures(
            verdict,
            settings.usecase,
            settings.promotion.primary_metric,
            settings.monitoring.retrain.min_outcomes,
        ),
    )


def record_decision(settings: Settings, verdict: Verdict) -> str:
    """One JSON file per decision under `paths.monitoring` (never rewritten)."""
    return recorded.record(settings.paths.monitoring, verdict.as_dict())


def decisions(settings: Settings) -> list[dict[str, Any]]:
    """Every recorded decision, oldest first."""
    return recorded.every(settings.paths.monitoring)
