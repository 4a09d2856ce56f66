"""The MLflow server as its image runs it on AWS: the image's own entrypoint, with the
environment the synthesized task definition gives it, on PostgreSQL, called the way the jobs,
the release build and the UI's tunnel call it: by the internal load balancer's DNS name.

Stand-ins, for what this machine cannot run: the load balancer's DNS name is a name of the
form AWS gives (`internal-<name>-<id>.<region>.elb.amazonaws.com`), the RDS database is the
machine's PostgreSQL, S3 artifacts are a local folder, and the image's Python is the
platform's venv, whose MLflow must be the version the image's Dockerfile pins (checked here).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.infra.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "infra" / "images" / "mlflow"
PLATFORM_BIN = ROOT / ".venv" / "bin"
# What an internal application load balancer's DNS name looks like (AWS makes it).
BALANCER_DNS = "internal-mlops-mlflow-1a2b3c4d5e.eu-west-1.elb.amazonaws.com"
DATABASE = f"mlflow_image_test_{os.getpid()}"
READY_S = 120


def _resolve(value: Any, resources: dict[str, Any], stand_ins: dict[tuple[str, str], str]) -> str:
    """A container environment value of the template, with the attributes CloudFormation
    fills at deploy time given by `stand_ins`."""
    if isinstance(value, str):
        return value
    if "Fn::GetAtt" in value:
        target, attribute = value["Fn::GetAtt"]
        key = (resources[target]["Type"], attribute)
        if key not in stand_ins:
            raise AssertionError(f"no stand-in for {key} (add one, saying what it stands for)")
        return stand_ins[key]
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(_resolve(p, resources, stand_ins) for p in parts)
    raise AssertionError(f"cannot resolve {value} here")


def _container(template: dict[str, Any]) -> dict[str, Any]:
    (task,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::ECS::TaskDefinition"]
    (container,) = task["Properties"]["ContainerDefinitions"]
    return dict(container)


def _psql(sql: str) -> None:
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-q", "-c", sql],
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def mlflow_in_its_image(templates, tmp_path_factory) -> Iterator[dict[str, str]]:
    """The server started by the image's entrypoint with the task definition's environment."""
    with serve_from_image(templates, tmp_path_factory) as server:
        yield server


@contextlib.contextmanager
def serve_from_image(
    templates: dict[str, Any], tmp_path_factory: Any, extra: dict[str, str] | None = None
) -> Iterator[dict[str, str]]:
    """MLflow started by the image's entrypoint with the task definition's environment (and
    `extra`, named by the caller as a stand-in); yields the tracking URI the stacks hand the
    jobs, the port it listens on here, and the accounts' names and passwords."""
    template = templates["mlflow"]
    resources = template["Resources"]
    dns = {("AWS::ElasticLoadBalancingV2::LoadBalancer", "DNSName"): BALANCER_DNS}
    container = _container(template)
    # Stood in for: the database on RDS, S3 artifacts (no S3 here for MLflow's own client).
    stand_ins = {"DB_NAME": DATABASE, "ARTIFACTS_DESTINATION": ""}
    environment = {
        e["Name"]: _resolve(e["Value"], resources, dns)
        for e in container.get("Environment", [])
        if e["Name"] not in stand_ins
    }
    tracking_uri = _resolve(template["Outputs"]["TrackingUri"]["Value"], resources, dns)
    port = free_port()
    admin_password = secrets.token_urlsafe(18)
    artifacts = tmp_path_factory.mktemp("mlflow-artifacts")
    # Secrets Manager's values (the task's `Secrets`): the database and the two secrets.
    assert {s["Name"] for s in container["Secrets"]} == {
        "DB_HOST",
        "DB_USERNAME",
        "DB_PASSWORD",
        "MLFLOW_ADMIN_PASSWORD",
        "MLFLOW_JOBS_PASSWORD",
        "MLFLOW_RELEASE_PASSWORD",
        "MLFLOW_FLASK_SERVER_SECRET_KEY",
    }
    passwords = {role: secrets.token_urlsafe(18) for role in ("admin", "jobs", "release")}
    environment |= {
        "DB_HOST": "127.0.0.1",
        "DB_USERNAME": "postgres",
        "DB_PASSWORD": "trust-auth-ignores-it",  # pragma: allowlist secret
        "DB_NAME": DATABASE,  # stand-in for the template's database on RDS
        "MLFLOW_ADMIN_PASSWORD": admin_password,
        "MLFLOW_JOBS_PASSWORD": passwords["jobs"],
        "MLFLOW_RELEASE_PASSWORD": passwords["release"],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(32),
        "ARTIFACTS_DESTINATION": str(artifacts),  # stand-in for s3://<lake>/mlflow-artifacts
        "PORT": str(port),
        "WORKERS": "1",
        **(extra or {}),
    }
    _psql(f"DROP DATABASE IF EXISTS {DATABASE}")
    _psql(f"DROP DATABASE IF EXISTS {DATABASE}_auth")
    _psql(f"CREATE DATABASE {DATABASE}")  # RDS creates it with the instance
    log = (tmp_path_factory.mktemp("mlflow-log") / "server.log").open("w")
    server = subprocess.Popen(
        ["sh", str(IMAGE / "entrypoint.sh")],
        env={
            "PATH": f"{PLATFORM_BIN}:/usr/bin:/bin",
            "HOME": str(artifacts),
            "MLFLOW_DISABLE_TELEMETRY": "true",
            **environment,
        },
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline:
            if server.poll() is not None:
                break
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        else:
            raise AssertionError(f"mlflow not healthy after {READY_S} s")
        if server.poll() is not None:
            log.flush()
            raise AssertionError(
                f"the entrypoint exited {server.returncode}:\n{Path(log.name).read_text()[-3000:]}"
            )
        yield {
            "tracking_uri": tracking_uri,
            "port": str(port),
            "password": admin_password,
            "jobs": environment["MLFLOW_JOBS_USERNAME"],
            "jobs_password": passwords["jobs"],
            "release": environment["MLFLOW_RELEASE_USERNAME"],
            "release_password": passwords["release"],
            "model": environment["MLFLOW_RELEASE_MODELS"],
        }
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        log.close()
        _psql(f"DROP DATABASE IF EXISTS {DATABASE}")
        _psql(f"DROP DATABASE IF EXISTS {DATABASE}_auth")


def _search(port: str, host: str, password: str) -> requests.Response:
    return requests.post(
        f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search",
        json={"max_results": 1},
        headers={"Host": host},
        auth=("admin", password),
        timeout=30,
    )


def test_the_image_pins_the_mlflow_this_test_runs() -> None:
    pinned = re.search(r"mlflow\[auth\]==([\w.]+)", (IMAGE / "Dockerfile").read_text())
    assert pinned is not None
    ran = subprocess.run(
        [str(PLATFORM_BIN / "python"), "-c", "import mlflow; print(mlflow.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert ran == pinned.group(1)


def test_the_jobs_reach_mlflow_by_the_load_balancer_s_name(mlflow_in_its_image) -> None:
    """The jobs, the release build and the monitor call `TrackingUri`: the load balancer's
    DNS name, which is the Host the server sees behind the load balancer."""
    host = urlsplit(mlflow_in_its_image["tracking_uri"]).netloc
    assert host == BALANCER_DNS
    answer = _search(mlflow_in_its_image["port"], host, mlflow_in_its_image["password"])
    assert answer.status_code == 200, answer.text
    assert "experiments" in answer.json()


def test_the_ui_tunnel_and_the_health_check_reach_it_and_other_hosts_do_not(
    mlflow_in_its_image,
) -> None:
    port, password = mlflow_in_its_image["port"], mlflow_in_its_image["password"]
    # `infra.deploy mlflow-ui` forwards localhost:<port> to the load balancer
    assert _search(port, "localhost:5000", password).status_code == 200
    assert _search(port, "127.0.0.1:5000", password).status_code == 200
    # the load balancer's health check, by the task's private address
    health = requests.get(
        f"http://127.0.0.1:{port}/health", headers={"Host": "10.40.3.7:5000"}, timeout=10
    )
    assert health.status_code == 200
    # still no DNS rebinding: a name nobody gave it is refused
    refused = _search(port, "mlflow.attacker.example", password)
    assert refused.status_code == 403
    # and never without a password
    anonymous = requests.post(
        f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search",
        json={"max_results": 1},
        headers={"Host": urlsplit(mlflow_in_its_image["tracking_uri"]).netloc},
        timeout=30,
    )
    assert anonymous.status_code == 401


def _as(server: dict[str, str], account: str) -> Any:
    """A call to the REST API as `account` ("jobs" or "release"), by the load balancer's name;
    returns the status and the JSON answer."""

    def call(method: str, path: str, **body: Any) -> tuple[int, dict[str, Any]]:
        answer = requests.request(
            method,
            f"http://127.0.0.1:{server['port']}/api/2.0/mlflow/{path}",
            json=body if method != "GET" else None,
            params=body if method == "GET" else None,
            headers={"Host": BALANCER_DNS},
            auth=(server[account], server[f"{account}_password"]),
            timeout=30,
        )
        try:
            return answer.status_code, dict(answer.json())
        except ValueError:  # the auth app answers some refusals in plain text
            return answer.status_code, {"text": answer.text}

    return call


def test_the_chain_s_accounts_are_not_admins_and_the_release_only_edits_its_model(
    mlflow_in_its_image,
) -> None:
    """The image makes the jobs' and the release build's accounts from the task's secrets: the
    jobs train and promote (they own what they create) but manage no accounts; the release
    reads, and tags the model version it packaged, and can change nothing else."""
    server, model = mlflow_in_its_image, mlflow_in_its_image["model"]
    jobs, release = _as(server, "jobs"), _as(server, "release")
    # the jobs: an experiment, a run, the registered model, a version, the champion alias
    code, made = jobs("POST", "experiments/create", name="mlops")
    assert code == 200, made
    code, run = jobs("POST", "runs/create", experiment_id=made["experiment_id"])
    assert code == 200, run
    run_id = run["run"]["info"]["run_id"]
    assert (
        jobs("POST", "runs/log-metric", run_id=run_id, key="auc", value=0.7, timestamp=1)[0] == 200
    )
    assert jobs("POST", "registered-models/create", name=model)[0] == 200
    code, version = jobs(
        "POST", "model-versions/create", name=model, source=f"runs:/{run_id}/model", run_id=run_id
    )
    assert code == 200, version
    number = version["model_version"]["version"]
    assert (
        jobs("POST", "registered-models/alias", name=model, alias="champion", version=number)[0]
        == 200
    )
    # ... and are not admins
    assert jobs("POST", "users/create", username="mallory", password="x" * 16)[0] == 403

    # the release: reads the champion and tags its version with the Bento
    code, champion = release("GET", "registered-models/alias", name=model, alias="champion")
    assert code == 200 and champion["model_version"]["version"] == number
    tagged = release(
        "POST", "model-versions/set-tag", name=model, version=number, key="bento_tag", value="svc:1"
    )
    assert tagged[0] == 200, tagged
    # ... and can write nothing else: the jobs' runs, the model's life, the accounts
    assert (
        release("POST", "runs/log-metric", run_id=run_id, key="auc", value=1.0, timestamp=2)[0]
        == 403
    )
    assert release("DELETE", "registered-models/delete", name=model)[0] == 403
    assert release("POST", "users/create", username="mallory", password="x" * 16)[0] == 403
    # a model of another use case: read-only for it
    assert jobs("POST", "registered-models/create", name="another_model")[0] == 200
    assert (
        release("POST", "registered-models/set-tag", name="another_model", key="k", value="v")[0]
        == 403
    )
