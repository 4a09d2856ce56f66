"""Promote: the champion/challenger gate, plus rollback and the history of decisions.

A new model version becomes `champion` only if its test metrics pass every absolute bound in
`promotion` (configs) and it beats the current champion, scored on the same test rows, by
`promotion.min_improvement` on the primary metric. Otherwise it is tagged `challenger` and the
chain ends normally with the reason. Every decision is written on the version as tags.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from configs import Settings
from configs.settings import PromotionConfig
from models import evaluation
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


def _score_on(
    tracker: Tracker,
    model: ModelRef,
    test_set: pd.DataFrame,
    threshold: float | None,
    label: str,
    task: Task,
) -> dict[str, float]:
    loaded = tracker.load_model(model)
    features = loaded.features
    missing = [f for f in features if f not in test_set.columns]
    if missing:
        raise StageFailed(
            f"the champion (version {model.version}) needs features the new test set lacks: {missing}; "
            "a changed feature set needs a new FeatureService version and an explicit promotion"
        )
    return task.evaluate(test_set[label].to_numpy(), loaded.predict(test_set), threshold)


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
    champion_metrics = None
    if champion is not None and champion.version != candidate.version:
        params = tracker.run_params(champion.run_id)
        champion_threshold = float(params["threshold"]) if "threshold" in params else None
        champion_metrics = _score_on(
            tracker,
            champion,
            test_set,
            champion_threshold,
            ctx.usecase.examples.label,
            task,
        )
    try:
        decision = decide(candidate_metrics, champion_metrics, settings.promotion, task)
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
