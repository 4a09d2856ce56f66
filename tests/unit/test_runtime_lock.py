"""The hash-pinned lock the release build and the EMR image install from (runtime-lock.txt,
written by `make lock`): complete, hashed, and at the versions the tests ran on."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from infra.jobs import RUNTIME_LOCK

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "flight-delay-mlops"
# what the release build's and the EMR image's pip evaluate markers against
ENVIRONMENT = {
    "python_version": "3.11",
    "python_full_version": "3.11.14",
    "sys_platform": "linux",
    "platform_system": "Linux",
}


def locked(text: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, its sha256 hashes), from a `pip --require-hashes` requirements file."""
    entries: dict[str, tuple[str, list[str]]] = {}
    for entry in re.sub(r"\\\n\s*", " ", text).splitlines():
        entry = entry.split("#", 1)[0].strip()
        if not entry:
            continue
        requirement, *options = entry.split(" --hash=")
        name, _, version = requirement.strip().partition("==")
        entries[canonicalize_name(name)] = (version, [o.strip() for o in options])
    return entries


def runtime_closure(project: str = PROJECT) -> set[str]:
    """Every distribution the installed project needs at run time (no extras of its own),
    with the extras its requirements ask for, markers evaluated for the build's Python."""
    needed: set[str] = set()
    pending: list[tuple[str, frozenset[str]]] = [(project, frozenset())]
    seen: set[tuple[str, frozenset[str]]] = set()
    while pending:
        name, extras = pending.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        for line in metadata.requires(name) or []:
            requirement = Requirement(line)
            marker = requirement.marker
            if marker and not any(
                marker.evaluate({**ENVIRONMENT, "extra": extra}) for extra in extras or {""}
            ):
                continue
            dependency = canonicalize_name(requirement.name)
            needed.add(dependency)
            pending.append((dependency, frozenset(requirement.extras)))
    return needed


def test_every_runtime_dependency_is_locked_with_its_hashes() -> None:
    entries = locked((ROOT / RUNTIME_LOCK).read_text())
    unhashed = [n for n, (_, hashes) in entries.items() if not hashes]
    assert not unhashed, f"no hash for {unhashed}: run `make lock`"
    assert all(h.startswith("sha256:") for _, hashes in entries.values() for h in hashes)
    missing = runtime_closure() - set(entries)
    assert not missing, f"{sorted(missing)} not in {RUNTIME_LOCK}: run `make lock`"


def test_the_lock_holds_the_versions_the_tests_run_on() -> None:
    entries = locked((ROOT / RUNTIME_LOCK).read_text())
    tested = {
        canonicalize_name(line.split("==", 1)[0]): line.split("==", 1)[1].strip()
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    differ = {n: (v, tested.get(n)) for n, (v, _) in entries.items() if tested.get(n) != v}
    assert not differ, f"{RUNTIME_LOCK} and constraints.txt differ: {differ}; run `make lock`"


def test_the_closure_sees_a_dependency_the_lock_lacks() -> None:
    """The completeness check can fail: without the project's MLflow, the lock misses it."""
    entries = locked((ROOT / RUNTIME_LOCK).read_text())
    entries.pop("mlflow")
    assert "mlflow" in runtime_closure() - set(entries)
