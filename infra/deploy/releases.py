"""Releases: package the champion with this code, push its image, roll the serving stack to it,
record it; roll back; list them.

A release is code plus model: the image tag is the Bento's version, the digest of everything
it serves (`pipelines.package`), so a code-only change rolls out like a new model and a
release with nothing changed finds its image serving already and does nothing.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from configs import handoff
from configs.settings import AwsConfig
from infra.config import (
    IMAGE_PLATFORM,
    IMAGE_TAG_PARAMETER,
    NO_IMAGE,
)
from infra.deploy.common import DeployError, Run, run_command, stack_outputs

# CloudFormation rolls the image with (infra/stacks/serving.py `_deploy_role`).
CLOUDFORMATION_ROLE_VARIABLE = "MLOPS_CLOUDFORMATION_ROLE_ARN"


@dataclass(frozen=True)
class Release:
    image_tag: str
    bento: str
    deployed_at: str
    kind: str = "deploy"  # deploy | rollback
    # The registry version the Bento serves ("" in releases recorded before it was kept).
    model_version: str = ""
    # The commit the Bento was built from and the digest of what it serves (code, use case,
    # requirements, model); "" in releases recorded before they were kept.
    commit: str = ""
    digest: str = ""
    # Who released (the caller's AWS identity) and why.
    by: str = ""
    reason: str = ""


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


def release_lines(history: list[Release]) -> list[str]:
    """The release record as `make releases` prints it: when, what, which model and commit,
    who and why, oldest first."""
    if not history:
        return ["nothing has been released yet"]
    return [
        f"{r.deployed_at}  {r.kind:<8}  {r.image_tag}  model v{r.model_version or '?'}  "
        f"commit {(r.commit or '?')[:12]}  by {r.by or '?'}  ({r.reason or 'no reason kept'})"
        for r in history
    ]


def serving_line(session: Any, config: AwsConfig) -> str:
    """What the service runs now, as `make status` says it: the release, its model version,
    commit and digest, and since when."""
    stack = f"{config.name}-serving"
    current = current_image_tag(session.client("cloudformation"), stack)
    history = read_releases(session.client("ssm"), config)
    serving = next((r for r in reversed(history) if r.image_tag == current), None)
    if serving is None:
        return f"serving: {current} (no release recorded for it)"
    return (
        f"serving: {serving.bento}, model v{serving.model_version or '?'}, commit "
        f"{(serving.commit or '?')[:12]}, digest {(serving.digest or '?')[:16]}, "
        f"since {serving.deployed_at} ({serving.kind})"
    )


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


def rollback(
    session: Any, config: AwsConfig, *, wait: bool = True, reason: str = "asked for"
) -> Release:
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
        commit=previous.commit,
        digest=previous.digest,
        by=caller(session),
        reason=reason,
    )
    record_release(ssm, config, release)
    return release


# -- release (the chain's last step, in the account) ---------------------------------------
def release(
    session: Any,
    config: AwsConfig,
    handoff_file: str,
    *,
    app_python: str = sys.executable,
    run: Run = run_command,
    wait: bool = True,
    reason: str = "the chain's release",
) -> Release:
    """Package the AWS champion with this code, push its image unless the repository has it,
    roll the service to it, record it and smoke it. When the service already runs that image
    (same code, same model), nothing is rolled, recorded or smoked."""
    cloudformation, ecs, ssm, s3 = (
        session.client(n) for n in ("cloudformation", "ecs", "ssm", "s3")
    )
    stack = f"{config.name}-serving"
    handed = _read_s3_json(s3, handoff_file)
    champion = str(handed.get("champion_version", ""))
    outputs = stack_outputs(cloudformation, stack)
    packaged = push_serving_image(
        session.client("ecr"), run, app_python, "aws", outputs["RepositoryUri"], handed
    )
    current = current_image_tag(cloudformation, stack)
    serving_now = next(
        (r for r in reversed(read_releases(ssm, config)) if r.image_tag == current), None
    )
    if current == packaged.image_tag and serving_now is not None:
        print(
            f"{stack} already serves {packaged.bento} (model version "
            f"{serving_now.model_version}, commit {serving_now.commit or '?'}): nothing to release"
        )
        return serving_now
    release = Release(
        packaged.image_tag,
        packaged.bento,
        _now(),
        model_version=packaged.model_version or champion,
        commit=packaged.commit,
        digest=packaged.digest,
        by=caller(session),
        reason=reason,
    )
    roll_service(
        cloudformation,
        ecs,
        stack,
        packaged.image_tag,
        wait=wait,
        role_arn=os.environ.get(CLOUDFORMATION_ROLE_VARIABLE) or None,
    )
    record_release(ssm, config, release)
    run([app_python, "-m", "serving.smoke", outputs["Url"]])
    return release


def caller(session: Any) -> str:
    """The AWS identity making the calls (an assumed role's session, a user), for the record."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return str(session.client("sts").get_caller_identity()["Arn"])
    except (BotoCoreError, ClientError) as err:  # the record says why it names no one
        return f"unknown ({type(err).__name__})"


def _read_s3_json(s3: Any, location: str) -> dict[str, Any]:
    bucket, _, key = location.removeprefix("s3://").partition("/")
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        raise DeployError(f"no handoff at {location}: did the chain's stages run?") from None
    return dict(json.loads(body))


@dataclass(frozen=True)
class Packaged:
    """What `package` built (or found) for a release, and the image that holds it."""

    bento: str
    image_tag: str
    model_version: str
    commit: str
    digest: str


def push_serving_image(
    ecr: Any,
    run: Run,
    app_python: str,
    package_env: str,
    repository_uri: str,
    handed: dict[str, Any] | None = None,
) -> Packaged:
    """Build the champion's Bento (with what the chain handed off: the champion it decided
    on), containerize it and push it under the Bento's version, unless the repository holds
    that tag already (the same code and model)."""
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
        written = json.loads(handoff_path.read_text())
    image_tag = bento.split(":", 1)[1]
    packaged = Packaged(
        bento,
        image_tag,
        str(written.get("champion_version", "")),
        str(written.get(handoff.COMMIT_LABEL, "")),
        str(written.get(handoff.DIGEST_LABEL, "")),
    )
    image = f"{repository_uri}:{image_tag}"
    if image_exists(ecr, repository_uri, image_tag):
        # Tags are immutable: the same Bento is pushed once.
        print(f"{image} is already in the repository")
        return packaged
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
    return packaged


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


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()
