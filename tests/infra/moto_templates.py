"""What moto's CloudFormation cannot take from a synthesized template, and the stand-ins.

moto 5.2.5 has no CloudFormation model for some resource types (it then fails on their
attributes) and mis-reads the tags of a KMS key. Each adaptation is listed here, so the test
says exactly what it does not check; everything else is created as synthesized.
"""

from __future__ import annotations

import copy
from typing import Any

# No moto model: replaced by a handle; references to them (Ref, GetAtt) by literals.
UNSUPPORTED = {
    "AWS::CodeBuild::Project",
    "AWS::EMRServerless::Application",
    "AWS::ElastiCache::ReplicationGroup",
    "AWS::ElastiCache::SubnetGroup",
    "AWS::SecretsManager::Secret",
    "AWS::SecretsManager::SecretTargetAttachment",
}
# moto reads a KMS key's CloudFormation tags with the KMS API's field names (TagKey/TagValue).
UNTAGGED = {"AWS::KMS::Key"}
# moto names an unnamed ECR repository with capitals, which its own ECR then refuses;
# CloudFormation generates a lowercase name. Given one here, as CloudFormation would.
UNNAMED_REPOSITORY = "AWS::ECR::Repository"


def for_moto(
    template: dict[str, Any],
    literals: dict[tuple[str, str], str] | None = None,
    stack: str = "generated",
) -> tuple[dict[str, Any], list[str]]:
    """A copy moto can create, and the logical ids that were stood in for.

    `literals` gives the value of a stood-in attribute, e.g. the id of an EMR Serverless
    application the test made through moto's own API: {("Application", "ApplicationId"): id}.
    """
    adapted = copy.deepcopy(template)
    replaced = []
    for logical_id, resource in adapted["Resources"].items():
        if resource["Type"] in UNSUPPORTED:
            adapted["Resources"][logical_id] = {"Type": "AWS::CloudFormation::WaitConditionHandle"}
            replaced.append(logical_id)
        elif resource["Type"] in UNTAGGED:
            resource.get("Properties", {}).pop("Tags", None)
        elif resource["Type"] == UNNAMED_REPOSITORY:
            properties = resource.setdefault("Properties", {})
            # as CloudFormation does: the stack's name, then the resource's
            properties.setdefault("RepositoryName", f"{stack}-{logical_id}".lower())
    return _literal_attributes(adapted, set(replaced), literals or {}), replaced


def _literal_attributes(node: Any, replaced: set[str], literals: dict[tuple[str, str], str]) -> Any:
    if isinstance(node, dict):
        if set(node) == {"Ref"} and node["Ref"] in replaced:
            return f"arn:aws:stand-in:::{node['Ref']}"
        if set(node) == {"Fn::GetAtt"}:
            target, attribute = node["Fn::GetAtt"]
            if target in replaced:
                default = f"stand-in-{target}-{attribute}".lower().replace(".", "-")
                if attribute == "Arn":  # IAM policies naming it must see an ARN
                    default = f"arn:aws:stand-in:::{target}"
                return literals.get((target, attribute), default)
        return {key: _literal_attributes(value, replaced, literals) for key, value in node.items()}
    if isinstance(node, list):
        return [_literal_attributes(value, replaced, literals) for value in node]
    return node
