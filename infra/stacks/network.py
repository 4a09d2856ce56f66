"""Network: a VPC with public subnets (load balancers, NAT), private subnets with egress (tasks,
Spark) and isolated subnets (databases, Redis), flow logs, and a gateway endpoint to S3."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from constructs import Construct

from configs.settings import AwsConfig
from infra.stacks.common import log_group

APP_SUBNETS = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
DATA_SUBNETS = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)


class NetworkStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AwsConfig,
        logs_key: kms.IKey,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        network = config.network
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(network.cidr),
            max_azs=network.max_azs,
            nat_gateways=network.nat_gateways,
            # Restricting the default group needs a Lambda-backed custom resource; nothing uses
            # the default group (every resource has its own), see infra/checkov-skips.yaml.
            restrict_default_security_group=False,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24
                ),
                ec2.SubnetConfiguration(
                    name="app", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=20
                ),
                ec2.SubnetConfiguration(
                    name="data", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24
                ),
            ],
        )
        flow_logs = log_group(self, "FlowLogs", config.log_retention_days, logs_key)
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )
        # Lake and landing traffic (Spark, MLflow artifacts, the Feast registry) goes to S3
        # through the VPC's own gateway: it never crosses (or pays for) the NAT gateway.
        self.vpc.add_gateway_endpoint(
            "S3", service=ec2.GatewayVpcEndpointAwsService.S3, subnets=[APP_SUBNETS, DATA_SUBNETS]
        )
