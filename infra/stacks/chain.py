"""The chain on AWS: a Step Functions state machine with one step per stage of the chain, in
the order `configs/chain.py` declares (AWS_CHAIN: not a second list), started by a schedule and
by every new drop in the landing zone.

- An EMR stage is an EMR Serverless job (`startJobRun.sync`): `python -m pipelines <stage>`,
  the same entry point as local, with the run's handoff file in the lake
  (`runs/<execution>/handoff.json`) so that each stage gets the exact identifiers the stages
  before it handed off (the version fit registered, the champion promote decided on).
- The release stage is a CodeBuild build in the VPC (`python -m infra.deploy release`):
  package the AWS champion into a Bento, containerize it for linux/amd64, push it, roll the
  serving stack to it, send a smoke request. It skips all that when the champion is the
  version already serving.
- A run that starts while another runs ends at once (a drop of several files starts several).
- A failed step stops the run (the previous champion keeps serving: nothing after it ran),
  publishes what failed to the SNS topic (email in config), and fails the execution.
- Every run ends with the monitor. On the monitoring schedule a run (input `{"mode":
  "monitor"}`) runs the monitor alone, reads its decision from the handoff file and, on
  "retrain", runs the chain. The monitor's figures are in CloudWatch; two alarms (drift, decay)
  notify the same topic.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import (
    ArnFormat,
    CfnOutput,
    DefaultStackSynthesizer,
    Duration,
    RemovalPolicy,
    Stack,
)
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from configs import cloudwatch as cw_contract
from configs import handoff as handoff_keys
from configs.chain import AWS_CHAIN, AWS_MONITOR, BY_NAME, EMR, RELEASE
from configs.settings import AwsConfig
from infra import jobs
from infra.config import landing_key_prefix, monitoring_alarms
from infra.deploy import CLOUDFORMATION_ROLE_VARIABLE
from infra.stacks.common import allow_secret_decryption, log_group
from infra.stacks.data import DataStack, grant_data
from infra.stacks.feature_store import FeatureStoreStack
from infra.stacks.mlflow import MlflowStack
from infra.stacks.network import APP_SUBNETS
from infra.stacks.serving import ServingStack
from infra.stacks.spark import SparkStack
from serving.guard import API_KEYS_VARIABLE

# Step Functions' managed rule for `.sync` EMR Serverless jobs (it watches the job's events).
EMR_SYNC_RULE = "StepFunctionsGetEventsForEMRServerlessJobRule"
# The release build's handoff and run, given by the state machine as environment overrides.
HANDOFF_VARIABLE = "MLOPS_HANDOFF_FILE"
RUN_VARIABLE = "MLOPS_CHAIN_RUN"
STATE_MACHINE_OUTPUT = "StateMachineArn"
# A run started with {"mode": "monitor"} (the monitoring schedule) runs the monitor alone.
MODE_KEY, MONITOR_MODE = "mode", "monitor"
SCHEDULED_MONITOR_STATE = "monitor (scheduled)"
READ_DECISION_STATE = "Read the monitor's decision"
RETRAIN_CHOICE = "Retrain?"
# The run lock: one item (`lock_id` = "chain") naming the execution that holds it (names
# that are not among DynamoDB's reserved words: `lock` is one, and is refused).
LOCK_KEY, LOCK_ITEM, HOLDER = "lock_id", "chain", "held_by"
TAKE_LOCK_STATE = "Take the run lock"
LEFT_STATE = "Left to the run in progress"
LOCK_TAKEN_ERROR = "DynamoDB.ConditionalCheckFailedException"


def state_name(stage: str) -> str:
    """The step of `stage` in the state machine (the step-by-step test reads these)."""
    return stage


class ChainStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AwsConfig,
        vpc: ec2.IVpc,
        data: DataStack,
        spark: SparkStack,
        mlflow: MlflowStack,
        feature_store: FeatureStoreStack,
        serving: ServingStack,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        chain = config.chain
        lake = data.lake.bucket_name
        # The jobs' environment: signed in to the online store as its writer for the stages
        # that write it (configs/chain.py `writes_online_store`), as its reader for the rest.
        self.environments = {
            writes: jobs.job_environment(
                landing_bucket=data.landing.bucket_name,
                lake_bucket=lake,
                redis_endpoint=feature_store.endpoint,
                redis_user=feature_store.writer_user if writes else feature_store.reader_user,
                redis_token_secret_arn=(
                    feature_store.auth_token if writes else feature_store.reader_token
                ).secret_arn,
                tracking_uri=mlflow.tracking_uri,
                mlflow_password_secret_arn=mlflow.jobs_password.secret_arn,
                profile=config.profile,
            )
            for writes in (False, True)
        }
        environment = self.environments[False]
        self.topic = self._alerts_topic(config)
        # the release build writes no features: the reader's environment
        self.release = self._release_project(config, vpc, data, mlflow, serving, environment)
        handoff = sfn.JsonPath.format(
            jobs.handoff_location(lake, "{}"), sfn.JsonPath.string_at("$$.Execution.Name")
        )
        # One run at a time: a lock item in DynamoDB, taken by a conditional write before
        # anything runs and given back at every end (infra/stacks/chain.py `_run_lock`).
        self.machine_name = f"{config.name}-chain"
        self.lock = self._lock_table(config)
        failed = self._release_lock(
            "Give back the run lock (failed)",
            sfn.Fail(self, "Failed", cause="a stage of the chain failed; see the topic"),
        )
        steps: list[sfn.IChainable] = []
        for stage, where in AWS_CHAIN:
            if where == EMR:
                step: Any = self._emr_step(config, spark, lake, stage)
            elif where == RELEASE:
                step = tasks.CodeBuildStartBuild(
                    self,
                    state_name(stage),
                    project=self.release,
                    integration_pattern=sfn.IntegrationPattern.RUN_JOB,
                    environment_variables_override={
                        HANDOFF_VARIABLE: codebuild.BuildEnvironmentVariable(value=handoff),
                        RUN_VARIABLE: codebuild.BuildEnvironmentVariable(
                            value=sfn.JsonPath.string_at("$$.Execution.Name")
                        ),
                    },
                    result_path=sfn.JsonPath.DISCARD,
                )
            else:
                raise ValueError(f"stage {stage!r} runs {where!r} on AWS: no step for that")
            steps.append(self._notify_on_failure(config, step, stage, failed))
        # After every run: the monitor on the champion the run left serving.
        steps.append(
            self._notify_on_failure(
                config,
                self._emr_step(config, spark, lake, AWS_MONITOR),
                AWS_MONITOR,
                failed,
            )
        )
        body = sfn.Chain.start(steps[0])
        for step in steps[1:]:
            body = body.next(step)
        body = body.next(self._release_lock("Give back the run lock", sfn.Succeed(self, "Done")))
        # On the monitoring schedule: the monitor alone; when it decides to retrain, the chain
        # (which ends with the monitor again, never looping back here).
        scheduled = self._notify_on_failure(
            config,
            self._emr_step(config, spark, lake, AWS_MONITOR, name=SCHEDULED_MONITOR_STATE),
            SCHEDULED_MONITOR_STATE,
            failed,
        )
        decision = tasks.CallAwsService(
            self,
            READ_DECISION_STATE,
            service="s3",
            action="getObject",
            iam_action="s3:GetObject",
            parameters={
                "Bucket": lake,
                "Key": sfn.JsonPath.format(
                    jobs.handoff_key("{}"), sfn.JsonPath.string_at("$$.Execution.Name")
                ),
            },
            iam_resources=[data.lake.arn_for_objects(f"{jobs.RUNS_PREFIX}*")],
            result_selector={
                "handoff": sfn.JsonPath.string_to_json(sfn.JsonPath.string_at("$.Body"))
            },
            result_path="$.monitor",
        )
        self._notify_on_failure(config, decision, READ_DECISION_STATE, failed)
        monitor_only = scheduled.next(decision).next(
            sfn.Choice(self, RETRAIN_CHOICE)
            .when(
                sfn.Condition.string_equals(
                    f"$.monitor.handoff.{handoff_keys.DECISION_KEY}", handoff_keys.RETRAIN
                ),
                steps[0],
            )
            .otherwise(
                self._release_lock(
                    "Give back the run lock (kept)", sfn.Succeed(self, "Kept the champion")
                )
            )
        )
        # A run started while another holds the lock ends at once: the running one collects
        # every drop that has landed (a month's delivery is several files, several events).
        mode = (
            sfn.Choice(self, "Monitor only?")
            .when(
                sfn.Condition.and_(
                    sfn.Condition.is_present(f"$.{MODE_KEY}"),
                    sfn.Condition.string_equals(f"$.{MODE_KEY}", MONITOR_MODE),
                ),
                monitor_only,
            )
            .otherwise(body)
        )
        definition = self._run_lock(mode)
        self.state_machine = sfn.StateMachine(
            self,
            "Chain",
            state_machine_name=self.machine_name,
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=log_group(self, "Logs", config.log_retention_days, data.logs_key),
                level=sfn.LogLevel.ALL,
                include_execution_data=False,
            ),
        )
        self._allow_emr_jobs(spark)
        self.operator_policy = self._operator_policy(config, data, spark, serving)
        # The decision the monitor handed off, read from the run's handoff file (encrypted
        # with the platform's key).
        grant_data(self.state_machine.role, data.key, read=[(data.lake, jobs.RUNS_PREFIX)])
        self.alerts_key.grant(self.state_machine.role, "kms:Decrypt", "kms:GenerateDataKey")
        triggers = []
        if chain.schedule:
            triggers.append(
                events.Rule(
                    self,
                    "Schedule",
                    description=f"{config.name}: the chain on its schedule",
                    schedule=events.Schedule.expression(chain.schedule),
                )
            )
        if chain.run_on_new_drop:
            landing_prefix = landing_key_prefix()
            triggers.append(
                events.Rule(
                    self,
                    "NewDrop",
                    description=f"{config.name}: the chain when a drop lands",
                    event_pattern=events.EventPattern(
                        source=["aws.s3"],
                        detail_type=["Object Created"],
                        detail={
                            "bucket": {"name": [data.landing.bucket_name]},
                            "object": {"key": [{"prefix": landing_prefix}]},
                        },
                    ),
                )
            )
        for rule in triggers:
            rule.add_target(targets.SfnStateMachine(self.state_machine))
        if chain.monitor_schedule:
            events.Rule(
                self,
                "MonitorSchedule",
                description=f"{config.name}: the monitor on its schedule",
                schedule=events.Schedule.expression(chain.monitor_schedule),
            ).add_target(
                targets.SfnStateMachine(
                    self.state_machine,
                    input=events.RuleTargetInput.from_object({MODE_KEY: MONITOR_MODE}),
                )
            )
        self.alarms = self._monitoring_alarms(config)
        CfnOutput(self, STATE_MACHINE_OUTPUT, value=self.state_machine.state_machine_arn)
        CfnOutput(self, "FailuresTopic", value=self.topic.topic_arn)
        CfnOutput(self, "ReleaseProject", value=self.release.project_name)

    def _lock_table(self, config: AwsConfig) -> dynamodb.Table:
        return dynamodb.Table(
            self,
            "RunLock",
            partition_key=dynamodb.Attribute(name=LOCK_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            removal_policy=RemovalPolicy.DESTROY,  # holds one item while a run is going
        )

    def _run_lock(self, then: sfn.IChainable) -> sfn.IChainable:
        """Take the lock, then `then`. The lock is one item written only if absent
        (`attribute_not_exists`), so of two runs started at once exactly one gets it: the
        other ends as "Left to the run in progress". A lock whose holder is no longer running
        (aborted, timed out: it never gave it back) is taken over, only if it is still that
        holder's (a conditional delete), and the take is tried again."""
        lock_key = {LOCK_KEY: tasks.DynamoAttributeValue.from_string(LOCK_ITEM)}
        take = tasks.DynamoPutItem(
            self,
            TAKE_LOCK_STATE,
            table=self.lock,
            item={
                **lock_key,
                HOLDER: tasks.DynamoAttributeValue.from_string(
                    sfn.JsonPath.string_at("$$.Execution.Id")
                ),
                "started_at": tasks.DynamoAttributeValue.from_string(
                    sfn.JsonPath.string_at("$$.Execution.StartTime")
                ),
            },
            condition_expression=f"attribute_not_exists({LOCK_KEY})",
            result_path=sfn.JsonPath.DISCARD,
        )
        holder = tasks.DynamoGetItem(
            self,
            "Who holds the run lock?",
            table=self.lock,
            key=lock_key,
            consistent_read=True,
            result_selector={"holder": sfn.JsonPath.string_at(f"$.Item.{HOLDER}.S")},
            result_path="$.lock",
        )
        status = tasks.CallAwsService(
            self,
            "Is its run still going?",
            service="sfn",
            action="describeExecution",
            parameters={"ExecutionArn": sfn.JsonPath.string_at("$.lock.holder")},
            iam_resources=[
                self.format_arn(
                    service="states",
                    resource="execution",
                    resource_name=f"{self.machine_name}:*",
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                )
            ],
            result_selector={"status": sfn.JsonPath.string_at("$.Status")},
            result_path="$.lock.run",
        )
        take_over = tasks.DynamoDeleteItem(
            self,
            "Take over a lock its run left",
            table=self.lock,
            key=lock_key,
            condition_expression=f"{HOLDER} = :holder",
            expression_attribute_values={
                ":holder": tasks.DynamoAttributeValue.from_string(
                    sfn.JsonPath.string_at("$.lock.holder")
                )
            },
            result_path=sfn.JsonPath.DISCARD,
        )
        left = sfn.Succeed(self, LEFT_STATE)
        # The item vanished between the failed write and the read: try again.
        holder.add_catch(take, errors=[sfn.Errors.ALL], result_path="$.lock_error")
        # Someone else took it over first: read who holds it now.
        take_over.add_catch(holder, errors=[sfn.Errors.ALL], result_path="$.lock_error")
        status.add_catch(take_over, errors=[sfn.Errors.ALL], result_path="$.lock_error")
        take.add_catch(holder, errors=[LOCK_TAKEN_ERROR], result_path="$.lock_error")
        holder.next(status).next(
            sfn.Choice(self, "Another run in progress?")
            .when(sfn.Condition.string_equals("$.lock.run.status", "RUNNING"), left)
            .otherwise(take_over.next(take))
        )
        return take.next(then)

    def _release_lock(self, name: str, then: sfn.State) -> sfn.IChainable:
        """Give the lock back (only if this run holds it), then `then`."""
        give_back = tasks.DynamoDeleteItem(
            self,
            name,
            table=self.lock,
            key={LOCK_KEY: tasks.DynamoAttributeValue.from_string(LOCK_ITEM)},
            condition_expression=f"{HOLDER} = :me",
            expression_attribute_values={
                ":me": tasks.DynamoAttributeValue.from_string(
                    sfn.JsonPath.string_at("$$.Execution.Id")
                )
            },
            result_path=sfn.JsonPath.DISCARD,
        )
        # Not ours any more (taken over after this run was thought gone): nothing to give.
        give_back.add_catch(then, errors=[sfn.Errors.ALL], result_path="$.lock_error")
        return give_back.next(then)

    def _alerts_topic(self, config: AwsConfig) -> sns.Topic:
        """Where failed runs and the monitoring alarms notify. Encrypted with a key of its own:
        CloudWatch alarms cannot publish to a topic under SNS's AWS-managed key (its policy,
        which nobody can change, does not let CloudWatch use it), and the topic's policy lets
        this account's alarms publish (enforcing TLS replaces SNS's default policy)."""
        self.alerts_key = kms.Key(
            self,
            "AlertsKey",
            description=f"{config.name}: the alerts topic",
            enable_key_rotation=True,
        )
        cloudwatch_principal = iam.ServicePrincipal("cloudwatch.amazonaws.com")
        self.alerts_key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[cloudwatch_principal],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
            )
        )
        topic = sns.Topic(
            self,
            "Failures",
            display_name=f"{config.name}: failed chain runs and monitoring alarms",
            master_key=self.alerts_key,
            enforce_ssl=True,
        )
        topic.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[cloudwatch_principal],
                actions=["sns:Publish"],
                resources=[topic.topic_arn],
                conditions={"StringEquals": {"aws:SourceAccount": self.account}},
            )
        )
        if config.chain.notify_email:
            topic.add_subscription(subscriptions.EmailSubscription(config.chain.notify_email))
        return topic

    def _notify_on_failure(
        self, config: AwsConfig, step: Any, label: str, failed: sfn.IChainable
    ) -> Any:
        """`step`, whose failure publishes what failed to the topic and fails the run."""
        notify = tasks.SnsPublish(
            self,
            f"Notify {label} failed",
            topic=self.topic,
            subject=f"{config.name}: the chain failed at {label}",
            message=sfn.TaskInput.from_object(
                {
                    "run": sfn.JsonPath.string_at("$$.Execution.Name"),
                    "stage": label,
                    "error": sfn.JsonPath.string_at("$.failure.Error"),
                    "cause": sfn.JsonPath.string_at("$.failure.Cause"),
                }
            ),
            result_path=sfn.JsonPath.DISCARD,
        )
        step.add_catch(notify.next(failed), result_path="$.failure")
        return step

    def _monitoring_alarms(self, config: AwsConfig) -> list[cloudwatch.Alarm]:
        """Drift and decay of the live model (the monitor's figures, configs/cloudwatch.py),
        alarmed at the monitor's own retrain bounds, notifying the topic."""
        bounds = monitoring_alarms()

        def figure(name: str, statistic: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=bounds.namespace,
                metric_name=name,
                dimensions_map={cw_contract.USECASE_DIMENSION: bounds.usecase},
                statistic=statistic,
                period=Duration.days(1),
            )

        alarms = [
            cloudwatch.Alarm(
                self,
                "DriftAlarm",
                alarm_description=(
                    f"{config.name}: more than {bounds.max_drifted_share:.0%} of the model's "
                    "inputs drifted (python -m pipelines monitoring says which)"
                ),
                metric=figure(cw_contract.DRIFTED_SHARE, "Maximum"),
                threshold=bounds.max_drifted_share,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        ]
        if bounds.min_live_metric is not None:
            alarms.append(
                cloudwatch.Alarm(
                    self,
                    "DecayAlarm",
                    alarm_description=(
                        f"{config.name}: the champion's live {bounds.primary_metric} fell "
                        f"below {bounds.min_live_metric}"
                    ),
                    metric=figure(cw_contract.CHAMPION_LIVE_METRIC, "Minimum"),
                    threshold=bounds.min_live_metric,
                    comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                    evaluation_periods=1,
                    treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                )
            )
        for alarm in alarms:
            alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.topic))
        return alarms

    def _emr_step(
        self,
        config: AwsConfig,
        spark: SparkStack,
        lake: str,
        stage: str,
        name: str | None = None,
    ) -> sfn.CustomState:
        """`python -m pipelines --handoff-file <run's file> <stage>` as an EMR Serverless job;
        the job driver is the deploy's own (`jobs.spark_submit`), its keys as Step Functions
        spells them, the arguments built at run time (they name the execution). A stage that
        writes the online store runs as the feature writer's role, with the writer's sign-in."""
        writes = BY_NAME[stage].writes_online_store
        driver = jobs.spark_submit(lake, [stage], self.environments[writes])
        role = spark.feature_writer_role if writes else spark.job_role
        arguments = ", ".join(
            [
                "'--env'",
                "'aws'",
                "'--handoff-file'",
                f"States.Format('{jobs.handoff_location(lake, '{}')}', $$.Execution.Name)",
                f"'{stage}'",
            ]
        )
        return sfn.CustomState(
            self,
            name or state_name(stage),
            state_json={
                "Type": "Task",
                "Resource": f"arn:{self.partition}:states:::emr-serverless:startJobRun.sync",
                "Parameters": {
                    "ApplicationId": spark.application.attr_application_id,
                    "ExecutionRoleArn": role.role_arn,
                    "Name": jobs.job_name(stage),
                    "ExecutionTimeoutMinutes": config.chain.job_timeout_minutes,
                    "JobDriver": {
                        "SparkSubmit": {
                            "EntryPoint": driver["entryPoint"],
                            "EntryPointArguments.$": f"States.Array({arguments})",
                            "SparkSubmitParameters": driver["sparkSubmitParameters"],
                        }
                    },
                    "ConfigurationOverrides": {
                        "MonitoringConfiguration": {
                            "S3MonitoringConfiguration": {
                                "LogUri": f"s3://{lake}/{jobs.LOG_PREFIX}"
                            }
                        }
                    },
                },
                # Each job's run (its id, state, times) kept in the run's state under its stage.
                "ResultPath": f"$.jobs.{stage}",
            },
        )

    def _operator_policy(
        self, config: AwsConfig, data: DataStack, spark: SparkStack, serving: ServingStack
    ) -> iam.ManagedPolicy:
        """What a person (or a CI role) needs for `make deploy`, `status`, `rollback`,
        `infra.deploy releases` and `spark` once the platform exists: attach it instead of an
        administrator's rights. `cdk deploy` itself works through the CDK bootstrap's roles,
        which it may assume. The first deploy and `destroy` create and delete roles: an
        administrator runs those (README). Checked against every call those commands make
        (tests/infra/test_role_policies.py)."""
        qualifier = DefaultStackSynthesizer.DEFAULT_QUALIFIER
        stacks = self.format_arn(
            service="cloudformation", resource="stack", resource_name=f"{config.name}-*/*"
        )
        machine = self.format_arn(
            service="states",
            resource="stateMachine",
            resource_name=self.machine_name,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        executions = self.format_arn(
            service="states",
            resource="execution",
            resource_name=f"{self.machine_name}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        application = spark.application.attr_arn
        statements = [
            # `cdk deploy` through the bootstrap's deploy, publishing and lookup roles
            iam.PolicyStatement(
                actions=["sts:AssumeRole"],
                resources=[
                    f"arn:{self.partition}:iam::{self.account}:role/"
                    f"cdk-{qualifier}-*-{self.account}-{self.region}"
                ],
            ),
            iam.PolicyStatement(
                actions=[
                    "cloudformation:DescribeStacks",
                    "cloudformation:DescribeStackEvents",
                    "cloudformation:GetTemplate",
                ],
                resources=[stacks],
            ),
            # rollback: the serving stack, rolled by its own deploy role as the release does
            *_rolling_the_service(self, config, serving),
            iam.PolicyStatement(
                actions=["ssm:GetParameter", "ssm:PutParameter"],
                resources=[
                    self.format_arn(
                        service="ssm",
                        resource="parameter",
                        resource_name=f"{config.name}/serving/releases",
                    )
                ],
            ),
            # the code and the example drops it uploads, and the runs it starts and watches
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[data.lake.bucket_arn, data.landing.bucket_arn],
            ),
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:PutObject"],
                resources=[
                    data.lake.arn_for_objects(f"{jobs.CODE_PREFIX}*"),
                    data.landing.arn_for_objects(f"{landing_key_prefix()}*"),
                ],
            ),
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[data.key.key_arn]
            ),
            iam.PolicyStatement(
                actions=["states:StartExecution", "states:ListExecutions"],
                resources=[machine],
            ),
            iam.PolicyStatement(
                actions=["states:DescribeExecution", "states:GetExecutionHistory"],
                resources=[executions],
            ),
            # `infra.deploy spark`: one command as an EMR Serverless job, as the chain runs it
            iam.PolicyStatement(actions=["emr-serverless:StartJobRun"], resources=[application]),
            iam.PolicyStatement(
                actions=["emr-serverless:GetJobRun"], resources=[f"{application}/jobruns/*"]
            ),
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[spark.job_role.role_arn, spark.feature_writer_role.role_arn],
                conditions={
                    "StringEquals": {"iam:PassedToService": "emr-serverless.amazonaws.com"}
                },
            ),
        ]
        policy = iam.ManagedPolicy(
            self,
            "OperatorPolicy",
            description=f"{config.name}: deploy, status, rollback, releases and spark",
            statements=statements,
        )
        CfnOutput(self, "OperatorPolicyArn", value=policy.managed_policy_arn)
        return policy

    def _allow_emr_jobs(self, spark: SparkStack) -> None:
        """What `startJobRun.sync` needs (Step Functions' documented policy): start, watch and
        cancel runs of this application, pass the job role to EMR Serverless, and manage the
        managed rule that reports the job's end."""
        role = self.state_machine.role
        application = spark.application.attr_arn
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["emr-serverless:StartJobRun"], resources=[application])
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["emr-serverless:GetJobRun", "emr-serverless:CancelJobRun"],
                resources=[f"{application}/jobruns/*"],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[spark.job_role.role_arn, spark.feature_writer_role.role_arn],
                conditions={
                    "StringEquals": {"iam:PassedToService": "emr-serverless.amazonaws.com"}
                },
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                resources=[
                    self.format_arn(service="events", resource="rule", resource_name=EMR_SYNC_RULE)
                ],
            )
        )

    def _release_project(
        self,
        config: AwsConfig,
        vpc: ec2.IVpc,
        data: DataStack,
        mlflow: MlflowStack,
        serving: ServingStack,
        environment: dict[str, str],
    ) -> codebuild.Project:
        """The release build: the source bundle the deploy uploads, Docker (privileged), in the
        VPC (MLflow's load balancer is internal), `python -m infra.deploy release`."""
        chain = config.chain
        bundle = f"s3://{data.lake.bucket_name}/{jobs.CODE_PREFIX}{jobs.SOURCE_BUNDLE}"
        security_group = ec2.SecurityGroup(
            self,
            "ReleaseSecurityGroup",
            vpc=vpc,
            description="The release build",
            allow_all_outbound=True,
        )
        # Endpoints by value; a secret (given to the jobs by ARN) read by CodeBuild itself.
        variables = {}
        for name, value in environment.items():
            if name.endswith(jobs.SECRET_ARN_SUFFIX):
                variables[name.removesuffix(jobs.SECRET_ARN_SUFFIX)] = (
                    codebuild.BuildEnvironmentVariable(
                        type=codebuild.BuildEnvironmentVariableType.SECRETS_MANAGER, value=value
                    )
                )
            else:
                variables[name] = codebuild.BuildEnvironmentVariable(value=value)
        # The release build signs in to MLflow with its own account: it reads, and edits only
        # the registered model (it tags the version it packaged); never the jobs' account.
        variables["MLFLOW_TRACKING_USERNAME"] = codebuild.BuildEnvironmentVariable(
            value=jobs.MLFLOW_RELEASE_USER
        )
        variables["MLFLOW_TRACKING_PASSWORD"] = codebuild.BuildEnvironmentVariable(
            type=codebuild.BuildEnvironmentVariableType.SECRETS_MANAGER,
            value=mlflow.release_password.secret_arn,
        )
        variables[CLOUDFORMATION_ROLE_VARIABLE] = codebuild.BuildEnvironmentVariable(
            value=serving.deploy_role.role_arn
        )
        if serving.api_keys is not None:
            # the smoke request's key, when the endpoint is opened to the internet
            variables[API_KEYS_VARIABLE] = codebuild.BuildEnvironmentVariable(
                type=codebuild.BuildEnvironmentVariableType.SECRETS_MANAGER,
                value=serving.api_keys.secret_arn,
            )
        project = codebuild.Project(
            self,
            "Release",
            description=f"{config.name}: package the champion, push its image, roll, smoke",
            environment=codebuild.BuildEnvironment(
                build_image=codebuild.LinuxBuildImage.from_code_build_image_id(chain.release_image),
                compute_type=codebuild.ComputeType.MEDIUM,
                privileged=True,  # Docker: bentoml containerize
            ),
            environment_variables=variables,
            vpc=vpc,
            subnet_selection=APP_SUBNETS,
            security_groups=[security_group],
            timeout=Duration.minutes(chain.release_timeout_minutes),
            logging=codebuild.LoggingOptions(
                cloud_watch=codebuild.CloudWatchLoggingOptions(
                    log_group=log_group(
                        self, "ReleaseLogs", config.log_retention_days, data.logs_key
                    )
                )
            ),
            build_spec=codebuild.BuildSpec.from_object(
                {
                    "version": "0.2",
                    "phases": {
                        "install": {
                            "runtime-versions": {"python": "3.11"},
                            "commands": [
                                # The source bundle the deploy uploaded (read with the
                                # explicit grant below, not CodeBuild's wildcard S3 source).
                                f"aws s3 cp {bundle} source.zip",
                                "unzip -q source.zip && rm source.zip",
                                # The dependencies, each file checked against its hash; the
                                # platform itself runs from the source (`python -m`).
                                "python -m venv /tmp/venv",
                                "/tmp/venv/bin/pip install --quiet --require-hashes --no-deps"
                                f" -r {jobs.RUNTIME_LOCK}",
                            ],
                        },
                        "build": {
                            "commands": [
                                "/tmp/venv/bin/python -m infra.deploy release"
                                f' --handoff-file "${HANDOFF_VARIABLE}"'
                            ]
                        },
                    },
                }
            ),
        )
        # The build's own encryption with the platform's key (set on the resource: CDK's
        # property would grant the role kms:ReEncrypt* and more); grant_data gives the role
        # the key actions it needs, by name.
        cfn_project: Any = project.node.default_child
        cfn_project.encryption_key = data.key.key_arn
        role = project.role
        assert role is not None
        grant_data(
            role,
            data.key,
            read=[(data.lake, jobs.CODE_PREFIX)],
            write=[(data.lake, jobs.RUNS_PREFIX)],
        )
        allow_secret_decryption(role, data.key)
        serving.repository.grant_pull_push(role)
        # The release checks whether the Bento's image is already pushed (tags are immutable).
        serving.repository.grant(role, "ecr:DescribeImages")
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["cloudformation:DescribeStacks", "cloudformation:GetTemplate"],
                resources=[_stack_arn(self, f"{config.name}-serving")],
            )
        )
        for statement in _rolling_the_service(self, config, serving):
            role.add_to_principal_policy(statement)
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["ssm:GetParameter", "ssm:PutParameter"],
                resources=[
                    self.format_arn(
                        service="ssm",
                        resource="parameter",
                        resource_name=f"{config.name}/serving/releases",
                    )
                ],
            )
        )
        return project


def _rolling_the_service(
    stack: Stack, config: AwsConfig, serving: ServingStack
) -> list[iam.PolicyStatement]:
    """What rolling the serving stack to another image takes (the release, a rollback): update
    that stack, through its own deploy role only (which may touch only the service, its task
    definitions and its scaling: infra/stacks/serving.py), and watch the service settle."""
    return [
        iam.PolicyStatement(
            actions=["cloudformation:UpdateStack"],
            resources=[_stack_arn(stack, f"{config.name}-serving")],
        ),
        iam.PolicyStatement(
            actions=["iam:PassRole"],
            resources=[serving.deploy_role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}},
        ),
        iam.PolicyStatement(
            actions=["ecs:DescribeServices"], resources=[serving.service.service_arn]
        ),
    ]


def _stack_arn(stack: Stack, name: str) -> str:
    return stack.format_arn(service="cloudformation", resource="stack", resource_name=f"{name}/*")
