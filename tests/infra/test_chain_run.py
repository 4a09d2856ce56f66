"""The chain run as AWS runs it: the state machine moto's CloudFormation created, walked by
tests/infra/asl.py, each EMR step running the job's own entry point
(infra/images/emr/run_pipelines.py) with the arguments and driver environment the definition
gives it, on local Spark, in the platform's venv: the stages train, promote, materialize,
report and monitor, handing off through this run's file in S3.

Stand-ins, named, for what this machine cannot run:
- S3 is a moto server: the handoff, the Feast registry, the secrets the entry point reads and
  the monitor's CloudWatch figures go there. Spark cannot reach it (EMRFS needs AWS, and no
  hadoop-aws jar may be downloaded), so the zones Spark reads and writes (landing, lake,
  quarantine, reports, prediction log, monitoring) are local folders (MLOPS_OVERRIDES).
- ElastiCache is the machine's Redis, without TLS, in a database of its own, with the stack's
  users and their access strings (infra/config.py REDIS_WRITER, REDIS_READER).
- The tracking server is MLflow started by its image's entrypoint (test_mlflow_image.py), on
  localhost instead of its load balancer; the jobs sign in as its `pipelines` account.
- The packed interpreter (./environment/bin/python) is the platform's venv; the run is on the
  second, small use case (seattle_weather), so that it stays fast.
- The release build is a handler that checks what the build is given (its run is the next
  step of this test: the buildspec, the Bento and the service answering from Redis).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from configs import handoff as handoff_keys
from configs.chain import AWS_CHAIN, AWS_MONITOR, RELEASE
from infra import deploy, jobs
from infra.config import REDIS_READER, REDIS_WRITER, infra_config
from infra.stacks.chain import HANDOFF_VARIABLE
from tests.infra.asl import StateMachine, TaskFailed
from tests.infra.conftest import REGION
from tests.infra.test_deploy import create_stacks
from tests.infra.test_mlflow_image import serve_from_image

ROOT = Path(__file__).resolve().parents[2]
PLATFORM_PYTHON = ROOT / ".venv" / "bin" / "python"
ENTRY_POINT = ROOT / "infra" / "images" / "emr" / jobs.ENTRY_POINT
USECASE = "seattle_weather"
REDIS_DB = 9  # the online store's stand-in database on the machine's Redis
EMR_JOB = "emr-serverless:startJobRun.sync"
BUILD = "codebuild:startBuild.sync"
DRIVER_ENV = re.compile(r"--conf spark\.emr-serverless\.driverEnv\.([A-Za-z_]+)=(\S+)")
ZONES = ("landing", "lake", "quarantine", "reports", "prediction_log", "monitoring")


def _redis(*command: str) -> str:
    done = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-n", str(REDIS_DB), *command],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture
def online_store() -> Any:
    """The stack's two Redis users, with their access strings, on a database of its own."""
    passwords = {REDIS_WRITER[0]: "writer-" + "w" * 24, REDIS_READER[0]: "reader-" + "r" * 24}
    for name, access in (REDIS_WRITER, REDIS_READER):
        _redis("ACL", "SETUSER", name, "reset", f">{passwords[name]}", *access.split())
    _redis("FLUSHDB")
    yield passwords
    _redis("FLUSHDB")
    for name, _ in (REDIS_WRITER, REDIS_READER):
        _redis("ACL", "DELUSER", name)


@pytest.fixture
def mlflow_server(templates, tmp_path_factory) -> Any:
    """MLflow from its image; the release's account may edit this run's use case's model (the
    templates are synthesized for the shipped use case, whose name the task gives)."""
    with serve_from_image(
        templates, tmp_path_factory, {"MLFLOW_RELEASE_MODELS": USECASE}
    ) as server:
        yield server


class RealJobs:
    """Runs each EMR step's job for real (see the module's docstring for the stand-ins)."""

    def __init__(self, endpoint: str, workdir: Path, tracking_uri: str) -> None:
        self.endpoint = endpoint
        self.workdir = workdir
        self.tracking_uri = tracking_uri
        self.ran: list[str] = []
        self.logs: dict[str, str] = {}

    def environment(self, driver_env: dict[str, str]) -> dict[str, str]:
        zones = {zone: str(self.workdir / zone) for zone in ZONES}
        overrides = {
            "paths": zones,
            "spark": {"driver_memory": "2g", "shuffle_partitions": 4},
            "features": {
                "online_store": {
                    "type": "redis",
                    "connection_string": f"${{MLOPS_REDIS_ENDPOINT}}:6379,db={REDIS_DB},"
                    "username=${MLOPS_REDIS_USER},password=${MLOPS_REDIS_AUTH_TOKEN}",
                }
            },
        }
        # what EMR's archive provides: the packed interpreter, here the platform's venv
        kept = {k: v for k, v in driver_env.items() if not k.startswith("PYSPARK_")}
        return {
            "PATH": f"{PLATFORM_PYTHON.parent}:/usr/bin:/bin",
            "HOME": str(self.workdir),
            "JAVA_HOME": os.environ.get("JAVA_HOME", ""),
            **kept,
            "MLOPS_USECASE": USECASE,
            "MLOPS_OVERRIDES": json.dumps(overrides),
            "MLOPS_REDIS_ENDPOINT": "127.0.0.1",
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "SPARK_MASTER": "local[2]",
            "AWS_ACCESS_KEY_ID": "TESTKEYCHAINJOB",
            "AWS_SECRET_ACCESS_KEY": "x",  # pragma: allowlist secret
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint,
            "MLOPS_S3_ENDPOINT": self.endpoint,
            "FEAST_S3_ENDPOINT_URL": self.endpoint,
            "FEAST_USAGE": "False",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "BENTOML_DO_NOT_TRACK": "true",
        }

    def emr(self, parameters: dict[str, Any]) -> dict[str, Any]:
        driver = parameters["JobDriver"]["SparkSubmit"]
        driver_env = dict(DRIVER_ENV.findall(driver["SparkSubmitParameters"]))
        arguments = driver["EntryPointArguments"]
        stage = arguments[-1]
        assert driver["EntryPoint"].endswith(f"/{jobs.CODE_PREFIX}{jobs.ENTRY_POINT}")
        done = subprocess.run(
            [str(PLATFORM_PYTHON), str(ENTRY_POINT), *arguments],
            env=self.environment(driver_env),
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=600,
        )
        self.ran.append(stage)
        self.logs[stage] = done.stdout[-4000:] + done.stderr[-6000:]
        if done.returncode != 0:
            raise TaskFailed("States.TaskFailed", f"{stage}: {self.logs[stage]}")
        return {"JobRunId": f"{stage}-1", "State": "SUCCESS"}

    def land(self, driver_env: dict[str, str]) -> None:
        """What `make deploy` does before the first run: the use case's drops in landing."""
        done = subprocess.run(
            [str(PLATFORM_PYTHON), "-m", "pipelines", "--env", "aws", "land"],
            # as the deploy runs it: land reads no secret, a marker stands for each
            env={**self.environment(driver_env), "MLOPS_REDIS_AUTH_TOKEN": "not-read-by-land"},
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]

    def build(self, parameters: dict[str, Any]) -> dict[str, Any]:
        variables = {v["Name"]: v["Value"] for v in parameters["EnvironmentVariablesOverride"]}
        assert variables[HANDOFF_VARIABLE].endswith(f"/{jobs.HANDOFF_FILE}")
        self.ran.append(next(s for s, where in AWS_CHAIN if where == RELEASE))
        return {"Build": {"BuildStatus": "SUCCEEDED"}}


def _submit_parameters(node: Any) -> list[str]:
    """Every EMR step's spark-submit parameters in a state machine definition."""
    if isinstance(node, dict):
        found = [node["SparkSubmitParameters"]] if "SparkSubmitParameters" in node else []
        return found + [p for value in node.values() for p in _submit_parameters(value)]
    if isinstance(node, list):
        return [p for value in node for p in _submit_parameters(value)]
    return []


def test_the_chain_trains_promotes_materializes_and_monitors_as_aws_runs_it(
    moto_server, mlflow_server, online_store, synthesized, templates, tmp_path
) -> None:
    session = boto3.session.Session(region_name=REGION)
    create_stacks(session, synthesized, templates)
    config = infra_config(environ={})
    cloudformation = session.client("cloudformation")
    lake = deploy.stack_outputs(cloudformation, "flight-delay-data")["LakeBucket"]
    # the secrets the entry point reads by ARN (the definition's values), in Secrets Manager
    machine_arn = deploy.state_machine_arn(cloudformation, config)
    definition = session.client("stepfunctions").describe_state_machine(
        stateMachineArn=machine_arn
    )["definition"]
    environments = [dict(DRIVER_ENV.findall(p)) for p in _submit_parameters(json.loads(definition))]
    assert environments, "no EMR step in the definition"
    secrets = session.client("secretsmanager")
    values = {
        REDIS_WRITER[0]: online_store[REDIS_WRITER[0]],
        REDIS_READER[0]: online_store[REDIS_READER[0]],
    }
    made = set()
    for env in environments:
        for name, value in (
            (env["MLOPS_REDIS_AUTH_TOKEN_SECRET_ARN"], values[env["MLOPS_REDIS_USER"]]),
            (env["MLFLOW_TRACKING_PASSWORD_SECRET_ARN"], mlflow_server["jobs_password"]),
        ):
            if name not in made:
                secrets.create_secret(Name=name, SecretString=value)
                made.add(name)
    tracking = f"http://127.0.0.1:{mlflow_server['port']}"
    runs = RealJobs(moto_server, tmp_path, tracking)
    runs.land(environments[0])
    machine = StateMachine(session, machine_arn, {EMR_JOB: runs.emr, BUILD: runs.build})

    run = machine.start("run-1", {"started_by": "test"})

    failed = runs.ran[-1] if runs.ran else "none"
    assert run.status == "SUCCEEDED", (
        f"{run.visited}: {failed} failed:\n{runs.logs.get(failed, '')}"
    )
    assert runs.ran == [*(s for s, _ in AWS_CHAIN), AWS_MONITOR]
    handed = json.loads(
        session.client("s3").get_object(Bucket=lake, Key=jobs.handoff_key("run-1"))["Body"].read()
    )
    assert handed["champion_version"] == "1", handed
    assert handed[handoff_keys.DECISION_KEY], handed
    # the champion in the registry, as the release's account reads it
    alias = requests.get(
        f"{tracking}/api/2.0/mlflow/registered-models/alias",
        params={"name": USECASE, "alias": handoff_keys.ALIAS},
        auth=(mlflow_server["release"], mlflow_server["release_password"]),
        timeout=30,
    )
    assert alias.status_code == 200 and alias.json()["model_version"]["version"] == "1"
    # the champion's features in the online store, readable by the reader
    keys = _redis("--user", REDIS_READER[0], "--pass", online_store[REDIS_READER[0]], "DBSIZE")
    assert int(keys) > 0
