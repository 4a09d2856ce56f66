"""Feature store: ElastiCache Redis for Feast's online store (encrypted at rest and in transit,
an AUTH token from Secrets Manager, a replica for failover). The registry is a file in the lake
bucket (`s3://<lake>/feast/registry.db`, see configs/aws.yaml)."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticache as elasticache
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from configs.settings import AwsConfig
from infra.stacks.network import DATA_SUBNETS

REDIS_PORT = 6379


class FeatureStoreStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AwsConfig,
        vpc: ec2.IVpc,
        key: kms.IKey,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        redis = config.redis
        self.auth_token = secretsmanager.Secret(
            self,
            "RedisAuthToken",
            description=f"{config.name}: AUTH token of the online store",
            encryption_key=key,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                exclude_punctuation=True, password_length=64
            ),
        )
        self.security_group = ec2.SecurityGroup(
            self,
            "RedisSecurityGroup",
            vpc=vpc,
            description="Feast online store",
            allow_all_outbound=False,
        )
        self.security_group.add_ingress_rule(
            ec2.Peer.ipv4(vpc.vpc_cidr_block), ec2.Port.tcp(REDIS_PORT), "from inside the VPC"
        )
        subnets = elasticache.CfnSubnetGroup(
            self,
            "RedisSubnets",
            description=f"{config.name} online store",
            subnet_ids=vpc.select_subnets(subnet_type=DATA_SUBNETS.subnet_type).subnet_ids,
        )
        self.redis = elasticache.CfnReplicationGroup(
            self,
            "Redis",
            replication_group_description=f"{config.name} Feast online store",
            engine="redis",
            engine_version=redis.engine_version,
            cache_node_type=redis.node_type,
            num_cache_clusters=1 + redis.replicas,
            automatic_failover_enabled=True,
            multi_az_enabled=True,
            at_rest_encryption_enabled=True,
            transit_encryption_enabled=True,
            auth_token=self.auth_token.secret_value.unsafe_unwrap(),  # a dynamic reference, not a value
            cache_subnet_group_name=subnets.ref,
            security_group_ids=[self.security_group.security_group_id],
            port=REDIS_PORT,
            snapshot_retention_limit=1,
            auto_minor_version_upgrade=True,
        )
        self.endpoint = self.redis.attr_primary_end_point_address
        CfnOutput(self, "RedisEndpoint", value=self.endpoint)
        CfnOutput(self, "RedisAuthTokenSecret", value=self.auth_token.secret_arn)
