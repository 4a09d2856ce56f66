"""MLflow fails while a model trains: the stage fails with a message that says what happened and
what state the registry is in, no version is left half-registered, and the champion stays.

A real tracking server (`infra.services.start_mlflow`, basic auth on, SQLite behind it) is
stopped at each point of the fit stage's conversation with it, then started again to check
what it holds.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import mlflow
import pytest

from configs import Settings
from configs.settings import MlflowServerConfig
from infra import services
from models.tracking import CHAMPION, Tracker
from pipelines import fit as train
from pipelines.chain import run_chain
from tests.conftest import platform_settings
from tests.lake_helpers import problems
from tests.serving_helpers import free_port

UNTIL_PROMOTE = ("land", "collect", "validate", "features", "fit", "promote")


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory, spark) -> Iterator[tuple[Settings, Any]]:
    """A platform with a champion, tracked on a server of its own: (settings, server)."""
    root = tmp_path_factory.mktemp("tracked")
    server = MlflowServerConfig(
        backend_store_uri=f"sqlite:///{root / 'mlflow' / 'server.db'}",
        artifacts_destination=str(root / "mlflow" / "artifacts"),
        home=str(root / "mlflow"),
        port=free_port(),
        workers=1,
    )
    settings = platform_settings(
        root,
        mlflow={
            "tracking_uri": services.server_url(server),
            "artifact_location": None,
            # Give up on a dead server after one retry, not MLflow's several minutes.
            "request_retries": 1,
            "request_backoff_s": 0,
            "request_timeout_s": 10,
        },
        # The configured parameters, no study: each fault is in the fit's conversation with
        # MLflow, which a study only makes longer (every request to this server checks a password).
        training={"tuning": {"trials": 0}},
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv(services.PASSWORD_VARIABLE, f"t-{uuid.uuid4().hex}")
        services.start_mlflow(server)
        try:
            results = run_chain(settings, UNTIL_PROMOTE, spark=spark)
            assert all(r.ok for r in results), problems(results)
            yield settings, server
        finally:
            services.stop_mlflow(server)


def stop_then(server: MlflowServerConfig, real: Callable[..., Any]) -> Callable[..., Any]:
    def stopped_first(*args: Any, **kwargs: Any) -> Any:
        services.stop_mlflow(server)
        return real(*args, **kwargs)

    return stopped_first


def then_lose_the_answer(real: Callable[..., Any]) -> Callable[..., Any]:
    """The server registers the version, but its answer never reaches the client."""

    def registered_then_lost(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        raise ConnectionError("connection reset by peer (simulated)")

    return registered_then_lost


# (when MLflow fails, how, what the registry must say about the version)
FAULTS = [
    ("before the run", "down", r"is not reachable"),
    ("while logging artifacts", "plots", r"no model version was registered"),
    ("at registration", "register", r"lists a version of run \w+, delete it"),
    ("after registration", "lost answer", r"version\(s\) \d+ of this run were deleted"),
]


@pytest.mark.parametrize(("when", "how", "registry"), FAULTS, ids=[f[0] for f in FAULTS])
def test_mlflow_failing_during_fit_leaves_no_version_and_the_champion(
    tracked: tuple[Settings, MlflowServerConfig],
    spark,
    monkeypatch: pytest.MonkeyPatch,
    when: str,
    how: str,
    registry: str,
) -> None:
    settings, server = tracked
    before = Tracker(settings)
    versions = [ref.version for ref in before.versions()]
    champion = before.alias(CHAMPION)
    assert champion is not None
    if how == "down":
        services.stop_mlflow(server)
    elif how == "plots":
        monkeypatch.setattr(train, "plot_all", stop_then(server, train.plot_all))
    elif how == "register":
        monkeypatch.setattr(mlflow, "register_model", stop_then(server, mlflow.register_model))
    else:
        monkeypatch.setattr(mlflow, "register_model", then_lose_the_answer(mlflow.register_model))

    try:
        (result,) = run_chain(settings, ("fit",), spark=spark)
    finally:
        monkeypatch.undo()
        services.start_mlflow(server)

    assert not result.ok
    message = problems([result])
    assert f"MLflow at {settings.mlflow.tracking_uri}" in message
    assert re.search(registry, message), message
    after = Tracker(settings)
    assert [ref.version for ref in after.versions()] == versions
    assert after.alias(CHAMPION) == champion


def test_training_goes_on_once_mlflow_answers_again(
    tracked: tuple[Settings, MlflowServerConfig], spark
) -> None:
    settings, server = tracked
    services.stop_mlflow(server)
    services.start_mlflow(server)
    tracker = Tracker(settings)
    before = [ref.version for ref in tracker.versions()]
    (result,) = run_chain(settings, ("fit",), spark=spark)
    assert result.ok, problems([result])
    *same, newest = tracker.versions()
    assert [ref.version for ref in same] == before and newest.version not in before
    assert newest.tags["run_id"] == result.handoff["run_id"] == newest.run_id
