"""Serving: the Bento's image in ECR, run on ECS Fargate behind a load balancer that checks
`/livez`, scaled on CPU and on requests per target, logs kept for a set time.

The load balancer is internal (reached from the VPC) unless `aws.serving.public` opens it; an
opened one is internet-facing, HTTPS only, and the service then answers only requests that
carry one of the API keys this stack keeps in Secrets Manager (serving/guard.py `ApiKeys`).
API keys rather than OIDC on the load balancer: the callers of a prediction API are programs,
and the load balancer's OIDC action is a browser's sign-in redirect that they cannot follow.

The image tag is a stack parameter (`ImageTag`). Until the first model is deployed it is
`none`: the service exists with no tasks, and the load balancer answers 503 (not ready, not
broken). `infra.deploy` rolls a new tag in and can roll back to the previous one.

A new tag rolls out as a canary (ECS's own canary deployment: two target groups behind the
listener rule, the new release in the alternate one): `serving.canary.traffic_percent` of the
requests for `bake_minutes`, then all of them, the old tasks kept `bake_minutes` more. ECS
rolls the deployment back by itself when one of three alarms fires (its deployment alarms):
over the figures each release publishes (serving/figures.py), the new release answers a larger
share of 5xx, a slower p99, or scores whose deciles moved, against the release it replaces
(`PreviousImageTag`, set by every roll): the rules `serving.canary.judge` applies locally.
ECS's canary rather than CodeDeploy's: no CodeDeploy application, deployment group or appspec
to keep beside the stack, and CloudFormation stays the one owner of the service (a rollback is
ECS's, a release is still an `ImageTag` update).
"""

from __future__ import annotations

from aws_cdk import (
    ArnFormat,
    CfnCondition,
    CfnOutput,
    CfnParameter,
    DefaultStackSynthesizer,
    Duration,
    Fn,
    Stack,
)
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from configs import cloudwatch as cw_contract
from configs.settings import ENV_VARIABLE, AwsConfig
from infra.config import (
    IMAGE_TAG_PARAMETER,
    NO_IMAGE,
    PREVIOUS_IMAGE_TAG_PARAMETER,
    CanaryAlarms,
    canary_alarms,
)
from infra.jobs import MONITORING_PREFIX, PREDICTION_LOG_PREFIX
from infra.stacks.common import (
    allow_secret_decryption,
    generated_secret,
    image_repository,
    task_secret,
)
from infra.stacks.data import DataStack, grant_data
from infra.stacks.fargate import behind_load_balancer, fargate_task
from infra.stacks.feature_store import FeatureStoreStack
from serving.guard import API_KEYS_VARIABLE

# What the load balancer (and so ECS) checks: liveness, which reads nothing. `/readyz` reads the
# online store, so checking it would mark every task unhealthy during an ElastiCache failover
# and ECS would replace them all; readiness stays inside the service (503 while the store is
# down, counted, never a 500).
HEALTH_CHECK_PATH = "/livez"
# What the public listener forwards to the service: its API and its health checks.
PUBLIC_PATHS = ("/predict", "/predict_batch", "/livez", "/readyz")
# BentoML's generated Dockerfile runs the service as `bentoml` (uid and gid 1034).
BENTO_USER = "1034:1034"


class ServingStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AwsConfig,
        vpc: ec2.IVpc,
        data: DataStack,
        feature_store: FeatureStoreStack,
        tracking_uri: str,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        serving = config.serving
        image_tag = CfnParameter(
            self,
            IMAGE_TAG_PARAMETER,
            type="String",
            default=NO_IMAGE,
            description="Tag of the serving image in the repository; 'none' runs no task",
        )
        previous_tag = CfnParameter(
            self,
            PREVIOUS_IMAGE_TAG_PARAMETER,
            type="String",
            default=NO_IMAGE,
            description="The tag the service ran before ImageTag: what the canary is judged against",
        )
        has_image = CfnCondition(
            self,
            "HasImage",
            expression=Fn.condition_not(Fn.condition_equals(image_tag.value_as_string, NO_IMAGE)),
        )
        # An endpoint opened to the internet asks for an API key (the secret's value, to which
        # more keys can be added, comma-separated, while clients move to a new one).
        self.api_keys: secretsmanager.Secret | None = None
        secrets = {
            "MLOPS_REDIS_AUTH_TOKEN": task_secret(self, "RedisToken", feature_store.reader_token),
        }
        if serving.public:
            self.api_keys = generated_secret(
                self,
                "ApiKeys",
                f"{config.name}: the API keys /predict accepts (comma-separated)",
                data.key,
                48,
            )
            secrets[API_KEYS_VARIABLE] = task_secret(self, "TaskApiKeys", self.api_keys)
        self.repository = image_repository(self, keep_images=30)
        fargate = fargate_task(
            self,
            vpc=vpc,
            cpu=serving.cpu,
            memory_mib=serving.memory_mib,
            log_days=config.log_retention_days,
            logs_key=data.logs_key,
        )
        cluster, task, self.log_group = fargate.cluster, fargate.task, fargate.logs
        task.add_container(
            "service",
            image=ecs.ContainerImage.from_ecr_repository(
                self.repository, tag=image_tag.value_as_string
            ),
            port_mappings=[ecs.PortMapping(container_port=serving.port)],
            logging=ecs.LogDrivers.aws_logs(stream_prefix="serving", log_group=self.log_group),
            environment={
                ENV_VARIABLE: config.profile,
                # the release its figures name (serving/figures.py): the canary alarms' dimension
                cw_contract.RELEASE_VARIABLE: image_tag.value_as_string,
                "MLOPS_LAKE_BUCKET": data.lake.bucket_name,
                "MLOPS_LANDING_BUCKET": data.landing.bucket_name,
                "MLOPS_REDIS_ENDPOINT": feature_store.endpoint,
                # the online store's read-only user: serving never writes features
                "MLOPS_REDIS_USER": feature_store.reader_user,
                # The aws profile names the tracking server; serving never calls it and gets
                # no credentials for it (below).
                "MLFLOW_TRACKING_URI": tracking_uri,
                "OMP_NUM_THREADS": "1",
                "BENTOML_DO_NOT_TRACK": "true",
            },
            # Only what it reads: the read-only user's password (and, opened, its API keys).
            # The service serves the model packed into its image and never calls MLflow, so it
            # holds none of MLflow's credentials, and not the writer's password.
            secrets=secrets,
            stop_timeout=Duration.seconds(30),  # SIGTERM, then requests in flight finish
            # The Bento image's own non-root user (BentoML's Dockerfile: bentoml, uid 1034),
            # stated here too so the task never runs as root whatever the image says.
            user=BENTO_USER,
        )
        allow_secret_decryption(task.obtain_execution_role(), data.key)
        # The service reads the Feast registry from the lake bucket and writes the prediction
        # log; nothing else there.
        grant_data(
            task.task_role,
            data.key,
            # the Feast registry, and the monitor's decisions (its gauges on /metrics)
            read=[(data.lake, "feast/"), (data.lake, MONITORING_PREFIX)],
            write=[(data.lake, PREDICTION_LOG_PREFIX)],
        )

        self.canary_alarms = self._canary_alarms(
            config, canary_alarms(), image_tag.value_as_string, previous_tag.value_as_string
        )
        rules = canary_alarms().rules
        https = bool(serving.certificate_arn)
        # Opened: the configured ranges; internal: the VPC's own.
        clients = serving.allowed_cidrs if serving.public else [vpc.vpc_cidr_block]
        # The online store admits the VPC's private range (with TLS and its AUTH token); a rule
        # naming the service's group would make the feature-store stack depend on this one.
        web = behind_load_balancer(
            self,
            vpc=vpc,
            task=fargate,
            what="Serving",
            port=serving.port,
            clients=[(cidr, 443 if https else 80) for cidr in clients],
            internet_facing=serving.public,
            access_logs=data.access_logs,
            desired_count=serving.min_tasks,
            min_healthy_percent=100,
            max_healthy_percent=200,
            health_check_grace_period=Duration.seconds(120),
            deployment_strategy=ecs.DeploymentStrategy.CANARY,
            canary_configuration=ecs.TrafficShiftConfig(
                step_percent=rules.traffic_percent,
                step_bake_time=Duration.minutes(rules.bake_minutes),
            ),
            bake_time=Duration.minutes(rules.bake_minutes),
            deployment_alarms=ecs.DeploymentAlarmConfig(
                alarm_names=[alarm.alarm_name for alarm in self.canary_alarms],
                behavior=ecs.AlarmBehavior.ROLLBACK_ON_ALARM,
            ),
        )
        self.service, self.balancer = web.service, web.balancer
        lb_security_group = web.load_balancer_security_group
        # No image yet: no task (the load balancer answers 503 until the first deploy).
        service_resource = self.service.node.default_child
        service_resource.add_property_override(  # type: ignore[union-attr]
            "DesiredCount", Fn.condition_if(has_image.logical_id, serving.min_tasks, 0)
        )
        # Only the API and the health checks are public; `/metrics`, `/docs` and the rest of
        # what the service answers stay inside the VPC (the listener answers 404).
        not_public = elbv2.ListenerAction.fixed_response(
            404, content_type="application/json", message_body='{"error": "not found"}'
        )
        if https:
            listener = self.balancer.add_listener(
                "Https",
                port=443,
                certificates=[elbv2.ListenerCertificate.from_arn(serving.certificate_arn)],
                ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
                open=False,
                default_action=not_public,
            )
            # Plain HTTP only redirects to HTTPS.
            self.balancer.add_listener(
                "HttpRedirect",
                port=80,
                open=False,
                default_action=elbv2.ListenerAction.redirect(
                    protocol="HTTPS", port="443", permanent=True
                ),
            )
            for cidr in clients:
                lb_security_group.add_ingress_rule(
                    ec2.Peer.ipv4(cidr), ec2.Port.tcp(80), "clients, redirected to HTTPS"
                )
        else:
            listener = self.balancer.add_listener(
                "Http", port=80, open=False, default_action=not_public
            )
        # Two target groups: the release serving, and the one a new release starts in; the
        # listener rule forwards to both by weight while a canary bakes (ECS moves the weights).
        self.target_group, green = (
            elbv2.ApplicationTargetGroup(
                self,
                name,
                vpc=vpc,
                port=serving.port,
                protocol=elbv2.ApplicationProtocol.HTTP,
                target_type=elbv2.TargetType.IP,
                health_check=elbv2.HealthCheck(
                    path=HEALTH_CHECK_PATH,
                    healthy_http_codes="200",
                    interval=Duration.seconds(15),
                    timeout=Duration.seconds(5),
                    healthy_threshold_count=2,
                    unhealthy_threshold_count=3,
                ),
                deregistration_delay=Duration.seconds(30),
            )
            for name in ("ServiceTargetGroup", "CanaryTargetGroup")
        )
        rule = elbv2.ApplicationListenerRule(
            self,
            "ServiceRule",
            listener=listener,
            priority=10,
            conditions=[elbv2.ListenerCondition.path_patterns(list(PUBLIC_PATHS))],
            action=elbv2.ListenerAction.weighted_forward(
                [
                    elbv2.WeightedTargetGroup(target_group=self.target_group, weight=100),
                    elbv2.WeightedTargetGroup(target_group=green, weight=0),
                ]
            ),
        )
        self.service.load_balancer_target(
            container_name="service",
            container_port=serving.port,
            alternate_target=ecs.AlternateTarget(
                "Canary",
                alternate_target_group=green,
                production_listener=ecs.ListenerRuleConfiguration.application_listener_rule(rule),
            ),
        ).attach_to_application_target_group(self.target_group)
        scaling = self.service.auto_scale_task_count(
            min_capacity=serving.min_tasks, max_capacity=serving.max_tasks
        )
        scaling.scale_on_cpu_utilization(
            "Cpu",
            target_utilization_percent=serving.target_cpu_percent,
            scale_in_cooldown=Duration.seconds(120),
            scale_out_cooldown=Duration.seconds(30),
        )
        # One policy per target group: which one takes production traffic alternates with each
        # canary; the one taking it scales out, and tasks go only when both agree (the idle one
        # always does), which is how several target tracking policies combine.
        for policy, group in (("Requests", self.target_group), ("CanaryRequests", green)):
            scaling.scale_on_request_count(
                policy,
                requests_per_target=serving.requests_per_target,
                target_group=group,
                scale_in_cooldown=Duration.seconds(120),
                scale_out_cooldown=Duration.seconds(30),
            )
        # Autoscaling must not start tasks before there is an image either.
        target = scaling.node.find_child("Target").node.default_child
        target.add_property_override(  # type: ignore[attr-defined]
            "MinCapacity", Fn.condition_if(has_image.logical_id, serving.min_tasks, 0)
        )
        target.add_property_override(  # type: ignore[attr-defined]
            "MaxCapacity", Fn.condition_if(has_image.logical_id, serving.max_tasks, 0)
        )
        self.deploy_role = self._deploy_role(task, cluster)
        scheme = "https" if https else "http"
        CfnOutput(self, "Url", value=f"{scheme}://{self.balancer.load_balancer_dns_name}")
        CfnOutput(self, "RepositoryUri", value=self.repository.repository_uri)
        CfnOutput(self, "ClusterName", value=cluster.cluster_name)
        CfnOutput(self, "ServiceName", value=self.service.service_name)
        CfnOutput(self, "DeployRoleArn", value=self.deploy_role.role_arn)
        if self.api_keys is not None:
            CfnOutput(self, "ApiKeysSecret", value=self.api_keys.secret_arn)

    def _canary_alarms(
        self, config: AwsConfig, canary: CanaryAlarms, release: str, previous: str
    ) -> list[cloudwatch.Alarm]:
        """The canary's three rules (`serving.canary.judge`'s) as alarms over the figures the
        new release (`release`) and the one it replaces (`previous`) publish, per minute: ECS
        rolls the deployment back when one fires. Judged only in a minute in which the new
        release answered its share of `min_requests` over the bake."""
        rules = canary.rules
        minute = Duration.minutes(1)
        least = max(1.0, rules.min_requests / rules.bake_minutes)

        def figure(name: str, of: str, statistic: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=canary.namespace,
                metric_name=name,
                dimensions_map={
                    cw_contract.USECASE_DIMENSION: canary.usecase,
                    cw_contract.RELEASE_DIMENSION: of,
                },
                statistic=statistic,
                period=minute,
            )

        def both(name: str, statistic: str, key: str) -> dict[str, cloudwatch.IMetric]:
            return {
                f"{key}new": figure(name, release, statistic),
                f"{key}old": figure(name, previous, statistic),
            }

        judged = f"IF(nnew >= {least:g}, %s, 0)"
        requests = both(cw_contract.RELEASE_REQUESTS, "Sum", "n")
        rule_figures = {
            "Errors": (
                "the new release answers more 5xx than the one it replaces",
                judged % f"enew / nnew - IF(nold > 0, eold / nold, 0) - {rules.max_error_share:g}",
                {**requests, **both(cw_contract.RELEASE_ERRORS, "Sum", "e")},
            ),
            "Latency": (
                "the new release answers slower at p99 than the one it replaces",
                judged % f"lnew - (lold * {rules.max_p99_ratio:g} + {rules.p99_slack_ms:g})",
                {**requests, **both(cw_contract.RELEASE_LATENCY, "p99", "l")},
            ),
            "Scores": (
                "a decile of the new release's scores moved against the one it replaces",
                judged
                % (
                    "MAX([ABS(anew - aold), ABS(bnew - bold), ABS(cnew - cold)])"
                    f" / MAX([cold - aold, 0.000000001]) - {rules.max_score_shift:g}"
                ),
                {
                    **requests,
                    **both(cw_contract.RELEASE_SCORE, "p10", "a"),
                    **both(cw_contract.RELEASE_SCORE, "p50", "b"),
                    **both(cw_contract.RELEASE_SCORE, "p90", "c"),
                },
            ),
        }
        alarms = []
        self.canary_alarm_names = [f"{config.name}-canary-{name.lower()}" for name in rule_figures]
        for (name, (description, expression, metrics)), alarm_name in zip(
            rule_figures.items(), self.canary_alarm_names, strict=True
        ):
            alarms.append(
                cloudwatch.Alarm(
                    self,
                    f"Canary{name}Alarm",
                    alarm_name=alarm_name,
                    alarm_description=f"{config.name}: {description} (serving.canary)",
                    metric=cloudwatch.MathExpression(
                        expression=expression,
                        using_metrics=metrics,
                        period=minute,
                        label=f"canary {name.lower()} over its bound",
                    ),
                    threshold=0,
                    comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                    evaluation_periods=2,
                    datapoints_to_alarm=2,
                    treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                )
            )
        return alarms

    def _deploy_role(self, task: ecs.FargateTaskDefinition, cluster: ecs.Cluster) -> iam.Role:
        """The role CloudFormation rolls this stack with when the release build changes its
        image (`ImageTag`): what the resource handlers of the task definition (replaced), the
        service and its scalable target (updated) call, as CloudFormation's registry schemas
        list them (tests/infra/test_role_policies.py checks the list against them), each on this
        stack's resources. Not the CDK bootstrap's execution role, which is administrator."""
        role = iam.Role(
            self,
            "DeployRole",
            assumed_by=iam.ServicePrincipal("cloudformation.amazonaws.com"),
            description="CloudFormation rolls the serving image with this role (release build)",
        )
        service, family = self.service.service_arn, task.family
        task_definitions = self.format_arn(
            service="ecs", resource="task-definition", resource_name=f"{family}:*"
        )
        deployments = self.format_arn(
            service="ecs",
            resource="service-deployment",
            resource_name=f"{cluster.cluster_name}/{self.service.service_name}/*",
        )
        roles = [task.task_role.role_arn, task.obtain_execution_role().role_arn]
        statements = [
            # the service: rolled to the new task definition, its deployment watched
            (
                [
                    "ecs:UpdateService",
                    "ecs:DescribeServices",
                    "ecs:ListServiceDeployments",
                    "ecs:TagResource",
                    "ecs:UntagResource",
                    "ecs:ListTagsForResource",
                ],
                [service, task_definitions],
            ),
            (["ecs:DescribeServiceDeployments", "ecs:StopServiceDeployment"], [deployments]),
            # Registering, describing and deregistering task definitions take no resource:
            # harmless alone (running one needs the service, above, and PassRole, below).
            (
                [
                    "ecs:RegisterTaskDefinition",
                    "ecs:DeregisterTaskDefinition",
                    "ecs:DescribeTaskDefinition",
                ],
                ["*"],
            ),
            (["iam:GetRole"], roles),
            # Scalable targets are named by an id Application Auto Scaling makes (its Describe
            # calls take no resource); the target tracking alarms are its own, named after it.
            (
                [
                    "application-autoscaling:RegisterScalableTarget",
                    "application-autoscaling:DeregisterScalableTarget",
                    "application-autoscaling:PutScheduledAction",
                    "application-autoscaling:DeleteScheduledAction",
                    "application-autoscaling:TagResource",
                    "application-autoscaling:UntagResource",
                    "application-autoscaling:ListTagsForResource",
                ],
                [
                    self.format_arn(
                        service="application-autoscaling",
                        resource="scalable-target",
                        resource_name="*",
                    )
                ],
            ),
            (
                [
                    "application-autoscaling:DescribeScalableTargets",
                    "application-autoscaling:DescribeScheduledActions",
                ],
                ["*"],
            ),
            (
                [
                    "cloudwatch:PutMetricAlarm",
                    "cloudwatch:DeleteAlarms",
                    "cloudwatch:DescribeAlarms",
                ],
                [
                    self.format_arn(
                        service="cloudwatch",
                        resource="alarm",
                        resource_name="TargetTracking-*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            ),
        ]
        for actions, resources in statements:
            role.add_to_policy(iam.PolicyStatement(actions=actions, resources=resources))
        # the task's own two roles, to ECS only
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=roles,
                conditions={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
            )
        )
        # the canary's alarms: their figures name the tags rolled (ImageTag, PreviousImageTag)
        role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "cloudwatch:PutMetricAlarm",
                    "cloudwatch:DescribeAlarms",
                    "cloudwatch:TagResource",
                    "cloudwatch:UntagResource",
                    "cloudwatch:ListTagsForResource",
                ],
                resources=[
                    self.format_arn(
                        service="cloudwatch",
                        resource="alarm",
                        resource_name=name,
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                    for name in self.canary_alarm_names
                ],
            )
        )
        # the role ECS moves the listener rule's weights with during a canary, to ECS only
        canary_role = self.service.node.find_child("CanaryRole")
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[canary_role.role_arn],  # type: ignore[attr-defined]
                conditions={"StringEquals": {"iam:PassedToService": "ecs.amazonaws.com"}},
            )
        )
        # the CDK bootstrap version the stack's rule checks (an SSM-typed parameter)
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["ssm:GetParameters"],
                resources=[
                    self.format_arn(
                        service="ssm",
                        resource="parameter",
                        resource_name=DefaultStackSynthesizer.DEFAULT_BOOTSTRAP_STACK_VERSION_SSM_PARAMETER.replace(
                            "${Qualifier}", DefaultStackSynthesizer.DEFAULT_QUALIFIER
                        ).lstrip("/"),
                    )
                ],
            )
        )
        return role
