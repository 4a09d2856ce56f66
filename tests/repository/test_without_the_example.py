"""The platform's tests stay when a fork deletes the flight example (`usecases/flight_delay/`):
no module of theirs names its package, so none imports or loads it. The flight use case's own
tests live beside it and go with it. (A whole `make test` with the folder removed was run to
prove the rest; this keeps it true between such runs.)"""

from __future__ import annotations

import re
from pathlib import Path

from tests.secrets_scan import ROOT

EXAMPLE = "flight_delay"
# The platform's tests and what they run through: their fixtures, the CI entry point.
PLATFORM_TESTS = ("tests", "conftest.py", ".ci")


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
