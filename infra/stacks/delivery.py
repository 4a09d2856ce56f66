"""The CI pipeline's way into the account: GitHub's OIDC provider and a deploy role that only
one repository's workflow jobs, in one GitHub Environment, can assume (no long-lived keys).

The role's trust names the token's audience (`sts.amazonaws.com`) and its subject exactly:
`repo:<owner>/<name>:environment:<profile>`, the claim GitHub puts in the token of a job that
declares `environment: <profile>`. Another repository, a branch without the environment, a
pull request or another environment presents another subject and is refused
(tests/infra/test_delivery.py judges the synthesized trust policy against each).

What the role may do is what the operator policy of the chain stack allows (`make deploy`,
`status`, `wait`, `rollback`, `releases`: assume the CDK bootstrap's roles, upload the code,
start and watch the chain's runs, roll the serving stack), and in an environment that takes
its releases from another (prod), what `make promote` needs besides.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Aws, CfnOutput, Duration, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from configs.settings import AwsConfig
from infra.config import releases_parameter
from infra.stacks.serving import ServingStack

# GitHub's OIDC issuer, and the claims the deploy role's trust is judged on.
GITHUB_ISSUER = "token.actions.githubusercontent.com"
AUDIENCE_CLAIM = f"{GITHUB_ISSUER}:aud"
SUBJECT_CLAIM = f"{GITHUB_ISSUER}:sub"
AUDIENCE = "sts.amazonaws.com"


def github_subject(repository: str, environment: str) -> str:
    """The `sub` claim of a job of `repository` that runs in GitHub Environment `environment`."""
    return f"repo:{repository}:environment:{environment}"


class DeliveryStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AwsConfig,
        serving: ServingStack,
        operator_policy: iam.IManagedPolicy,
        source_name: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        delivery = config.delivery
        provider_arn = (
            iam.OidcProviderNative(
                self, "GitHubOidc", url=f"https://{GITHUB_ISSUER}", client_ids=[AUDIENCE]
            ).oidc_provider_arn
            if delivery.create_oidc_provider
            else f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:oidc-provider/{GITHUB_ISSUER}"
        )
        self.deploy_role = iam.Role(
            self,
            "DeployRole",
            description=(
                f"{config.name}: deploys from GitHub Actions ({delivery.github_repository}, "
                f"environment {config.profile})"
            ),
            max_session_duration=Duration.hours(2),
            assumed_by=iam.FederatedPrincipal(
                provider_arn,
                conditions={
                    "StringEquals": {
                        AUDIENCE_CLAIM: AUDIENCE,
                        SUBJECT_CLAIM: github_subject(delivery.github_repository, config.profile),
                    }
                },
                assume_role_action="sts:AssumeRoleWithWebIdentity",
            ),
        )
        role = self.deploy_role
        # what `make deploy`, `status`, `wait`, `rollback` and `releases` do (the chain stack's
        # operator policy, judged against their calls in tests/infra/test_role_policies.py)
        role.add_managed_policy(operator_policy)
        if source_name:
            self._promotes(serving, source_name)
        CfnOutput(self, "DeployRoleArn", value=role.role_arn)

    def _promotes(self, serving: ServingStack, source: str) -> None:
        """What `make promote` does beyond the operator policy (which rolls this serving stack
        and records the release): read the source environment's release record and serving
        stack, pull its image, and push it to this environment's repository."""
        role = self.deploy_role
        parameters = f"arn:{Aws.PARTITION}:ssm:{Aws.REGION}:{Aws.ACCOUNT_ID}:parameter"
        stacks = f"arn:{Aws.PARTITION}:cloudformation:{Aws.REGION}:{Aws.ACCOUNT_ID}:stack"
        statements = [
            (["ssm:GetParameter"], [f"{parameters}{releases_parameter(source)}"]),
            (["cloudformation:DescribeStacks"], [f"{stacks}/{source}-serving/*"]),
            (
                [
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer",
                    "ecr:BatchCheckLayerAvailability",
                ],
                [
                    f"arn:{Aws.PARTITION}:ecr:{Aws.REGION}:{Aws.ACCOUNT_ID}"
                    f":repository/{source}-serving*"
                ],
            ),
        ]
        for actions, resources in statements:
            role.add_to_policy(iam.PolicyStatement(actions=actions, resources=resources))
        serving.repository.grant_pull_push(role)
        serving.repository.grant(role, "ecr:DescribeImages")
