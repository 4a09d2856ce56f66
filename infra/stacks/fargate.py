"""A Fargate service behind an application load balancer: what the MLflow and serving stacks
share, in two steps (the task, to which the stack adds its container; then the service with its
security groups and its load balancer, to which the stack adds its listeners).

The resources are made on the stack's own scope, under the ids both stacks have always used
("Cluster", "Logs", "Task", "ServiceSecurityGroup", "Service", "LoadBalancerSecurityGroup",
"LoadBalancer"): a deployed stack keeps its resources (a new id would replace the service and
the load balancer, and with it the endpoint's name).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.stacks.common import RUNTIME_PLATFORM, log_group
from infra.stacks.network import APP_SUBNETS


@dataclass(frozen=True)
class FargateTask:
    cluster: ecs.Cluster
    task: ecs.FargateTaskDefinition
    logs: logs.LogGroup


@dataclass(frozen=True)
class BehindLoadBalancer:
    service: ecs.FargateService
    service_security_group: ec2.SecurityGroup
    load_balancer_security_group: ec2.SecurityGroup
    balancer: elbv2.ApplicationLoadBalancer


def fargate_task(
    scope: Construct,
    *,
    vpc: ec2.IVpc,
    cpu: int,
    memory_mib: int,
    log_days: int,
    logs_key: kms.IKey,
) -> FargateTask:
    """A cluster, the task definition the stack adds its container to, and its log group."""
    cluster = ecs.Cluster(
        scope, "Cluster", vpc=vpc, container_insights_v2=ecs.ContainerInsights.ENABLED
    )
    task_logs = log_group(scope, "Logs", log_days, logs_key)
    task = ecs.FargateTaskDefinition(
        scope, "Task", cpu=cpu, memory_limit_mib=memory_mib, runtime_platform=RUNTIME_PLATFORM
    )
    return FargateTask(cluster, task, task_logs)


def behind_load_balancer(
    scope: Construct,
    *,
    vpc: ec2.IVpc,
    task: FargateTask,
    what: str,
    port: int,
    clients: Sequence[tuple[str, int]],
    internet_facing: bool,
    access_logs: s3.IBucket,
    **service_options: Any,
) -> BehindLoadBalancer:
    """The task as a service in the private subnets (rolled back by the circuit breaker when a
    deployment fails), and an application load balancer in front of it that admits `clients`
    ((CIDR, port) each) and reaches only the service's port. Listeners are the stack's."""
    service_security_group = ec2.SecurityGroup(
        scope,
        "ServiceSecurityGroup",
        vpc=vpc,
        description=f"{what} tasks",
        allow_all_outbound=True,
    )
    service = ecs.FargateService(
        scope,
        "Service",
        cluster=task.cluster,
        task_definition=task.task,
        vpc_subnets=APP_SUBNETS,
        security_groups=[service_security_group],
        assign_public_ip=False,
        circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
        **service_options,
    )
    lb_security_group = ec2.SecurityGroup(
        scope,
        "LoadBalancerSecurityGroup",
        vpc=vpc,
        description=f"{what} load balancer",
        allow_all_outbound=False,
    )
    for cidr, client_port in clients:
        description = "from inside the VPC" if cidr == vpc.vpc_cidr_block else "clients"
        lb_security_group.add_ingress_rule(
            ec2.Peer.ipv4(cidr), ec2.Port.tcp(client_port), description
        )
    lb_security_group.add_egress_rule(
        service_security_group, ec2.Port.tcp(port), f"to the {what} tasks"
    )
    service_security_group.add_ingress_rule(
        lb_security_group, ec2.Port.tcp(port), "from the load balancer"
    )
    balancer = elbv2.ApplicationLoadBalancer(
        scope,
        "LoadBalancer",
        vpc=vpc,
        internet_facing=internet_facing,
        vpc_subnets=None if internet_facing else APP_SUBNETS,
        security_group=lb_security_group,
        drop_invalid_header_fields=True,
    )
    balancer.log_access_logs(access_logs, prefix=f"alb/{what.lower()}")
    return BehindLoadBalancer(service, service_security_group, lb_security_group, balancer)
