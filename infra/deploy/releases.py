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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from configs import handoff
from configs.settings import AwsConfig
from infra.config import (
    IMAGE_PLATFORM,
    IMAGE_TAG_PARAMETER,
    NO_IMAGE,
    PREVIOUS_IMAGE_TAG_PARAMETER,
)
from infra.config import (
    releases_parameter as config_releases_parameter,
)
from infra.deploy.common import DeployError, Run, run_command, stack_outputs

# CloudFormation rolls the image with (infra/stacks/serving.py `_deploy_role`).
CLOUDFORMATION_ROLE_VARIABLE = "MLOPS_CLOUDFORMATION_ROLE_ARN"


@dataclass(frozen=True)
class Release:
    image_tag: str
    bento: str
    deployed_at: str
    kind: str = "deploy"  # deploy | rollback | promote
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
    return config_releases_parameter(config.name)


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
    """Point the serving stack at `image_tag`, with the tag it ran as the one the canary is
    judged against, and wait until the service is stable (the canary baked, or rolled back)
    (through the role `role_arn` when given: the release build passes the serving stack's
    deploy role)."""
    described = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
    running = current_image_tag(cloudformation, stack)
    # Every other parameter keeps its value: an SSM-typed one (CDK's BootstrapVersion) is
    # given the name of its SSM parameter again, from the template, to be resolved anew.
    declared = _template_parameters(cloudformation, stack)
    parameters = []
    for p in described.get("Parameters", []):
        key = p["ParameterKey"]
        if key in (IMAGE_TAG_PARAMETER, PREVIOUS_IMAGE_TAG_PARAMETER):
            continue
        spec = declared.get(key, {})
        value = (
            spec["Default"]
            if spec.get("Type", "").startswith("AWS::SSM::")
            else p["ParameterValue"]
        )
        parameters.append({"ParameterKey": key, "ParameterValue": value})
    parameters.append({"ParameterKey": IMAGE_TAG_PARAMETER, "ParameterValue": image_tag})
    if PREVIOUS_IMAGE_TAG_PARAMETER in declared:
        parameters.append({"ParameterKey": PREVIOUS_IMAGE_TAG_PARAMETER, "ParameterValue": running})
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
) -> Release | None:
    """Package the AWS champion with this code, push its image unless the repository has it,
    roll the service to it, record it and smoke it. When the service already runs that image
    (same code, same model), nothing is rolled, recorded or smoked."""
    cloudformation, ecs, ssm, s3 = (
        session.client(n) for n in ("cloudformation", "ecs", "ssm", "s3")
    )
    stack = f"{config.name}-serving"
    if config.serving.promote_from:
        print(
            f"{stack} takes its releases from {config.serving.promote_from} "
            f"(`make promote ENV={config.profile}`): this run's champion is not packaged here"
        )
        return None
    handed = _read_s3_json(s3, handoff_file)
    champion = str(handed.get("champion_version", ""))
    outputs = stack_outputs(cloudformation, stack)
    packaged = push_serving_image(
        session.client("ecr"), run, app_python, config.profile, outputs["RepositoryUri"], handed
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


# -- promotion (prod takes the image that served in staging) -------------------------------
def promote(
    session: Any,
    config: AwsConfig,
    source: AwsConfig,
    *,
    now: datetime | None = None,
    run: Run = run_command,
    wait: bool = True,
    reason: str = "promoted",
) -> Release | None:
    """Roll `config`'s service to the image `source`'s service runs, once it has served there
    for `config.serving.min_served_minutes`: the same image (code and model, by digest) copied
    into this environment's repository, and recorded with where it came from. Nothing happens
    when this environment already runs it."""
    cloudformation, ecs, ssm, ecr = (
        session.client(n) for n in ("cloudformation", "ecs", "ssm", "ecr")
    )
    source_stack, stack = f"{source.name}-serving", f"{config.name}-serving"
    tag = current_image_tag(cloudformation, source_stack)
    served = next((r for r in reversed(read_releases(ssm, source)) if r.image_tag == tag), None)
    if served is None:
        raise DeployError(
            f"{source_stack} runs {tag!r}, which no release of {source.profile} records: "
            "nothing to promote"
        )
    if current_image_tag(cloudformation, stack) == tag:
        print(f"{stack} already runs {served.bento}: nothing to promote")
        return None
    now = now or datetime.now(UTC)
    since = datetime.fromisoformat(served.deployed_at)
    minimum = config.serving.min_served_minutes
    if now - since < timedelta(minutes=minimum):
        raise DeployError(
            f"{served.bento} has served in {source.profile} since {served.deployed_at}: "
            f"less than the {minimum} minutes {config.profile} asks for "
            "(aws.serving.min_served_minutes); promote it later"
        )
    target = stack_outputs(cloudformation, stack)
    source_uri = stack_outputs(cloudformation, source_stack)["RepositoryUri"]
    copy_image(ecr, run, source_uri, target["RepositoryUri"], tag)
    release = Release(
        tag,
        served.bento,
        _now(),
        kind="promote",
        model_version=served.model_version,
        commit=served.commit,
        digest=served.digest,
        by=caller(session),
        reason=f"{reason}: served in {source.profile} since {served.deployed_at}",
    )
    roll_service(cloudformation, ecs, stack, tag, wait=wait, role_arn=target.get("DeployRoleArn"))
    record_release(ssm, config, release)
    return release


def copy_image(ecr: Any, run: Run, source_uri: str, target_uri: str, tag: str) -> None:
    """The image `tag` pulled from one repository and pushed, unchanged, to another (ECR keeps
    layers per repository: a manifest alone would not do); nothing when the target holds it."""
    if image_exists(ecr, target_uri, tag):
        print(f"{target_uri}:{tag} is already in the repository")
        return
    _docker_login(ecr, run)
    run(["docker", "pull", "--platform", IMAGE_PLATFORM, f"{source_uri}:{tag}"])
    run(["docker", "tag", f"{source_uri}:{tag}", f"{target_uri}:{tag}"])
    run(["docker", "push", f"{target_uri}:{tag}"])


def _docker_login(ecr: Any, run: Run) -> None:
    token = ecr.get_authorization_token()["authorizationData"][0]
    user, password = base64.b64decode(token["authorizationToken"]).decode().split(":", 1)
    run(
        ["docker", "login", "--username", user, "--password-stdin", token["proxyEndpoint"]],
        password,
    )


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
    _docker_login(ecr, run)
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
