"""CDK assertions per stack: what each promises about security, health and scale."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from configs.settings import AwsConfig
from infra import jobs
from infra.config import REDIS_READER, REDIS_WRITER, infra_config
from tests.infra.conftest import USECASE_ENVIRON


@pytest.fixture(scope="module")
def config() -> AwsConfig:
    return infra_config(environ=USECASE_ENVIRON)


def template(synthesized: tuple[dict[str, Any], Any], concern: str) -> Template:
    stacks, _ = synthesized
    return Template.from_stack(stacks[concern])


def test_every_stack_is_named_from_the_config(synthesized, config: AwsConfig) -> None:
    stacks, _ = synthesized
    assert sorted(stacks) == sorted(
        [
            "network",
            "data",
            "spark",
            "database",
            "mlflow",
            "feature-store",
            "serving",
            "chain",
            "delivery",
        ]
    )
    assert all(stack.stack_name == f"{config.name}-{concern}" for concern, stack in stacks.items())


def test_network_has_private_subnets_and_flow_logs(synthesized, config: AwsConfig) -> None:
    network = template(synthesized, "network")
    network.has_resource_properties("AWS::EC2::VPC", {"CidrBlock": config.network.cidr})
    subnets = network.find_resources("AWS::EC2::Subnet")
    private = [s for s in subnets.values() if not s["Properties"]["MapPublicIpOnLaunch"]]
    assert len(private) == 2 * config.network.max_azs  # app and data subnets in every AZ
    network.resource_count_is("AWS::EC2::NatGateway", config.network.nat_gateways)
    network.has_resource_properties("AWS::EC2::FlowLog", {"TrafficType": "REJECT"})


def test_data_buckets_are_encrypted_versioned_private_and_tls_only(synthesized) -> None:
    data = template(synthesized, "data")
    buckets = data.find_resources("AWS::S3::Bucket")
    assert len(buckets) == 3
    for name, bucket in buckets.items():
        properties = bucket["Properties"]
        assert properties["VersioningConfiguration"] == {"Status": "Enabled"}, name
        assert properties["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }, name
        encryption = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        algorithm = encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"]
        assert algorithm == ("AES256" if name.startswith("AccessLogs") else "aws:kms"), name
        assert properties["LifecycleConfiguration"]["Rules"], name
    for policy in data.find_resources("AWS::S3::BucketPolicy").values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in statements
        )
    data.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def test_landing_drops_move_to_infrequent_access(synthesized, config: AwsConfig) -> None:
    landing = next(
        b
        for n, b in template(synthesized, "data").find_resources("AWS::S3::Bucket").items()
        if n.startswith("Landing")
    )
    (rule,) = landing["Properties"]["LifecycleConfiguration"]["Rules"]
    assert rule["Transitions"] == [
        {
            "StorageClass": "STANDARD_IA",
            "TransitionInDays": config.data.landing_infrequent_access_days,
        }
    ]
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}


def test_spark_runs_on_emr_serverless_in_private_subnets(synthesized, config: AwsConfig) -> None:
    spark = template(synthesized, "spark")
    spark.has_resource_properties(
        "AWS::EMRServerless::Application",
        {
            "ReleaseLabel": config.spark.release_label,
            "Type": "SPARK",
            "AutoStopConfiguration": {
                "Enabled": True,
                "IdleTimeoutMinutes": config.spark.idle_timeout_minutes,
            },
            "NetworkConfiguration": Match.object_like({"SubnetIds": Match.any_value()}),
        },
    )
    spark.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": Match.object_like(
                {
                    "Statement": [
                        Match.object_like(
                            {"Principal": {"Service": "emr-serverless.amazonaws.com"}}
                        )
                    ]
                }
            )
        },
    )


def test_mlflow_is_internal_encrypted_and_authenticated(synthesized) -> None:
    mlflow = template(synthesized, "mlflow")
    template(synthesized, "database").has_resource_properties(
        "AWS::RDS::DBInstance",
        {
            "StorageEncrypted": True,
            "PubliclyAccessible": False,
            "DeletionProtection": True,
            "Engine": "postgres",
        },
    )
    mlflow.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::LoadBalancer", {"Scheme": "internal"}
    )
    (task,) = mlflow.find_resources("AWS::ECS::TaskDefinition").values()
    (container,) = task["Properties"]["ContainerDefinitions"]
    secrets = {s["Name"] for s in container["Secrets"]}
    # the admin password comes from Secrets Manager; the image refuses a missing or default one
    assert {"MLFLOW_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY", "DB_PASSWORD"} <= secrets
    assert not any("PASSWORD" in e["Name"] for e in container.get("Environment", []))


def test_online_store_is_redis_encrypted_with_a_user_for_each_side(
    synthesized, templates, config: AwsConfig
) -> None:
    store = template(synthesized, "feature-store")
    store.has_resource_properties(
        "AWS::ElastiCache::ReplicationGroup",
        {
            "Engine": "redis",
            "AtRestEncryptionEnabled": True,
            "TransitEncryptionEnabled": True,
            "AutomaticFailoverEnabled": True,
            "NumCacheClusters": 1 + config.redis.replicas,
            "CacheNodeType": config.redis.node_type,
        },
    )
    (group,) = store.find_resources("AWS::ElastiCache::ReplicationGroup").values()
    assert "AuthToken" not in group["Properties"]  # role-based access instead
    (users,) = store.find_resources("AWS::ElastiCache::UserGroup").values()
    assert len(group["Properties"]["UserGroupIds"]) == 1
    by_name = {
        u["Properties"]["UserName"]: u["Properties"]
        for u in store.find_resources("AWS::ElastiCache::User").values()
    }
    assert len(users["Properties"]["UserIds"]) == len(by_name) == 3
    assert by_name["default"]["AccessString"].startswith("off ")  # nobody signs in without a user
    for name in (REDIS_WRITER[0], REDIS_READER[0]):
        # a dynamic reference resolved by CloudFormation: no password is in the template
        (password,) = by_name[name]["Passwords"]
        assert "{{resolve:secretsmanager:" in json.dumps(password), name
    assert by_name[REDIS_READER[0]]["AccessString"] == REDIS_READER[1]
    assert "-@all +@read" in REDIS_READER[1] and "+@write" not in REDIS_READER[1]
    # the serving task signs in as the reader, with the reader's password only
    serving = templates["serving"]["Resources"]
    (task,) = [r for r in serving.values() if r["Type"] == "AWS::ECS::TaskDefinition"]
    (container,) = task["Properties"]["ContainerDefinitions"]
    environment = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert environment["MLOPS_REDIS_USER"] == REDIS_READER[0]
    (secret,) = [s for s in container["Secrets"] if s["Name"] == "MLOPS_REDIS_AUTH_TOKEN"]
    assert "RedisReaderToken" in json.dumps(secret) and "RedisAuthToken" not in json.dumps(secret)


def test_serving_checks_livez_and_scales_on_cpu_and_requests(
    synthesized, config: AwsConfig
) -> None:
    serving = template(synthesized, "serving")
    serving.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        {"HealthCheckPath": "/livez", "Port": config.serving.port, "Matcher": {"HttpCode": "200"}},
    )
    policies = serving.find_resources("AWS::ApplicationAutoScaling::ScalingPolicy")
    metrics = {
        p["Properties"]["TargetTrackingScalingPolicyConfiguration"][
            "PredefinedMetricSpecification"
        ]["PredefinedMetricType"]
        for p in policies.values()
    }
    assert metrics == {"ECSServiceAverageCPUUtilization", "ALBRequestCountPerTarget"}
    serving.has_resource_properties(
        "AWS::Logs::LogGroup", {"RetentionInDays": config.log_retention_days}
    )
    serving.has_resource_properties(
        "AWS::ECR::Repository",
        {"ImageScanningConfiguration": {"ScanOnPush": True}, "ImageTagMutability": "IMMUTABLE"},
    )


def test_the_serving_task_runs_as_the_bento_s_non_root_user(synthesized) -> None:
    serving = template(synthesized, "serving")
    (task,) = serving.find_resources("AWS::ECS::TaskDefinition").values()
    (container,) = task["Properties"]["ContainerDefinitions"]
    assert container["User"] == "1034:1034"  # BentoML's `bentoml` user, not root


def test_serving_runs_no_task_until_an_image_is_deployed(synthesized, config: AwsConfig) -> None:
    serving = template(synthesized, "serving")
    assert serving.to_json()["Parameters"]["ImageTag"]["Default"] == "none"
    serving.has_resource_properties(
        "AWS::ECS::Service",
        {"DesiredCount": {"Fn::If": ["HasImage", config.serving.min_tasks, 0]}},
    )
    (task,) = serving.find_resources("AWS::ECS::TaskDefinition").values()
    (container,) = task["Properties"]["ContainerDefinitions"]
    assert {"Ref": "ImageTag"} in container["Image"]["Fn::Join"][1]  # the image follows the tag
    serving.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalableTarget",
        {"MinCapacity": {"Fn::If": ["HasImage", config.serving.min_tasks, 0]}},
    )


def test_task_roles_are_separate_from_execution_roles(synthesized) -> None:
    for concern in ("serving", "mlflow"):
        (task,) = template(synthesized, concern).find_resources("AWS::ECS::TaskDefinition").values()
        properties = task["Properties"]
        assert properties["TaskRoleArn"] != properties["ExecutionRoleArn"], concern


def _statements(templates: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for concern, body in templates.items():
        for name, resource in body["Resources"].items():
            if resource["Type"] == "AWS::IAM::Policy":
                for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
                    found.append((f"{concern}/{name}", statement))
    return found


def test_no_wildcard_actions_and_no_wildcard_data_access(templates) -> None:
    statements = _statements(templates)
    assert statements
    for where, statement in statements:
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        assert "*" not in actions, where
        for action in actions:
            service = action.split(":", 1)[0]
            if service in ("s3", "kms", "secretsmanager"):
                assert "*" not in action, f"{where}: {action}"
        if any(a.startswith("s3:") for a in actions):
            resources = (
                statement["Resource"]
                if isinstance(statement["Resource"], list)
                else [statement["Resource"]]
            )
            assert "*" not in resources, where


def test_the_serving_task_reads_the_registry_and_the_monitor_s_decisions(templates) -> None:
    """The service's gauges read the monitor's newest decision from the lake (paths.monitoring
    in the aws profile): without the grant they would never show on AWS."""
    reads = [
        statement
        for where, statement in _statements(templates)
        if where.startswith("serving/") and "s3:GetObject" in statement["Action"]
    ]
    prefixes = sorted(
        str(part)
        for statement in reads
        for resource in (
            statement["Resource"]
            if isinstance(statement["Resource"], list)
            else [statement["Resource"]]
        )
        if isinstance(resource, dict) and "Fn::Join" in resource
        for part in resource["Fn::Join"][1]
        if isinstance(part, str)
    )
    # (the prediction log's prefix, which it writes, is readable with it)
    assert prefixes == sorted(
        [f"/{jobs.MONITORING_PREFIX}*", "/feast/*", f"/{jobs.PREDICTION_LOG_PREFIX}*"]
    )


@pytest.mark.parametrize(
    "role", ["spark/JobRoleDefaultPolicy", "spark/FeatureWriterRoleDefaultPolicy"]
)
def test_the_spark_roles_write_only_their_prefixes_of_the_lake(templates, role: str) -> None:
    writes = [
        statement
        for where, statement in _statements(templates)
        if where.startswith(role) and "s3:PutObject" in statement["Action"]
    ]
    prefixes = sorted(
        str(part)
        for statement in writes
        for part in statement["Resource"]["Fn::Join"][1]
        if isinstance(part, str)
    )
    assert prefixes == sorted(
        [
            "/emr-logs/*",
            "/feast/*",
            "/lake/*",
            "/monitoring/*",
            "/prediction-log/*",
            "/quarantine/*",
            "/reports/*",
            "/runs/*",
        ]
    )


def test_two_nat_gateways_give_each_zone_its_own_way_out(config: AwsConfig) -> None:
    """`aws.network.nat_gateways: 2`: each zone's app subnets leave through the NAT gateway in
    that zone, so one zone's outage does not cut the other's jobs, builds and image pulls."""
    from aws_cdk import App, Environment, Stack
    from aws_cdk import aws_kms as kms
    from aws_cdk.assertions import Template

    from infra.stacks.network import NetworkStack

    app = App()
    environment = Environment(account="123456789012", region="eu-west-1")
    keys = Stack(app, "keys", env=environment)
    two = config.model_copy(
        update={"network": config.network.model_copy(update={"nat_gateways": 2})}
    )
    stack = NetworkStack(
        app, "network", config=two, logs_key=kms.Key(keys, "Logs"), env=environment
    )
    network = Template.from_stack(stack)
    gateways = network.find_resources("AWS::EC2::NatGateway")
    assert len(gateways) == 2
    # every default route of a private app subnet goes to a NAT gateway, and no two zones share one
    routes = network.find_resources(
        "AWS::EC2::Route", {"Properties": {"DestinationCidrBlock": "0.0.0.0/0"}}
    )
    nat_routes = [
        r["Properties"]["NatGatewayId"]["Ref"]
        for r in routes.values()
        if "NatGatewayId" in r["Properties"]
    ]
    assert sorted(nat_routes) == sorted(gateways)


def _balancer(serving: Template) -> dict[str, Any]:
    (balancer,) = serving.find_resources("AWS::ElasticLoadBalancingV2::LoadBalancer").values()
    return dict(balancer["Properties"])


def _client_rules(serving: Template) -> list[dict[str, Any]]:
    groups = serving.find_resources("AWS::EC2::SecurityGroup")
    (group,) = [
        g for g in groups.values() if "load balancer" in g["Properties"]["GroupDescription"]
    ]
    return list(group["Properties"].get("SecurityGroupIngress", []))


def test_serving_is_internal_by_default(synthesized, config: AwsConfig) -> None:
    """Shipped config: an internal load balancer in the private subnets, reached from the VPC's
    range only; no API keys (nothing outside the VPC can call it)."""
    assert config.serving.public is False
    serving = template(synthesized, "serving")
    balancer = _balancer(serving)
    assert balancer["Scheme"] == "internal"
    rules = _client_rules(serving)
    assert rules and all("CidrIp" not in r or r["CidrIp"] != "0.0.0.0/0" for r in rules)
    assert all("Fn::ImportValue" in json.dumps(r.get("CidrIp")) for r in rules), rules
    assert not serving.find_resources("AWS::SecretsManager::Secret")
    (task,) = serving.find_resources("AWS::ECS::TaskDefinition").values()
    secrets = task["Properties"]["ContainerDefinitions"][0]["Secrets"]
    assert "MLOPS_API_KEYS" not in {s["Name"] for s in secrets}


def test_an_opened_endpoint_is_https_only_and_asks_for_an_api_key(tmp_path, config) -> None:
    """`public: true` (with a certificate): internet-facing, HTTPS on 443 with plain HTTP only
    redirecting, the service given its API keys from Secrets Manager, and the release build
    the same secret for its smoke request."""
    from infra.app import build_app
    from serving.guard import API_KEYS_VARIABLE
    from tests.infra.conftest import REGION

    certificate = f"arn:aws:acm:{REGION}:123456789012:certificate/abc"
    opened = config.model_copy(
        update={
            "serving": config.serving.model_copy(
                update={"public": True, "certificate_arn": certificate}
            )
        }
    )
    _, stacks = build_app(opened, REGION, outdir=str(tmp_path))
    serving = Template.from_stack(stacks["serving"])
    assert _balancer(serving)["Scheme"] == "internet-facing"
    ports = {r["FromPort"] for r in _client_rules(serving)}
    assert ports == {443, 80}
    listeners = serving.find_resources("AWS::ElasticLoadBalancingV2::Listener")
    by_port = {r["Properties"]["Port"]: r["Properties"] for r in listeners.values()}
    assert by_port[443]["Protocol"] == "HTTPS"
    assert by_port[443]["Certificates"] == [{"CertificateArn": certificate}]
    assert by_port[80]["DefaultActions"][0]["Type"] == "redirect"
    (secret_id,) = serving.find_resources("AWS::SecretsManager::Secret")
    (task,) = serving.find_resources("AWS::ECS::TaskDefinition").values()
    secrets = {s["Name"]: s for s in task["Properties"]["ContainerDefinitions"][0]["Secrets"]}
    assert secret_id in json.dumps(secrets[API_KEYS_VARIABLE]["ValueFrom"])
    chain = Template.from_stack(stacks["chain"])
    (project,) = chain.find_resources("AWS::CodeBuild::Project").values()
    variables = {v["Name"]: v for v in project["Properties"]["Environment"]["EnvironmentVariables"]}
    assert variables[API_KEYS_VARIABLE]["Type"] == "SECRETS_MANAGER"


def test_only_the_stages_that_write_features_hold_the_online_store_s_writer_password(
    templates,
) -> None:
    """The job role reads the store's reader password; the feature writer's role (the stages
    of configs/chain.py that write the store) the writer's; the state machine runs each stage
    as the role, and with the sign-in, its declaration says."""
    from configs.chain import AWS_CHAIN, BY_NAME, ONLINE_STORE_WRITERS

    assert set(ONLINE_STORE_WRITERS) == {"features", "materialize"}
    readable = {
        where.split("/")[1].split("DefaultPolicy")[0]: json.dumps(statement["Resource"])
        for where, statement in _statements(templates)
        if where.startswith("spark/") and "secretsmanager:GetSecretValue" in statement["Action"]
    }
    assert "RedisReaderToken" in readable["JobRole"] and "RedisAuthToken" not in readable["JobRole"]
    assert "RedisAuthToken" in readable["FeatureWriterRole"]
    states = json.loads(
        "".join(
            part if isinstance(part, str) else "X"
            for part in next(
                r["Properties"]["DefinitionString"]["Fn::Join"][1]
                for r in templates["chain"]["Resources"].values()
                if r["Type"] == "AWS::StepFunctions::StateMachine"
            )
        )
    )["States"]
    steps = {
        name: state for name, state in _all_states(states).items() if state.get("Type") == "Task"
    }
    for stage, where in AWS_CHAIN:
        if where != "emr":
            continue
        parameters = json.dumps(steps[stage]["Parameters"])
        writes = BY_NAME[stage].writes_online_store
        assert f"MLOPS_REDIS_USER={REDIS_WRITER[0] if writes else REDIS_READER[0]}" in parameters, (
            stage
        )


def _all_states(states: dict[str, Any]) -> dict[str, Any]:
    found = dict(states)
    for state in states.values():
        for branch in state.get("Branches", []):
            found |= _all_states(branch["States"])
    return found


def test_a_release_rolls_out_as_a_canary_rolled_back_by_its_alarms(synthesized, templates) -> None:
    """ECS's canary deployment: the configured share and bake time, two target groups behind
    the production listener rule, and the three canary alarms as the deployment's alarms, with
    rollback on: each alarm compares the new tag's figures with the previous tag's."""
    from configs import cloudwatch as cw
    from infra.config import canary_alarms

    canary = canary_alarms(USECASE_ENVIRON)
    rules = canary.rules
    resources = templates["serving"]["Resources"]
    alarms = {
        k: r["Properties"]
        for k, r in resources.items()
        if k.startswith("Canary") and r["Type"] == "AWS::CloudWatch::Alarm"
    }
    assert len(alarms) == 3
    (service,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::ECS::Service"]
    deployment = service["DeploymentConfiguration"]
    assert deployment["Strategy"] == "CANARY"
    assert deployment["CanaryConfiguration"] == {
        "CanaryPercent": rules.traffic_percent,
        "CanaryBakeTimeInMinutes": rules.bake_minutes,
    }
    assert deployment["BakeTimeInMinutes"] == rules.bake_minutes
    # wired: every canary alarm is a deployment alarm, and an alarm rolls the deployment back
    assert deployment["Alarms"]["Enable"] is True and deployment["Alarms"]["Rollback"] is True
    assert sorted(a["Ref"] for a in deployment["Alarms"]["AlarmNames"]) == sorted(alarms)
    (balanced,) = service["LoadBalancers"]
    advanced = balanced["AdvancedConfiguration"]
    assert advanced["AlternateTargetGroupArn"] != balanced["TargetGroupArn"]
    rule = resources[advanced["ProductionListenerRule"]["Ref"]]["Properties"]
    forwarded = {
        g["TargetGroupArn"]["Ref"] for g in rule["Actions"][0]["ForwardConfig"]["TargetGroups"]
    }
    assert forwarded == {
        balanced["TargetGroupArn"]["Ref"],
        advanced["AlternateTargetGroupArn"]["Ref"],
    }
    # each alarm: the new release's figures against the one it replaces, at the configured bound
    bounds = {
        "Errors": f"{rules.max_error_share:g}",
        "Latency": f"lold * {rules.max_p99_ratio:g} + {rules.p99_slack_ms:g}",
        "Scores": f"- {rules.max_score_shift:g}",
    }
    for logical_id, alarm in alarms.items():
        (expression,) = [m["Expression"] for m in alarm["Metrics"] if "Expression" in m]
        assert bounds[logical_id.removeprefix("Canary").split("Alarm")[0]] in expression
        releases = {
            (
                m["Id"][-3:],
                json.dumps(
                    next(
                        d["Value"]
                        for d in m["MetricStat"]["Metric"]["Dimensions"]
                        if d["Name"] == cw.RELEASE_DIMENSION
                    )
                ),
            )
            for m in alarm["Metrics"]
            if "MetricStat" in m
        }
        assert releases == {
            ("new", json.dumps({"Ref": "ImageTag"})),
            ("old", json.dumps({"Ref": "PreviousImageTag"})),
        }
        assert {
            m["MetricStat"]["Metric"]["Namespace"] for m in alarm["Metrics"] if "MetricStat" in m
        } == {canary.namespace}
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold" and alarm["Threshold"] == 0
    # the figures name the release: the tag the task runs
    (task,) = [
        r["Properties"] for r in resources.values() if r["Type"] == "AWS::ECS::TaskDefinition"
    ]
    (container,) = task["ContainerDefinitions"]
    assert {"Name": cw.RELEASE_VARIABLE, "Value": {"Ref": "ImageTag"}} in container["Environment"]
