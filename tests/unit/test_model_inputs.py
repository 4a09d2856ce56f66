"""What may reach a model: declared features only, described for the report, in an order that
does not depend on the process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from usecases import load

USECASES = sorted(
    p.parent.name
    for p in (Path(__file__).resolve().parents[2] / "usecases").glob("*/__init__.py")
    if p.parent.name != "_template"
)


@pytest.mark.parametrize("name", USECASES)
def test_every_input_is_declared_and_described_for_the_report(name: str) -> None:
    usecase = load(name)
    for feature in usecase.model_inputs:
        assert usecase.describe(feature) != feature, feature
    assert not usecase.examples.never_inputs & set(usecase.model_inputs)


@pytest.mark.slow
def test_input_order_does_not_depend_on_the_process() -> None:
    """Three interpreters with other hash seeds (sets and dicts of strings iterate differently)
    list the inputs in one order, the order training and serving use."""
    code = (
        "from configs import load_settings; from usecases.project import bind; "
        "print(bind(load_settings(usecase='synthetic'), resolve_references=False)"
        ".usecase.model_inputs)"
    )
    running = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            env={"PYTHONHASHSEED": seed, "PATH": ""},
            stdout=subprocess.PIPE,
            text=True,
        )
        for seed in ("1", "2", "3")
    ]
    outputs = {process.communicate(timeout=120)[0] for process in running}
    assert all(process.returncode == 0 for process in running)
    assert len(outputs) == 1 and outputs != {""}
