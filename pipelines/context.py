"""What every stage receives: the project (settings and use case, checked), Spark on demand,
and the handoff."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, fields
from typing import Any

from configs import Settings
from usecases.contract import UseCase
from usecases.project import Project

log = logging.getLogger(__name__)


class SparkProvider:
    """Creates the process's one Spark session on first use, so Spark-free stages stay fast.

    Every Spark job a stage starts carries the stage's name as its job group (`stage`, set by
    the chain before each stage): Spark's event log and UI then say which stage did what.
    """

    def __init__(self, settings: Settings, spark: Any = None) -> None:
        self._settings = settings
        self._spark = spark
        self._starting: threading.Thread | None = None
        self._failed: BaseException | None = None
        self.stage: str | None = None

    def start_in_background(self) -> None:
        """Start the session on a thread of its own, while stages that need no Spark run (a
        JVM takes 10-15 s to start; `land` takes about 5 at 1x). The first use waits for it."""
        if self._spark is None and self._starting is None:
            self._starting = threading.Thread(target=self._start, name="spark-start", daemon=True)
            self._starting.start()

    def _start(self) -> None:
        from pipelines.adapters.spark import get_spark

        log.info("starting Spark (%s)", self._settings.spark.master)
        try:
            self._spark = get_spark(self._settings.spark)
        except BaseException as err:  # raised again to the stage that needs Spark
            self._failed = err

    def __call__(self) -> Any:
        if self._starting is not None:
            self._starting.join()
            self._starting = None
        if self._failed is not None:
            failed, self._failed = self._failed, None
            raise failed
        if self._spark is None:
            self._start()
            return self()
        if self.stage is not None:
            self._spark.sparkContext.setJobGroup(self.stage, f"pipelines {self.stage}")
        return self._spark


@dataclass
class Handoff:
    """Exact identifiers one stage hands to the next: never "latest"."""

    # fit: the version it registered and its run.
    model_version: str | None = None
    run_id: str | None = None
    # promote: the version it decided on, and the champion after the decision (resolved once
    # per chain run: materialize, report and package use it without asking the registry again).
    decided_version: str | None = None
    champion_version: str | None = None
    # package: the Bento it built or found, the digest of what it serves, the commit it was
    # built from (`configs.handoff.DIGEST_LABEL`, `COMMIT_LABEL`).
    bento_tag: str | None = None
    release_digest: str | None = None
    git_commit: str | None = None
    # batch-predict: the day (YYYY-MM-DD) or month (YYYY-MM) to score.
    period: str | None = None
    # monitor: what it decided (retrain | keep | no verdict), for what runs after it.
    decision: str | None = None

    def update(self, values: dict[str, str]) -> None:
        known = {f.name for f in fields(self)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise KeyError(f"a stage handed off unknown identifiers: {unknown}")
        for name, value in values.items():
            setattr(self, name, value)


@dataclass
class StageContext:
    project: Project
    spark: SparkProvider
    handoff: Handoff = field(default_factory=Handoff)

    @property
    def settings(self) -> Settings:
        return self.project.settings

    @property
    def usecase(self) -> UseCase:
        return self.project.usecase
