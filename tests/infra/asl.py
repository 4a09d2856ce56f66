"""The synthesized state machine executed as Step Functions would run it, state by state.

moto stores a state machine's definition but does not run it, and Step Functions Local is a
Java download this machine cannot make. This walks the definition moto's CloudFormation
created (the real, resolved JSON): Task, Choice, Pass, Succeed and Fail states; InputPath,
Parameters (paths, `$$` context, the intrinsic functions the definition uses), ResultSelector,
ResultPath, OutputPath; Catch by error name. Service integrations run against moto through
boto3 (DynamoDB, S3, SNS, Step Functions' own API) with the error names Step Functions gives
them; EMR Serverless jobs and CodeBuild builds run through handlers the test gives (a stand-in
for the job or the build, which this test names). Retry and timeouts are not modelled.

Stand-in, named: an execution is registered in moto's Step Functions (so DescribeExecution
sees it RUNNING while it runs) and stopped when it ends: moto reports ABORTED for what Step
Functions would report SUCCEEDED or FAILED; both are "not running".
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

Handler = Callable[[dict[str, Any]], Any]


class TaskFailed(Exception):
    def __init__(self, error: str, cause: str = "") -> None:
        super().__init__(f"{error}: {cause}")
        self.error, self.cause = error, cause


@dataclass
class Execution:
    name: str
    arn: str
    status: str = "RUNNING"
    visited: list[str] = field(default_factory=list)
    output: Any = None
    error: str = ""


# -- paths and intrinsic functions -------------------------------------------------------------
def get_path(path: str, data: Any, context: dict[str, Any]) -> Any:
    root, rest = (context, path[2:]) if path.startswith("$$") else (data, path[1:])
    value = root
    for part in re.findall(r"\.([^.\[]+)|\[(\d+)\]", rest):
        key, index = part
        value = value[int(index)] if index else value[key]
    return value


def has_path(path: str, data: Any, context: dict[str, Any]) -> bool:
    try:
        get_path(path, data, context)
    except (KeyError, IndexError, TypeError):
        return False
    return True


def set_path(data: Any, path: str | None, value: Any) -> Any:
    if path is None:  # ResultPath null: the input goes on unchanged
        return data
    if path == "$":
        return value
    result = copy.deepcopy(data)
    node = result
    parts = path[2:].split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return result


def _split_arguments(text: str) -> list[str]:
    parts, depth, quoted, current = [], 0, False, ""
    for index, char in enumerate(text):
        if char == "'" and (index == 0 or text[index - 1] != "\\"):
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        if char == "," and not quoted and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current.strip())
    return parts


def evaluate(expression: str, data: Any, context: dict[str, Any]) -> Any:
    """A `.$` value: a path, or an intrinsic function of literals, paths and functions."""
    if expression.startswith("'"):
        return expression[1:-1].replace("\\'", "'")
    if expression.startswith("$"):
        return get_path(expression, data, context)
    match = re.fullmatch(r"(States\.\w+)\((.*)\)", expression, re.S)
    if not match:
        raise ValueError(f"not a path or an intrinsic function: {expression}")
    function = match.group(1)
    arguments = [evaluate(a, data, context) for a in _split_arguments(match.group(2))]
    if function == "States.Format":
        template, *values = arguments
        for value in values:
            template = template.replace("{}", str(value), 1)
        return template
    if function == "States.Array":
        return arguments
    if function == "States.StringToJson":
        return json.loads(arguments[0])
    if function == "States.JsonToString":
        return json.dumps(arguments[0], separators=(",", ":"))
    if function == "States.ArrayLength":
        return len(arguments[0])
    raise ValueError(f"intrinsic function not modelled here: {function}")


def fill(template: Any, data: Any, context: dict[str, Any]) -> Any:
    """Parameters or ResultSelector: `key.$` fields evaluated, the rest as written."""
    if isinstance(template, dict):
        out = {}
        for key, value in template.items():
            if key.endswith(".$"):
                out[key[:-2]] = evaluate(value, data, context)
            else:
                out[key] = fill(value, data, context)
        return out
    if isinstance(template, list):
        return [fill(v, data, context) for v in template]
    return template


# -- Choice rules ---------------------------------------------------------------------------------
COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "StringEquals": lambda a, b: isinstance(a, str) and a == b,
    "NumericEquals": lambda a, b: a == b,
    "NumericGreaterThan": lambda a, b: a > b,
    "NumericLessThan": lambda a, b: a < b,
    "BooleanEquals": lambda a, b: a is b,
}


def rule_holds(rule: dict[str, Any], data: Any, context: dict[str, Any]) -> bool:
    if "And" in rule:
        return all(rule_holds(r, data, context) for r in rule["And"])
    if "Or" in rule:
        return any(rule_holds(r, data, context) for r in rule["Or"])
    if "Not" in rule:
        return not rule_holds(rule["Not"], data, context)
    variable = rule["Variable"]
    if "IsPresent" in rule:
        return has_path(variable, data, context) is rule["IsPresent"]
    if not has_path(variable, data, context):
        raise TaskFailed("States.Runtime", f"{variable} is not in the state's input")
    value = get_path(variable, data, context)
    for operator, compare in COMPARISONS.items():
        if operator in rule:
            return compare(value, rule[operator])
    raise ValueError(f"choice rule not modelled here: {rule}")


# -- service integrations ------------------------------------------------------------------------
def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Integrations:
    """Task resources -> what runs them: moto through boto3, or the test's handlers."""

    # Error names Step Functions gives a service's errors (its optimized integrations
    # prefix the service's own name; the AWS SDK integrations a PascalCase service id).
    PREFIX: ClassVar[dict[str, str]] = {
        "dynamodb": "DynamoDB",
        "aws-sdk:s3": "S3",
        "aws-sdk:sfn": "Sfn",
        "sns": "SNS",
    }

    def __init__(self, session: Any, handlers: dict[str, Handler]) -> None:
        self.session = session
        self.handlers = handlers

    def run(self, resource: str, parameters: dict[str, Any]) -> Any:
        integration = resource.split(":::", 1)[1]
        if integration in self.handlers:
            return self.handlers[integration](parameters)
        service, _, action = integration.rpartition(":")
        prefix = self.PREFIX.get(service)
        if prefix is None:
            raise NotImplementedError(f"no handler for {integration} (give the test one)")
        client = self.session.client(
            service.removeprefix("aws-sdk:").replace("sfn", "stepfunctions")
        )
        if service == "sns" and not isinstance(parameters.get("Message"), str):
            # Step Functions sends an object message as its JSON text
            parameters = {**parameters, "Message": json.dumps(parameters["Message"])}
        operation = client.meta.service_model.operation_model(action[0].upper() + action[1:])
        if service.startswith("aws-sdk:"):
            # AWS SDK integrations take and give PascalCase names, whatever the API's own
            members = {m.lower(): m for m in operation.input_shape.members}
            parameters = {members.get(k.lower(), k): v for k, v in parameters.items()}
        try:
            result = getattr(client, _snake(action))(**parameters)
        except client.exceptions.ClientError as err:
            code = err.response.get("Error", {}).get("Code", "Error")
            raise TaskFailed(f"{prefix}.{code}", f"{err} ({parameters})") from None
        result.pop("ResponseMetadata", None)
        if "Body" in result:  # S3's GetObject: Step Functions hands the body on as text
            result["Body"] = result["Body"].read().decode()
        result = json.loads(json.dumps(result, default=str))
        return _pascal(result) if service.startswith("aws-sdk:") else result


def _pascal(node: Any) -> Any:
    if isinstance(node, dict):
        return {k[:1].upper() + k[1:]: _pascal(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_pascal(v) for v in node]
    return node


# -- the walk -----------------------------------------------------------------------------------
class StateMachine:
    def __init__(
        self,
        session: Any,
        arn: str,
        handlers: dict[str, Handler],
        *,
        integration_session: Any = None,
    ) -> None:
        """`integration_session`: the session the states' service calls go through (the
        state machine's role's calls; a recorded one to check them), default `session`."""
        self.session = session
        self.arn = arn
        self.stepfunctions = session.client("stepfunctions")
        described = self.stepfunctions.describe_state_machine(stateMachineArn=arn)
        self.definition = json.loads(described["definition"])
        self.name = described["name"]
        self.integrations = Integrations(integration_session or session, handlers)

    def start(self, name: str, input_data: dict[str, Any]) -> Execution:
        """Register the execution (moto shows it RUNNING), then run it to its end."""
        started = self.stepfunctions.start_execution(
            stateMachineArn=self.arn, name=name, input=json.dumps(input_data)
        )
        execution = Execution(name, started["executionArn"])
        context = {
            "Execution": {
                "Id": execution.arn,
                "Name": name,
                "StartTime": datetime.now(UTC).isoformat(),
                "Input": input_data,
            },
            "StateMachine": {"Id": self.arn, "Name": self.name},
        }
        try:
            self._run(execution, copy.deepcopy(input_data), context)
        finally:
            self.stepfunctions.stop_execution(executionArn=execution.arn)
        return execution

    def _run(self, execution: Execution, data: Any, context: dict[str, Any]) -> None:
        states, name = self.definition["States"], self.definition["StartAt"]
        for _ in range(500):
            state = states[name]
            execution.visited.append(name)
            kind = state["Type"]
            if kind == "Succeed":
                execution.status, execution.output = "SUCCEEDED", data
                return
            if kind == "Fail":
                execution.status = "FAILED"
                execution.error = state.get("Error", state.get("Cause", ""))
                return
            if kind == "Choice":
                name = next(
                    (c["Next"] for c in state["Choices"] if rule_holds(c, data, context)),
                    state.get("Default"),
                )
                if name is None:
                    raise TaskFailed("States.NoChoiceMatched", execution.visited[-1])
                continue
            if kind == "Pass":
                data = set_path(data, state.get("ResultPath", "$"), state.get("Result", data))
            elif kind == "Task":
                effective = get_path(state.get("InputPath", "$"), data, context)
                parameters = fill(state.get("Parameters", effective), effective, context)
                try:
                    result = self.integrations.run(state["Resource"], parameters)
                except TaskFailed as failure:
                    catcher = next(
                        (
                            c
                            for c in state.get("Catch", [])
                            if "States.ALL" in c["ErrorEquals"] or failure.error in c["ErrorEquals"]
                        ),
                        None,
                    )
                    if catcher is None:
                        execution.status, execution.error = (
                            "FAILED",
                            f"{failure.error}: {failure.cause}",
                        )
                        return
                    data = set_path(
                        data,
                        catcher.get("ResultPath", "$"),
                        {"Error": failure.error, "Cause": failure.cause},
                    )
                    name = catcher["Next"]
                    continue
                if "ResultSelector" in state:
                    result = fill(state["ResultSelector"], result, context)
                data = set_path(data, state.get("ResultPath", "$"), result)
            else:
                raise NotImplementedError(f"state type {kind} is not modelled here")
            if "OutputPath" in state:
                data = get_path(state["OutputPath"], data, context)
            if state.get("End"):
                execution.status, execution.output = "SUCCEEDED", data
                return
            name = state["Next"]
        raise AssertionError(f"more than 500 states: a loop? {execution.visited[-20:]}")
