"""Every AWS call the code makes under an identity, judged against that identity's policy as the
stacks synthesized it.

moto grants every call unless its IAM enforcement is on, and even then it judges actions only,
not the resources a statement names. So the calls are recorded here (botocore's
`before-parameter-build` event: the operation and its parameters, before anything is sent), each
turned into what IAM evaluates (the action, the resource ARN, the condition keys, and the calls
it implies: a KMS key use for an object in an encrypted bucket, `iam:PassRole` for a role handed
to a service), and judged against the role's policies as moto's CloudFormation created them
from the synthesized templates (intrinsic functions resolved to the moto account's ARNs).

The evaluation is IAM's for identity policies: an explicit Deny wins, else an Allow whose
Action, Resource and Condition all match. Condition operators not listed in CONDITIONS make a
statement not match (an Allow is then not granted: the check errs on the refusing side).
A call with no resource mapping in RESOURCES fails loudly: a new call needs one written here.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

ACCOUNT = "123456789012"  # moto's account

# botocore's signing name -> IAM's service prefix, where they differ.
IAM_PREFIX = {"monitoring": "cloudwatch", "states": "states"}
# S3 operations whose IAM action has another name.
S3_ACTIONS = {
    "HeadObject": "GetObject",
    "ListObjectsV2": "ListBucket",
    "ListObjects": "ListBucket",
    "HeadBucket": "ListBucket",
    "ListObjectVersions": "ListBucketVersions",
    "CreateMultipartUpload": "PutObject",
    "UploadPart": "PutObject",
    "CompleteMultipartUpload": "PutObject",
    "AbortMultipartUpload": "AbortMultipartUpload",
}
# Calls that need no permission.
UNAUTHORIZED = {"sts:GetCallerIdentity"}


@dataclass(frozen=True)
class Call:
    """One request as IAM judges it."""

    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()
    because: str = ""  # for an implied call: the call that implies it

    def __str__(self) -> str:
        implied = f" (implied by {self.because})" if self.because else ""
        return f"{self.action} on {self.resource}{implied}"


def _arn(service: str, region: str, resource: str) -> str:
    return f"arn:aws:{service}:{region}:{ACCOUNT}:{resource}"


def _s3(operation: str, params: dict[str, Any], region: str) -> list[Call]:
    action = f"s3:{S3_ACTIONS.get(operation, operation)}"
    bucket = params["Bucket"]
    if "Key" in params:
        calls = [Call(action, f"arn:aws:s3:::{bucket}/{params['Key']}")]
        if operation == "CopyObject":
            source = params["CopySource"]
            if isinstance(source, dict):
                source = f"{source['Bucket']}/{source['Key']}"
            calls.append(Call("s3:GetObject", f"arn:aws:s3:::{source.lstrip('/')}"))
        return calls
    return [Call(action, f"arn:aws:s3:::{bucket}")]


def _ecr(operation: str, params: dict[str, Any], region: str) -> list[Call]:
    if operation == "GetAuthorizationToken":
        return [Call("ecr:GetAuthorizationToken", "*")]
    name = params["repositoryName"]
    return [Call(f"ecr:{operation}", _arn("ecr", region, f"repository/{name}"))]


def _cloudformation(operation: str, params: dict[str, Any], region: str) -> list[Call]:
    stack = params.get("StackName", "")
    # A stack's ARN ends with its id; policies name it `stack/<name>/*`.
    resource = (
        stack
        if stack.startswith("arn:")
        else _arn("cloudformation", region, f"stack/{stack}/00000000-0000-0000-0000-000000000000")
    )
    calls = [Call(f"cloudformation:{operation}", resource)]
    if role := params.get("RoleARN"):
        calls.append(
            Call(
                "iam:PassRole",
                role,
                (("iam:PassedToService", "cloudformation.amazonaws.com"),),
                because=f"cloudformation:{operation} with RoleARN",
            )
        )
    return calls


def _ssm(operation: str, params: dict[str, Any], region: str) -> list[Call]:
    name = params["Name"]
    return [Call(f"ssm:{operation}", _arn("ssm", region, f"parameter/{name.lstrip('/')}"))]


def _ecs(operation: str, params: dict[str, Any], region: str) -> list[Call]:
    cluster = params.get("cluster", "default").rsplit("/", 1)[-1]
    if operation == "DescribeServices":
        return [
            Call(
                "ecs:DescribeServices",
                s if s.startswith("arn:") else _arn("ecs", region, f"service/{cluster}/{s}"),
            )
            for s in params["services"]
        ]
    if operation in ("UpdateService",):
        service = params["service"]
        resource = (
            service
            if service.startswith("arn:")
            else _arn("ecs", region, f"service/{cluster}/{service}")
        )
        return [Call(f"ecs:{operation}", resource)]
    raise KeyError(operation)


def _secretsmanager(operation: str, params: dict[str, Any], region: str) -> list[Call]:
    return [Call(f"secretsmanager:{operation}", params["SecretId"])]


def _emr_serverless(operation: str, params: dict[str, Any], region: str) -> list[Call]:
    application = _arn("emr-serverless", region, f"/applications/{params['applicationId']}")
    if operation == "StartJobRun":
        return [
            Call("emr-serverless:StartJobRun", application),
            Call(
                "iam:PassRole",
                params["executionRoleArn"],
                (("iam:PassedToService", "emr-serverless.amazonaws.com"),),
                because="emr-serverless:StartJobRun",
            ),
        ]
    return [Call(f"emr-serverless:{operation}", f"{application}/jobruns/{params['jobRunId']}")]


def _states(operation: str, params: dict[str, Any], region: str) -> list[Call]:
    return [Call(f"states:{operation}", params.get("stateMachineArn") or params["executionArn"])]


def _dynamodb(operation: str, params: dict[str, Any], region: str) -> list[Call]:
    return [Call(f"dynamodb:{operation}", _arn("dynamodb", region, f"table/{params['TableName']}"))]


def _sns(operation: str, params: dict[str, Any], region: str) -> list[Call]:
    return [Call(f"sns:{operation}", params["TopicArn"])]


def _anything(operation: str, params: dict[str, Any], region: str, prefix: str) -> list[Call]:
    return [Call(f"{prefix}:{operation}", "*")]


RESOURCES: dict[str, Callable[[str, dict[str, Any], str], list[Call]]] = {
    "s3": _s3,
    "ecr": _ecr,
    "cloudformation": _cloudformation,
    "ssm": _ssm,
    "ecs": _ecs,
    "secretsmanager": _secretsmanager,
    "emr-serverless": _emr_serverless,
    "states": _states,
    "dynamodb": _dynamodb,
    "sns": _sns,
    # PutMetricData names no resource (IAM: "*")
    "cloudwatch": lambda o, p, r: _anything(o, p, r, "cloudwatch"),
}


@dataclass
class Recorder:
    """Records every call made through clients of `session` created after it is attached."""

    region: str
    calls: list[Call] = field(default_factory=list)
    operations: list[str] = field(default_factory=list)
    # bucket -> the KMS key ARN its objects are encrypted with (a read implies a Decrypt).
    bucket_keys: dict[str, str] = field(default_factory=dict)

    def attach(self, session: Any) -> Any:
        session.events.register("before-parameter-build", self._record)
        return session

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        service = model.service_model
        prefix = IAM_PREFIX.get(service.signing_name, service.signing_name)
        operation = model.name
        self.operations.append(f"{prefix}:{operation}")
        if f"{prefix}:{operation}" in UNAUTHORIZED:
            return
        if prefix not in RESOURCES:
            raise AssertionError(f"no resource mapping for {prefix}:{operation} in policy_check")
        try:
            calls = RESOURCES[prefix](operation, params, self.region)
        except KeyError as err:
            raise AssertionError(
                f"no resource mapping for {prefix}:{operation} ({err}) in policy_check"
            ) from None
        self.calls += calls
        for call in calls:
            self.calls += self._kms(call)

    def _kms(self, call: Call) -> list[Call]:
        """The key use an object read or write implies in a bucket encrypted with a KMS key."""
        if not call.action.startswith("s3:") or not call.resource.startswith("arn:aws:s3:::"):
            return []
        bucket = call.resource.removeprefix("arn:aws:s3:::").split("/", 1)[0]
        key = self.bucket_keys.get(bucket)
        if key is None or "/" not in call.resource.removeprefix("arn:aws:s3:::"):
            return []
        if call.action == "s3:GetObject":
            return [Call("kms:Decrypt", key, because=str(call))]
        if call.action == "s3:PutObject":
            return [Call("kms:GenerateDataKey", key, because=str(call))]
        return []


# -- evaluation -------------------------------------------------------------------------------
def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _glob(pattern: str, value: str, *, case: bool = True) -> bool:
    if not case:
        pattern, value = pattern.lower(), value.lower()
    return fnmatch.fnmatchcase(value, pattern)


CONDITIONS: dict[str, Callable[[list[str], str], bool]] = {
    "StringEquals": lambda wanted, got: got in wanted,
    "StringLike": lambda wanted, got: any(_glob(w, got) for w in wanted),
    "ArnEquals": lambda wanted, got: got in wanted,
    "ArnLike": lambda wanted, got: any(_glob(w, got) for w in wanted),
    "Bool": lambda wanted, got: got.lower() in [str(w).lower() for w in wanted],
}


def _conditions_hold(conditions: dict[str, Any], context: dict[str, str]) -> bool:
    for operator, tests in conditions.items():
        judge = CONDITIONS.get(operator)
        if judge is None:
            return False
        for key, wanted in tests.items():
            if key not in context or not judge([str(w) for w in _listed(wanted)], context[key]):
                return False
    return True


def _matches(statement: dict[str, Any], call: Call) -> bool:
    if "Action" in statement:
        if not any(_glob(a, call.action, case=False) for a in _listed(statement["Action"])):
            return False
    elif any(_glob(a, call.action, case=False) for a in _listed(statement["NotAction"])):
        return False
    if "Resource" in statement:
        if not any(_glob(r, call.resource) for r in _listed(statement["Resource"])):
            return False
    elif any(_glob(r, call.resource) for r in _listed(statement["NotResource"])):
        return False
    return _conditions_hold(statement.get("Condition", {}), dict(call.context))


def allowed(policies: Iterable[dict[str, Any]], call: Call) -> bool:
    granted = False
    for policy in policies:
        for statement in _listed(policy["Statement"]):
            if not _matches(statement, call):
                continue
            if statement["Effect"] == "Deny":
                return False
            granted = True
    return granted


def trusted(trust_policy: dict[str, Any], principal: Any, call: Call) -> bool:
    """Whether a role's trust policy lets `principal` (as the template names it, e.g.
    `{"Ref": <OIDC provider>}`) make `call` (an sts:AssumeRole* with the caller's claims as
    its context): an explicit Deny wins, else an Allow naming the principal whose Action and
    Condition match."""
    granted = False
    for statement in _listed(trust_policy["Statement"]):
        named = [p for values in statement.get("Principal", {}).values() for p in _listed(values)]
        if principal not in named:
            continue
        if not any(_glob(a, call.action, case=False) for a in _listed(statement["Action"])):
            continue
        if not _conditions_hold(statement.get("Condition", {}), dict(call.context)):
            continue
        if statement["Effect"] == "Deny":
            return False
        granted = True
    return granted


def refused(policies: list[dict[str, Any]], calls: Iterable[Call]) -> list[str]:
    """The calls `policies` do not allow, each once, in the order they were made."""
    seen: dict[str, None] = {}
    for call in calls:
        if not allowed(policies, call):
            seen.setdefault(str(call), None)
    return list(seen)


# -- the roles' policies, as moto's CloudFormation created them --------------------------------
def role_policies(session: Any, stack: str, role_logical_id: str) -> list[dict[str, Any]]:
    """Every identity policy of a role of `stack` (inline and attached), resolved."""
    cloudformation, iam = session.client("cloudformation"), session.client("iam")
    (role,) = [
        r["PhysicalResourceId"].rsplit("/", 1)[-1]
        for r in cloudformation.describe_stack_resources(StackName=stack)["StackResources"]
        if r.get("LogicalResourceId") == role_logical_id
    ]
    documents = []
    for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        documents.append(iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"])
    for attached in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]:
        policy = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]
        version = iam.get_policy_version(
            PolicyArn=attached["PolicyArn"], VersionId=policy["DefaultVersionId"]
        )
        documents.append(version["PolicyVersion"]["Document"])
    return [json.loads(d) if isinstance(d, str) else d for d in documents]


def role_logical_id(template: dict[str, Any], resource_type: str, property_name: str) -> str:
    """The logical id of the role a resource of `resource_type` runs as (its `property_name`:
    `{"Fn::GetAtt": [<role>, "Arn"]}`)."""
    (resource,) = [r for r in template["Resources"].values() if r["Type"] == resource_type]
    return str(resource["Properties"][property_name]["Fn::GetAtt"][0])
