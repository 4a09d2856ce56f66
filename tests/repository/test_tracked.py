"""What the platform reads from its own tree reaches a clean clone: nothing a use case ships
(its package, its committed upstream files under `data/`, its tests) is ignored by git.

A file that exists on the machine where it was written but is ignored passes every test there
and is missing from the clone CI runs; this checks the ignore rules themselves.
"""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.conftest import PLATFORM_USECASE
from tests.secrets_scan import ROOT

pytestmark = pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs a git checkout")

GENERATED = {"__pycache__", ".pytest_cache"}


def _ignored(paths: list[str]) -> list[str]:
    """The paths of `paths` git's ignore rules exclude (paths need not exist)."""
    done = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin"],
        cwd=ROOT,
        input="\n".join(paths),
        capture_output=True,
        text=True,
    )
    assert done.returncode in (0, 1), done.stderr  # 1: none ignored
    return done.stdout.split()


def test_no_file_a_use_case_ships_is_ignored() -> None:
    usecases = sorted(p for p in (ROOT / "usecases").iterdir() if (p / "__init__.py").exists())
    assert PLATFORM_USECASE in [folder.name for folder in usecases]  # a fork keeps it
    shipped = [
        str(path.relative_to(ROOT))
        for folder in usecases
        for path in folder.rglob("*")
        if path.is_file() and not GENERATED & set(path.parts) and path.suffix != ".pyc"
    ]
    # and the places a fork puts its files, whether or not this checkout has them yet
    probes = [f"usecases/{folder.name}/data/upstream.csv" for folder in usecases]
    assert _ignored(shipped + probes) == []


def test_everything_a_local_run_writes_is_ignored() -> None:
    """The configured places a run writes (the zones, the reports, the stores) stay out of git."""
    paths = yaml.safe_load((ROOT / "configs" / "base.yaml").read_text())["paths"]
    written = [f"{value.format(usecase=PLATFORM_USECASE)}/out.parquet" for value in paths.values()]
    assert len(written) >= 5
    assert _ignored(written) == written
