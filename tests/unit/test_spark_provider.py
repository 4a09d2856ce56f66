"""The chain's one Spark session: started in the background while `land` runs, handed to the
first stage that needs it, and its start-up failure reported to that stage."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from configs import Settings
from pipelines.adapters import spark as spark_adapter
from pipelines.chain import run_chain
from pipelines.context import SparkProvider
from pipelines.results import StageResult


class FakeSession:
    def __init__(self) -> None:
        self.sparkContext = self
        self.groups: list[str] = []

    def setJobGroup(self, group: str, description: str) -> None:
        self.groups.append(group)


def test_a_session_started_in_the_background_is_the_one_stages_get(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings]
) -> None:
    started: list[str] = []
    session = FakeSession()

    def get_spark(config: Any) -> FakeSession:
        started.append(threading.current_thread().name)
        return session

    monkeypatch.setattr(spark_adapter, "get_spark", get_spark)
    provider = SparkProvider(make_settings())
    provider.start_in_background()
    provider.start_in_background()  # once only
    provider.stage = "collect"
    assert provider() is session
    assert provider() is session
    assert started == ["spark-start"]
    assert session.groups == ["collect", "collect"]


def test_a_failed_start_is_raised_to_the_stage_that_needs_spark(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings]
) -> None:
    def get_spark(config: Any) -> FakeSession:
        raise RuntimeError("Java gateway process exited before sending its port number")

    monkeypatch.setattr(spark_adapter, "get_spark", get_spark)
    provider = SparkProvider(make_settings())
    provider.start_in_background()
    with pytest.raises(RuntimeError, match="Java gateway"):
        provider()


@pytest.mark.slow
def test_the_chain_starts_spark_while_land_runs(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings]
) -> None:
    session = FakeSession()
    seen: dict[str, Any] = {}
    monkeypatch.setattr(spark_adapter, "get_spark", lambda config: session)

    def stage(name: str) -> Callable[[Any], StageResult]:
        def run(ctx: Any) -> StageResult:
            seen[name] = ctx.spark._starting is not None or ctx.spark._spark is not None
            if name == "collect":
                assert ctx.spark() is session
            return StageResult(name)

        return run

    monkeypatch.setattr("pipelines.chain.runner", stage)
    results = run_chain(make_settings(), ("land", "collect"))
    assert [r.ok for r in results] == [True, True]
    # Already starting during land, the stage before the first that needs Spark.
    assert seen == {"land": True, "collect": True}
    assert session.groups == ["collect"]
