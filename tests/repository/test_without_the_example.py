"""The platform's tests stay when a fork deletes the flight example (`usecases/flight_delay/`):
no module of theirs names its package, so none imports or loads it, and a copy of the
repository without the folder collects every one of them. The flight use case's own tests live
beside it and go with it. (A whole `make test` with the folder removed was run to prove the
rest; this keeps it true between such runs.)"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.secrets_scan import ROOT

EXAMPLE = "flight_delay"
# The platform's tests and what they run through: their fixtures, the CI entry point, the
# commands, the benchmarks (which take their use case from config).
PLATFORM_TESTS = ("tests", "conftest.py", ".ci", "Makefile", "bench")
# What the benchmarks recorded on the flights (their results name its model).
RECORDED = ("bench/results",)
# pytest, with the platform's editable install detached: the copy's modules are the only ones
# (its import hook would otherwise find a deleted package in this checkout).
DETACHED = """
import sys
def ours(hook):
    return not str(getattr(hook, "__module__", "")).startswith("__editable__")
sys.meta_path[:] = [finder for finder in sys.meta_path if ours(finder)]
sys.path_hooks[:] = [hook for hook in sys.path_hooks if ours(hook)]
sys.path[:] = [entry for entry in sys.path if "__editable__" not in entry]
sys.path_importer_cache.clear()
import pytest
sys.exit(pytest.main(sys.argv[1:]))
"""


NAMED = re.compile(rf"\b{EXAMPLE}\b")


def naming(root: Path, entries: tuple[str, ...]) -> list[str]:
    """`file:line: text` of every line under `root`'s `entries` that names the example."""
    hits = []
    for entry in entries:
        path = root / entry
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            if "__pycache__" in file.parts or file == Path(__file__):
                continue
            if any(file.is_relative_to(root / recorded) for recorded in RECORDED):
                continue
            for number, line in enumerate(file.read_text(errors="replace").splitlines(), 1):
                if NAMED.search(line):
                    hits.append(f"{file.relative_to(root)}:{number}: {line.strip()}")
    return hits


def test_no_platform_test_names_the_flight_example() -> None:
    hits = naming(ROOT, PLATFORM_TESTS)
    assert hits == [], (
        f"these lines tie the platform's tests to usecases/{EXAMPLE}/ (a fork may delete it): "
        "run them on the platform's use case (tests.conftest.PLATFORM_USECASE), or move them "
        f"to usecases/{EXAMPLE}/tests/:\n" + "\n".join(hits)
    )


def test_the_check_finds_a_planted_name(tmp_path: Path) -> None:
    planted = tmp_path / "tests" / "e2e" / "test_planted.py"
    planted.parent.mkdir(parents=True)
    planted.write_text(f'from usecases import load\n\nUSECASE = load("{EXAMPLE}")\n')
    (tmp_path / "conftest.py").write_text("import usecases.flight_delay.request\n")
    assert naming(tmp_path, PLATFORM_TESTS) == [
        "tests/e2e/test_planted.py:3: " + f'USECASE = load("{EXAMPLE}")',
        "conftest.py:1: import usecases.flight_delay.request",
    ]


def test_the_platform_tests_load_without_the_example(tmp_path: Path) -> None:
    """The repository as a fork that deleted the example would hold it: every platform test
    module and fixture imports (pytest collects them all), from that copy alone."""
    copy = tmp_path / "fork"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True
    ).stdout.decode()
    for name in filter(None, tracked.split("\0")):
        source = ROOT / name
        if name.startswith(f"usecases/{EXAMPLE}/") or not source.is_file():
            continue
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, copy / name)
    collected = subprocess.run(
        [
            sys.executable,
            "-c",
            DETACHED,
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "--ignore=tests/infra",
            "tests",
            "usecases",
        ],
        cwd=copy,
        env={**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = collected.stdout + collected.stderr
    assert collected.returncode == 0, f"collecting the fork's tests failed:\n{report[-4000:]}"
    assert EXAMPLE not in report.replace(str(tmp_path), "")
