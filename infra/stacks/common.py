"""Small helpers the stacks share."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.config import IMAGE_PLATFORM

# The images the stacks build (CDK image assets) live under infra/images/.
IMAGES = Path(__file__).resolve().parents[1] / "images"
# Tasks run on what the images are built for (infra.config.IMAGE_PLATFORM).
RUNTIME_PLATFORM = ecs.RuntimePlatform(
    cpu_architecture=ecs.CpuArchitecture.X86_64,
    operating_system_family=ecs.OperatingSystemFamily.LINUX,
)
ASSET_PLATFORM = ecr_assets.Platform.custom(IMAGE_PLATFORM)

# The retention periods CloudWatch Logs accepts, in days.
_RETENTIONS = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


def retention(days: int) -> logs.RetentionDays:
    """The shortest retention CloudWatch accepts that keeps logs at least `days` days."""
    chosen = next((d for d in sorted(_RETENTIONS) if d >= days), max(_RETENTIONS))
    return _RETENTIONS[chosen]


def log_group(
    scope: Construct, construct_id: str, days: int, key: kms.IKey, **kwargs
) -> logs.LogGroup:
    """A log group encrypted with the platform's logs key, kept `days` days (rounded up)."""
    return logs.LogGroup(
        scope,
        construct_id,
        retention=retention(days),
        encryption_key=key,
        removal_policy=RemovalPolicy.DESTROY,
        **kwargs,
    )


def generated_secret(
    scope: Construct, construct_id: str, description: str, key: kms.IKey, length: int
) -> secretsmanager.Secret:
    """A secret Secrets Manager generates (letters and digits, `length` of them), encrypted with
    `key`: the platform's passwords, tokens and API keys."""
    return secretsmanager.Secret(
        scope,
        construct_id,
        description=description,
        encryption_key=key,
        generate_secret_string=secretsmanager.SecretStringGenerator(
            exclude_punctuation=True, password_length=length
        ),
    )


def task_secret(
    scope: Construct, construct_id: str, secret: secretsmanager.ISecret, field: str | None = None
) -> ecs.Secret:
    """A container secret read from `secret`, imported by ARN.

    Granting a role read on a secret encrypted with a key of another stack would name the role
    in that key's policy, and make the key's stack depend on this one (a cycle). Imported, the
    secret grants only `secretsmanager:GetSecretValue`; `allow_secret_decryption` adds the
    key permission to the role's own policy instead.
    """
    imported = secretsmanager.Secret.from_secret_complete_arn(
        scope, construct_id, secret.secret_arn
    )
    return ecs.Secret.from_secrets_manager(imported, field)


def allow_secret_decryption(role: iam.IRole, key: kms.IKey) -> None:
    """`role` may decrypt with `key`, only through Secrets Manager."""
    region = Stack.of(role).region
    role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["kms:Decrypt"],
            resources=[key.key_arn],
            conditions={
                "StringEquals": {"kms:ViaService": f"secretsmanager.{region}.amazonaws.com"}
            },
        )
    )


def image_repository(scope: Construct, keep_images: int) -> ecr.Repository:
    """An ECR repository: scanned on push, immutable tags, KMS-encrypted, kept on teardown.

    Its name is CloudFormation's to choose: a repository kept after a failed first deploy
    (its images are retained) must not collide with the one the next attempt creates."""
    return ecr.Repository(
        scope,
        "Repository",
        image_scan_on_push=True,
        image_tag_mutability=ecr.TagMutability.IMMUTABLE,
        encryption=ecr.RepositoryEncryption.KMS,
        lifecycle_rules=[ecr.LifecycleRule(max_image_count=keep_images)],
        removal_policy=RemovalPolicy.RETAIN,
    )


def removal(retain: bool) -> RemovalPolicy:
    return RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY
