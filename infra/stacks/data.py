"""Data: the landing and lake buckets (KMS-encrypted, versioned, private, TLS only, with
lifecycle rules) and a bucket for their access logs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from configs.settings import AwsConfig
from infra.stacks.common import removal


class DataStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: AwsConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        data = config.data
        policy = removal(data.retain_on_delete)
        self.key = kms.Key(
            self,
            "DataKey",
            description=f"{config.name}: landing zone, lake, MLflow artifacts",
            enable_key_rotation=True,
            removal_policy=policy,
        )
        # CloudWatch Logs encrypts every log group of the platform with this key.
        self.logs_key = kms.Key(
            self,
            "LogsKey",
            description=f"{config.name}: CloudWatch log groups",
            enable_key_rotation=True,
            removal_policy=policy,
        )
        self.logs_key.grant_encrypt_decrypt(
            iam.ServicePrincipal(f"logs.{Stack.of(self).region}.amazonaws.com")
        )
        # S3 server access logs can only be written to an SSE-S3 bucket.
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-logs", expiration=Duration.days(data.access_log_days)),
                s3.LifecycleRule(
                    id="expire-old-versions",
                    noncurrent_version_expiration=Duration.days(data.noncurrent_version_days),
                ),
            ],
            removal_policy=policy,
        )
        self.landing = self._bucket(
            "Landing",
            data.noncurrent_version_days,
            policy,
            # Raw drops are read once by collect, then kept for replay and audit.
            transitions=[
                s3.Transition(
                    storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                    transition_after=Duration.days(data.landing_infrequent_access_days),
                )
            ],
        )
        # Every object created in the landing zone is an event (EventBridge): a new drop starts
        # the chain (infra/stacks/chain.py). Set on the bucket itself, not through the
        # Lambda-backed notifications resource CDK would otherwise add.
        landing_bucket: Any = self.landing.node.default_child
        landing_bucket.add_property_override(
            "NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled", True
        )
        self.lake = self._bucket("Lake", data.noncurrent_version_days, policy, transitions=[])
        CfnOutput(self, "LandingBucket", value=self.landing.bucket_name)
        CfnOutput(self, "LakeBucket", value=self.lake.bucket_name)

    def _bucket(
        self, name: str, noncurrent_days: int, policy, transitions: list[s3.Transition]
    ) -> s3.Bucket:
        return s3.Bucket(
            self,
            name,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix=f"{name.lower()}/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="tidy",
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                    noncurrent_version_expiration=Duration.days(noncurrent_days),
                    transitions=transitions or None,
                )
            ],
            removal_policy=policy,
            auto_delete_objects=False,
        )


# Explicit actions, never `s3:*` or `s3:GetObject*` on data.
BUCKET_READ = ["s3:ListBucket", "s3:GetBucketLocation"]
OBJECT_READ = ["s3:GetObject", "s3:GetObjectVersion"]
OBJECT_WRITE = ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
KMS_READ = ["kms:Decrypt", "kms:DescribeKey"]
KMS_WRITE = ["kms:Encrypt", "kms:GenerateDataKey"]


def grant_data(
    role: iam.IGrantable,
    key: kms.IKey,
    *,
    read: Sequence[tuple[s3.IBucket, str]] = (),
    write: Sequence[tuple[s3.IBucket, str]] = (),
) -> None:
    """Least-privilege access to prefixes of the data buckets: (bucket, "prefix/") pairs."""
    principal = role.grant_principal
    for bucket, prefix in [*read, *write]:
        principal.add_to_principal_policy(
            iam.PolicyStatement(actions=BUCKET_READ, resources=[bucket.bucket_arn])
        )
        principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=OBJECT_READ, resources=[bucket.arn_for_objects(f"{prefix}*")]
            )
        )
    for bucket, prefix in write:
        principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=OBJECT_WRITE, resources=[bucket.arn_for_objects(f"{prefix}*")]
            )
        )
    actions = KMS_READ + (KMS_WRITE if write else [])
    principal.add_to_principal_policy(iam.PolicyStatement(actions=actions, resources=[key.key_arn]))
