"""A fork keeps taking the platform's updates: a team adds its use case as the README says,
the platform then changes its machinery, and the fork merges that without a conflict and
still checks. Played with git on a copy of this checkout (no network, no history needed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
USECASE = "churn"
# What a platform update touches: the machinery and the files beside it that a fork keeps.
PLATFORM_FILES = (
    "README.md",
    "Makefile",
    "pyproject.toml",
    "configs/base.yaml",
    "configs/local.yaml",
    "configs/settings.py",
    "usecases/__init__.py",
    "usecases/contract.py",
    "usecases/project.py",
    "usecases/scaffold.py",
    "usecases/_template/config.yaml.tmpl",
    "pipelines/cli.py",
    "tests/conftest.py",
)


def _run(*command: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _git(cwd: Path, *args: str) -> str:
    who = ("-c", "user.name=Platform tests", "-c", "user.email=tests@example.invalid")
    return _run("git", *who, "-c", "commit.gpgsign=false", *args, cwd=cwd)


def _platform_copy(target: Path) -> None:
    """This checkout's tracked files (as they are now), as the platform's repository."""
    listed = _run("git", "ls-files", "-z", cwd=ROOT).split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    _git(target, "init", "-q", "-b", "main")
    _git(target, "add", "-A")
    _git(target, "commit", "-q", "-m", "the platform")


def test_a_fork_with_its_own_use_case_merges_a_platform_update_without_conflict(
    tmp_path: Path,
) -> None:
    upstream, fork = tmp_path / "platform", tmp_path / "fork"
    upstream.mkdir()
    _platform_copy(upstream)
    _git(tmp_path, "clone", "-q", str(upstream), str(fork))

    # The team's work, as the README's fork guide has it: scaffold, make it theirs, check.
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    _run(sys.executable, "-m", "usecases.scaffold", USECASE, cwd=fork, env=environ)
    config = fork / "usecases" / USECASE / "config.yaml"
    config.write_text(config.read_text().replace("roc_auc: 0.52", "roc_auc: 0.7"))
    _run(
        sys.executable,
        "-m",
        "pipelines",
        "check",
        cwd=fork,
        env={**environ, "MLOPS_USECASE": USECASE},
    )
    _git(fork, "add", "-A")
    _git(fork, "commit", "-q", "-m", "our use case")
    changed = _git(fork, "diff", "--name-only", "origin/main", "HEAD").split()
    assert changed and all(name.startswith(f"usecases/{USECASE}/") for name in changed), changed

    # A later platform commit changes the machinery.
    for name in PLATFORM_FILES:
        path = upstream / name
        marker = "<!-- platform update -->" if path.suffix == ".md" else "# platform update"
        path.write_text(path.read_text() + f"\n{marker}\n")
    _git(upstream, "commit", "-q", "-am", "a platform update")

    _git(fork, "pull", "-q", "--no-rebase", "--no-edit", "origin", "main")
    assert "a platform update" in _git(fork, "log", "--oneline")
    assert _git(fork, "status", "--porcelain") == ""
    checked = _run(
        sys.executable,
        "-m",
        "pipelines",
        "check",
        cwd=fork,
        env={**environ, "MLOPS_USECASE": USECASE},
    )
    assert f"use case {USECASE} (local): ok" in checked
