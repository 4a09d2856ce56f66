"""The batch chain: the stages declared in configs/chain.py, run in order.

`python -m pipelines train` runs CHAIN; each stage also runs alone. Every stage is
`run(ctx: StageContext) -> StageResult`, on the project bound once (usecases/project.py:
the use case checked against its settings before anything runs). A stage that fails stops the chain: nothing
downstream runs on data that did not pass. Stages hand off by exact identifiers (a model
version, a run id) through `StageContext.handoff`, never by "latest".
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from configs import Settings
from configs.chain import BY_NAME, CHAIN, DATA_STAGES, STAGES
from models.tracking import TrackingUnavailable
from pipelines import index_page
from pipelines.context import SparkProvider, StageContext
from pipelines.results import StageFailed, StageResult
from usecases.project import Project, bind

__all__ = ["CHAIN", "DATA_STAGES", "STAGES", "StageContext", "run_chain", "run_stage"]

log = logging.getLogger(__name__)


def runner(name: str) -> Callable[[StageContext], StageResult]:
    """The function that runs stage `name` (imported on first use: Spark-free stages stay fast)."""
    module, _, function = BY_NAME[name].runner.partition(":")
    return getattr(importlib.import_module(module), function)  # type: ignore[no-any-return]


def run_stage(name: str, ctx: StageContext) -> StageResult:
    log.info("== %s: %s", name, BY_NAME[name].help)
    started = time.perf_counter()
    ctx.spark.stage = name
    try:
        result = runner(name)(ctx)
    except (StageFailed, TrackingUnavailable) as err:
        result = StageResult(name)
        result.fail(str(err))
    result.seconds = time.perf_counter() - started
    ctx.handoff.update(result.handoff)
    log.info("== %s %s in %.1fs", name, "done" if result.ok else "FAILED", result.seconds)
    return result


def run_chain(
    settings: Settings | Project,
    stages: tuple[str, ...] = CHAIN,
    spark: Any = None,
    handoff: dict[str, str] | None = None,
) -> list[StageResult]:
    """Run `stages` in order, stopping after the first that fails. Settings are bound to
    their use case first (raises `UseCaseError` when the two disagree)."""
    project = settings if isinstance(settings, Project) else bind(settings)
    ctx = StageContext(project, SparkProvider(project.settings, spark))
    ctx.handoff.update(dict(handoff or {}))
    if stages and not BY_NAME[stages[0]].spark and any(BY_NAME[s].spark for s in stages):
        ctx.spark.start_in_background()  # ready when the first Spark stage starts
    started = datetime.now(UTC)
    results: list[StageResult] = []
    try:
        for name in stages:
            result = run_stage(name, ctx)
            results.append(result)
            if not result.ok:
                break
    finally:
        # The run's record and the use case's index page, however it ended (never raises).
        try:
            index_page.record_run(project.settings, results, started)
        except Exception:
            log.warning("the run's record was not kept", exc_info=True)
        index_page.refresh(project)
    return results
