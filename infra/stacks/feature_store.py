"""Feature store: ElastiCache Redis for Feast's online store (encrypted at rest and in transit,
a replica for failover) with role-based access: a writer user for the chain's jobs, a read-only
user for the serving task, each with its password in Secrets Manager; the `default` user is
off. The registry is a file in the lake bucket (`s3://<lake>/feast/registry.db`)."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticache as elasticache
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from configs.settings import AwsConfig
from infra.config import REDIS_DEFAULT_OFF, REDIS_READER, REDIS_WRITER
from infra.stacks.common import generated_secret
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
        self.key = key
        # The writer's password: what the jobs (materialize) sign in with.
        self.auth_token = self._password(config, "RedisAuthToken", "writer (the chain's jobs)")
        self.reader_token = self._password(config, "RedisReaderToken", "reader (serving)")
        self.writer_user, self.reader_user = REDIS_WRITER[0], REDIS_READER[0]
        users = [
            self._user(config, "RedisWriter", REDIS_WRITER, self.auth_token),
            self._user(config, "RedisReader", REDIS_READER, self.reader_token),
            self._user(config, "RedisDefaultOff", REDIS_DEFAULT_OFF, None),
        ]
        user_group = elasticache.CfnUserGroup(
            self,
            "RedisUsers",
            engine="redis",
            user_group_id=f"{config.name}-online-store",
            user_ids=[user.user_id for user in users],
        )
        for user in users:
            user_group.add_dependency(user)
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
            user_group_ids=[user_group.user_group_id],
            cache_subnet_group_name=subnets.ref,
            security_group_ids=[self.security_group.security_group_id],
            port=REDIS_PORT,
            snapshot_retention_limit=1,
            auto_minor_version_upgrade=True,
        )
        self.redis.add_dependency(user_group)
        self.endpoint = self.redis.attr_primary_end_point_address
        CfnOutput(self, "RedisEndpoint", value=self.endpoint)
        CfnOutput(self, "RedisAuthTokenSecret", value=self.auth_token.secret_arn)
        CfnOutput(self, "RedisWriterUser", value=self.writer_user)
        CfnOutput(self, "RedisReaderTokenSecret", value=self.reader_token.secret_arn)
        CfnOutput(self, "RedisReaderUser", value=self.reader_user)

    def _password(self, config: AwsConfig, construct_id: str, who: str) -> secretsmanager.Secret:
        return generated_secret(
            self, construct_id, f"{config.name}: online store password of the {who}", self.key, 64
        )

    def _user(
        self,
        config: AwsConfig,
        construct_id: str,
        user: tuple[str, str],
        password: secretsmanager.Secret | None,
    ) -> elasticache.CfnUser:
        name, access = user
        return elasticache.CfnUser(
            self,
            construct_id,
            engine="redis",
            user_id=f"{config.name}-{name}",
            user_name=name,
            access_string=access,
            # a dynamic reference to the secret, resolved by CloudFormation, not a value
            passwords=[password.secret_value.unsafe_unwrap()] if password else None,
            no_password_required=password is None,
        )
