"""Promote: the champion/challenger gate, plus rollback and the history of decisions.

A new model version becomes `champion` only if its test metrics pass every absolute bound in
`promotion` (configs), it beats the current champion, scored on the same test rows, by
`promotion.min_improvement` on the primary metric, and it is not worse than the champion by
more than `promotion.slices.max_drop` on any of the use case's slices with enough rows. Otherwise it is tagged `challenger` and the
chain ends normally with the reason. Every decision is written on the version as tags.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from configs import Settings
from configs.settings import PromotionConfig
from models import evaluation, slices
from models.evaluation import BINARY_CLASSIFICATION, Task
from models.tracking import (
    CHALLENGER,
    CHAMPION,
    DECIDED_AT,
    DECISION,
    EVIDENCE,
    PREVIOUS_CHAMPION,
    REASON,
    ModelRef,
    Tracker,
    dumps,
)
from pipelines.context import StageContext
from pipelines.results import StageFailed, StageResult
from usecases.contract import Slice

log = logging.getLogger(__name__)


@dataclass
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


# Metrics are compared to this many decimals: a value exactly on a bound, or an improvement
# exactly equal to the margin, passes whatever the floating-point noise of the subtraction
# (0.501 - 0.5 is 0.000999..., not 0.001).
DECIMALS = 9


def decide(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    rules: PromotionConfig,
    task: Task = BINARY_CLASSIFICATION,
) -> Decision:
    """The gate as a pure function of the two sets of test metrics and the rules; the task
    says which metrics exist and which way each is better."""
    task.check({*rules.minimum, *rules.maximum, rules.primary_metric})
    failures = []
    for metric, bound in sorted(rules.minimum.items()):
        if round(candidate[metric] - bound, DECIMALS) < 0:
            failures.append(f"{metric} {candidate[metric]:.4f} is below the minimum {bound}")
    for metric, bound in sorted(rules.maximum.items()):
        if round(candidate[metric] - bound, DECIMALS) > 0:
            failures.append(f"{metric} {candidate[metric]:.4f} is above the maximum {bound}")
    if failures:
        return Decision(False, failures)
    if champion is None:
        return Decision(True, ["no champion yet and every bound is met"])
    metric = rules.primary_metric
    gain = candidate[metric] - champion[metric]
    if metric in task.lower_is_better:
        gain = -gain
    verdict = (
        f"{metric} {candidate[metric]:.4f} against the champion's {champion[metric]:.4f} "
        f"on the same test rows ({gain:+.4f}; at least +{rules.min_improvement} needed)"
    )
    return Decision(round(gain - rules.min_improvement, DECIMALS) >= 0, [verdict])


def _predict_on(tracker: Tracker, model: ModelRef, test_set: pd.DataFrame) -> np.ndarray:
    """The champion's predictions on the candidate's test rows."""
    loaded = tracker.load_model(model)
    features = loaded.features
    missing = [f for f in features if f not in test_set.columns]
    if missing:
        raise StageFailed(
            f"the champion (version {model.version}) needs features the new test set lacks: {missing}; "
            "a changed feature set needs a new FeatureService version and an explicit promotion"
        )
    return np.asarray(loaded.predict(test_set))


def recorded_predictions(test_set: pd.DataFrame, classes: tuple[str, ...]) -> np.ndarray:
    """The candidate's predictions as its run recorded them in its scored test set: the score
    (binary, regression) or each class's probability (multiclass)."""
    if classes:
        return test_set[[f"probability__{name}" for name in classes]].to_numpy(dtype="float64")
    return test_set["score"].to_numpy(dtype="float64")


def slice_refusals(
    test_set: pd.DataFrame,
    candidate: tuple[np.ndarray, float | None],
    champion: tuple[np.ndarray, float | None],
    label: str,
    parts: tuple[Slice, ...],
    rules: PromotionConfig,
    task: Task,
) -> tuple[list[str], dict[str, list[dict[str, object]]]]:
    """Why the candidate is refused on the use case's slices (empty: it is not), and both
    models' slice metrics on the same rows (the decision's evidence). `candidate` and
    `champion` are each (predictions on `test_set`, decision threshold)."""
    labels = test_set[label].to_numpy()
    measured = {
        who: slices.measure(test_set, labels, predictions, threshold, parts, task)
        for who, (predictions, threshold) in (("candidate", candidate), ("champion", champion))
    }
    gate = rules.slices
    reasons = slices.worse_slices(
        measured["candidate"],
        measured["champion"],
        rules.slice_metric,
        gate.max_drop,
        gate.min_support,
        task,
        DECIMALS,
    )
    evidence = {who: [part.as_dict() for part in found] for who, found in measured.items()}
    return reasons, evidence


Scored = tuple[np.ndarray, float | None]


def gate(
    test_set: pd.DataFrame,
    candidate_metrics: dict[str, float],
    candidate: Scored,
    champion: Scored | None,
    label: str,
    parts: tuple[Slice, ...],
    rules: PromotionConfig,
    task: Task,
) -> tuple[Decision, dict[str, float] | None, dict[str, list[dict[str, object]]]]:
    """The whole decision on the candidate's test rows: its bounds and its margin over the
    champion (`decide`), then the slices (`slice_refusals`). `candidate` and `champion` are
    each (predictions on `test_set`, decision threshold); no champion: the bounds alone.
    Returns the decision, the champion's metrics on the rows and the slices' evidence."""
    if champion is None:
        return decide(candidate_metrics, None, rules, task), None, {}
    champion_metrics = task.evaluate(test_set[label].to_numpy(), champion[0], champion[1])
    decision = decide(candidate_metrics, champion_metrics, rules, task)
    # A test set recorded before a slice was declared cannot be cut by it.
    parts = tuple(part for part in parts if part.column in test_set.columns)
    if not parts:
        return decision, champion_metrics, {}
    refused, evidence = slice_refusals(test_set, candidate, champion, label, parts, rules, task)
    if refused:
        decision = Decision(
            False,
            [
                f"worse than the champion on {len(refused)} slice(s) of at least "
                f"{rules.slices.min_support} test rows: " + "; ".join(refused)
            ]
            + (decision.reasons if decision.promote else []),
        )
    return decision, champion_metrics, evidence


def run(ctx: StageContext) -> StageResult:
    settings = ctx.settings
    result = StageResult("promote")
    tracker = Tracker(settings)
    number = ctx.handoff.model_version or _newest_undecided(tracker)
    if number is None:
        result.notes.append("no new model version waiting for a decision")
        return result
    candidate = tracker.version(number)
    with tempfile.TemporaryDirectory() as tmp:
        test_file = tracker.download(candidate.run_id, "evaluation/test_set.parquet", Path(tmp))
        test_set = pd.read_parquet(test_file)
    candidate_metrics = {
        k.removeprefix("test_"): v
        for k, v in tracker.run_metrics(candidate.run_id).items()
        if k.startswith("test_")
    }
    task = evaluation.task(ctx.usecase.target.kind)
    champion = tracker.alias(CHAMPION)
    champion_scored = None
    label = ctx.usecase.examples.label
    if champion is not None and champion.version != candidate.version:
        champion_scored = (
            _predict_on(tracker, champion, test_set),
            _threshold(tracker.run_params(champion.run_id)),
        )
    candidate_scored = (
        recorded_predictions(test_set, ctx.usecase.target.classes),
        _threshold(tracker.run_params(candidate.run_id)),
    )
    try:
        decision, champion_metrics, slice_evidence = gate(
            test_set,
            candidate_metrics,
            candidate_scored,
            champion_scored,
            label,
            ctx.usecase.slices,
            settings.promotion,
            task,
        )
    except ValueError as err:
        raise StageFailed(f"promotion rules: {err}") from err
    now = datetime.now(UTC).isoformat(timespec="seconds")
    window = test_window(tracker.run_params(candidate.run_id), len(test_set))
    decision.reasons.append(f"judged on {window}")
    evidence = {
        "test_window": window,
        "candidate": candidate_metrics,
        "champion_version": champion.version if champion else None,
        "champion_on_same_test": champion_metrics,
        "slices_on_same_test": slice_evidence,
        "rules": settings.promotion.model_dump(),
    }
    tags = {DECIDED_AT: now, REASON: decision.reason, EVIDENCE: dumps(evidence)}
    if decision.promote:
        tags |= {DECISION: "promoted", PREVIOUS_CHAMPION: champion.version if champion else ""}
        tracker.tag_version(candidate.version, tags)
        tracker.set_alias(CHAMPION, candidate.version)
        result.notes.append(f"version {candidate.version} is the new champion: {decision.reason}")
    else:
        tags |= {DECISION: "not_promoted"}
        tracker.tag_version(candidate.version, tags)
        tracker.set_alias(CHALLENGER, candidate.version)
        kept = f"version {champion.version} stays champion" if champion else "there is no champion"
        result.notes.append(
            f"version {candidate.version} not promoted, because {decision.reason}; {kept}"
        )
    current = tracker.alias(CHAMPION)
    if current is not None:
        result.outputs["champion"] = f"{settings.names.registered_model} version {current.version}"
        result.handoff["champion_version"] = current.version
    result.handoff["decided_version"] = candidate.version
    return result


def _threshold(params: dict[str, str]) -> float | None:
    return float(params["threshold"]) if "threshold" in params else None


def test_window(params: dict[str, str], rows: int) -> str:
    """The candidate's test window, as its run records it: both models are scored on it."""
    start, end = params.get("split.test_start"), params.get("split.test_to")
    dates = f" {start}..{end}" if start and end else (f" from {start}" if start else "")
    return f"the candidate's test window{dates} ({rows:,} rows)"


def _newest_undecided(tracker: Tracker) -> str | None:
    undecided = [ref for ref in tracker.versions() if DECISION not in ref.tags]
    return undecided[-1].version if undecided else None


def rollback(settings: Settings) -> StageResult:
    """Point `champion` back at the version it replaced."""
    result = StageResult("rollback")
    tracker = Tracker(settings)
    current = tracker.alias(CHAMPION)
    if current is None:
        result.fail("there is no champion to roll back")
        return result
    previous = current.tags.get(PREVIOUS_CHAMPION)
    if not previous:
        result.fail(
            f"version {current.version} was the first champion: there is nothing to roll back to"
        )
        return result
    now = datetime.now(UTC).isoformat(timespec="seconds")
    tracker.set_alias(CHAMPION, previous)
    tracker.tag_version(current.version, {"gate.rolled_back_at": now})
    tracker.tag_version(previous, {"gate.restored_at": now, "gate.restored_from": current.version})
    result.notes.append(
        f"champion rolled back from version {current.version} to version {previous}"
    )
    result.outputs["champion"] = f"{settings.names.registered_model} version {previous}"
    return result


def promotion_history(settings: Settings) -> list[dict[str, str]]:
    """Every gate decision, oldest first: version, decision, when, why, and its run."""
    tracker = Tracker(settings)
    champion = tracker.alias(CHAMPION)
    return [
        {
            "version": ref.version,
            "decision": ref.tags.get(DECISION, "undecided"),
            "decided_at": ref.tags.get(DECIDED_AT, ""),
            "champion_now": "yes" if champion and champion.version == ref.version else "",
            "run_id": ref.run_id,
            "reason": ref.tags.get(REASON, ""),
        }
        for ref in tracker.versions()
    ]
