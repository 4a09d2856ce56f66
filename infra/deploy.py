"""`make deploy ENV=aws` and `make rollback ENV=aws`: put the platform on AWS, or step back.

    python -m infra.deploy deploy     # stacks, image, roll the service, Spark jobs on EMR
    python -m infra.deploy rollback   # the previous image (and so the previous model)
    python -m infra.deploy releases   # what was deployed, newest last

Deploy: check credentials, Docker and the CDK CLI first and stop at once, saying what is
missing; `cdk deploy` the stacks; build the Bento of the champion and containerize it; push it
to the serving repository under the Bento's version; roll the serving stack to that tag (its
`ImageTag` parameter, so CloudFormation stays the owner of the service); record the release in
SSM Parameter Store; run the collect and features jobs on EMR Serverless.

Rollback: roll the serving stack back to the tag of the release before the current one. The
Bento pins the model version it serves, so the previous image is the previous model; the
registry's `champion` alias is moved with `python -m pipelines rollback` from inside the VPC.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from configs import handoff
from configs.chain import SPARK_STAGES
from configs.settings import AwsConfig
from infra.config import (
    IMAGE_PLATFORM,
    IMAGE_TAG_PARAMETER,
    NO_IMAGE,
    STACK_CONCERNS,
    infra_config,
)

ROOT = Path(__file__).resolve().parents[1]
CDK_CLI = ["npx", "--yes", "aws-cdk@2"]
# The chain's Spark stages, from its declaration (the same entry points as locally).
SPARK_JOBS = SPARK_STAGES
JOB_POLL_S = 15
# The packed virtualenv (infra/images/emr/Dockerfile) and where each Spark process unpacks it:
# the Dockerfile packs it with `--python-prefix /home/hadoop/<ARCHIVE_ALIAS>` to match.
VENV_ARCHIVE = "pipelines-venv.tar.gz"
ARCHIVE_ALIAS = "environment"


class DeployError(RuntimeError):
    """Deploying cannot go on; the message says what is missing or what failed."""


@dataclass(frozen=True)
class Release:
    image_tag: str
    bento: str
    deployed_at: str
    kind: str = "deploy"  # deploy | rollback


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
    return [Release(**entry) for entry in json.loads(value)]


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
    cloudformation: Any, ecs: Any, stack: str, image_tag: str, *, wait: bool = True
) -> None:
    """Point the serving stack at `image_tag` and wait until the service is stable."""
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
    roll_service(cloudformation, ecs, stack, previous.image_tag, wait=wait)
    release = Release(previous.image_tag, previous.bento, _now(), kind="rollback")
    record_release(ssm, config, release)
    return release


# -- Spark on EMR Serverless ----------------------------------------------------------------
def spark_job_driver(
    lake_bucket: str, command: Sequence[str], environment: dict[str, str]
) -> dict[str, Any]:
    """spark-submit of the same entry point as local: `python -m pipelines <command>`, with the
    aws profile's endpoints (and the ARNs of its secrets) in the driver's environment."""
    code = f"s3://{lake_bucket}/code"
    python = f"./{ARCHIVE_ALIAS}/bin/python"  # the archive's own Python 3.11
    driver_env = [
        f"--conf spark.emr-serverless.driverEnv.{name}={value}"
        for name, value in sorted(environment.items())
    ]
    return {
        "sparkSubmit": {
            "entryPoint": f"{code}/run_pipelines.py",
            "entryPointArguments": ["--env", "aws", *command],
            "sparkSubmitParameters": " ".join(
                [
                    f"--conf spark.archives={code}/{VENV_ARCHIVE}#{ARCHIVE_ALIAS}",
                    f"--conf spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON={python}",
                    f"--conf spark.emr-serverless.driverEnv.PYSPARK_PYTHON={python}",
                    f"--conf spark.executorEnv.PYSPARK_PYTHON={python}",
                    *driver_env,
                ]
            ),
        }
    }


def job_environment(cloudformation: Any, config: AwsConfig) -> dict[str, str]:
    """What the aws profile reads from the environment, from the stacks' outputs."""
    data = stack_outputs(cloudformation, f"{config.name}-data")
    store = stack_outputs(cloudformation, f"{config.name}-feature-store")
    mlflow = stack_outputs(cloudformation, f"{config.name}-mlflow")
    return {
        "MLOPS_ENV": "aws",
        "MLOPS_LANDING_BUCKET": data["LandingBucket"],
        "MLOPS_LAKE_BUCKET": data["LakeBucket"],
        "MLOPS_REDIS_ENDPOINT": store["RedisEndpoint"],
        "MLOPS_REDIS_AUTH_TOKEN_SECRET_ARN": store["RedisAuthTokenSecret"],
        "MLFLOW_TRACKING_URI": mlflow["TrackingUri"],
        "MLFLOW_TRACKING_USERNAME": "admin",
        "MLFLOW_TRACKING_PASSWORD_SECRET_ARN": mlflow["AdminPasswordSecret"],
    }


def upload_spark_code(s3: Any, lake_bucket: str, run: Run, workdir: Path) -> list[str]:
    """Build the entry point and packed virtualenv (Docker, Amazon Linux) and upload them."""
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
    keys = []
    for name in ("run_pipelines.py", VENV_ARCHIVE):
        key = f"code/{name}"
        s3.upload_file(str(workdir / name), lake_bucket, key)
        keys.append(f"s3://{lake_bucket}/{key}")
    return keys


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
            name=f"pipelines-{command[0]}",
            jobDriver=spark_job_driver(lake_bucket, command, environment),
            configurationOverrides={
                "monitoringConfiguration": {
                    "s3MonitoringConfiguration": {"logUri": f"s3://{lake_bucket}/emr-logs/"}
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
                f"the {label} job ended {state}: see s3://{lake_bucket}/emr-logs/ "
                f"(job run {started['jobRunId']})"
            )
    return states


# -- the whole deploy ----------------------------------------------------------------------
def deploy(
    session: Any,
    config: AwsConfig,
    *,
    app_python: str,
    package_env: str = "local",
    run: Run = run_command,
    which: Callable[[str], str | None] = shutil.which,
    wait: bool = True,
) -> Release:
    identity = check_credentials(session)
    check_tools(which)
    check_docker_daemon(run)
    print(f"deploying {config.name} to {session.region_name} as {identity}")
    infra_python = sys.executable
    cloudformation, ecs, ssm = (session.client(n) for n in ("cloudformation", "ecs", "ssm"))
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
    serving = stack_outputs(cloudformation, f"{config.name}-serving")
    bento, image_tag = push_serving_image(
        session.client("ecr"), run, app_python, package_env, serving["RepositoryUri"]
    )
    stack = f"{config.name}-serving"
    release = Release(image_tag, bento, _now())
    if current_image_tag(cloudformation, stack) == image_tag:
        # Deployed again with the same model: nothing to roll, nothing new to record.
        print(f"{stack} already serves {image_tag}")
    else:
        roll_service(cloudformation, ecs, stack, image_tag, wait=wait)
        record_release(ssm, config, release)
    lake_bucket = stack_outputs(cloudformation, f"{config.name}-data")["LakeBucket"]
    with tempfile.TemporaryDirectory(prefix="emr-code-") as workdir:
        upload_spark_code(session.client("s3"), lake_bucket, run, Path(workdir))
    run_on_emr(session, config, [(job,) for job in SPARK_JOBS])
    print(f"serving {bento} at {serving['Url']}")
    return release


def push_serving_image(
    ecr: Any, run: Run, app_python: str, package_env: str, repository_uri: str
) -> tuple[str, str]:
    """Build the champion's Bento (the platform's venv, where the registry is), containerize
    it and push it under the Bento's version. Returns (Bento tag, image tag)."""
    with tempfile.TemporaryDirectory(prefix="package-") as tmp:
        handed = Path(tmp) / "handoff.json"
        run(
            [
                app_python,
                "-m",
                "pipelines",
                "--env",
                package_env,
                "--handoff-file",
                str(handed),
                "package",
            ]
        )
        bento = bento_tag(handed)
    image_tag = bento.split(":", 1)[1]
    image = f"{repository_uri}:{image_tag}"
    if image_exists(ecr, repository_uri, image_tag):
        # Tags are immutable: the same Bento is pushed once, and a second deploy reuses it.
        print(f"{image} is already in the repository")
        return bento, image_tag
    # Fargate runs x86_64: an arm64 laptop must not build an arm64 image.
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
    return bento, image_tag


def image_exists(ecr: Any, repository_uri: str, tag: str) -> bool:
    """Whether the repository at `repository_uri` holds an image tagged `tag`."""
    repository = repository_uri.split("/", 1)[1]
    try:
        ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
    except ecr.exceptions.ImageNotFoundException:
        return False
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


def run_on_emr(
    session: Any, config: AwsConfig, commands: Sequence[Sequence[str]]
) -> dict[str, str]:
    """`python -m pipelines` commands as EMR Serverless jobs, in order (the deployed code)."""
    cloudformation = session.client("cloudformation")
    spark = stack_outputs(cloudformation, f"{config.name}-spark")
    environment = job_environment(cloudformation, config)
    return run_spark_jobs(
        session.client("emr-serverless"),
        spark["ApplicationId"],
        spark["JobRoleArn"],
        environment["MLOPS_LAKE_BUCKET"],
        environment,
        commands,
    )


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.deploy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["deploy", "rollback", "releases", "preflight", "spark"])
    parser.add_argument(
        "pipeline_args",
        nargs=argparse.REMAINDER,
        help="with `spark`: a `python -m pipelines` command to run on EMR, e.g. batch-predict --month 2013-12",
    )
    parser.add_argument(
        "--app-python",
        default=str(ROOT / ".venv" / "bin" / "python"),
        help="the platform's Python (builds the Bento); default: .venv/bin/python",
    )
    parser.add_argument(
        "--package-env",
        default=os.environ.get("MLOPS_PACKAGE_ENV", "local"),
        help="profile whose champion is packaged (where its registry is reachable); default: local",
    )
    args = parser.parse_args(argv)
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
            deploy(session, config, app_python=args.app_python, package_env=args.package_env)
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
            for release in read_releases(session.client("ssm"), config):
                print(
                    f"{release.deployed_at}  {release.kind:<8}  {release.image_tag}  {release.bento}"
                )
    except DeployError as err:
        print(f"{args.command} stopped: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
