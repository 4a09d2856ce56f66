"""`mlflow-ui`: the MLflow UI forwarded to the laptop through a running MLflow task (SSM)."""

from __future__ import annotations

import json
from typing import Any

from configs.settings import AwsConfig
from infra.deploy.common import DeployError, stack_outputs

# -- the MLflow UI ---------------------------------------------------------------------------
MLFLOW_CONTAINER = "mlflow"


PORT_FORWARDING = "AWS-StartPortForwardingSessionToRemoteHost"


def mlflow_tunnel(session: Any, config: AwsConfig, local_port: int = 5000) -> list[str]:
    """The `aws ssm start-session` command that forwards `local_port` to MLflow's internal
    load balancer through a running MLflow task (ECS Exec): the UI on the laptop, with no
    bastion and nothing public. Sign in with an account of your own (README)."""
    cloudformation, ecs = session.client("cloudformation"), session.client("ecs")
    outputs = stack_outputs(cloudformation, f"{config.name}-mlflow")
    cluster = outputs["ClusterName"]
    running = ecs.list_tasks(
        cluster=cluster, serviceName=outputs["ServiceName"], desiredStatus="RUNNING"
    )["taskArns"]
    if not running:
        raise DeployError(f"no MLflow task is running in {cluster}: see `make status ENV=aws`")
    (task,) = ecs.describe_tasks(cluster=cluster, tasks=running[:1])["tasks"]
    container = next(c for c in task["containers"] if c["name"] == MLFLOW_CONTAINER)
    target = f"ecs:{cluster}_{task['taskArn'].rsplit('/', 1)[1]}_{container['runtimeId']}"
    host = outputs["TrackingUri"].split("://", 1)[1]
    parameters = {"host": [host], "portNumber": ["80"], "localPortNumber": [str(local_port)]}
    return [
        "aws",
        "ssm",
        "start-session",
        "--region",
        str(session.region_name),
        "--target",
        target,
        "--document-name",
        PORT_FORWARDING,
        "--parameters",
        json.dumps(parameters, separators=(",", ":")),
    ]
