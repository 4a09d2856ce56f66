"""The MLflow backend store: PostgreSQL on RDS (encrypted, Multi-AZ, deletion protection, a
final snapshot when removed), in a stack of its own.

Apart from the MLflow service on purpose: a service that fails to stabilise on a first deploy
rolls its own stack back, and CloudFormation could not delete a protected database in that
rollback (the stack would stop in ROLLBACK_FAILED and the next attempt collide with the named
instance). Here, nothing of the service's stack is needed: the rule letting the MLflow tasks in
is made by the MLflow stack, on this security group.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_rds as rds
from constructs import Construct

from configs.settings import AwsConfig
from infra.stacks.common import log_group
from infra.stacks.data import DataStack
from infra.stacks.network import DATA_SUBNETS

DATABASE = "mlflow"
DATABASE_PORT = 5432


class DatabaseStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AwsConfig,
        vpc: ec2.IVpc,
        data: DataStack,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        mlflow = config.mlflow
        self.security_group = ec2.SecurityGroup(
            self,
            "DatabaseSecurityGroup",
            vpc=vpc,
            description="MLflow backend store",
            allow_all_outbound=False,
        )
        identifier = f"{config.name}-mlflow"
        self.instance = rds.DatabaseInstance(
            self,
            "Database",
            engine=rds.DatabaseInstanceEngine.postgres(version=rds.PostgresEngineVersion.VER_17_6),
            instance_type=ec2.InstanceType(mlflow.db_instance_class),
            vpc=vpc,
            vpc_subnets=DATA_SUBNETS,
            security_groups=[self.security_group],
            credentials=rds.Credentials.from_generated_secret("mlflow", encryption_key=data.key),
            database_name=DATABASE,
            port=DATABASE_PORT,
            allocated_storage=mlflow.db_allocated_gib,
            storage_encrypted=True,
            multi_az=mlflow.db_multi_az,
            publicly_accessible=False,
            backup_retention=Duration.days(mlflow.db_backup_days),
            deletion_protection=True,
            iam_authentication=True,
            auto_minor_version_upgrade=True,
            copy_tags_to_snapshot=True,
            # Named, so that its PostgreSQL log group (below) exists before RDS would make it.
            instance_identifier=identifier,
            cloudwatch_logs_exports=["postgresql"],
            enable_performance_insights=True,
            monitoring_interval=Duration.seconds(60),
            removal_policy=RemovalPolicy.SNAPSHOT,
        )
        # The exported PostgreSQL log, created here so that its retention is set without the
        # Lambda-backed resource CDK would otherwise add.
        log_group(
            self,
            "DatabaseLogs",
            config.log_retention_days,
            data.logs_key,
            log_group_name=f"/aws/rds/instance/{identifier}/postgresql",
        )
        # `make destroy` names the final snapshot the database leaves behind.
        CfnOutput(self, "DatabaseInstance", value=self.instance.instance_identifier)
