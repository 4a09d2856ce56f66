"""Spark: an EMR Serverless application and the job role its runs assume. The jobs are the
same entry points as local (`python -m pipelines collect|features|batch-predict`), started by
`infra.deploy` with spark-submit against the code bundle it uploads to the lake bucket."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_emrserverless as emr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from configs.settings import AwsConfig
from infra.config import monitoring_alarms
from infra.jobs import (
    CODE_PREFIX,
    LOG_PREFIX,
    MONITORING_PREFIX,
    PREDICTION_LOG_PREFIX,
    RUNS_PREFIX,
)
from infra.stacks.common import allow_secret_decryption
from infra.stacks.data import DataStack, grant_data
from infra.stacks.network import APP_SUBNETS


class SparkStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AwsConfig,
        vpc: ec2.IVpc,
        data: DataStack,
        secrets: list[secretsmanager.ISecret],
        writer_secrets: list[secretsmanager.ISecret],
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        spark = config.spark
        # Every stage's jobs run as the job role, which reads the online store's reader
        # password; the stages that write to the store (configs/chain.py
        # `writes_online_store`) as the feature writer's role, which reads the writer's.
        self.job_role = self._job_role(
            "JobRole",
            "Spark jobs of the chain: read landing, read and write the lake",
            data,
            secrets,
        )
        self.feature_writer_role = self._job_role(
            "FeatureWriterRole",
            "Spark jobs that write the online store (features, materialize)",
            data,
            [*secrets, *writer_secrets],
        )
        security_group = ec2.SecurityGroup(
            self,
            "JobSecurityGroup",
            vpc=vpc,
            description="EMR Serverless jobs",
            allow_all_outbound=True,
        )
        self.application = emr.CfnApplication(
            self,
            "Application",
            name=f"{config.name}-spark",
            release_label=spark.release_label,
            type="SPARK",
            # What the packed virtualenv is built for (infra.config.IMAGE_PLATFORM).
            architecture="X86_64",
            maximum_capacity=emr.CfnApplication.MaximumAllowedResourcesProperty(
                cpu=spark.max_cpu, memory=spark.max_memory
            ),
            auto_start_configuration=emr.CfnApplication.AutoStartConfigurationProperty(
                enabled=True
            ),
            auto_stop_configuration=emr.CfnApplication.AutoStopConfigurationProperty(
                enabled=True, idle_timeout_minutes=spark.idle_timeout_minutes
            ),
            network_configuration=emr.CfnApplication.NetworkConfigurationProperty(
                subnet_ids=vpc.select_subnets(subnet_type=APP_SUBNETS.subnet_type).subnet_ids,
                security_group_ids=[security_group.security_group_id],
            ),
        )
        CfnOutput(self, "ApplicationId", value=self.application.attr_application_id)
        CfnOutput(self, "JobRoleArn", value=self.job_role.role_arn)
        CfnOutput(self, "FeatureWriterRoleArn", value=self.feature_writer_role.role_arn)

    def _job_role(
        self,
        construct_id: str,
        description: str,
        data: DataStack,
        secrets: list[secretsmanager.ISecret],
    ) -> iam.Role:
        role = iam.Role(
            self,
            construct_id,
            assumed_by=iam.ServicePrincipal("emr-serverless.amazonaws.com"),
            description=description,
        )
        grant_data(
            role,
            data.key,
            read=[(data.landing, ""), (data.lake, CODE_PREFIX)],
            write=[
                (data.lake, "lake/"),
                (data.lake, "quarantine/"),
                (data.lake, "reports/"),
                (data.lake, "feast/"),
                (data.lake, LOG_PREFIX),
                (data.lake, RUNS_PREFIX),  # each run's handoff file
                (data.lake, PREDICTION_LOG_PREFIX),  # batch scores
                (data.lake, MONITORING_PREFIX),  # the monitor's decisions
            ],
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["secretsmanager:GetSecretValue"],
                resources=[secret.secret_arn for secret in secrets],
            )
        )
        allow_secret_decryption(role, data.key)
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={
                    "StringEquals": {"cloudwatch:namespace": monitoring_alarms().namespace}
                },
            )
        )
        return role
