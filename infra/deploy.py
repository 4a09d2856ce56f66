"""`make deploy|status|rollback|destroy ENV=aws`: put the platform on AWS, watch it, step
back, take it down.

    python -m infra.deploy deploy     # stacks, code, example data, the first run of the chain
    python -m infra.deploy status     # the chain's last runs, and what failed
    python -m infra.deploy release    # (the release build, in AWS) package, push, roll, smoke
    python -m infra.deploy rollback   # the previous image (and so the previous model)
    python -m infra.deploy releases   # what was deployed, newest last
    python -m infra.deploy spark <command>  # one `python -m pipelines` command on EMR
    python -m infra.deploy mlflow-ui  # the MLflow UI on localhost:5000 (SSM port forwarding)
    python -m infra.deploy destroy    # every stack; names what it keeps (--purge: those too)

Deploy: check credentials, Docker and the CDK CLI first and stop at once, saying what is
missing; `cdk deploy` the stacks (the MLflow image is built by it, for linux/amd64); upload the
Spark code (the packed venv, built in Docker) and the source bundle of the release build; land
the use case's example drops in the landing zone (drops already there are kept); start a run
of the chain's state machine when any of that changed or nothing has run yet. The state
machine (infra/stacks/chain.py) runs the chain in AWS: the Spark stages and fit, promote,
materialize and report as EMR Serverless jobs, then the release build. Nothing is served
until the first run has trained and released a champion.

Release (the chain's last step, a CodeBuild build in the VPC): package the AWS champion into
a Bento, containerize it for linux/amd64, push it under the Bento's version, roll the serving
stack to that tag (its `ImageTag` parameter, through the serving stack's own deploy role,
which may touch only the service, its task definitions and its scaling, so CloudFormation stays
the owner of the service and the build holds no administrator role), record the release in SSM Parameter Store,
send a smoke request. When the champion is the version already serving, it does nothing.

Rollback: roll the serving stack back to the tag of the release before the current one. The
Bento pins the model version it serves, so the previous image is the previous model; the
registry's `champion` alias is moved with `python -m pipelines rollback` from inside the VPC.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from configs import handoff
from configs.chain import ONLINE_STORE_WRITERS
from configs.settings import AwsConfig
from infra import jobs
from infra.config import (
    IMAGE_PLATFORM,
    IMAGE_TAG_PARAMETER,
    NO_IMAGE,
    RUNTIME_VARIABLES,
    STACK_CONCERNS,
    infra_config,
)

ROOT = Path(__file__).resolve().parents[1]
CDK_CLI = ["npx", "--yes", "aws-cdk@2"]
JOB_POLL_S = 15
# Set on the release build by the chain stack: the serving stack's deploy role, which
# CloudFormation rolls the image with (infra/stacks/serving.py `_deploy_role`).
CLOUDFORMATION_ROLE_VARIABLE = "MLOPS_CLOUDFORMATION_ROLE_ARN"
# Object metadata holding the sha256 of an uploaded file: an unchanged file is not sent again.
SHA_METADATA = "sha256"


class DeployError(RuntimeError):
    """Deploying cannot go on; the message says what is missing or what failed."""


@dataclass(frozen=True)
class Release:
    image_tag: str
    bento: str
    deployed_at: str
    kind: str = "deploy"  # deploy | rollback
    # The registry version the Bento serves ("" in releases recorded before it was kept).
    model_version: str = ""


@dataclass
class Deployed:
    """What a deploy changed: files uploaded, drops landed, the run it started (if any)."""

    uploaded: list[str]
    landed: list[str]
    run: str | None


Run = Callable[..., str]  # run(command, input_text=None) -> stdout


def run_command(command: Sequence[str], input_text: str | None = None) -> str:
    """Run a command, echoing it and streaming what it prints as it comes (a `cdk deploy` or a
    Docker build takes many minutes); raise DeployError with the end of its output when it
    fails. Returns what it printed."""
    print("+", " ".join(command), file=sys.stderr, flush=True)
    lines: list[str] = []
    with subprocess.Popen(
        list(command),
        cwd=ROOT,
        stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        if input_text is not None:
            assert process.stdin is not None
            process.stdin.write(input_text)
            process.stdin.close()
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", file=sys.stderr, flush=True)
            lines.append(line)
    output = "".join(lines)
    if process.returncode != 0:
        raise DeployError(f"{command[0]} failed ({process.returncode}):\n{output[-3000:]}")
    return output


# -- preflight ----------------------------------------------------------------------------
def check_credentials(session: Any) -> str:
    """The caller's identity, or a DeployError saying how to provide credentials."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    if session.get_credentials() is None:
        raise DeployError(
            "no AWS credentials found: set AWS_PROFILE (after `aws sso login` or `aws configure`) "
            "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, then run again"
        )
    if not session.region_name:
        raise DeployError("no AWS region: set AWS_REGION (e.g. AWS_REGION=eu-west-1)")
    try:
        identity = session.client("sts").get_caller_identity()
    except NoCredentialsError as err:
        raise DeployError(f"no usable AWS credentials: {err}") from None
    except (ClientError, BotoCoreError) as err:
        raise DeployError(f"the AWS credentials were refused: {err}") from None
    return str(identity["Arn"])


def check_tools(which: Callable[[str], str | None] = shutil.which) -> None:
    missing = []
    if which("docker") is None:
        missing.append(
            "Docker (to build and push the serving image): https://docs.docker.com/get-docker/"
        )
    if which("npx") is None:
        missing.append("Node.js with npx (runs the AWS CDK CLI, aws-cdk@2): https://nodejs.org/")
    if missing:
        raise DeployError("missing: " + "; ".join(missing))


def check_docker_daemon(run: Run) -> None:
    try:
        run(["docker", "info", "--format", "{{.ServerVersion}}"])
    except DeployError:
        raise DeployError(
            "Docker is installed but its daemon does not answer: start Docker, then run again"
        ) from None


# -- stack outputs and releases ------------------------------------------------------------
def stack_outputs(cloudformation: Any, stack: str) -> dict[str, str]:
    described = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


def releases_parameter(config: AwsConfig) -> str:
    return f"/{config.name}/serving/releases"


def read_releases(ssm: Any, config: AwsConfig) -> list[Release]:
    try:
        value = ssm.get_parameter(Name=releases_parameter(config))["Parameter"]["Value"]
    except ssm.exceptions.ParameterNotFound:
        return []
    known = set(Release.__dataclass_fields__)
    return [
        Release(**{k: v for k, v in entry.items() if k in known}) for entry in json.loads(value)
    ]


def record_release(ssm: Any, config: AwsConfig, release: Release, keep: int = 20) -> None:
    history = [*read_releases(ssm, config), release][-keep:]
    ssm.put_parameter(
        Name=releases_parameter(config),
        Value=json.dumps([asdict(r) for r in history]),
        Type="String",
        Overwrite=True,
    )


def current_image_tag(cloudformation: Any, stack: str) -> str:
    described = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
    for parameter in described.get("Parameters", []):
        if parameter["ParameterKey"] == IMAGE_TAG_PARAMETER:
            return str(parameter["ParameterValue"])
    return NO_IMAGE


def failing_events(cloudformation: Any, stacks: Sequence[str], limit: int = 10) -> str:
    """The newest failed resource events of `stacks` (what a failed `cdk deploy` hides in the
    console), one line each; "none recorded" when there are none or no stack exists yet."""
    lines = []
    for stack in stacks:
        try:
            events = cloudformation.describe_stack_events(StackName=stack)["StackEvents"]
        except Exception:
            continue
        failed = [e for e in events if str(e.get("ResourceStatus", "")).endswith("_FAILED")]
        for event in failed[:limit]:
            lines.append(
                f"  {stack} {event.get('LogicalResourceId')} {event['ResourceStatus']}: "
                f"{event.get('ResourceStatusReason', '')}"
            )
    return "\n".join(lines) or "  none recorded"


# -- rolling the service -------------------------------------------------------------------
def roll_service(
    cloudformation: Any,
    ecs: Any,
    stack: str,
    image_tag: str,
    *,
    wait: bool = True,
    role_arn: str | None = None,
) -> None:
    """Point the serving stack at `image_tag` and wait until the service is stable (through
    the role `role_arn` when given: the release build passes the serving stack's deploy role)."""
    described = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
    # Every other parameter keeps its value: an SSM-typed one (CDK's BootstrapVersion) is
    # given the name of its SSM parameter again, from the template, to be resolved anew.
    declared = _template_parameters(cloudformation, stack)
    parameters = []
    for p in described.get("Parameters", []):
        key = p["ParameterKey"]
        if key == IMAGE_TAG_PARAMETER:
            continue
        spec = declared.get(key, {})
        value = (
            spec["Default"]
            if spec.get("Type", "").startswith("AWS::SSM::")
            else p["ParameterValue"]
        )
        parameters.append({"ParameterKey": key, "ParameterValue": value})
    parameters.append({"ParameterKey": IMAGE_TAG_PARAMETER, "ParameterValue": image_tag})
    cloudformation.update_stack(
        StackName=stack,
        UsePreviousTemplate=True,
        Parameters=parameters,
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
        **({"RoleARN": role_arn} if role_arn else {}),
    )
    if not wait:
        return
    cloudformation.get_waiter("stack_update_complete").wait(
        StackName=stack, WaiterConfig={"Delay": 15, "MaxAttempts": 120}
    )
    outputs = stack_outputs(cloudformation, stack)
    ecs.get_waiter("services_stable").wait(
        cluster=outputs["ClusterName"],
        services=[outputs["ServiceName"]],
        WaiterConfig={"Delay": 15, "MaxAttempts": 80},
    )


def _template_parameters(cloudformation: Any, stack: str) -> dict[str, Any]:
    body = cloudformation.get_template(StackName=stack)["TemplateBody"]
    template = json.loads(body) if isinstance(body, str) else body
    return dict(template.get("Parameters", {}))


def rollback(session: Any, config: AwsConfig, *, wait: bool = True) -> Release:
    """Roll the service back to the release before the current one, and record that."""
    cloudformation, ecs, ssm = (session.client(n) for n in ("cloudformation", "ecs", "ssm"))
    stack = f"{config.name}-serving"
    current = current_image_tag(cloudformation, stack)
    history = read_releases(ssm, config)
    tags = [release.image_tag for release in history]
    if current not in tags or tags.index(current) == 0:
        raise DeployError(
            f"nothing to roll back to: the service runs {current!r} and no earlier release is recorded"
        )
    previous = history[tags.index(current) - 1]
    print(f"rolling {stack} back from {current} to {previous.image_tag} ({previous.bento})")
    # through the serving stack's deploy role, as the release rolls it
    role = stack_outputs(cloudformation, stack).get("DeployRoleArn")
    roll_service(cloudformation, ecs, stack, previous.image_tag, wait=wait, role_arn=role)
    release = Release(
        previous.image_tag,
        previous.bento,
        _now(),
        kind="rollback",
        model_version=previous.model_version,
    )
    record_release(ssm, config, release)
    return release


# -- Spark on EMR Serverless (one command on demand; the chain's jobs are the state machine's)
def spark_job_driver(
    lake_bucket: str, command: Sequence[str], environment: dict[str, str]
) -> dict[str, Any]:
    """The job driver of `python -m pipelines <command>`, as the state machine's steps run it."""
    return {"sparkSubmit": jobs.spark_submit(lake_bucket, command, environment)}


def job_environment(
    cloudformation: Any, config: AwsConfig, *, writes_online_store: bool = False
) -> dict[str, str]:
    """What the aws profile reads from the environment, from the stacks' outputs: signed in to
    the online store as its writer only for a stage that writes it."""
    data = stack_outputs(cloudformation, f"{config.name}-data")
    store = stack_outputs(cloudformation, f"{config.name}-feature-store")
    mlflow = stack_outputs(cloudformation, f"{config.name}-mlflow")
    side = "Writer" if writes_online_store else "Reader"
    token = "RedisAuthTokenSecret" if writes_online_store else "RedisReaderTokenSecret"
    return jobs.job_environment(
        landing_bucket=data["LandingBucket"],
        lake_bucket=data["LakeBucket"],
        redis_endpoint=store["RedisEndpoint"],
        redis_user=store[f"Redis{side}User"],
        redis_token_secret_arn=store[token],
        tracking_uri=mlflow["TrackingUri"],
        mlflow_password_secret_arn=mlflow["JobsPasswordSecret"],
    )


def run_spark_jobs(
    emr: Any,
    application_id: str,
    role_arn: str,
    lake_bucket: str,
    environment: dict[str, str],
    commands: Sequence[Sequence[str]],
    *,
    poll_s: float = JOB_POLL_S,
    timeout_s: float = 3600,
) -> dict[str, str]:
    """Run each command (`python -m pipelines` arguments) as a job, one after another; stop at
    the first that does not succeed."""
    states = {}
    for command in commands:
        label = " ".join(command)
        started = emr.start_job_run(
            applicationId=application_id,
            executionRoleArn=role_arn,
            name=jobs.job_name(command[0]),
            jobDriver=spark_job_driver(lake_bucket, command, environment),
            configurationOverrides={
                "monitoringConfiguration": {
                    "s3MonitoringConfiguration": {"logUri": f"s3://{lake_bucket}/{jobs.LOG_PREFIX}"}
                }
            },
        )
        deadline = time.monotonic() + timeout_s
        while True:
            state = emr.get_job_run(applicationId=application_id, jobRunId=started["jobRunId"])[
                "jobRun"
            ]["state"]
            if state in ("SUCCESS", "FAILED", "CANCELLED") or time.monotonic() > deadline:
                break
            time.sleep(poll_s)
        states[label] = state
        print(f"EMR Serverless job {label}: {state}")
        if state != "SUCCESS":
            raise DeployError(
                f"the {label} job ended {state}: see s3://{lake_bucket}/{jobs.LOG_PREFIX} "
                f"(job run {started['jobRunId']})"
            )
    return states


def run_on_emr(
    session: Any, config: AwsConfig, commands: Sequence[Sequence[str]]
) -> dict[str, str]:
    """`python -m pipelines` commands as EMR Serverless jobs, in order (the deployed code); a
    stage that writes the online store runs as the feature writer's role, the others as the job
    role, as in the state machine."""
    cloudformation = session.client("cloudformation")
    spark = stack_outputs(cloudformation, f"{config.name}-spark")
    states: dict[str, str] = {}
    for command in commands:
        writes = command[0] in ONLINE_STORE_WRITERS
        environment = job_environment(cloudformation, config, writes_online_store=writes)
        states |= run_spark_jobs(
            session.client("emr-serverless"),
            spark["ApplicationId"],
            spark["FeatureWriterRoleArn" if writes else "JobRoleArn"],
            environment["MLOPS_LAKE_BUCKET"],
            environment,
            [command],
        )
    return states


# -- code, data and the first run ----------------------------------------------------------
def build_spark_code(run: Run, workdir: Path) -> list[Path]:
    """The entry point and the packed virtualenv (Docker, Amazon Linux, linux/amd64)."""
    run(
        [
            "docker",
            "build",
            "--platform",
            IMAGE_PLATFORM,
            "-f",
            "infra/images/emr/Dockerfile",
            "-o",
            f"type=local,dest={workdir}",
            ".",
        ]
    )
    return [workdir / jobs.ENTRY_POINT, workdir / jobs.VENV_ARCHIVE]


def source_bundle(target: Path, root: Path = ROOT) -> Path:
    """The release build's source: every file git tracks, as it is in the working tree, in a
    zip with fixed timestamps (the same tree gives the same bytes, so an unchanged bundle is
    not uploaded again)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True
    ).stdout.decode()
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name in sorted(n for n in listed.split("\0") if n and (root / n).is_file()):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = ((root / name).stat().st_mode & 0o777) << 16
            bundle.writestr(info, (root / name).read_bytes(), zipfile.ZIP_DEFLATED)
    return target


def upload_if_changed(s3: Any, bucket: str, key: str, path: Path) -> bool:
    """Upload `path` to s3://bucket/key unless the object there has the same sha256."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
        if head.get("Metadata", {}).get(SHA_METADATA) == digest:
            return False
    except s3.exceptions.ClientError as err:
        if err.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
            raise
    s3.upload_file(str(path), bucket, key, ExtraArgs={"Metadata": {SHA_METADATA: digest}})
    return True


def upload_code(s3: Any, lake_bucket: str, run: Run, workdir: Path) -> list[str]:
    """The Spark jobs' code and the release build's source, each sent only when changed.
    Returns the S3 locations that changed."""
    files = [*build_spark_code(run, workdir), source_bundle(workdir / jobs.SOURCE_BUNDLE)]
    changed = []
    for path in files:
        key = f"{jobs.CODE_PREFIX}{path.name}"
        if upload_if_changed(s3, lake_bucket, key, path):
            changed.append(f"s3://{lake_bucket}/{key}")
    return changed


def land_example_data(s3: Any, run: Run, app_python: str, environment: dict[str, str]) -> list[str]:
    """`python -m pipelines --env aws land`: the use case's example drops into the landing
    zone (a drop already there is never overwritten). Returns the drops that are new."""
    bucket = environment["MLOPS_LANDING_BUCKET"]
    before = _keys(s3, bucket)
    # Land reads no secret: what the profile names but land does not use stays a marker.
    values = {name: f"not-read-by-land-{name.lower()}" for name in RUNTIME_VARIABLES}
    values |= environment
    assignments = [f"{name}={value}" for name, value in sorted(values.items())]
    run(["env", *assignments, app_python, "-m", "pipelines", "--env", "aws", "land"])
    return sorted(f"s3://{bucket}/{key}" for key in _keys(s3, bucket) - before)


def _keys(s3: Any, bucket: str) -> set[str]:
    keys: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys.update(o["Key"] for o in page.get("Contents", []))
    return keys


def state_machine_arn(cloudformation: Any, config: AwsConfig) -> str:
    return stack_outputs(cloudformation, f"{config.name}-chain")["StateMachineArn"]


def start_run(stepfunctions: Any, machine: str, reason: str) -> str:
    name = f"deploy-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    started = stepfunctions.start_execution(
        stateMachineArn=machine, name=name, input=json.dumps({"started_by": reason})
    )
    return str(started["executionArn"])


# -- the whole deploy ----------------------------------------------------------------------
def deploy(
    session: Any,
    config: AwsConfig,
    *,
    app_python: str,
    land: bool = True,
    run: Run = run_command,
    which: Callable[[str], str | None] = shutil.which,
) -> Deployed:
    identity = check_credentials(session)
    check_tools(which)
    check_docker_daemon(run)
    print(f"deploying {config.name} to {session.region_name} as {identity}")
    infra_python = sys.executable
    cloudformation = session.client("cloudformation")
    try:
        run(
            [
                *CDK_CLI,
                "deploy",
                "--all",
                "--require-approval",
                "never",
                "--app",
                f"{infra_python} -m infra.app",
            ]
        )
    except DeployError as err:
        failed = failing_events(cloudformation, [f"{config.name}-{c}" for c in STACK_CONCERNS])
        raise DeployError(f"{err}\n\nwhat failed, from the stacks' events:\n{failed}") from None
    environment = job_environment(cloudformation, config)
    s3 = session.client("s3")
    with tempfile.TemporaryDirectory(prefix="emr-code-") as workdir:
        uploaded = upload_code(s3, environment["MLOPS_LAKE_BUCKET"], run, Path(workdir))
    landed = land_example_data(s3, run, app_python, environment) if land else []
    landing = f"s3://{environment['MLOPS_LANDING_BUCKET']}/"
    if not land:
        print(f"example data not landed: put your drops under {landing} (each starts a run)")
    stepfunctions = session.client("stepfunctions")
    machine = state_machine_arn(cloudformation, config)
    ran_before = stepfunctions.list_executions(stateMachineArn=machine, maxResults=1)["executions"]
    reason = (
        "new code" if uploaded else "new drops" if landed else "" if ran_before else "first deploy"
    )
    started = start_run(stepfunctions, machine, reason) if reason else None
    for location in uploaded:
        print(f"uploaded {location}")
    print(f"{len(landed)} new drop(s) landed in {landing}")
    if started:
        print(f"started the chain ({reason}): {started}")
        print("follow it with `make status ENV=aws` (a first run takes about an hour)")
    else:
        print("nothing changed: no run started")
    return Deployed(uploaded, landed, started)


# -- release (the chain's last step, in the account) ---------------------------------------
def release(
    session: Any,
    config: AwsConfig,
    handoff_file: str,
    *,
    app_python: str = sys.executable,
    run: Run = run_command,
    wait: bool = True,
) -> Release:
    """Package the AWS champion, push its image, roll the service, smoke it. A champion that
    already serves is not packaged again."""
    cloudformation, ecs, ssm, s3 = (
        session.client(n) for n in ("cloudformation", "ecs", "ssm", "s3")
    )
    stack = f"{config.name}-serving"
    handed = _read_s3_json(s3, handoff_file)
    champion = str(handed.get("champion_version", ""))
    current = current_image_tag(cloudformation, stack)
    serving_now = next(
        (r for r in reversed(read_releases(ssm, config)) if r.image_tag == current), None
    )
    if champion and serving_now is not None and serving_now.model_version == champion:
        print(
            f"{stack} already serves version {champion} ({serving_now.bento}): nothing to release"
        )
        return serving_now
    outputs = stack_outputs(cloudformation, stack)
    bento, image_tag, version = push_serving_image(
        session.client("ecr"), run, app_python, "aws", outputs["RepositoryUri"], handed
    )
    release = Release(image_tag, bento, _now(), model_version=version or champion)
    if current != image_tag:
        roll_service(
            cloudformation,
            ecs,
            stack,
            image_tag,
            wait=wait,
            role_arn=os.environ.get(CLOUDFORMATION_ROLE_VARIABLE) or None,
        )
        record_release(ssm, config, release)
    run([app_python, "-m", "serving.smoke", outputs["Url"]])
    return release


def _read_s3_json(s3: Any, location: str) -> dict[str, Any]:
    bucket, _, key = location.removeprefix("s3://").partition("/")
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        raise DeployError(f"no handoff at {location}: did the chain's stages run?") from None
    return dict(json.loads(body))


def push_serving_image(
    ecr: Any,
    run: Run,
    app_python: str,
    package_env: str,
    repository_uri: str,
    handed: dict[str, Any] | None = None,
) -> tuple[str, str, str]:
    """Build the champion's Bento (with what the chain handed off: the champion it decided
    on), containerize it and push it under the Bento's version.
    Returns (Bento tag, image tag, model version)."""
    with tempfile.TemporaryDirectory(prefix="package-") as tmp:
        handoff_path = Path(tmp) / "handoff.json"
        handoff_path.write_text(json.dumps(handed or {}))
        run(
            [
                app_python,
                "-m",
                "pipelines",
                "--env",
                package_env,
                "--handoff-file",
                str(handoff_path),
                "package",
            ]
        )
        bento = bento_tag(handoff_path)
        version = str(json.loads(handoff_path.read_text()).get("champion_version", ""))
    image_tag = bento.split(":", 1)[1]
    image = f"{repository_uri}:{image_tag}"
    if image_exists(ecr, repository_uri, image_tag):
        # Tags are immutable: the same Bento is pushed once.
        print(f"{image} is already in the repository")
        return bento, image_tag, version
    # Fargate runs x86_64: the image is built for it whatever the builder runs on.
    run(
        [
            app_python,
            "-m",
            "bentoml",
            "containerize",
            bento,
            "--image-tag",
            image,
            "--platform",
            IMAGE_PLATFORM,
        ]
    )
    token = ecr.get_authorization_token()["authorizationData"][0]
    user, password = base64.b64decode(token["authorizationToken"]).decode().split(":", 1)
    run(
        ["docker", "login", "--username", user, "--password-stdin", token["proxyEndpoint"]],
        password,
    )
    run(["docker", "push", image])
    return bento, image_tag, version


def image_exists(ecr: Any, repository_uri: str, tag: str) -> bool:
    """Whether the repository at `repository_uri` holds an image tagged `tag`."""
    repository = repository_uri.split("/", 1)[1]
    try:
        ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
    except ecr.exceptions.ImageNotFoundException:
        return False
    except ecr.exceptions.ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        if code in ("AccessDeniedException", "AccessDenied"):
            raise DeployError(
                f"this role may not call ecr:DescribeImages on {repository}: the release "
                "build's role needs it (infra/stacks/chain.py)"
            ) from None
        raise
    return True


def bento_tag(handoff_file: Path) -> str:
    """The Bento's tag from what `python -m pipelines --handoff-file <file> package` wrote."""
    try:
        handed = json.loads(handoff_file.read_text())
    except (OSError, ValueError) as err:
        raise DeployError(f"the package stage wrote no readable handoff ({err})") from err
    tag = handed.get(handoff.BENTO_TAG_KEY, "")
    if ":" not in tag:
        raise DeployError(f"the package stage handed off no Bento: {handed}")
    return str(tag)


# -- the MLflow UI ---------------------------------------------------------------------------
MLFLOW_CONTAINER = "mlflow"
PORT_FORWARDING = "AWS-StartPortForwardingSessionToRemoteHost"


def mlflow_tunnel(session: Any, config: AwsConfig, local_port: int = 5000) -> list[str]:
    """The `aws ssm start-session` command that forwards `local_port` to MLflow's internal
    load balancer through a running MLflow task (ECS Exec): the UI on the laptop, with no
    bastion and nothing public. Sign in with an account of your own (README)."""
    cloudformation, ecs = session.client("cloudformation"), session.client("ecs")
    outputs = stack_outputs(cloudformation, f"{config.name}-mlflow")
    cluster = outputs["ClusterName"]
    running = ecs.list_tasks(
        cluster=cluster, serviceName=outputs["ServiceName"], desiredStatus="RUNNING"
    )["taskArns"]
    if not running:
        raise DeployError(f"no MLflow task is running in {cluster}: see `make status ENV=aws`")
    (task,) = ecs.describe_tasks(cluster=cluster, tasks=running[:1])["tasks"]
    container = next(c for c in task["containers"] if c["name"] == MLFLOW_CONTAINER)
    target = f"ecs:{cluster}_{task['taskArn'].rsplit('/', 1)[1]}_{container['runtimeId']}"
    host = outputs["TrackingUri"].split("://", 1)[1]
    parameters = {"host": [host], "portNumber": ["80"], "localPortNumber": [str(local_port)]}
    return [
        "aws",
        "ssm",
        "start-session",
        "--region",
        str(session.region_name),
        "--target",
        target,
        "--document-name",
        PORT_FORWARDING,
        "--parameters",
        json.dumps(parameters, separators=(",", ":")),
    ]


# -- status and teardown -------------------------------------------------------------------
@dataclass(frozen=True)
class ChainRun:
    name: str
    status: str
    started: str
    stopped: str
    # The step a failed run stopped at (a stage of the chain), else "".
    failed_at: str = ""


def status(session: Any, config: AwsConfig, limit: int = 10) -> list[ChainRun]:
    """The chain's last runs, newest first, with the stage each failed one stopped at."""
    stepfunctions = session.client("stepfunctions")
    machine = state_machine_arn(session.client("cloudformation"), config)
    runs = []
    for execution in stepfunctions.list_executions(stateMachineArn=machine, maxResults=limit)[
        "executions"
    ]:
        failed_at = ""
        if execution["status"] in ("FAILED", "TIMED_OUT", "ABORTED"):
            failed_at = _failed_step(stepfunctions, execution["executionArn"])
        runs.append(
            ChainRun(
                execution["name"],
                execution["status"],
                _iso(execution.get("startDate")),
                _iso(execution.get("stopDate")),
                failed_at,
            )
        )
    return runs


def _failed_step(stepfunctions: Any, execution: str) -> str:
    """The last step a run entered before it failed (not its own notify and fail steps)."""
    events = stepfunctions.get_execution_history(
        executionArn=execution, reverseOrder=True, maxResults=100
    )["events"]
    for event in events:
        entered = event.get("stateEnteredEventDetails", {}).get("name", "")
        if entered and not entered.startswith("Notify ") and entered != "Failed":
            return str(entered)
    return "?"


def _iso(value: Any) -> str:
    return value.replace(microsecond=0).isoformat() if value else ""


# -- tearing down ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Kept:
    """Something `destroy` leaves in the account: its kind (a CloudFormation resource type), its
    name, and why."""

    kind: str
    name: str
    why: str = "kept on purpose"

    def __str__(self) -> str:
        return f"{self.kind:<24} {self.name}  ({self.why})"


# A KMS key cannot be deleted at once, only scheduled (7 to 30 days).
KMS_PENDING_DAYS = 7


def _ask(question: str) -> bool:
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:  # no terminal: never a yes
        return False


def existing_stacks(cloudformation: Any, config: AwsConfig) -> list[str]:
    """The platform's stacks that exist, in the order they were created."""
    found = []
    for concern in STACK_CONCERNS:
        name = f"{config.name}-{concern}"
        try:
            cloudformation.describe_stacks(StackName=name)
        except cloudformation.exceptions.ClientError:
            continue
        found.append(name)
    return found


def retained_resources(cloudformation: Any, stacks: Sequence[str]) -> list[Kept]:
    """What deleting `stacks` leaves, read from their deployed templates: every resource whose
    DeletionPolicy is Retain (data buckets, keys, the image repository)."""
    kept = []
    for stack in stacks:
        template = _template(cloudformation, stack)
        physical = {
            r.get("LogicalResourceId", ""): r.get("PhysicalResourceId", "")
            for r in cloudformation.describe_stack_resources(StackName=stack)["StackResources"]
        }
        for logical_id, resource in template.get("Resources", {}).items():
            if resource.get("DeletionPolicy") == "Retain" and physical.get(logical_id):
                kept.append(Kept(resource["Type"], physical[logical_id], f"retained by {stack}"))
    return kept


def _template(cloudformation: Any, stack: str) -> dict[str, Any]:
    body = cloudformation.get_template(StackName=stack)["TemplateBody"]
    return dict(json.loads(body) if isinstance(body, str) else body)


def made_outside_the_stacks(session: Any, config: AwsConfig, stacks: Sequence[str]) -> list[Kept]:
    """What the platform made at run time, which no stack owns: the release history parameter,
    and the log groups the services create themselves (ECS Container Insights, per cluster)."""
    kept = []
    ssm, logs = session.client("ssm"), session.client("logs")
    try:
        ssm.get_parameter(Name=releases_parameter(config))
        kept.append(Kept("AWS::SSM::Parameter", releases_parameter(config), "the release history"))
    except ssm.exceptions.ParameterNotFound:
        pass
    cloudformation = session.client("cloudformation")
    clusters = [
        stack_outputs(cloudformation, stack).get("ClusterName", "")
        for stack in stacks
        if stack.endswith(("-serving", "-mlflow"))
    ]
    for cluster in filter(None, clusters):
        prefix = f"/aws/ecs/containerinsights/{cluster}/"
        for group in logs.describe_log_groups(logGroupNamePrefix=prefix)["logGroups"]:
            kept.append(Kept("AWS::Logs::LogGroup", group["logGroupName"], "made by ECS"))
    return kept


def lift_deletion_protection(
    rds: Any, database: str, *, yes: bool, ask: Callable[[str], bool]
) -> Kept | None:
    """Snapshot the MLflow database and lift its deletion protection (asked first), so that
    `cdk destroy` can delete it. None when it is not protected."""
    instance = rds.describe_db_instances(DBInstanceIdentifier=database)["DBInstances"][0]
    if not instance.get("DeletionProtection"):
        return None
    question = (
        f"The MLflow database {database} is protected from deletion. Take a snapshot of it "
        "now, then lift the protection so that it can be deleted (its registry and runs stay "
        "in the snapshot)?"
    )
    if not (yes or ask(question)):
        raise DeployError(
            f"nothing was deleted: {database} keeps its deletion protection, and `cdk destroy` "
            "would stop at it, half done. Run again and answer yes (or pass --yes)."
        )
    snapshot = f"{database}-before-destroy-{datetime.now(UTC):%Y%m%d%H%M%S}"
    print(f"snapshotting {database} as {snapshot} (minutes for a large database)")
    rds.create_db_snapshot(DBSnapshotIdentifier=snapshot, DBInstanceIdentifier=database)
    rds.get_waiter("db_snapshot_available").wait(
        DBSnapshotIdentifier=snapshot, WaiterConfig={"Delay": 15, "MaxAttempts": 240}
    )
    rds.modify_db_instance(
        DBInstanceIdentifier=database, DeletionProtection=False, ApplyImmediately=True
    )
    return Kept("AWS::RDS::DBSnapshot", snapshot, "the MLflow database before destroy")


def purge(session: Any, kept: Sequence[Kept]) -> list[Kept]:
    """Remove what `destroy` kept; returns what remains (KMS keys, pending deletion, and
    anything of a kind not known here)."""
    s3, ecr, logs, rds, ssm, kms = (
        session.client(n) for n in ("s3", "ecr", "logs", "rds", "ssm", "kms")
    )
    remaining = []
    for item in kept:
        print(f"removing {item.kind} {item.name}")
        if item.kind == "AWS::S3::Bucket":
            _empty_bucket(s3, item.name)
            s3.delete_bucket(Bucket=item.name)
        elif item.kind == "AWS::ECR::Repository":
            ecr.delete_repository(repositoryName=item.name, force=True)
        elif item.kind == "AWS::Logs::LogGroup":
            logs.delete_log_group(logGroupName=item.name)
        elif item.kind == "AWS::RDS::DBSnapshot":
            rds.delete_db_snapshot(DBSnapshotIdentifier=item.name)
        elif item.kind == "AWS::SSM::Parameter":
            ssm.delete_parameter(Name=item.name)
        elif item.kind == "AWS::KMS::Key":
            kms.schedule_key_deletion(KeyId=item.name, PendingWindowInDays=KMS_PENDING_DAYS)
            remaining.append(Kept(item.kind, item.name, f"deleted in {KMS_PENDING_DAYS} days"))
        else:
            remaining.append(Kept(item.kind, item.name, "not removed by --purge"))
    return remaining


def _empty_bucket(s3: Any, bucket: str) -> None:
    """Every version and delete marker of a versioned bucket, a thousand at a time."""
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        objects = [
            {"Key": o["Key"], "VersionId": o["VersionId"]}
            for o in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
        ]
        if objects:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})


def destroy(
    session: Any,
    config: AwsConfig,
    *,
    yes: bool = False,
    purge_kept: bool = False,
    ask: Callable[[str], bool] = _ask,
    run: Run = run_command,
) -> list[Kept]:
    """Delete every stack. The MLflow database is snapshotted and its deletion protection lifted
    first (asked). What stays (data buckets, keys, the image repository, snapshots, the release
    history, log groups the services made) is named; with `purge_kept` it is removed too
    (asked). Returns what stays."""
    check_credentials(session)
    cloudformation, rds = session.client("cloudformation"), session.client("rds")
    stacks = existing_stacks(cloudformation, config)
    if not stacks:
        print("no stack of the platform is there: nothing to destroy")
    kept = retained_resources(cloudformation, stacks)
    kept += made_outside_the_stacks(session, config, stacks)
    database_stack = f"{config.name}-database"
    database = (
        stack_outputs(cloudformation, database_stack).get("DatabaseInstance")
        if database_stack in stacks
        else None
    )
    if purge_kept and not (
        yes
        or ask(
            "--purge also removes what destroy keeps (the data buckets with every object, the "
            "image repository, the snapshots, the release history; keys are scheduled for "
            "deletion). Nothing of it can be recovered. Go on?"
        )
    ):
        raise DeployError("nothing was deleted: --purge was not confirmed")
    if database:
        snapshot = lift_deletion_protection(rds, database, yes=yes, ask=ask)
        kept += [snapshot] if snapshot else []
    if stacks:
        run([*CDK_CLI, "destroy", "--all", "--force", "--app", f"{sys.executable} -m infra.app"])
    if database:
        named = {k.name for k in kept}
        kept += [
            Kept("AWS::RDS::DBSnapshot", s["DBSnapshotIdentifier"], "the database's final snapshot")
            for s in rds.describe_db_snapshots(DBInstanceIdentifier=database)["DBSnapshots"]
            if s["DBSnapshotIdentifier"] not in named
        ]
    if purge_kept:
        kept = purge(session, kept)
    if kept:
        print("left in the account (`python -m infra.deploy destroy --purge` removes them):")
        for item in kept:
            print(f"  {item}")
    return kept


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


COMMANDS = (
    "deploy",
    "status",
    "release",
    "rollback",
    "releases",
    "preflight",
    "spark",
    "mlflow-ui",
    "destroy",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m infra.deploy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument(
        "pipeline_args",
        nargs=argparse.REMAINDER,
        help="with `spark`: a `python -m pipelines` command to run on EMR, e.g. batch-predict --month 2013-12",
    )
    parser.add_argument(
        "--app-python",
        default=str(ROOT / ".venv" / "bin" / "python"),
        help="the platform's Python (lands the example data; builds the Bento); default: .venv/bin/python",
    )
    parser.add_argument(
        "--no-land",
        action="store_true",
        help="deploy without landing the use case's example data (you bring your own drops)",
    )
    parser.add_argument(
        "--local-port", type=int, default=5000, help="with `mlflow-ui`: the laptop's port"
    )
    parser.add_argument(
        "--yes",
        action="store_true",
        help="with `destroy`: answer yes (snapshot the database and lift its deletion protection)",
    )
    parser.add_argument(
        "--purge",
        action="store_true",
        help="with `destroy`: also remove what it keeps (buckets, images, snapshots, keys)",
    )
    parser.add_argument(
        "--handoff-file",
        help="with `release`: the chain run's handoff (s3://...), as the state machine passes it",
    )
    return parser


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; options may follow any command but `spark` (whose remaining
    arguments are the `python -m pipelines` command to run)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "spark" and args.pipeline_args:
        args = parser.parse_args([*args.pipeline_args, args.command])
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    import boto3

    session = boto3.session.Session()
    config = infra_config()
    try:
        if args.command == "preflight":
            print(f"credentials: {check_credentials(session)}")
            check_tools()
            check_docker_daemon(run_command)
            print("ready to deploy")
        elif args.command == "deploy":
            deploy(session, config, app_python=args.app_python, land=not args.no_land)
        elif args.command == "release":
            if not args.handoff_file:
                raise DeployError(
                    "release needs --handoff-file s3://<lake>/runs/<run>/handoff.json"
                )
            release(session, config, args.handoff_file, app_python=sys.executable)
        elif args.command == "status":
            check_credentials(session)
            runs = status(session, config)
            if not runs:
                print("the chain has not run yet")
            for chain_run in runs:
                where = f"  failed at {chain_run.failed_at}" if chain_run.failed_at else ""
                print(
                    f"{chain_run.started:<26} {chain_run.status:<10} {chain_run.stopped:<26} "
                    f"{chain_run.name}{where}"
                )
        elif args.command == "mlflow-ui":
            check_credentials(session)
            missing = [t for t in ("aws", "session-manager-plugin") if shutil.which(t) is None]
            command = mlflow_tunnel(session, config, args.local_port)
            if missing:
                raise DeployError(
                    f"missing {' and '.join(missing)} (the AWS CLI and its Session Manager "
                    f"plugin); with them, this forwards the UI:\n  {' '.join(command)}"
                )
            print(f"MLflow at http://127.0.0.1:{args.local_port} while this runs (Ctrl-C ends it)")
            subprocess.run(command, check=False)
        elif args.command == "destroy":
            destroy(session, config, yes=args.yes, purge_kept=args.purge)
        elif args.command == "spark":
            check_credentials(session)
            if not args.pipeline_args:
                raise DeployError(
                    "say which command to run, e.g. `spark batch-predict --month 2013-12`"
                )
            run_on_emr(session, config, [args.pipeline_args])
        elif args.command == "rollback":
            check_credentials(session)
            rollback(session, config)
        else:
            check_credentials(session)
            for r in read_releases(session.client("ssm"), config):
                print(
                    f"{r.deployed_at}  {r.kind:<8}  {r.image_tag}  v{r.model_version or '?'}  {r.bento}"
                )
    except DeployError as err:
        print(f"{args.command} stopped: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
