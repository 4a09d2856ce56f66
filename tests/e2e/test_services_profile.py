"""The `services` profile against real servers on this machine: MLflow on PostgreSQL (started by
`infra.services`, as `make services-up` does, with basic authentication), Feast's SQL registry
in PostgreSQL and its online store in Redis. The chain runs on the platform's use case, the service answers
from Redis, four trainings log to the one tracking server at once without losing anything, the
server refuses requests without the right credentials, and the password is in no log or output.

Each run gets its own databases, Feast project and MLflow port, and removes them afterwards.
Where PostgreSQL or Redis cannot be reached the tests skip with the reason, unless
MLOPS_REQUIRE_SERVICES=1 (set by .ci/run, which starts them first): then they fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

from configs import Settings, load_settings
from configs.settings import MlflowServerConfig, _deep_merge
from infra import services
from models.tracking import CHAMPION, Tracker
from pipelines.chain import CHAIN, run_chain
from tests.conftest import PLATFORM_USECASE, platform_overrides
from tests.lake_helpers import problems
from tests.serving_helpers import EXAMPLE, ROOT, SCORE, body, free_port, serving

REQUIRED = os.environ.get("MLOPS_REQUIRE_SERVICES") == "1"
TRAININGS_AT_ONCE = 4


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@pytest.fixture(scope="module")
def profile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    """A private services profile: (root, overrides over services.yaml)."""
    shipped = load_settings("services", environ={}, usecase=PLATFORM_USECASE)
    down = [check for check in services.backing_checks(shipped) if not check.ok]
    if down:
        reason = "; ".join(f"{c.name} at {c.target} is down: {c.detail}" for c in down)
        if REQUIRED:
            pytest.fail(f"MLOPS_REQUIRE_SERVICES=1 but {reason}")
        pytest.skip(reason)
    assert shipped.mlflow.server is not None
    suffix = uuid.uuid4().hex[:8]
    root = tmp_path_factory.mktemp("services")
    mlflow_db = with_database(
        shipped.mlflow.server.backend_store_uri, f"mlops_test_{suffix}_mlflow"
    )
    feast_db = with_database(str(shipped.features.registry["path"]), f"mlops_test_{suffix}_feast")
    server = MlflowServerConfig(
        backend_store_uri=mlflow_db,
        artifacts_destination=str(root / "mlflow" / "artifacts"),
        home=str(root / "mlflow"),
        port=free_port(),
        workers=2,
    )
    layout = {k: v for k, v in platform_overrides(root).items() if k not in ("features", "mlflow")}
    overrides = _deep_merge(
        layout,
        {
            # The project's name derives the Feast project (and MLflow names): one per run.
            "project": f"services-t{suffix}",
            "features": {
                "registry": {**shipped.features.registry, "path": feast_db, "cache_ttl_seconds": 0},
            },
            "mlflow": {
                "tracking_uri": services.server_url(server),
                "artifact_location": None,
                "server": server.model_dump(),
            },
        },
    )
    services.ensure_database(feast_db)
    with pytest.MonkeyPatch.context() as env:
        # The admin account of this run's server; the clients (and subprocesses) read the same.
        env.setenv(services.USERNAME_VARIABLE, "platform-admin")
        env.setenv(services.PASSWORD_VARIABLE, f"t-{uuid.uuid4().hex}")
        services.start_mlflow(server)
        try:
            yield root, overrides
        finally:
            services.stop_mlflow(server)
        try:
            from features.store import feature_store

            feature_store(settings(overrides)).teardown()  # this project's keys in Redis
        finally:
            services.drop_database(feast_db)
            services.drop_database(mlflow_db)


def current_usecase() -> Any:
    from usecases import load

    return load(PLATFORM_USECASE)


def settings(overrides: dict[str, Any]) -> Settings:
    return load_settings("services", environ={}, usecase=PLATFORM_USECASE).with_overrides(overrides)


@pytest.fixture(scope="module")
def trained(profile: tuple[Path, dict[str, Any]], spark) -> tuple[Path, dict[str, Any]]:
    _, overrides = profile
    results = run_chain(settings(overrides), CHAIN, spark=spark)
    assert all(r.ok for r in results), problems(results)
    return profile


def test_the_chain_runs_on_postgres_redis_and_the_tracking_server(
    trained: tuple[Path, dict[str, Any]],
) -> None:
    import redis

    from features.store import feature_store

    _, overrides = trained
    current = settings(overrides)
    tracker = Tracker(current)
    champion = tracker.alias(CHAMPION)
    assert champion is not None and champion.version == "1"
    # artifacts went through the server's proxy into its destination, not to a client path
    assert tracker.client.get_experiment(tracker.experiment_id).artifact_location.startswith(
        "mlflow-artifacts:"
    )
    destination = Path(overrides["mlflow"]["server"]["artifacts_destination"])
    assert any(destination.rglob("MLmodel"))
    # the registry lives in PostgreSQL, the online values in Redis
    store = feature_store(current)
    views = {view.name for view in store.list_feature_views()}
    assert views == {declared.name for declared in current_usecase().views}
    host, port, db = services.redis_address(current.features.online_store["connection_string"])
    keys = redis.Redis(host=host, port=port, db=db).scan(count=1000, match="*")[1]
    assert keys, "nothing was materialized into Redis"


def test_the_tracking_server_requires_the_credentials(
    trained: tuple[Path, dict[str, Any]],
) -> None:
    _, overrides = trained
    url = f"{overrides['mlflow']['tracking_uri']}/api/2.0/mlflow/registered-models/search"
    username = os.environ[services.USERNAME_VARIABLE]
    password = os.environ[services.PASSWORD_VARIABLE]
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, auth=(username, "password1234"), timeout=10).status_code == 401
    answer = requests.get(url, auth=(username, password), timeout=10)
    assert answer.status_code == 200
    # the project's name of this run, derived: services-t<suffix> -> services_t<suffix>
    expected = overrides["project"].replace("-", "_")
    assert [m["name"] for m in answer.json()["registered_models"]] == [expected]


def test_the_password_is_in_no_log_or_output(trained: tuple[Path, dict[str, Any]]) -> None:
    root, overrides = trained
    password = os.environ[services.PASSWORD_VARIABLE].encode()
    auth_config = Path(overrides["mlflow"]["server"]["home"]) / "basic_auth.ini"
    assert auth_config.stat().st_mode & 0o777 == 0o600  # where MLflow needs it, for us only
    leaked = [
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and path != auth_config and password in path.read_bytes()
    ]
    assert leaked == []
    assert any(root.rglob("server.log")) and any(root.rglob("*.html"))  # logs and reports exist


def test_the_service_answers_from_redis(trained: tuple[Path, dict[str, Any]]) -> None:
    root, overrides = trained
    with serving(root, overrides, env_name="services") as (url, _, _):
        response = requests.post(f"{url}/predict", json=body(EXAMPLE), timeout=30)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["model_version"] == "1"
        assert 0.0 <= answer["predictions"][0][SCORE] <= 1.0
        # the example is within every view's TTL: read from Redis, nothing is missing
        assert answer["predictions"][0]["missing_features"] == []


def test_serving_reads_as_the_read_only_user_who_cannot_write(
    trained: tuple[Path, dict[str, Any]],
) -> None:
    """On AWS the serving task signs in to the online store as a user that may only read
    (infra.config.REDIS_READER, an ElastiCache access string in Redis ACL syntax): the same
    access string on this Redis answers every prediction, and refuses a write."""
    import redis

    from infra.config import REDIS_READER

    root, overrides = trained
    connection = settings(overrides).features.online_store["connection_string"]
    host, port, db = services.redis_address(connection)
    admin = redis.Redis(host=host, port=port, db=db)
    name, password = f"mlops-test-reader-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin.execute_command("ACL", "SETUSER", name, "reset", *REDIS_READER[1].split(), f">{password}")
    try:
        as_reader = f"{connection},username={name},password={password}"
        read_only = _deep_merge(
            overrides, {"features": {"online_store": {"connection_string": as_reader}}}
        )
        with serving(root, read_only, env_name="services") as (url, _, _):
            response = requests.post(f"{url}/predict", json=body(EXAMPLE), timeout=30)
            assert response.status_code == 200, response.text
            answered = response.json()["predictions"][0]
            assert answered["missing_features"] == []  # read from Redis
        reader = redis.Redis(host=host, port=port, db=db, username=name, password=password)
        assert reader.ping()
        with pytest.raises(redis.exceptions.NoPermissionError):
            reader.hset(f"{name}-probe", "field", "value")
        assert not admin.exists(f"{name}-probe")
    finally:
        admin.acl_deluser(name)


def test_each_person_gets_an_account_of_their_own(
    trained: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -m infra.services add-user <name>` (on AWS through `infra.deploy mlflow-ui`):
    an account per person instead of the shared admin; it reads, and is no admin."""
    from mlflow import MlflowClient
    from mlflow.server import get_app_client

    _, overrides = trained
    uri = overrides["mlflow"]["tracking_uri"]
    name = f"alice-{uuid.uuid4().hex[:6]}"
    password = services.add_user(uri, name)
    assert services.main(["add-user", name, "--tracking-uri", uri]) == 1  # exists: refused
    monkeypatch.setenv(services.USERNAME_VARIABLE, name)
    monkeypatch.setenv(services.PASSWORD_VARIABLE, password)
    experiments = MlflowClient(uri).search_experiments()
    assert any(e.name != "Default" for e in experiments)  # the platform's, readable
    with pytest.raises(Exception, match=r"(?i)permission|403|admin"):
        get_app_client("basic-auth", tracking_uri=uri).create_user(f"{name}-2", "x" * 16)


def test_four_trainings_at_once_lose_no_run_metric_or_version(
    trained: tuple[Path, dict[str, Any]],
) -> None:
    import json

    _, overrides = trained
    tracker = Tracker(settings(overrides))
    runs_before = {run.info.run_id for run in tracker.client.search_runs([tracker.experiment_id])}
    versions_before = {ref.version for ref in tracker.versions()}
    env = {
        **os.environ,
        "MLOPS_ENV": "services",
        "MLOPS_USECASE": PLATFORM_USECASE,
        "MLOPS_OVERRIDES": json.dumps(overrides),
    }
    # Four teams' machines sharing the tracking server: each run holds its own workspace's
    # lock (one workspace takes one run at a time: test_one_run_at_a_time.py).
    lock = Path(overrides["run_lock"]["path"])
    own_lock = [
        f"run_lock.path={lock.with_name(f'machine-{number}.lock')}"
        for number in range(TRAININGS_AT_ONCE)
    ]
    trainings = [
        subprocess.Popen(
            [sys.executable, "-m", "pipelines", "--quiet", "--set", own_lock[number], "fit"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for number in range(TRAININGS_AT_ONCE)
    ]
    outputs = [process.communicate(timeout=600)[0] for process in trainings]
    assert [p.returncode for p in trainings] == [0] * TRAININGS_AT_ONCE, outputs

    runs = tracker.client.search_runs([tracker.experiment_id])
    added = [run for run in runs if run.info.run_id not in runs_before]
    # Each training run, and its study's trials as runs nested under it.
    new_runs = {run.info.run_id: run for run in added if "mlflow.parentRunId" not in run.data.tags}
    assert len(new_runs) == TRAININGS_AT_ONCE
    trials = [run for run in added if "mlflow.parentRunId" in run.data.tags]
    assert {run.data.tags["mlflow.parentRunId"] for run in trials} == set(new_runs)
    assert len(trials) == len(added) - TRAININGS_AT_ONCE
    reference = next(iter(new_runs.values()))
    assert {"test_roc_auc", "test_pr_auc", "test_brier"} <= set(reference.data.metrics)
    for run in new_runs.values():
        assert run.info.status == "FINISHED"
        assert set(run.data.metrics) == set(reference.data.metrics), run.info.run_id
        assert set(run.data.params) == set(reference.data.params), run.info.run_id
    new_versions = [ref for ref in tracker.versions() if ref.version not in versions_before]
    assert sorted(int(ref.version) for ref in new_versions) == list(
        range(len(versions_before) + 1, len(versions_before) + 1 + TRAININGS_AT_ONCE)
    )
    assert {ref.run_id for ref in new_versions} == set(new_runs)
