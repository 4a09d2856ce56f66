"""The secrets scan the tests run (detect-secrets, its default plugins and filters).

A line that only looks like a secret (a variable's name, a test's fake password) is marked
`# pragma: allowlist secret` where it is written, so each exception is visible and reviewed.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What a scan of a checkout without git metadata skips: what runs and installs produce.
NOT_SOURCE = {".git", "data", "reports", "bench", "cdk.out", "node_modules"}


def repository_files() -> list[Path]:
    """The files git tracks (a clean clone's content); without git, the source folders."""
    if (ROOT / ".git").exists():
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout.decode()
        return [ROOT / name for name in listed.split("\0") if name]
    return [
        path
        for path in ROOT.rglob("*")
        if path.is_file()
        and not {part for part in path.relative_to(ROOT).parts if part.startswith(".")}
        and not NOT_SOURCE & set(path.relative_to(ROOT).parts)
    ]


# Generated outputs are full of high-entropy strings by design (content hashes, run ids, the
# integrity attributes of Data Docs' scripts): scans of outputs look for the other kinds.
ENTROPY = frozenset({"Base64 High Entropy String", "Hex High Entropy String"})


def findings(files: Iterable[Path], ignore: frozenset[str] = frozenset()) -> list[str]:
    """`path:line: kind` for every potential secret in `files` (but kinds in `ignore`)."""
    from detect_secrets import SecretsCollection
    from detect_secrets.settings import default_settings

    secrets = SecretsCollection()
    with default_settings():
        secrets.scan_files(*(str(path) for path in files))  # a process per core
    return sorted(
        f"{name}:{item['line_number']}: {item['type']}"
        for name, items in secrets.json().items()
        for item in items
        if item["type"] not in ignore
    )
