"""MLflow: the tracking server on ECS Fargate behind an internal load balancer, PostgreSQL on
RDS, artifacts under the lake bucket's `mlflow-artifacts/` (proxied by the server), credentials
in Secrets Manager, basic authentication on (the image refuses a missing or default password).
The image is built from `infra/images/mlflow` by `cdk deploy` (an image asset, linux/amd64)."""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from configs.settings import AwsConfig
from infra.stacks.common import (
    ASSET_PLATFORM,
    IMAGES,
    RUNTIME_PLATFORM,
    allow_secret_decryption,
    log_group,
    task_secret,
)
from infra.stacks.data import DataStack, grant_data
from infra.stacks.network import APP_SUBNETS, DATA_SUBNETS

ARTIFACT_PREFIX = "mlflow-artifacts/"
DATABASE = "mlflow"


class MlflowStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AwsConfig,
        vpc: ec2.IVpc,
        data: DataStack,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        mlflow = config.mlflow
        db_security_group = ec2.SecurityGroup(
            self,
            "DatabaseSecurityGroup",
            vpc=vpc,
            description="MLflow backend store",
            allow_all_outbound=False,
        )
        self.database = rds.DatabaseInstance(
            self,
            "Database",
            engine=rds.DatabaseInstanceEngine.postgres(version=rds.PostgresEngineVersion.VER_17_6),
            instance_type=ec2.InstanceType(mlflow.db_instance_class),
            vpc=vpc,
            vpc_subnets=DATA_SUBNETS,
            security_groups=[db_security_group],
            credentials=rds.Credentials.from_generated_secret("mlflow", encryption_key=data.key),
            database_name=DATABASE,
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
            instance_identifier=f"{config.name}-mlflow",
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
            log_group_name=f"/aws/rds/instance/{config.name}-mlflow/postgresql",
        )
        self.admin_password = secretsmanager.Secret(
            self,
            "AdminPassword",
            description=f"{config.name}: MLflow admin password (basic auth)",
            encryption_key=data.key,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                exclude_punctuation=True, password_length=32
            ),
        )
        # Signs the auth app's CSRF tokens; one key for every task behind the load balancer.
        self.flask_secret_key = secretsmanager.Secret(
            self,
            "FlaskSecretKey",
            description=f"{config.name}: MLflow server secret key (CSRF tokens of the auth app)",
            encryption_key=data.key,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                exclude_punctuation=True, password_length=64
            ),
        )
        cluster = ecs.Cluster(
            self, "Cluster", vpc=vpc, container_insights_v2=ecs.ContainerInsights.ENABLED
        )
        task_logs = log_group(self, "Logs", config.log_retention_days, data.logs_key)
        database_secret = self.database.secret
        assert database_secret is not None  # generated above
        task = ecs.FargateTaskDefinition(
            self,
            "Task",
            cpu=mlflow.cpu,
            memory_limit_mib=mlflow.memory_mib,
            runtime_platform=RUNTIME_PLATFORM,
        )
        task.add_container(
            "mlflow",
            # Built from infra/images/mlflow by the deploy itself (a CDK image asset, pushed to
            # the account's asset repository), for the architecture Fargate runs.
            image=ecs.ContainerImage.from_asset(str(IMAGES / "mlflow"), platform=ASSET_PLATFORM),
            port_mappings=[ecs.PortMapping(container_port=mlflow.port)],
            logging=ecs.LogDrivers.aws_logs(stream_prefix="mlflow", log_group=task_logs),
            environment={
                "DB_NAME": DATABASE,
                "ARTIFACTS_DESTINATION": data.lake.s3_url_for_object(ARTIFACT_PREFIX.rstrip("/")),
                "PORT": str(mlflow.port),
            },
            secrets={
                "DB_HOST": task_secret(self, "DbHost", database_secret, "host"),
                "DB_USERNAME": task_secret(self, "DbUser", database_secret, "username"),
                "DB_PASSWORD": task_secret(self, "DbPassword", database_secret, "password"),
                "MLFLOW_ADMIN_PASSWORD": task_secret(self, "Admin", self.admin_password),
                "MLFLOW_FLASK_SERVER_SECRET_KEY": task_secret(
                    self, "FlaskKey", self.flask_secret_key
                ),
            },
            readonly_root_filesystem=False,
        )
        allow_secret_decryption(task.obtain_execution_role(), data.key)
        grant_data(task.task_role, data.key, write=[(data.lake, ARTIFACT_PREFIX)])
        service_security_group = ec2.SecurityGroup(
            self,
            "ServiceSecurityGroup",
            vpc=vpc,
            description="MLflow tasks",
            allow_all_outbound=True,
        )
        db_security_group.add_ingress_rule(
            service_security_group, ec2.Port.tcp(5432), "MLflow tasks to PostgreSQL"
        )
        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=cluster,
            task_definition=task,
            desired_count=mlflow.desired_tasks,
            vpc_subnets=APP_SUBNETS,
            security_groups=[service_security_group],
            assign_public_ip=False,
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
            # ECS Exec: how the team reaches the UI, by SSM port forwarding through a task
            # (`python -m infra.deploy mlflow-ui`), with no bastion and nothing public.
            enable_execute_command=True,
        )
        # Internal only: reachable from inside the VPC (tasks, EMR jobs, a bastion or VPN).
        lb_security_group = ec2.SecurityGroup(
            self,
            "LoadBalancerSecurityGroup",
            vpc=vpc,
            description="MLflow load balancer",
            allow_all_outbound=False,
        )
        lb_security_group.add_ingress_rule(
            ec2.Peer.ipv4(vpc.vpc_cidr_block), ec2.Port.tcp(80), "from inside the VPC"
        )
        lb_security_group.add_egress_rule(
            service_security_group, ec2.Port.tcp(mlflow.port), "to MLflow"
        )
        service_security_group.add_ingress_rule(
            lb_security_group, ec2.Port.tcp(mlflow.port), "from the load balancer"
        )
        balancer = elbv2.ApplicationLoadBalancer(
            self,
            "LoadBalancer",
            vpc=vpc,
            internet_facing=False,
            vpc_subnets=APP_SUBNETS,
            security_group=lb_security_group,
            drop_invalid_header_fields=True,
        )
        balancer.log_access_logs(data.access_logs, prefix="alb/mlflow")
        listener = balancer.add_listener("Http", port=80, open=False)
        listener.add_targets(
            "Mlflow",
            port=mlflow.port,
            protocol=elbv2.ApplicationProtocol.HTTP,
            targets=[self.service],
            health_check=elbv2.HealthCheck(path="/health", healthy_http_codes="200"),
            deregistration_delay=Duration.seconds(30),
        )
        self.tracking_uri = f"http://{balancer.load_balancer_dns_name}"
        CfnOutput(self, "TrackingUri", value=self.tracking_uri)
        CfnOutput(self, "AdminPasswordSecret", value=self.admin_password.secret_arn)
        CfnOutput(self, "ClusterName", value=cluster.cluster_name)
        CfnOutput(self, "ServiceName", value=self.service.service_name)
        # `make destroy` names the final snapshot the database leaves behind.
        CfnOutput(self, "DatabaseInstance", value=self.database.instance_identifier)
