"""cdk-nag's AwsSolutions pack over the stacks, and the findings acknowledged on purpose.

`infra/nag-acknowledgements.yaml` lists each finding the stacks have by design, with its reason
(as `infra/checkov-skips.yaml` does for checkov). `findings(app_builder)` synthesizes the app
with the pack as a validation plugin and returns what it reports; `unacknowledged` and
`unused` say what the list misses and what in it no longer applies (the test fails on either).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ACK_FILE = Path(__file__).resolve().parent / "nag-acknowledgements.yaml"
REPORT = "validation-report.json"


@dataclass(frozen=True)
class Finding:
    rule: str  # e.g. AwsSolutions-IAM5
    resource: str  # "<concern>/<construct path>"
    detail: str  # what the rule names in brackets ("" when nothing)


@dataclass(frozen=True)
class Acknowledgement:
    rule: str
    resource: str
    reason: str
    finding: str = ""  # a regular expression over Finding.detail; empty: the rule's only finding

    def covers(self, found: Finding) -> bool:
        if (found.rule, found.resource) != (self.rule, self.resource):
            return False
        return bool(re.search(self.finding, found.detail)) if self.finding else not found.detail


def load_acknowledgements(path: Path = ACK_FILE) -> list[Acknowledgement]:
    entries = [Acknowledgement(**entry) for entry in yaml.safe_load(path.read_text()) or []]
    short = [f"{a.rule} {a.resource}" for a in entries if len(a.reason.split()) < 5]
    if short:
        raise ValueError(f"{path.name}: give each acknowledgement a real reason ({short})")
    return entries


def findings(build: Callable[[str], tuple[Any, dict[str, Any]]], outdir: Path) -> list[Finding]:
    """Synthesize the app `build(outdir)` returns with the AwsSolutions pack; its findings."""
    import aws_cdk as cdk
    from cdk_nag import AwsSolutionsChecks

    app, stacks = build(str(outdir))
    assert isinstance(app, cdk.App)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    try:
        app.synth()
    except RuntimeError as err:  # the pack fails the synthesis on any finding
        if "ValidationFailed" not in str(err):
            raise
    report = outdir / REPORT
    if not report.is_file():
        return []
    concern_of = {stack.stack_name: concern for concern, stack in stacks.items()}
    found = []
    for plugin in json.loads(report.read_text())["pluginReports"]:
        for violation in plugin["violations"]:
            rule, _, detail = violation["ruleName"].partition("[")
            for construct in violation["violatingConstructs"]:
                stack, _, path = construct["constructPath"].partition("/")
                found.append(Finding(rule, f"{concern_of.get(stack, stack)}/{path}", detail[:-1]))
    return found


def unacknowledged(found: list[Finding], acks: list[Acknowledgement]) -> list[Finding]:
    return [f for f in found if not any(a.covers(f) for a in acks)]


def unused(found: list[Finding], acks: list[Acknowledgement]) -> list[Acknowledgement]:
    return [a for a in acks if not any(a.covers(f) for f in found)]
