"""The synthesized templates pass cfn-lint with no error and checkov with no finding outside the
checked-in skip list (infra/checkov-skips.yaml), whose every entry gives its reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.checkov_skips import load_skips
from infra.config import infra_config, stack_concerns
from tests.infra.conftest import REGION, USECASE_ENVIRON

CFN_LINT_ERROR = 2  # cfn-lint's exit code is a bit mask: 2 errors, 4 warnings, 8 informational
MAX_SKIPS = 9


def template_files(outdir: Path) -> list[Path]:
    files = sorted(outdir.glob("*.template.json"))
    assert len(files) == len(stack_concerns(infra_config(environ=USECASE_ENVIRON)))
    return files


def test_cfn_lint_finds_no_error(synthesized) -> None:
    _, outdir = synthesized
    done = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), *map(str, template_files(outdir))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert not done.returncode & CFN_LINT_ERROR, done.stdout[-4000:]
    assert done.returncode in (0, 4, 8, 12), done.stdout[-4000:]


def test_the_skip_list_is_short_and_every_entry_says_why() -> None:
    skips = load_skips()
    assert 0 < len(skips) <= MAX_SKIPS
    assert all(len(skip.reason.split()) >= 5 for skip in skips)


def test_every_skip_matches_a_resource(synthesized) -> None:
    from infra.checkov_skips import apply_skips

    stacks, _ = synthesized
    # applying again finds the same resources; nothing in the list is stale
    assert apply_skips(stacks, load_skips()) == []


def test_checkov_passes_except_the_listed_skips(synthesized, tmp_path: Path) -> None:
    _, outdir = synthesized
    checkov = os.environ.get("CHECKOV_BIN", str(Path(".venv-checkov/bin/checkov").resolve()))
    if not Path(checkov).is_file():
        pytest.fail(f"checkov not found at {checkov}: run `make test` (it builds .venv-checkov)")
    scan = tmp_path / "scan"
    scan.mkdir()
    for path in template_files(outdir):
        (scan / path.name).write_text(path.read_text())
    done = subprocess.run(
        [
            checkov,
            "-d",
            str(scan),
            "--framework",
            "cloudformation",
            "--skip-download",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"},
    )
    report = json.loads(done.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [c for r in reports for c in r["results"]["failed_checks"]]
    skipped = [c for r in reports for c in r["results"]["skipped_checks"]]
    passed = sum(len(r["results"]["passed_checks"]) for r in reports)
    assert not failed, [(c["check_id"], c["resource"], c["file_path"]) for c in failed]
    assert passed > 100
    assert len(skipped) == len(load_skips())
    assert all(c.get("check_result", {}).get("suppress_comment") for c in skipped)


def test_cdk_nag_finds_nothing_beyond_the_acknowledged(tmp_path) -> None:
    """cdk-nag's AwsSolutions pack over every stack: each finding is acknowledged on purpose
    in infra/nag-acknowledgements.yaml with its reason, and every entry there still applies."""
    from infra.app import build_app
    from infra.config import infra_config
    from infra.nag import findings, load_acknowledgements, unacknowledged, unused

    acks = load_acknowledgements()
    found = findings(
        lambda outdir: build_app(infra_config(environ=USECASE_ENVIRON), REGION, outdir=outdir),
        tmp_path,
    )
    assert found, "the pack ran and reported nothing: is it wired?"
    assert not unacknowledged(found, acks), unacknowledged(found, acks)
    assert not unused(found, acks), unused(found, acks)
    assert all(len(a.reason.split()) >= 5 for a in acks)
