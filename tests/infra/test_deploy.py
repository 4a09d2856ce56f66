"""The deploy and rollback logic (boto3) against moto, over the synthesized stacks created
through moto's CloudFormation; the commands it runs (CDK CLI, Docker, the Bento build) are
recorded instead of run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from infra import deploy
from infra.config import infra_config
from tests.infra.moto_templates import for_moto

ORDER = ("data", "network", "mlflow", "feature-store", "spark", "serving")
BOOTSTRAP_VERSION = "/cdk-bootstrap/hnb659fds/version"  # what `cdk bootstrap` leaves in SSM
MOTO_RELEASE_LABEL = "emr-7.9.0"


def create_stacks(session: Any, synthesized, templates) -> dict[str, list[str]]:
    """Every synthesized stack, in dependency order, through moto's CloudFormation."""
    stacks, _ = synthesized
    session.client("ssm").put_parameter(Name=BOOTSTRAP_VERSION, Value="30", Type="String")
    cloudformation = session.client("cloudformation")
    # moto models EMR Serverless in its API, not in CloudFormation: made through the API, as
    # the template describes it, and its id given to the stand-in.
    (spec,) = [
        r["Properties"]
        for r in templates["spark"]["Resources"].values()
        if r["Type"] == "AWS::EMRServerless::Application"
    ]
    # moto 5.2.5 accepts only `emr-X.Y.0` labels, not the AWS runtime for Apache Spark's
    # `emr-spark-8.0.0`: the application stands in on a label it knows (the template's own
    # label is checked in test_first_deploy.py).
    label = spec["ReleaseLabel"]
    application = session.client("emr-serverless").create_application(
        name=spec["Name"],
        releaseLabel=label if re.fullmatch(r"emr-\d\.\d{1,2}\.0", label) else MOTO_RELEASE_LABEL,
        type=spec["Type"],
    )
    literals = {("Application", "ApplicationId"): application["applicationId"]}
    stood_in = {}
    for concern in ORDER:
        body, replaced = for_moto(templates[concern], literals)
        cloudformation.create_stack(
            StackName=stacks[concern].stack_name,
            TemplateBody=json.dumps(body),
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
        )
        stood_in[concern] = replaced
    return stood_in


def serving_service(session: Any) -> dict[str, Any]:
    ecs = session.client("ecs")
    outputs = deploy.stack_outputs(session.client("cloudformation"), "flight-delay-serving")
    (service,) = ecs.describe_services(
        cluster=outputs["ClusterName"], services=[outputs["ServiceName"]]
    )["services"]
    return service


def test_the_synthesized_stacks_create_through_cloudformation(aws, synthesized, templates) -> None:
    stood_in = create_stacks(aws, synthesized, templates)
    cloudformation = aws.client("cloudformation")
    for concern in ORDER:
        (stack,) = cloudformation.describe_stacks(StackName=f"flight-delay-{concern}")["Stacks"]
        assert stack["StackStatus"] == "CREATE_COMPLETE", concern
        created = cloudformation.describe_stack_resources(StackName=stack["StackName"])
        assert len(created["StackResources"]) == len(templates[concern]["Resources"]), concern
    # what moto cannot model is named, not silently dropped
    assert set(stood_in["spark"]) == {"Application"}
    assert "Redis" in stood_in["feature-store"]
    buckets = {b["Name"] for b in aws.client("s3").list_buckets()["Buckets"]}
    assert len(buckets) == 3
    # the serving stack deploys before any model exists: a service with no task
    assert serving_service(aws)["desiredCount"] == 0


class Recorder:
    """Stands in for the commands deploy runs; answers `package` like the real stage."""

    def __init__(self, bento: str) -> None:
        self.bento = bento
        self.commands: list[list[str]] = []

    def __call__(self, command: Sequence[str], input_text: str | None = None) -> str:
        command = list(command)
        self.commands.append(command)
        if command[:2] == ["docker", "build"]:
            destination = Path(command[command.index("-o") + 1].split("dest=", 1)[1])
            for name in ("run_pipelines.py", "pipelines-venv.tar.gz"):
                (destination / name).write_bytes(b"built")
        if command[-1] == "package":
            # as the stage does: the Bento's tag in the handoff file, the summary for people
            handed = Path(command[command.index("--handoff-file") + 1])
            handed.write_text(json.dumps({"bento_tag": self.bento}))
            return "package ok\n"
        return ""


def which_all(name: str) -> str:
    return f"/usr/bin/{name}"


def test_deploy_rolls_the_service_records_the_release_and_runs_spark(
    aws, synthesized, templates
) -> None:
    create_stacks(aws, synthesized, templates)
    config = infra_config(environ={})
    run = Recorder("flight_delay_service:first1")
    release = deploy.deploy(aws, config, app_python="/venv/bin/python", run=run, which=which_all)

    assert release.image_tag == "first1"
    # The stack now runs the new tag. (moto applies the parameter but does not re-create the
    # task definition on an update; CloudFormation does: test_stacks shows the container's
    # image and the task count follow the ImageTag parameter.)
    assert (
        deploy.current_image_tag(aws.client("cloudformation"), "flight-delay-serving") == "first1"
    )
    assert [r.image_tag for r in deploy.read_releases(aws.client("ssm"), config)] == ["first1"]
    # the stacks, then the image built from the champion's Bento and pushed under its version
    flat = [" ".join(c) for c in run.commands]
    assert any("aws-cdk@2 deploy --all" in c for c in flat)
    assert any(
        " -m pipelines --env local --handoff-file " in c and c.endswith(" package") for c in flat
    )
    assert any("bentoml containerize flight_delay_service:first1" in c for c in flat)
    repository = deploy.stack_outputs(aws.client("cloudformation"), "flight-delay-serving")[
        "RepositoryUri"
    ]
    assert f"docker push {repository}:first1" in flat
    # the Spark code went to the lake bucket, and both jobs ran on the EMR application
    lake = next(
        b["Name"] for b in aws.client("s3").list_buckets()["Buckets"] if "lake" in b["Name"].lower()
    )
    keys = {o["Key"] for o in aws.client("s3").list_objects_v2(Bucket=lake)["Contents"]}
    assert {"code/run_pipelines.py", "code/pipelines-venv.tar.gz"} <= keys
    emr = aws.client("emr-serverless")
    (application,) = emr.list_applications()["applications"]
    runs = emr.list_job_runs(applicationId=application["id"])["jobRuns"]
    assert sorted(r["name"] for r in runs) == [
        "pipelines-collect",
        "pipelines-features",
        "pipelines-validate",
    ]
    (first, *_) = runs
    driver = emr.get_job_run(applicationId=application["id"], jobRunId=first["id"])["jobRun"][
        "jobDriver"
    ]["sparkSubmit"]
    assert driver["entryPointArguments"][:2] == ["--env", "aws"]
    parameters = driver["sparkSubmitParameters"]
    assert f"driverEnv.MLOPS_LAKE_BUCKET={lake}" in parameters
    assert "driverEnv.MLOPS_REDIS_AUTH_TOKEN_SECRET_ARN=" in parameters
    assert "MLOPS_REDIS_AUTH_TOKEN=" not in parameters  # a secret's ARN, never its value


class Pusher(Recorder):
    """A Recorder whose `docker push` lands the image in (moto's) ECR, as a real push does."""

    def __init__(self, bento: str, ecr: Any) -> None:
        super().__init__(bento)
        self.ecr = ecr

    def __call__(self, command: Sequence[str], input_text: str | None = None) -> str:
        if list(command[:2]) == ["docker", "push"]:
            repository_uri, tag = command[2].rsplit(":", 1)
            manifest = {
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"digest": f"sha256:{tag:0>64}"[:71], "size": 1},
                "layers": [],
            }
            self.ecr.put_image(
                repositoryName=repository_uri.split("/", 1)[1],
                imageManifest=json.dumps(manifest),
                imageManifestMediaType=manifest["mediaType"],
                imageTag=tag,
            )
        return super().__call__(command, input_text)


def test_a_second_deploy_with_nothing_changed_changes_nothing(aws, synthesized, templates) -> None:
    create_stacks(aws, synthesized, templates)
    config = infra_config(environ={})
    first = Pusher("flight_delay_service:same1", aws.client("ecr"))
    deploy.deploy(aws, config, app_python="python", run=first, which=which_all)
    cloudformation = aws.client("cloudformation")
    stack_before = cloudformation.describe_stacks(StackName="flight-delay-serving")["Stacks"][0]

    again = Pusher("flight_delay_service:same1", aws.client("ecr"))
    release = deploy.deploy(aws, config, app_python="python", run=again, which=which_all)

    assert release.image_tag == "same1"
    flat = [" ".join(c) for c in again.commands]
    # the immutable tag is not built or pushed twice, the service not rolled, no new release
    assert not [c for c in flat if " containerize " in c or c.startswith("docker push")], flat
    stack_after = cloudformation.describe_stacks(StackName="flight-delay-serving")["Stacks"][0]
    assert stack_after.get("LastUpdatedTime") == stack_before.get("LastUpdatedTime")
    assert [r.image_tag for r in deploy.read_releases(aws.client("ssm"), config)] == ["same1"]


def test_rollback_restores_the_previous_image(aws, synthesized, templates) -> None:
    create_stacks(aws, synthesized, templates)
    config = infra_config(environ={})
    for bento in ("flight_delay_service:first1", "flight_delay_service:second2"):
        deploy.deploy(aws, config, app_python="python", run=Recorder(bento), which=which_all)
    cloudformation = aws.client("cloudformation")
    assert deploy.current_image_tag(cloudformation, "flight-delay-serving") == "second2"

    release = deploy.rollback(aws, config)
    assert (release.image_tag, release.kind) == ("first1", "rollback")
    assert deploy.current_image_tag(cloudformation, "flight-delay-serving") == "first1"
    history = deploy.read_releases(aws.client("ssm"), config)
    assert [(r.image_tag, r.kind) for r in history] == [
        ("first1", "deploy"),
        ("second2", "deploy"),
        ("first1", "rollback"),
    ]
    # nothing before the first release: a clear refusal, the service untouched
    with pytest.raises(deploy.DeployError, match="nothing to roll back to"):
        deploy.rollback(aws, config)
    assert deploy.current_image_tag(cloudformation, "flight-delay-serving") == "first1"


def test_batch_predict_runs_on_emr_with_the_same_entry_point(aws, synthesized, templates) -> None:
    create_stacks(aws, synthesized, templates)
    config = infra_config(environ={})
    states = deploy.run_on_emr(aws, config, [["batch-predict", "--month", "2013-12"]])
    assert states == {"batch-predict --month 2013-12": "SUCCESS"}
    emr = aws.client("emr-serverless")
    (application,) = emr.list_applications()["applications"]
    (run,) = emr.list_job_runs(applicationId=application["id"])["jobRuns"]
    driver = emr.get_job_run(applicationId=application["id"], jobRunId=run["id"])["jobRun"][
        "jobDriver"
    ]["sparkSubmit"]
    assert driver["entryPointArguments"] == ["--env", "aws", "batch-predict", "--month", "2013-12"]


def test_a_failed_spark_job_stops_the_deploy_with_where_to_look(aws) -> None:
    emr = aws.client("emr-serverless")
    application = emr.create_application(name="a", releaseLabel=MOTO_RELEASE_LABEL, type="SPARK")

    class Failing:
        def __getattr__(self, name: str) -> Any:
            return getattr(emr, name)

        def get_job_run(self, **kwargs: Any) -> dict[str, Any]:
            return {"jobRun": {"state": "FAILED"}}

    with pytest.raises(
        deploy.DeployError, match=r"collect job ended FAILED: see s3://lake/emr-logs/"
    ):
        deploy.run_spark_jobs(
            Failing(),
            application["applicationId"],
            "arn:aws:iam::123456789012:role/r",
            "lake",
            {"MLOPS_LAKE_BUCKET": "lake"},
            [("collect",)],
            poll_s=0,
        )


def test_missing_tools_are_named_before_anything_runs() -> None:
    with pytest.raises(deploy.DeployError, match=r"Docker .*Node\.js"):
        deploy.check_tools(lambda name: None)


def test_make_deploy_without_credentials_stops_at_once_and_says_what_is_missing(tmp_path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AWS_") and key not in ("MLOPS_OVERRIDES",)
    }
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_REGION="eu-west-1",
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "infra.deploy", "deploy"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "no AWS credentials found" in done.stderr
    assert "AWS_PROFILE" in done.stderr


def test_the_emr_entry_point_reads_its_secrets_by_arn(aws, monkeypatch) -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "infra" / "images" / "emr" / "run_pipelines.py"
    spec = importlib.util.spec_from_file_location("run_pipelines", path)
    assert spec is not None and spec.loader is not None
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    arn = aws.client("secretsmanager").create_secret(Name="token", SecretString="s3cr3t")["ARN"]
    monkeypatch.setenv("MLOPS_REDIS_AUTH_TOKEN_SECRET_ARN", arn)
    monkeypatch.setenv("MLOPS_REDIS_AUTH_TOKEN", "not-read-yet")  # restored after the test
    entry.load_secrets()
    assert os.environ["MLOPS_REDIS_AUTH_TOKEN"] == "s3cr3t"
