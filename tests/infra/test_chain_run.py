"""The chain run as AWS runs it: the state machine moto's CloudFormation created, walked by
tests/infra/asl.py, each EMR step running the job's own entry point
(infra/images/emr/run_pipelines.py) with the arguments and driver environment the definition
gives it, on local Spark, in the platform's venv: the stages train, promote, materialize,
report and monitor, handing off through this run's file in S3; then the release build's
buildspec packages, pushes, rolls and smokes; the run ends with the service answering from the
online store with the model the run released.

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
- The release build runs its buildspec's commands, with the project's variables (secrets from
  Secrets Manager), in a folder of its own, with these stand-ins: the AWS CLI (not installed
  here) by a script that copies from S3 with boto3; the venv the buildspec makes and fills from
  runtime-lock.txt by the platform's venv (the lock itself: test_runtime_lock.py); Docker (no
  engine here) by a script that answers `bentoml containerize`'s calls and, on `push`, puts the
  image's manifest in ECR. CloudFormation rolls the serving stack with the deploy role, in moto.
- The load balancer and ECS: a proxy at the address the release's smoke request is sent to
  (its `http_proxy`), which starts the task of the image the serving stack now names (the
  pushed Bento served by `bentoml serve` with the image's own variables and the task
  definition's environment) and forwards to it.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import re
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
import requests
import yaml

from configs import handoff as handoff_keys
from configs.chain import AWS_CHAIN, AWS_MONITOR, RELEASE
from infra import deploy, jobs
from infra.config import REDIS_READER, REDIS_WRITER, infra_config
from infra.stacks.chain import HANDOFF_VARIABLE
from tests.infra.asl import StateMachine, TaskFailed
from tests.infra.conftest import REGION, STACK, USECASE_ENVIRON, free_port
from tests.infra.test_deploy import create_stacks
from tests.infra.test_mlflow_image import serve_from_image

ROOT = Path(__file__).resolve().parents[2]
PLATFORM_PYTHON = ROOT / ".venv" / "bin" / "python"
ENTRY_POINT = ROOT / "infra" / "images" / "emr" / jobs.ENTRY_POINT
USECASE = "seattle_weather"
# The newest feature row of the use case's data is stamped 2016-01-01 00:00 (the end of
# 2015-12-31): the online store answers for that day (the example's day, 2015-12-31, is before
# it, so its features would be in the future and are missing).
NEWEST_DAY = "2016-01-01"
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
        self.bentoml_home = workdir / "bentoml"
        self.release_variables: dict[str, str] = {}
        self.buildspec: list[str] = []
        self.balancer_url = ""
        self.ran: list[str] = []
        self.logs: dict[str, str] = {}

    def environment(self, driver_env: dict[str, str]) -> dict[str, str]:
        zones = {zone: str(self.workdir / zone) for zone in ZONES}
        overrides = {
            "paths": zones,
            "spark": {"driver_memory": "2g", "shuffle_partitions": 4},
            # the stacks were synthesized for the shipped use case, and are named after it
            "aws": {"name": STACK},
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
        """The release build: its buildspec's commands, as CodeBuild runs them (see the
        module's docstring for the stand-ins)."""
        stage = next(s for s, where in AWS_CHAIN if where == RELEASE)
        self.ran.append(stage)
        overrides = {v["Name"]: v["Value"] for v in parameters["EnvironmentVariablesOverride"]}
        assert overrides[HANDOFF_VARIABLE].endswith(f"/{jobs.HANDOFF_FILE}")
        build = self.workdir / "build"
        build.mkdir()
        stand_ins = self.workdir / "stand-ins"
        stand_ins.mkdir()
        for name, script in (("aws", AWS_CLI), ("docker", DOCKER)):
            (stand_ins / name).write_text(
                script.format(python=PLATFORM_PYTHON, log=self.workdir / "docker.log")
            )
            (stand_ins / name).chmod(0o755)
        environment = {
            **self.environment({}),
            **self.release_variables,
            **overrides,
            "PATH": f"{stand_ins}:{PLATFORM_PYTHON.parent}:/usr/bin:/bin",
            "HOME": str(build),
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "MLOPS_REDIS_ENDPOINT": "127.0.0.1",
            "AWS_ACCESS_KEY_ID": "TESTKEYRELEASEBUILD",
            "BENTOML_HOME": str(self.bentoml_home),
            # the smoke request reaches the load balancer's name through its stand-in
            "http_proxy": self.balancer_url,
            "no_proxy": "127.0.0.1,localhost",
        }
        venv = build / "venv"
        log = []
        for command in self.buildspec:
            if command.startswith("python -m venv "):
                command = f"ln -s {ROOT / '.venv'} {venv}"  # the platform's venv stands in
            elif "pip install" in command and jobs.RUNTIME_LOCK in command:
                continue  # installing the lock: checked by test_runtime_lock.py
            command = command.replace("/tmp/venv", str(venv))
            done = subprocess.run(
                ["bash", "-c", command],
                env=environment,
                cwd=build,
                capture_output=True,
                text=True,
                timeout=900,
            )
            log.append(f"$ {command}\n{done.stdout[-3000:]}{done.stderr[-5000:]}")
            if done.returncode != 0:
                self.logs[stage] = "\n".join(log)
                raise TaskFailed("States.TaskFailed", f"{stage}: {self.logs[stage]}")
        self.logs[stage] = "\n".join(log)
        return {"Build": {"BuildStatus": "SUCCEEDED"}}


AWS_CLI = """#!/bin/sh
# Stands in for the AWS CLI (not installed here): `aws s3 cp s3://<bucket>/<key> <file>` only.
[ "$1 $2" = "s3 cp" ] || {{ echo "aws stand-in: only 's3 cp' is stood in for: $*" >&2; exit 2; }}
exec {python} -c 'import sys, boto3; b, _, k = sys.argv[1][5:].partition("/"); boto3.client("s3").download_file(b, k, sys.argv[2])' "$3" "$4"
"""
DOCKER = """#!/bin/sh
# Stands in for Docker (no engine here): what `bentoml containerize` and the release call.
echo "docker $*" >> {log}
case "$1" in
  version) echo '"28.2.2"' ;;
  build) exit 0 ;;
  login) cat > /dev/null; echo "Login Succeeded" ;;
  push) exec {python} -c 'import sys, json, boto3; repo, _, tag = sys.argv[1].split("/", 1)[1].rpartition(":"); boto3.client("ecr").put_image(repositoryName=repo, imageTag=tag, imageManifest=json.dumps({{"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "config": {{"digest": "sha256:" + "0" * 64}}, "layers": []}}))' "$2" ;;
  *) echo "docker stand-in: '$1' is not stood in for" >&2; exit 2 ;;
esac
"""


class LoadBalancer:
    """Stands in for the serving load balancer and ECS: a proxy (the release's `http_proxy`)
    that, at the first request, starts the task of the image the serving stack names (its
    `ImageTag`): the pushed Bento, served with the image's variables and the task's
    environment; then forwards every request to it."""

    def __init__(self, session: Any, bentoml_home: Path, environment: dict[str, str]) -> None:
        self.cloudformation = session.client("cloudformation")
        self.bentoml_home = bentoml_home
        self.environment = environment
        self.task: subprocess.Popen | None = None
        self.log = bentoml_home.parent / "task.log"
        self.port = free_port()
        self.lock = threading.Lock()
        balancer = self

        class Forward(http.server.BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    port = balancer.task_port()
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                    path = urlsplit(self.path).path or "/"
                    connection.request(self.command, path, body or None, dict(self.headers))
                    answer = connection.getresponse()
                    status, payload = answer.status, answer.read()
                    headers = answer.getheaders()
                except (OSError, http.client.HTTPException):
                    status, payload, headers = 503, b'{"error": "no healthy target"}', []
                except Exception as err:  # the stand-in itself failed: say so
                    status, headers = 502, []
                    payload = json.dumps({"error": f"load balancer stand-in: {err!r}"}).encode()
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _forward

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Forward)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def task_port(self) -> int:
        with self.lock:
            if self.task is None:
                self.task = self._start_task()
        return self.port

    def _start_task(self) -> subprocess.Popen:
        tag = deploy.current_image_tag(self.cloudformation, f"{STACK}-serving")
        (bento,) = list(self.bentoml_home.glob(f"bentos/*/{tag}"))
        image_env = {
            e["name"]: str(e["value"])
            for e in yaml.safe_load((bento / "bento.yaml").read_text()).get("envs", [])
        }
        return subprocess.Popen(
            [
                str(PLATFORM_PYTHON),
                "-m",
                "bentoml",
                "serve",
                f"{bento.parent.name}:{tag}",
                "--port",
                str(self.port),
            ],
            env={**self.environment, **image_env},
            cwd=bento,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def close(self) -> None:
        self.server.shutdown()
        if self.task is not None and self.task.poll() is None:
            os.killpg(self.task.pid, signal.SIGTERM)
            self.task.wait(30)


def _resolve(value: Any, exports: dict[str, str]) -> str:
    if isinstance(value, dict) and "Fn::ImportValue" in value:
        return exports[value["Fn::ImportValue"]]
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(_resolve(p, exports) for p in parts)
    assert isinstance(value, str), value
    return value


def _project(templates: dict[str, Any]) -> dict[str, Any]:
    (project,) = [
        r["Properties"]
        for r in templates["chain"]["Resources"].values()
        if r["Type"] == "AWS::CodeBuild::Project"
    ]
    return dict(project)


def _submit_parameters(node: Any) -> list[str]:
    """Every EMR step's spark-submit parameters in a state machine definition."""
    if isinstance(node, dict):
        found = [node["SparkSubmitParameters"]] if "SparkSubmitParameters" in node else []
        return found + [p for value in node.values() for p in _submit_parameters(value)]
    if isinstance(node, list):
        return [p for value in node for p in _submit_parameters(value)]
    return []


def test_a_run_trains_releases_and_serves_as_aws_runs_it(
    moto_server, mlflow_server, online_store, synthesized, templates, tmp_path
) -> None:
    session = boto3.session.Session(region_name=REGION)
    create_stacks(session, synthesized, templates)
    config = infra_config(environ=USECASE_ENVIRON)
    cloudformation = session.client("cloudformation")
    lake = deploy.stack_outputs(cloudformation, f"{STACK}-data")["LakeBucket"]
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
    # what the deploy uploads: the release build's source bundle
    bundle = deploy.source_bundle(tmp_path / jobs.SOURCE_BUNDLE)
    deploy.upload_if_changed(
        session.client("s3"), lake, f"{jobs.CODE_PREFIX}{jobs.SOURCE_BUNDLE}", bundle
    )
    exports = {
        e["Name"]: e["Value"] for e in session.client("cloudformation").list_exports()["Exports"]
    }
    project = _project(templates)
    spec = project["Source"]["BuildSpec"]
    spec = json.loads(spec if isinstance(spec, str) else _resolve(spec, exports))
    runs.buildspec = [c for phase in spec["phases"].values() for c in phase.get("commands", [])]
    for variable in project["Environment"]["EnvironmentVariables"]:
        value = _resolve(variable["Value"], exports)
        if variable.get("Type") == "SECRETS_MANAGER":
            if variable["Name"] == "MLFLOW_TRACKING_PASSWORD" and value not in made:
                secrets.create_secret(Name=value, SecretString=mlflow_server["release_password"])
                made.add(value)
            value = secrets.get_secret_value(SecretId=value)["SecretString"]
        runs.release_variables[variable["Name"]] = value
    # the serving task's environment, as its task definition gives it
    (task,) = [
        r["Properties"]
        for r in templates["serving"]["Resources"].values()
        if r["Type"] == "AWS::ECS::TaskDefinition"
    ]
    (container,) = task["ContainerDefinitions"]
    task_env = {
        e["Name"]: _resolve(e["Value"], exports)
        for e in container["Environment"]
        if not isinstance(e["Value"], dict) or "Fn::ImportValue" in e["Value"]
    }
    assert {s["Name"] for s in container["Secrets"]} == {"MLOPS_REDIS_AUTH_TOKEN"}
    balancer = LoadBalancer(
        session,
        runs.bentoml_home,
        {
            **runs.environment({}),
            **task_env,
            "MLOPS_REDIS_USER": REDIS_READER[0],
            "MLOPS_REDIS_AUTH_TOKEN": online_store[REDIS_READER[0]],
            "MLOPS_REDIS_ENDPOINT": "127.0.0.1",
            "AWS_ACCESS_KEY_ID": "TESTKEYSERVINGTASK",
            "BENTOML_HOME": str(runs.bentoml_home),
        },
    )
    runs.balancer_url = balancer.url
    machine = StateMachine(session, machine_arn, {EMR_JOB: runs.emr, BUILD: runs.build})

    try:
        run = machine.start("run-1", {"started_by": "test"})
        failed = runs.ran[-1] if runs.ran else "none"
        assert run.status == "SUCCEEDED", (
            f"{run.visited}: {failed} failed:\n{runs.logs.get(failed, '')}"
        )
        answered = _predict_through(balancer, runs.release_variables)
        task_log = balancer.log.read_text()[-3000:] if balancer.log.exists() else ""
    finally:
        balancer.close()
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
    # the release: the Bento pushed, the serving stack rolled to it, the release recorded, and
    # the service answering from the online store with the model the run released
    tag = deploy.current_image_tag(cloudformation, f"{STACK}-serving")
    assert tag != "none"
    (release,) = deploy.read_releases(session.client("ssm"), config)
    assert (release.image_tag, release.model_version) == (tag, "1")
    assert "smoke request answered by model version 1" in runs.logs["package"]
    assert answered["status"] == 200, (answered, task_log)
    (prediction,) = answered["predictions"]
    assert answered["model_version"] == "1" and prediction["missing_features"] == [], answered


def _predict_through(balancer: LoadBalancer, variables: dict[str, str]) -> dict[str, Any]:
    """The use case's example request (as the smoke request builds it, in the platform's
    venv) for the newest day, sent to the load balancer's stand-in."""
    body = subprocess.run(
        [
            str(PLATFORM_PYTHON),
            "-c",
            "import json, sys; from serving.smoke import example_request; "
            "body, items, _ = example_request(sys.argv[1]); body[items][0]['day'] = sys.argv[2]; "
            "print(json.dumps(body))",
            USECASE,
            NEWEST_DAY,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    host, port = balancer.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.request("POST", "/predict", body.encode(), {"Content-Type": "application/json"})
    answer = connection.getresponse()
    return {"status": answer.status, **json.loads(answer.read() or b"{}")}
