"""The checked-in checkov skip list (`infra/checkov-skips.yaml`) written into the templates.

Checkov reads skips from a resource's `Metadata.checkov.skip`, so each skip applies to one
resource, not to the whole scan, and its reason travels with the template.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import aws_cdk as cdk
import yaml
from constructs import IConstruct

SKIP_FILE = Path(__file__).resolve().parent / "checkov-skips.yaml"


@dataclass(frozen=True)
class Skip:
    check: str
    resource: str  # "<concern>/<construct path>"
    reason: str


def load_skips(path: Path = SKIP_FILE) -> list[Skip]:
    entries = yaml.safe_load(path.read_text()) or []
    skips = [Skip(**entry) for entry in entries]
    short = [s.check for s in skips if len(s.reason.split()) < 5]
    if short:
        raise ValueError(f"{path.name}: give each skip a real reason ({', '.join(short)})")
    return skips


def find_resource(stacks: dict[str, cdk.Stack], resource: str) -> cdk.CfnResource | None:
    concern, _, construct_path = resource.partition("/")
    node: IConstruct | None = stacks.get(concern)
    for part in construct_path.split("/"):
        if node is None:
            return None
        node = node.node.try_find_child(part)
    if node is not None and not isinstance(node, cdk.CfnResource):
        node = node.node.default_child
    return node if isinstance(node, cdk.CfnResource) else None


def apply_skips(stacks: dict[str, cdk.Stack], skips: list[Skip]) -> list[Skip]:
    """Write each skip onto its resource; returns the skips that matched no resource."""
    unmatched = []
    by_resource: dict[str, list[Skip]] = {}
    for skip in skips:
        by_resource.setdefault(skip.resource, []).append(skip)
    for resource, entries in by_resource.items():
        target = find_resource(stacks, resource)
        if target is None:
            unmatched.extend(entries)
            continue
        target.add_metadata(
            "checkov", {"skip": [{"id": s.check, "comment": s.reason} for s in entries]}
        )
    return unmatched
