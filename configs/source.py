"""What the code is: the commit it was made from, and the digest of what a Bento serves.

A release is code plus model: `package` labels each Bento with both, and rebuilds only when the
digest changes (a service file, a use case's request schema or transform, a pinned requirement,
the bentofile, or the model). Light on purpose: the deploy tooling imports it too.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Where a copy of the code without its git history (the AWS release build's source bundle)
# keeps the commit it was made from: written by `infra.deploy`'s `source_bundle`.
COMMIT_FILE = "SOURCE_COMMIT"
UNKNOWN = "unknown"


def git_commit(root: Path = ROOT) -> str:
    """The commit of the code under `root` (with `+dirty` when tracked files changed); outside
    a git checkout, the commit its COMMIT_FILE names, else "unknown"."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        recorded = root / COMMIT_FILE
        return recorded.read_text().strip() if recorded.is_file() else UNKNOWN
    return f"{head}+dirty" if dirty else head


def served_files(root: Path, patterns: Iterable[str]) -> list[Path]:
    """The files under `root` a Bento built with these `include` patterns holds (gitignore
    syntax, as BentoML reads them), sorted; hidden folders and caches are never part of it."""
    import pathspec

    spec = pathspec.GitIgnoreSpec.from_lines(list(patterns))
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
        for name in names:
            path = Path(folder, name)
            if not name.startswith(".") and spec.match_file(path.relative_to(root).as_posix()):
                found.append(path)
    return sorted(found)


def release_digest(root: Path, files: Iterable[Path], parts: dict[str, str]) -> str:
    """sha256 over `files` (path relative to `root` and bytes) and the named `parts` (the model
    runs, the use case): equal exactly when a Bento built from them would serve the same."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    for key in sorted(parts):
        digest.update(f"{key}={parts[key]}\0".encode())
    return digest.hexdigest()
