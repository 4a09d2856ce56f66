"""The infra's view of the one config object: the `aws:` section of the `aws` profile.

The runtime endpoints in `configs/aws.yaml` (bucket names, the Redis endpoint, the MLflow URI)
are outputs of these very stacks, set on every task and job at run time; at synth time they do
not exist yet, so they are filled with markers that no template ever reads.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from configs import load_settings
from configs.settings import (
    AWS_PROFILE,
    ENV_VARIABLE,
    AwsConfig,
    CanaryConfig,
    Settings,
    aws_profiles,
)

# The serving stack's image parameter, shared by the stack and the deploy scripts (which must
# not import the CDK: preflight answers in a second, without Node).
IMAGE_TAG_PARAMETER = "ImageTag"
# The release the service ran before the one rolling out: the canary alarms compare the two
# (every roll sets it to the tag it replaces).
PREVIOUS_IMAGE_TAG_PARAMETER = "PreviousImageTag"
# One stack per concern, named `<aws.name>-<concern>` (infra/app.py builds them).
STACK_CONCERNS = (
    "network",
    "data",
    "spark",
    "database",
    "mlflow",
    "feature-store",
    "serving",
    "chain",
)
# What every image is built for and every task and job runs on: x86_64 (an arm64 laptop must
# not build arm64 images that Fargate and EMR Serverless would then fail to start).
IMAGE_PLATFORM = "linux/amd64"
NO_IMAGE = "none"
# The delivery stack (the CI pipeline's deploy role) exists when a GitHub repository is set.
DELIVERY = "delivery"


def releases_parameter(name: str) -> str:
    """The SSM parameter holding the release record of the stacks named `name`."""
    return f"/{name}/serving/releases"


def stack_concerns(config: AwsConfig) -> tuple[str, ...]:
    """The stacks of `config`, in the order they are created."""
    return STACK_CONCERNS + ((DELIVERY,) if config.delivery.github_repository else ())


# The online store's users (ElastiCache role-based access, Redis ACL syntax): the chain's jobs
# write features; the serving task only reads them. ElastiCache requires a user named
# `default` in every group: it is switched off.
REDIS_WRITER = ("feast-writer", "on ~* +@all -@dangerous")
REDIS_READER = ("feast-reader", "on ~* -@all +@read +@connection")
REDIS_DEFAULT_OFF = ("default", "off ~* -@all")

RUNTIME_VARIABLES = (
    "MLOPS_LANDING_BUCKET",
    "MLOPS_LAKE_BUCKET",
    "MLOPS_REDIS_ENDPOINT",
    "MLOPS_REDIS_USER",
    "MLOPS_REDIS_AUTH_TOKEN",
    "MLFLOW_TRACKING_URI",
)


def infra_config(environ: Mapping[str, str] | None = None) -> AwsConfig:
    return _aws_settings(environ).aws


def registered_model(environ: Mapping[str, str] | None = None) -> str:
    """The use case's MLflow registered model (the release build may edit it, nothing else)."""
    return _aws_settings(environ).names.registered_model


def landing_key_prefix(environ: Mapping[str, str] | None = None) -> str:
    """Where drops land in the landing bucket: the key prefix of the aws profile's
    `paths.landing` (`s3://<bucket>/landing` -> `landing/`)."""
    landing = str(_aws_settings(environ).paths.landing)
    _, _, key = landing.removeprefix("s3://").partition("/")
    return f"{key.strip('/')}/" if key.strip("/") else ""


@dataclass(frozen=True)
class MonitoringAlarms:
    """What the CloudWatch alarms on the monitor's figures need, from the aws profile (the
    bounds are the monitor's own retrain bounds: one place for each)."""

    namespace: str
    usecase: str
    max_drifted_share: float
    min_live_metric: float | None
    primary_metric: str


@dataclass(frozen=True)
class CanaryAlarms:
    """What the serving deployment's canary and its alarms need, from the aws profile (the
    rules are `serving.canary`, the ones `serving.canary.judge` applies: one place)."""

    namespace: str
    usecase: str
    rules: CanaryConfig


def canary_alarms(environ: Mapping[str, str] | None = None) -> CanaryAlarms:
    settings = _aws_settings(environ)
    return CanaryAlarms(
        settings.names.cloudwatch_namespace, settings.usecase, settings.serving.canary
    )


def monitoring_alarms(environ: Mapping[str, str] | None = None) -> MonitoringAlarms:
    settings = _aws_settings(environ)
    retrain = settings.monitoring.retrain
    return MonitoringAlarms(
        namespace=settings.names.cloudwatch_namespace,
        usecase=settings.usecase,
        max_drifted_share=retrain.max_drifted_share,
        min_live_metric=retrain.min_live_metric,
        primary_metric=settings.promotion.primary_metric,
    )


def _aws_settings(environ: Mapping[str, str] | None) -> Settings:
    values = dict(os.environ if environ is None else environ)
    for name in RUNTIME_VARIABLES:
        values.setdefault(name, f"set-at-run-time-{name.lower()}")
    # the profile of the environment asked for (MLOPS_ENV: staging, prod), else `aws`
    env = values.get(ENV_VARIABLE, "")
    return load_settings(env if env in aws_profiles() else AWS_PROFILE, environ=values)
