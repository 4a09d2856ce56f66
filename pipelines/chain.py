"""The batch chain: stages in order, each a function of the settings and what came before.

`python -m pipelines train` runs CHAIN; each stage also runs alone. A stage that fails stops
the chain: nothing downstream runs on data that did not pass. Stages hand off by exact
identifiers (a model version, a run id) through `StageContext.handoff`, never by "latest".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from configs import Settings
from pipelines.results import StageFailed, StageResult

log = logging.getLogger(__name__)


class SparkProvider:
    """Creates the process's one Spark session on first use, so Spark-free stages stay fast."""

    def __init__(self, settings: Settings, spark: Any = None) -> None:
        self._settings = settings
        self._spark = spark

    def __call__(self) -> Any:
        if self._spark is None:
            from pipelines.adapters.spark import get_spark

            log.info("starting Spark (%s)", self._settings.spark.master)
            self._spark = get_spark(self._settings.spark)
        return self._spark


@dataclass
class StageContext:
    settings: Settings
    spark: SparkProvider
    # Exact identifiers handed from one stage to the next (e.g. "model_version": "3").
    handoff: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Stage:
    name: str
    help: str
    runner: Callable[[StageContext], StageResult]


def _land(ctx: StageContext) -> StageResult:
    from pipelines import land

    return land.run(ctx.settings)


def _collect(ctx: StageContext) -> StageResult:
    from pipelines import collect

    return collect.run(ctx.settings, ctx.spark)


def _validate(ctx: StageContext) -> StageResult:
    from pipelines import validate

    return validate.run(ctx.settings, ctx.spark)


def _features(ctx: StageContext) -> StageResult:
    from pipelines import build_features

    return build_features.run(ctx.settings, ctx.spark)


def _train(ctx: StageContext) -> StageResult:
    from pipelines import train

    return train.run(ctx.settings, ctx.handoff)


def _promote(ctx: StageContext) -> StageResult:
    from pipelines import promote

    return promote.run(ctx.settings, ctx.handoff)


def _materialize(ctx: StageContext) -> StageResult:
    from pipelines import materialize

    return materialize.run(ctx.settings)


def _report(ctx: StageContext) -> StageResult:
    from pipelines import report

    return report.run(ctx.settings, ctx.handoff)


def _package(ctx: StageContext) -> StageResult:
    from pipelines import package

    return package.run(ctx.settings)


def _batch_predict(ctx: StageContext) -> StageResult:
    from pipelines import batch_predict

    return batch_predict.run(ctx.settings, ctx.spark, ctx.handoff.get("period"))


STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in (
        Stage("land", "write the use case's raw files into the landing zone as drops", _land),
        Stage(
            "collect",
            "Spark: new landing drops -> bronze and staged silver; quarantine bad drops",
            _collect,
        ),
        Stage(
            "validate",
            "Great Expectations gate: publish staged silver that passes, stop on failure",
            _validate,
        ),
        Stage(
            "features",
            "Spark: silver -> feature tables, checked by GX and registered with Feast",
            _features,
        ),
        # `train` on the command line is the whole chain; this stage alone is `fit`.
        Stage(
            "fit",
            "Feast point-in-time training set -> a model, tracked and registered in MLflow",
            _train,
        ),
        Stage(
            "promote",
            "champion/challenger gate: promote the new version only if it is better",
            _promote,
        ),
        Stage(
            "materialize",
            "load the champion's features into the online store, incrementally",
            _materialize,
        ),
        Stage("report", "an HTML report of the run for people who are not engineers", _report),
        Stage(
            "package",
            "bentoml build: a Bento of the service pinned to the champion version",
            _package,
        ),
        # Not part of the chain: run on demand for a day or a month.
        Stage(
            "batch-predict",
            "Spark: score a day's or month's rows with the champion",
            _batch_predict,
        ),
    )
}
DATA_STAGES: tuple[str, ...] = ("land", "collect", "validate")
CHAIN: tuple[str, ...] = (
    "land",
    "collect",
    "validate",
    "features",
    "fit",
    "promote",
    "materialize",
    "report",
    "package",
)


def run_stage(name: str, ctx: StageContext) -> StageResult:
    stage = STAGES[name]
    log.info("== %s: %s", name, stage.help)
    started = time.perf_counter()
    try:
        result = stage.runner(ctx)
    except StageFailed as err:
        result = StageResult(name)
        result.fail(str(err))
    result.seconds = time.perf_counter() - started
    ctx.handoff.update(result.handoff)
    log.info("== %s %s in %.1fs", name, "done" if result.ok else "FAILED", result.seconds)
    return result


def run_chain(
    settings: Settings,
    stages: tuple[str, ...] = CHAIN,
    spark: Any = None,
    handoff: dict[str, str] | None = None,
) -> list[StageResult]:
    """Run `stages` in order, stopping after the first that fails."""
    ctx = StageContext(settings, SparkProvider(settings, spark), dict(handoff or {}))
    results = []
    for name in stages:
        result = run_stage(name, ctx)
        results.append(result)
        if not result.ok:
            break
    return results
