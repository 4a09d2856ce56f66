"""What would stop a first `make deploy` on an empty account, one test per way it could fail.

Each test reads what the deploy really uses (the synthesized templates and the cloud
assembly's asset manifests, the Dockerfiles, the job driver) and would have failed on the
platform before its fix: an image that nothing builds, images built for the laptop's
architecture, a Spark runtime the code does not run on, a Python the workers do not have,
a serving task holding MLflow's admin password.
"""

from __future__ import annotations

import base64
import json
import re
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from configs import handoff
from configs.settings import AwsConfig
from infra import deploy, jobs
from infra.config import IMAGE_PLATFORM, infra_config
from tests.infra.conftest import STACK, USECASE_ENVIRON

ROOT = Path(__file__).resolve().parents[2]
EMR_DOCKERFILE = ROOT / "infra" / "images" / "emr" / "Dockerfile"


def _containers(templates: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{concern}/{name}", container)
        for concern, body in templates.items()
        for name, resource in body["Resources"].items()
        if resource["Type"] == "AWS::ECS::TaskDefinition"
        for container in resource["Properties"]["ContainerDefinitions"]
    ]


def _image_assets(outdir: Path) -> dict[str, dict[str, Any]]:
    """Every Docker image asset of the cloud assembly, by its content hash."""
    assets: dict[str, dict[str, Any]] = {}
    for manifest in outdir.glob("*.assets.json"):
        assets.update(json.loads(manifest.read_text()).get("dockerImages", {}))
    return assets


def test_every_image_a_task_runs_is_built_by_the_deploy(synthesized, templates) -> None:
    """An image is either a CDK image asset (built and pushed by `cdk deploy`, from a folder
    of infra/images, for linux/amd64) or the serving image, which the deploy builds from the
    champion's Bento and pushes under the tag the stack's ImageTag parameter names."""
    _, outdir = synthesized
    assets = _image_assets(outdir)
    containers = _containers(templates)
    assert len(containers) >= 2
    for where, container in containers:
        image = json.dumps(container["Image"])
        if where.startswith("serving/"):
            assert '{"Ref": "ImageTag"}' in image, where  # pushed by deploy.push_serving_image
            continue
        built = [h for h in assets if h in image]
        assert built, f"{where} runs {image}, which no asset of the deploy builds"
        (asset,) = (assets[h] for h in built)
        source = asset["source"]
        assert (outdir / source["directory"] / "Dockerfile").is_file(), where
        assert source.get("platform") == IMAGE_PLATFORM, f"{where}: built for {source}"


def test_tasks_run_on_the_architecture_the_images_are_built_for(templates) -> None:
    for concern in ("serving", "mlflow"):
        for resource in templates[concern]["Resources"].values():
            if resource["Type"] == "AWS::ECS::TaskDefinition":
                platform = resource["Properties"]["RuntimePlatform"]
                assert platform == {
                    "CpuArchitecture": "X86_64",
                    "OperatingSystemFamily": "LINUX",
                }, concern
    (application,) = (
        r
        for r in templates["spark"]["Resources"].values()
        if r["Type"] == "AWS::EMRServerless::Application"
    )
    assert application["Properties"]["Architecture"] == "X86_64"
    assert IMAGE_PLATFORM == "linux/amd64"


def test_the_deploy_builds_every_image_for_the_target_platform() -> None:
    commands: list[list[str]] = []

    def run(command: list[str], input_text: str | None = None) -> str:
        commands.append(list(command))
        if "--handoff-file" in command:  # what `python -m pipelines package` hands on
            handoff_file = Path(command[command.index("--handoff-file") + 1])
            handoff_file.write_text(json.dumps({handoff.BENTO_TAG_KEY: "svc:abc123"}))
        return ""

    deploy.build_spark_code(run, Path("/nonexistent"))
    deploy.push_serving_image(_Fake(), run, "python", "aws", "registry.example/serving")
    builds = [c for c in commands if "build" in c or "containerize" in c]
    assert len(builds) == 2, commands
    for build in builds:
        assert build[build.index("--platform") + 1] == IMAGE_PLATFORM, build


class _Fake:
    """S3 and ECR as far as the image steps use them (an empty repository)."""

    exceptions = SimpleNamespace(ImageNotFoundException=LookupError)

    def upload_file(self, *args: Any) -> None:
        pass

    def describe_images(self, **kwargs: Any) -> dict[str, Any]:
        raise LookupError("no such image")

    def get_authorization_token(self) -> dict[str, Any]:
        token = base64.b64encode(b"AWS:secret").decode()  # pragma: allowlist secret
        return {"authorizationData": [{"authorizationToken": token, "proxyEndpoint": "ecr"}]}


def test_the_emr_release_runs_the_spark_the_code_is_tested_on() -> None:
    config: AwsConfig = infra_config(environ=USECASE_ENVIRON)
    # The AWS runtime for Apache Spark 8.0.0 runs Spark 4.0.2 (EMR Serverless release notes);
    # emr-7.x runs Spark 3.5, which lacks APIs the code uses (Column.try_cast).
    releases = {"emr-spark-8.0.0": "4.0.2"}
    assert config.spark.release_label in releases, config.spark.release_label
    assert releases[config.spark.release_label] == config.spark.spark_version
    makefile = (ROOT / "Makefile").read_text()

    def rule(target: str) -> str:
        found = re.search(rf"^{re.escape(target)}:.*\n(?:\t.*\n)*", makefile, re.MULTILINE)
        assert found, f"no rule for {target} in the Makefile"
        return found.group(0)

    # `make test` runs the Spark tier on the EMR release's PySpark too.
    assert "test-emr-spark" in rule("test")


def test_the_spark_jobs_bring_the_project_s_python_with_them() -> None:
    """The workers' own Python is not 3.11: the packed venv carries a CPython of the project's
    minor version, its standard library, and is packed for where the job unpacks it."""
    dockerfile = EMR_DOCKERFILE.read_text()
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minor = re.search(r">=(\d+\.\d+)", requires).group(1)  # type: ignore[union-attr]
    version = re.search(r"ARG PYTHON_VERSION=(\d+\.\d+)\.\d+", dockerfile).group(1)  # type: ignore[union-attr]
    assert version == minor
    assert f"--platform={IMAGE_PLATFORM}" in dockerfile
    assert "venv --copies" in dockerfile
    assert f"cp -r /usr/local/lib/python{minor}/* /opt/venv/lib/python{minor}/" in dockerfile
    assert f"--python-prefix /home/hadoop/{jobs.ARCHIVE_ALIAS}" in dockerfile
    assert f"-o /{jobs.VENV_ARCHIVE}" in dockerfile
    # its dependencies from the hash-pinned lock, the lock in the build context
    assert f"--require-hashes --no-deps -r {jobs.RUNTIME_LOCK}" in dockerfile
    assert re.search(rf"^COPY .*\b{re.escape(jobs.RUNTIME_LOCK)}\b", dockerfile, re.M)
    # the lock's version of the Python it is resolved for is the one the image builds
    lock_python = re.search(r"--python-version (\S+)", (ROOT / "Makefile").read_text())
    assert lock_python and re.search(
        rf"ARG PYTHON_VERSION={lock_python.group(1)}$", dockerfile, re.M
    )
    # every package the platform installs is in the image's build context
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
    for pattern in packages:
        package = pattern.rstrip("*")
        if package != "infra":
            assert f"COPY {package} {package}" in dockerfile, package

    driver = deploy.spark_job_driver("lake", ["collect"], {"MLOPS_ENV": "aws"})["sparkSubmit"]
    parameters = driver["sparkSubmitParameters"]
    python = f"./{jobs.ARCHIVE_ALIAS}/bin/python"
    assert f"pipelines-venv.tar.gz#{jobs.ARCHIVE_ALIAS}" in parameters
    for setting in (
        "spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON",
        "spark.emr-serverless.driverEnv.PYSPARK_PYTHON",
        "spark.executorEnv.PYSPARK_PYTHON",
    ):
        assert f"{setting}={python}" in parameters, setting


def test_the_serving_task_holds_no_mlflow_credentials(templates) -> None:
    for resource in templates["serving"]["Resources"].values():
        if resource["Type"] != "AWS::ECS::TaskDefinition":
            continue
        for container in resource["Properties"]["ContainerDefinitions"]:
            names = [s["Name"] for s in container.get("Secrets", [])]
            names += [e["Name"] for e in container.get("Environment", [])]
            assert names, container
            assert not [n for n in names if "PASSWORD" in n or "USERNAME" in n], names


def test_no_retained_resource_has_a_fixed_name_a_second_attempt_would_collide_with(
    templates,
) -> None:
    """A failed first deploy rolls back but keeps what is retained (the image repository, the
    buckets): a fixed name would make the next attempt fail with "already exists"."""
    named = {
        "AWS::ECR::Repository": "RepositoryName",
        "AWS::S3::Bucket": "BucketName",
    }
    for concern, body in templates.items():
        for name, resource in body["Resources"].items():
            key = named.get(resource["Type"])
            if key and resource.get("DeletionPolicy") == "Retain":
                assert key not in resource["Properties"], f"{concern}/{name}"


def test_a_failed_cdk_deploy_reports_the_stacks_failing_events(aws) -> None:
    class FailingCdk:
        def __call__(self, command: list[str], input_text: str | None = None) -> str:
            if "deploy" in command and "--all" in command:
                raise deploy.DeployError("npx failed (1):\n... (the CDK's last lines)")
            return ""

    class Events:
        """CloudFormation's events of a first deploy whose MLflow service never stabilised."""

        def describe_stack_events(self, StackName: str) -> dict[str, Any]:
            if StackName != f"{STACK}-mlflow":
                raise RuntimeError("Stack does not exist")
            return {
                "StackEvents": [
                    {
                        "LogicalResourceId": "Service",
                        "ResourceStatus": "CREATE_FAILED",
                        "ResourceStatusReason": "ECS Deployment Circuit Breaker was triggered",
                    },
                    {"LogicalResourceId": "Cluster", "ResourceStatus": "CREATE_COMPLETE"},
                ]
            }

    class Session:
        region_name = "eu-west-1"

        def __getattr__(self, name: str) -> Any:
            return getattr(aws, name)

        def client(self, name: str) -> Any:
            return Events() if name == "cloudformation" else aws.client(name)

    config = infra_config(environ=USECASE_ENVIRON)
    with pytest.raises(deploy.DeployError) as failed:
        deploy.deploy(Session(), config, app_python="python", run=FailingCdk(), which=lambda n: n)
    message = str(failed.value)
    assert f"{STACK}-mlflow Service CREATE_FAILED: ECS Deployment Circuit Breaker" in message
    assert "Cluster" not in message


def test_lake_traffic_reaches_s3_through_a_gateway_endpoint_not_the_nat(templates) -> None:
    endpoints = [
        r["Properties"]
        for r in templates["network"]["Resources"].values()
        if r["Type"] == "AWS::EC2::VPCEndpoint"
    ]
    assert any(
        json.dumps(e["ServiceName"]).find(".s3") >= 0
        and e.get("VpcEndpointType", "Gateway") == "Gateway"
        for e in endpoints
    ), endpoints


def _listeners(body: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    resources = body["Resources"].values()
    listeners = {
        r["Properties"]["Port"]: r["Properties"]
        for r in resources
        if r["Type"] == "AWS::ElasticLoadBalancingV2::Listener"
    }
    rules = [
        r["Properties"]
        for r in resources
        if r["Type"] == "AWS::ElasticLoadBalancingV2::ListenerRule"
    ]
    return listeners, rules


def _forwarded_paths(rules: list[dict[str, Any]]) -> set[str]:
    return {
        path
        for rule in rules
        if any(a["Type"] == "forward" for a in rule["Actions"])
        for condition in rule["Conditions"]
        if condition["Field"] == "path-pattern"
        for path in condition.get("PathPatternConfig", {}).get(
            "Values", condition.get("Values", [])
        )
    }


def test_only_the_api_and_health_checks_are_public(templates) -> None:
    listeners, rules = _listeners(templates["serving"])
    (listener,) = listeners.values()
    (default,) = listener["DefaultActions"]
    assert default["Type"] == "fixed-response"
    assert default["FixedResponseConfig"]["StatusCode"] == "404"
    assert _forwarded_paths(rules) == {"/predict", "/predict_batch", "/livez", "/readyz"}


def test_with_a_certificate_http_only_redirects_to_https(tmp_path) -> None:
    from infra.app import build_app

    config = infra_config(
        environ={
            **USECASE_ENVIRON,
            "MLOPS_CERTIFICATE_ARN": "arn:aws:acm:eu-west-1:example:certificate/test",
        }
    )
    app, stacks = build_app(config, "eu-west-1", outdir=str(tmp_path))
    app.synth()
    body = json.loads((tmp_path / f"{stacks['serving'].stack_name}.template.json").read_text())
    listeners, rules = _listeners(body)
    assert sorted(listeners) == [80, 443]
    (redirect,) = listeners[80]["DefaultActions"]
    assert redirect["Type"] == "redirect"
    assert redirect["RedirectConfig"]["Protocol"] == "HTTPS"
    assert redirect["RedirectConfig"]["Port"] == "443"
    assert listeners[443]["Protocol"] == "HTTPS"
    assert _forwarded_paths(rules) == {"/predict", "/predict_batch", "/livez", "/readyz"}


def test_the_serving_image_can_read_the_aws_profile_s_feast_registry() -> None:
    """The registry of the aws profile is a file in S3, which Feast reads with boto3; the
    serving image installs serving/requirements.txt only (pinned as constraints.txt)."""
    from configs import load_settings

    environ = dict(USECASE_ENVIRON)
    environ |= {name: "x" for name in ("MLOPS_LAKE_BUCKET", "MLOPS_LANDING_BUCKET")}
    environ |= {
        "MLOPS_REDIS_ENDPOINT": "redis",
        "MLOPS_REDIS_AUTH_TOKEN": "t",
        "MLOPS_REDIS_USER": "u",
    }
    environ |= {"MLFLOW_TRACKING_URI": "http://mlflow"}
    registry = load_settings("aws", environ=environ).features.registry
    scheme = str(registry["path"]).split("://", 1)[0]
    # what Feast's registry store of each scheme imports (feast/infra/registry/<scheme>.py)
    needs = {"s3": {"boto3", "botocore"}, "gs": {"google-cloud-storage"}}[scheme]
    pins = _pins(ROOT / "serving" / "requirements.txt")
    assert needs <= set(pins), sorted(needs - set(pins))
    locked = _pins(ROOT / "constraints.txt")
    assert {name: pins[name] for name in pins if name in locked} == {
        name: locked[name] for name in pins if name in locked
    }


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[re.sub(r"\[.*\]", "", name).lower()] = version
    return pins


def test_a_failing_mlflow_service_cannot_take_the_database_down_with_it(templates) -> None:
    """A first deploy whose MLflow service never stabilises rolls the MLflow stack back. Were
    the protected database in that stack, the rollback could not delete it (ROLLBACK_FAILED,
    and the named instance in the way of the next attempt): it lives in a stack of its own,
    which needs nothing from the service's."""
    kinds = {
        concern: {r["Type"] for r in body["Resources"].values()}
        for concern, body in templates.items()
    }
    assert "AWS::RDS::DBInstance" in kinds["database"]
    assert "AWS::ECS::Service" not in kinds["database"]
    assert [c for c, k in kinds.items() if "AWS::RDS::DBInstance" in k] == ["database"]
    (instance,) = [
        r
        for r in templates["database"]["Resources"].values()
        if r["Type"] == "AWS::RDS::DBInstance"
    ]
    assert instance["Properties"]["DeletionProtection"] is True
    assert instance["DeletionPolicy"] == "Snapshot"
    imports = re.findall(r'"Fn::ImportValue": "([^"]+)"', json.dumps(templates["database"]))
    assert not [i for i in imports if i.startswith(f"{STACK}-mlflow:")], imports


def test_the_prediction_log_is_where_the_roles_may_write_it() -> None:
    """The aws profile's prediction log is under the lake prefix the serving task and the
    Spark jobs may write (one name in infra/jobs.py)."""
    from configs import load_settings

    environ = dict(USECASE_ENVIRON)
    environ |= {name: "x" for name in ("MLOPS_LAKE_BUCKET", "MLOPS_LANDING_BUCKET")}
    environ |= {"MLOPS_REDIS_ENDPOINT": "r", "MLOPS_REDIS_AUTH_TOKEN": "t", "MLOPS_REDIS_USER": "u"}
    environ |= {"MLFLOW_TRACKING_URI": "http://mlflow"}
    paths = load_settings("aws", environ=environ).paths
    assert paths.prediction_log == f"s3://x/{jobs.PREDICTION_LOG_PREFIX.rstrip('/')}"
    assert paths.monitoring == f"s3://x/{jobs.MONITORING_PREFIX.rstrip('/')}"
