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

from configs import handoff
from infra import deploy
from infra.config import infra_config
from tests.infra.conftest import BENTO, STACK, USECASE_ENVIRON
from tests.infra.moto_templates import for_moto

ORDER = (
    "data",
    "network",
    "database",
    "mlflow",
    "feature-store",
    "spark",
    "serving",
    "chain",
    "delivery",
)
BOOTSTRAP_VERSION = "/cdk-bootstrap/hnb659fds/version"  # what `cdk bootstrap` leaves in SSM
MOTO_RELEASE_LABEL = "emr-7.9.0"
# The first monthly drop of the platform's use case, as `land` puts it: (table, file).
FIRST_DROP = ("meter_readings", "2024-01.csv")


def create_stacks(session: Any, synthesized, templates) -> dict[str, list[str]]:
    """Every synthesized stack, in dependency order, through moto's CloudFormation."""
    stacks, _ = synthesized
    session.client("ssm").put_parameter(
        Name=BOOTSTRAP_VERSION, Value="30", Type="String", Overwrite=True
    )
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
    literals = {
        ("Application", "ApplicationId"): application["applicationId"],
        ("Application", "Arn"): application["arn"],
    }
    stood_in = {}
    for concern in ORDER:
        body, replaced = for_moto(templates[concern], literals, stacks[concern].stack_name)
        cloudformation.create_stack(
            StackName=stacks[concern].stack_name,
            TemplateBody=json.dumps(body),
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
        )
        stood_in[concern] = replaced
    return stood_in


def serving_service(session: Any) -> dict[str, Any]:
    ecs = session.client("ecs")
    outputs = deploy.stack_outputs(session.client("cloudformation"), f"{STACK}-serving")
    (service,) = ecs.describe_services(
        cluster=outputs["ClusterName"], services=[outputs["ServiceName"]]
    )["services"]
    return service


def test_the_synthesized_stacks_create_through_cloudformation(aws, synthesized, templates) -> None:
    stood_in = create_stacks(aws, synthesized, templates)
    cloudformation = aws.client("cloudformation")
    for concern in ORDER:
        (stack,) = cloudformation.describe_stacks(StackName=f"{STACK}-{concern}")["Stacks"]
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
    """Stands in for the commands deploy and release run: the Docker build of the Spark code
    writes its files, `land` puts a drop in the landing bucket (once, as the stage never
    overwrites), `package` writes the Bento's tag into its handoff file as the stage does."""

    def __init__(self, bento: str = f"{BENTO}:first1", s3: Any = None) -> None:
        self.bento = bento
        self.s3 = s3
        self.commands: list[list[str]] = []

    def __call__(self, command: Sequence[str], input_text: str | None = None) -> str:
        command = list(command)
        self.commands.append(command)
        if command[:2] == ["docker", "build"]:
            destination = Path(command[command.index("-o") + 1].split("dest=", 1)[1])
            for name in ("run_pipelines.py", "pipelines-venv.tar.gz"):
                (destination / name).write_bytes(b"built")
        if command[-1] == "land" and self.s3 is not None:
            bucket = next(a for a in command if a.startswith("MLOPS_LANDING_BUCKET=")).split("=")[1]
            key = f"landing/{FIRST_DROP[0]}/{FIRST_DROP[1]}"
            if "Contents" not in self.s3.list_objects_v2(Bucket=bucket, Prefix=key):
                self.s3.put_object(Bucket=bucket, Key=key, Body=b"year,month\n2024,1\n")
        if command[-1] == "package":
            handed = Path(command[command.index("--handoff-file") + 1])
            values = json.loads(handed.read_text() or "{}")
            # as the stage hands it off: the Bento's version is the start of its digest
            version = self.bento.split(":", 1)[1]
            values |= {
                handoff.BENTO_TAG_KEY: self.bento,
                handoff.DIGEST_LABEL: f"{version:0<64}",
                handoff.COMMIT_LABEL: f"commit-of-{version}",
            }
            handed.write_text(json.dumps(values))
            return "package ok\n"
        return ""


def which_all(name: str) -> str:
    return f"/usr/bin/{name}"


def _lake(session: Any, stack: str = STACK) -> str:
    return deploy.stack_outputs(session.client("cloudformation"), f"{stack}-data")["LakeBucket"]


def _runs(session: Any) -> list[dict[str, Any]]:
    machine = deploy.state_machine_arn(
        session.client("cloudformation"), infra_config(environ=USECASE_ENVIRON)
    )
    return list(
        session.client("stepfunctions").list_executions(stateMachineArn=machine)["executions"]
    )


def test_deploy_uploads_the_code_lands_the_example_data_and_starts_the_chain(
    aws, synthesized, templates
) -> None:
    create_stacks(aws, synthesized, templates)
    config = infra_config(environ=USECASE_ENVIRON)
    run = Recorder(s3=aws.client("s3"))
    deployed = deploy.deploy(aws, config, app_python="/venv/bin/python", run=run, which=which_all)

    flat = [" ".join(c) for c in run.commands]
    assert any("aws-cdk@2 deploy --all" in c for c in flat)
    # nothing is packaged or pushed from the laptop: the champion is AWS's, released in AWS
    assert not [
        c for c in flat if c.endswith(" package") or "containerize" in c or "docker push" in c
    ]
    lake = _lake(aws)
    keys = {o["Key"] for o in aws.client("s3").list_objects_v2(Bucket=lake)["Contents"]}
    assert {"code/run_pipelines.py", "code/pipelines-venv.tar.gz", "code/source.zip"} <= keys
    assert len(deployed.uploaded) == 3
    # the example drops went to the landing zone through the platform's own land stage
    (land,) = [c for c in run.commands if c[-1] == "land"]
    assert land[-6:] == ["/venv/bin/python", "-m", "pipelines", "--env", "aws", "land"]
    assert [d.rsplit("/", 2)[-2:] for d in deployed.landed] == [list(FIRST_DROP)]
    # and the chain's first run started
    (started,) = _runs(aws)
    assert deployed.run == started["executionArn"]


def test_a_second_deploy_with_nothing_changed_changes_nothing(aws, synthesized, templates) -> None:
    create_stacks(aws, synthesized, templates)
    config = infra_config(environ=USECASE_ENVIRON)
    s3 = aws.client("s3")
    deploy.deploy(aws, config, app_python="python", run=Recorder(s3=s3), which=which_all)
    lake = _lake(aws)
    versions_before = s3.list_object_versions(Bucket=lake)["Versions"]
    stacks_before = aws.client("cloudformation").describe_stacks()["Stacks"]

    again = deploy.deploy(aws, config, app_python="python", run=Recorder(s3=s3), which=which_all)

    assert (again.uploaded, again.landed, again.run) == ([], [], None)
    assert s3.list_object_versions(Bucket=lake)["Versions"] == versions_before
    assert len(_runs(aws)) == 1
    stacks_after = aws.client("cloudformation").describe_stacks()["Stacks"]
    assert [s.get("LastUpdatedTime") for s in stacks_after] == [
        s.get("LastUpdatedTime") for s in stacks_before
    ]


def test_deploy_without_example_data_lands_nothing_and_says_where_drops_go(
    aws, synthesized, templates, capsys
) -> None:
    create_stacks(aws, synthesized, templates)
    run = Recorder(s3=aws.client("s3"))
    deployed = deploy.deploy(
        aws,
        infra_config(environ=USECASE_ENVIRON),
        app_python="python",
        land=False,
        run=run,
        which=which_all,
    )
    assert deployed.landed == [] and not [c for c in run.commands if c[-1] == "land"]
    landing = deploy.stack_outputs(aws.client("cloudformation"), f"{STACK}-data")["LandingBucket"]
    assert f"put your drops under s3://{landing}/" in capsys.readouterr().out


def _handoff(session: Any, run: str, champion: str, stack: str = STACK) -> str:
    lake = _lake(session, stack)
    key = f"runs/{run}/handoff.json"
    body = {"model_version": champion, "decided_version": champion, "champion_version": champion}
    session.client("s3").put_object(Bucket=lake, Key=key, Body=json.dumps(body).encode())
    return f"s3://{lake}/{key}"


def test_release_packages_the_aws_champion_pushes_rolls_records_and_smokes(
    aws, synthesized, templates
) -> None:
    create_stacks(aws, synthesized, templates)
    config = infra_config(environ=USECASE_ENVIRON)
    run = Pusher(f"{BENTO}:first1", aws.client("ecr"))
    release = deploy.release(aws, config, _handoff(aws, "run-1", "3"), app_python="py", run=run)

    assert (release.image_tag, release.model_version) == ("first1", "3")
    cloudformation = aws.client("cloudformation")
    assert deploy.current_image_tag(cloudformation, f"{STACK}-serving") == "first1"
    assert [
        (r.image_tag, r.model_version) for r in deploy.read_releases(aws.client("ssm"), config)
    ] == [("first1", "3")]
    flat = [" ".join(c) for c in run.commands]
    # the champion of the aws profile (not the laptop's), with the run's handoff
    (package,) = [c for c in run.commands if c[-1] == "package"]
    assert package[:4] == ["py", "-m", "pipelines", "--env"] and package[4] == "aws"
    assert any(f"bentoml containerize {BENTO}:first1" in c for c in flat)
    outputs = deploy.stack_outputs(cloudformation, f"{STACK}-serving")
    assert f"docker push {outputs['RepositoryUri']}:first1" in flat
    # then the smoke request against the service's public URL, after the roll
    assert flat[-1] == f"py -m serving.smoke {outputs['Url']}"


def test_a_release_with_nothing_changed_does_nothing(aws, synthesized, templates) -> None:
    create_stacks(aws, synthesized, templates)
    config = infra_config(environ=USECASE_ENVIRON)
    deploy.release(
        aws, config, _handoff(aws, "run-1", "3"), run=Pusher("svc:first1", aws.client("ecr"))
    )
    cloudformation = aws.client("cloudformation")
    before = cloudformation.describe_stacks(StackName=f"{STACK}-serving")["Stacks"][0]

    # the same code and model package to the same Bento version (the digest of both)
    again = Pusher("svc:first1", aws.client("ecr"))
    release = deploy.release(aws, config, _handoff(aws, "run-2", "3"), run=again)

    assert release.image_tag == "first1"
    # packaged (which is how it knows), then not built, pushed, rolled or smoked again
    assert [c[-1] for c in again.commands] == ["package"]
    after = cloudformation.describe_stacks(StackName=f"{STACK}-serving")["Stacks"][0]
    assert after.get("LastUpdatedTime") == before.get("LastUpdatedTime")
    assert len(deploy.read_releases(aws.client("ssm"), config)) == 1


def test_a_code_only_change_is_released_with_the_same_model(aws, synthesized, templates) -> None:
    """The champion is unchanged, the code is not: package makes another Bento version, and
    the release pushes it, rolls the service, records it with its commit and smokes it."""
    create_stacks(aws, synthesized, templates)
    config = infra_config(environ=USECASE_ENVIRON)
    ecr = aws.client("ecr")
    deploy.release(aws, config, _handoff(aws, "run-1", "3"), run=Pusher("svc:first1", ecr))

    changed = Pusher("svc:second2", ecr)
    release = deploy.release(
        aws, config, _handoff(aws, "run-2", "3"), run=changed, reason="a request field renamed"
    )

    assert (release.image_tag, release.model_version) == ("second2", "3")
    cloudformation = aws.client("cloudformation")
    assert deploy.current_image_tag(cloudformation, f"{STACK}-serving") == "second2"
    flat = [" ".join(c) for c in changed.commands]
    assert any("docker push" in c and c.endswith(":second2") for c in flat)
    assert "serving.smoke" in flat[-1]
    history = deploy.read_releases(aws.client("ssm"), config)
    assert [(r.image_tag, r.model_version, r.commit) for r in history] == [
        ("first1", "3", "commit-of-first1"),
        ("second2", "3", "commit-of-second2"),
    ]
    assert history[-1].digest.startswith("second2")
    assert history[-1].reason == "a request field renamed"
    # who: the identity that made the calls (moto's default user here)
    assert history[-1].by.startswith("arn:aws:")
    assert deploy.serving_line(aws, config).startswith(
        "serving: svc:second2, model v3, commit commit-of-se, digest second2000000000, since "
    )
    listed = deploy.release_lines(history)
    assert "model v3  commit commit-of-se" in listed[-1] and "a request field renamed" in listed[-1]


def test_a_release_without_the_run_s_handoff_stops_with_what_is_missing(
    aws, synthesized, templates
) -> None:
    create_stacks(aws, synthesized, templates)
    missing = f"s3://{_lake(aws)}/runs/never/handoff.json"
    with pytest.raises(
        deploy.DeployError, match=r"no handoff at s3://.*did the chain's stages run"
    ):
        deploy.release(aws, infra_config(environ=USECASE_ENVIRON), missing, run=Recorder())


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


def test_rollback_restores_the_previous_image(aws, synthesized, templates) -> None:
    create_stacks(aws, synthesized, templates)
    config = infra_config(environ=USECASE_ENVIRON)
    for run, (bento, champion) in enumerate((("svc:first1", "1"), ("svc:second2", "2"))):
        handed = _handoff(aws, f"run-{run}", champion)
        deploy.release(aws, config, handed, run=Pusher(bento, aws.client("ecr")))
    cloudformation = aws.client("cloudformation")
    assert deploy.current_image_tag(cloudformation, f"{STACK}-serving") == "second2"

    release = deploy.rollback(aws, config)
    assert (release.image_tag, release.kind, release.model_version) == ("first1", "rollback", "1")
    assert deploy.current_image_tag(cloudformation, f"{STACK}-serving") == "first1"
    history = deploy.read_releases(aws.client("ssm"), config)
    assert [(r.image_tag, r.kind) for r in history] == [
        ("first1", "deploy"),
        ("second2", "deploy"),
        ("first1", "rollback"),
    ]
    # nothing before the first release: a clear refusal, the service untouched
    with pytest.raises(deploy.DeployError, match="nothing to roll back to"):
        deploy.rollback(aws, config)
    assert deploy.current_image_tag(cloudformation, f"{STACK}-serving") == "first1"


def test_status_lists_the_last_runs_and_the_stage_a_failed_one_stopped_at(
    aws, synthesized, templates
) -> None:
    create_stacks(aws, synthesized, templates)
    config = infra_config(environ=USECASE_ENVIRON)
    machine = deploy.state_machine_arn(aws.client("cloudformation"), config)
    aws.client("stepfunctions").start_execution(stateMachineArn=machine, name="run-1")
    (only,) = deploy.status(aws, config)
    assert (only.name, only.status, only.failed_at) == ("run-1", "RUNNING", "")

    class History:
        """A failed run's history, newest first: the stage, its notify step, the fail step."""

        def get_execution_history(self, **kwargs: Any) -> dict[str, Any]:
            names = ["Failed", "Notify fit failed", "fit", "features"]
            return {"events": [{"stateEnteredEventDetails": {"name": n}} for n in names]}

    from infra.deploy.status import _failed_step

    assert _failed_step(History(), "arn") == "fit"


def test_wait_returns_once_the_newest_run_ended(aws, synthesized, templates) -> None:
    """`make wait` (the pipeline's staging job): polls the newest run until it is no longer
    running, and says how it ended; with no run at all, says so."""
    create_stacks(aws, synthesized, templates)
    config = infra_config(environ=USECASE_ENVIRON)
    with pytest.raises(deploy.DeployError, match="no run to wait for"):
        deploy.wait_for_run(aws, config, sleep=lambda _: None)
    stepfunctions = aws.client("stepfunctions")
    machine = deploy.state_machine_arn(aws.client("cloudformation"), config)
    run = stepfunctions.start_execution(stateMachineArn=machine, name="run-1")["executionArn"]
    polls: list[float] = []

    def sleep(seconds: float) -> None:  # the run ends while the pipeline waits
        polls.append(seconds)
        stepfunctions.stop_execution(executionArn=run, cause="a stand-in for the run's end")

    ended = deploy.wait_for_run(aws, config, poll_s=7, sleep=sleep)
    assert (ended.name, ended.status, polls) == ("run-1", "ABORTED", [7])


def test_batch_predict_runs_on_emr_with_the_same_entry_point(aws, synthesized, templates) -> None:
    create_stacks(aws, synthesized, templates)
    config = infra_config(environ=USECASE_ENVIRON)
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
            {"MLOPS_ENV": "aws", "MLOPS_LAKE_BUCKET": "lake"},
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


def test_the_mlflow_ui_is_forwarded_through_a_running_task(aws, synthesized, templates) -> None:
    """No bastion and nothing public: SSM port forwarding through an MLflow task (ECS Exec
    is on for its service) to the internal load balancer."""
    create_stacks(aws, synthesized, templates)
    config = infra_config(environ=USECASE_ENVIRON)
    outputs = deploy.stack_outputs(aws.client("cloudformation"), f"{STACK}-mlflow")

    class Ecs:
        def __init__(self, running: list[str]) -> None:
            self.running = running

        def list_tasks(self, **kwargs: Any) -> dict[str, Any]:
            assert kwargs["serviceName"] == outputs["ServiceName"]
            return {"taskArns": self.running}

        def describe_tasks(self, **kwargs: Any) -> dict[str, Any]:
            containers = [{"name": "mlflow", "runtimeId": "abc123-456"}]
            return {"tasks": [{"taskArn": self.running[0], "containers": containers}]}

    class Session:
        region_name = aws.region_name

        def __init__(self, running: list[str]) -> None:
            self.ecs = Ecs(running)

        def client(self, name: str) -> Any:
            return self.ecs if name == "ecs" else aws.client(name)

    task = "arn:aws:ecs:eu-west-1:123456789012:task/cluster/0f1e2d3c"
    command = deploy.mlflow_tunnel(Session([task]), config, local_port=5050)
    assert command[:3] == ["aws", "ssm", "start-session"]
    assert command[command.index("--target") + 1] == (
        f"ecs:{outputs['ClusterName']}_0f1e2d3c_abc123-456"
    )
    assert command[command.index("--document-name") + 1] == deploy.PORT_FORWARDING
    parameters = json.loads(command[command.index("--parameters") + 1])
    host = outputs["TrackingUri"].split("://", 1)[1]
    assert parameters == {"host": [host], "portNumber": ["80"], "localPortNumber": ["5050"]}
    with pytest.raises(deploy.DeployError, match="no MLflow task is running"):
        deploy.mlflow_tunnel(Session([]), config)
    # and the service lets ECS Exec in
    (service,) = [
        r for r in templates["mlflow"]["Resources"].values() if r["Type"] == "AWS::ECS::Service"
    ]
    assert service["Properties"]["EnableExecuteCommand"] is True
