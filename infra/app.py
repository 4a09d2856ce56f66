"""The AWS CDK app: `python -m infra.app` synthesizes every stack into `cdk.out/`.

All names and sizes come from `configs/aws.yaml` (`aws:`); no account, region or context
lookup is in the code, so the templates synthesize offline and deploy to whichever account
and region the credentials of `make deploy ENV=aws` point at.
"""

from __future__ import annotations

import os
from pathlib import Path

import aws_cdk as cdk

from configs.settings import ENV_VARIABLE, AwsConfig
from infra.checkov_skips import apply_skips, load_skips
from infra.config import DELIVERY, infra_config, stack_concerns
from infra.stacks.chain import ChainStack
from infra.stacks.data import DataStack
from infra.stacks.database import DatabaseStack
from infra.stacks.delivery import DeliveryStack
from infra.stacks.feature_store import FeatureStoreStack
from infra.stacks.mlflow import MlflowStack
from infra.stacks.network import NetworkStack
from infra.stacks.serving import ServingStack
from infra.stacks.spark import SparkStack

OUTDIR = Path(os.environ.get("CDK_OUTDIR", "cdk.out"))


def stack_name(config: AwsConfig, concern: str) -> str:
    return f"{config.name}-{concern}"


class RegionMissing(RuntimeError):
    """The stacks are bound to a region (load balancer access logs need it); none was given."""


def deploy_region(environ: dict[str, str] | None = None) -> str:
    """The region to synthesize for: the CDK CLI's, else the AWS SDK's usual variables."""
    environ = dict(os.environ) if environ is None else environ
    for name in ("CDK_DEFAULT_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"):
        if environ.get(name):
            return environ[name]
    raise RegionMissing(
        "no AWS region: set AWS_REGION (or configure one in your AWS profile) before synthesizing"
    )


def _source_name(config: AwsConfig) -> str:
    """The stack prefix of the environment `config` takes its releases from ("" if none)."""
    source = config.serving.promote_from
    if not source:
        return ""
    return infra_config(environ={**os.environ, ENV_VARIABLE: source}).name


def build_app(
    config: AwsConfig, region: str, outdir: str | None = None
) -> tuple[cdk.App, dict[str, cdk.Stack]]:
    app = cdk.App(outdir=outdir or str(OUTDIR), analytics_reporting=False)
    # Region only: the account stays whatever the credentials point at.
    env = cdk.Environment(region=region)
    tags = {"project": config.name, "managed-by": "aws-cdk"}
    data = DataStack(app, stack_name(config, "data"), config=config, env=env)
    network = NetworkStack(
        app, stack_name(config, "network"), config=config, logs_key=data.logs_key, env=env
    )
    database = DatabaseStack(
        app, stack_name(config, "database"), config=config, vpc=network.vpc, data=data, env=env
    )
    mlflow = MlflowStack(
        app,
        stack_name(config, "mlflow"),
        config=config,
        vpc=network.vpc,
        data=data,
        database=database,
        env=env,
    )
    feature_store = FeatureStoreStack(
        app,
        stack_name(config, "feature-store"),
        config=config,
        vpc=network.vpc,
        key=data.key,
        env=env,
    )
    spark = SparkStack(
        app,
        stack_name(config, "spark"),
        config=config,
        vpc=network.vpc,
        data=data,
        secrets=[feature_store.reader_token, mlflow.jobs_password],
        writer_secrets=[feature_store.auth_token],
        env=env,
    )
    serving = ServingStack(
        app,
        stack_name(config, "serving"),
        config=config,
        vpc=network.vpc,
        data=data,
        feature_store=feature_store,
        tracking_uri=mlflow.tracking_uri,
        env=env,
    )
    chain = ChainStack(
        app,
        stack_name(config, "chain"),
        config=config,
        vpc=network.vpc,
        data=data,
        spark=spark,
        mlflow=mlflow,
        feature_store=feature_store,
        serving=serving,
        env=env,
    )
    stacks_by_concern: dict[str, cdk.Stack] = {}
    if config.delivery.github_repository:
        stacks_by_concern[DELIVERY] = DeliveryStack(
            app,
            stack_name(config, DELIVERY),
            config=config,
            serving=serving,
            operator_policy=chain.operator_policy,
            source_name=_source_name(config),
            env=env,
        )
    stacks: dict[str, cdk.Stack] = {
        "network": network,
        "data": data,
        "spark": spark,
        "database": database,
        "mlflow": mlflow,
        "feature-store": feature_store,
        "serving": serving,
        "chain": chain,
        **stacks_by_concern,
    }
    if set(stacks) != set(stack_concerns(config)):  # the deploy names them from there
        raise RuntimeError(f"stacks {sorted(stacks)} differ from {sorted(stack_concerns(config))}")
    for stack in stacks.values():
        for key, value in tags.items():
            cdk.Tags.of(stack).add(key, value)
    # A skip for a resource this configuration does not create (the HTTP listener once a
    # certificate is set) simply has nothing to apply to.
    apply_skips(stacks, load_skips())
    return app, stacks


def main() -> None:
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    try:
        region = deploy_region()
    except RegionMissing as err:
        raise SystemExit(str(err)) from None
    app, _ = build_app(infra_config(), region)
    app.synth()


if __name__ == "__main__":
    main()
