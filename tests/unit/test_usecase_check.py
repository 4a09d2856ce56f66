"""A use case is checked against its settings when it loads: each mistake a fork makes in its
config or its declarations stops `make check-usecase` (and every pipeline command) at once,
with one line naming the file and the key, before Spark starts."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from configs import load_settings
from usecases import load, scaffold
from usecases.project import Problem, UseCaseError, bind, check

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def scaffolded() -> Iterator[str]:
    """A use case as `make new-usecase` writes it, removed afterwards."""
    name = f"checked_{uuid.uuid4().hex[:6]}"
    target = scaffold.create(name)
    try:
        yield name
    finally:
        shutil.rmtree(target)


def _plant(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


# (what, file of the use case, text there, the mistake, the key the one line must name)
MISTAKES = [
    (
        "a quality column",
        "config.yaml",
        "not_null: [event_id, entity_id, day, value, outcome]",
        "not_null: [event_id, entity_id, day, value, outcome_flag]",
        "config.yaml: quality.tables.events.not_null: events has no column 'outcome_flag'",
    ),
    (
        "a quality table",
        "config.yaml",
        "    events:\n",
        "    event:\n",
        "config.yaml: quality.tables.event: no source or feature view is called 'event'",
    ),
    (
        "a params key",
        "config.yaml",
        "params: {}",
        "params: {treshold: 3}",
        "config.yaml: params.treshold: unknown key",
    ),
    (
        "a reference",
        "__init__.py",
        ':events_to_silver"',
        ':event_to_silver"',
        "__init__.py: sources.events.silver: ",
    ),
    (
        "an explanation placeholder",
        "__init__.py",
        "will the outcome be positive? The model",
        "will the outcome be above {threshold}? The model",
        "__init__.py: outcome.explanation: {threshold} names no key of params",
    ),
    (
        "a reserved column",
        "__init__.py",
        '"outcome": "int"}',
        '"outcome": "int", "_source_file": "string"}',
        "__init__.py: sources.events.columns: '_source_file' is the platform's column",
    ),
]


@pytest.mark.parametrize(
    ("file", "old", "new", "line"), [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES]
)
def test_each_mistake_stops_make_check_usecase_with_one_line_naming_file_and_key(
    scaffolded: str, file: str, old: str, new: str, line: str
) -> None:
    folder = ROOT / "usecases" / scaffolded
    ok = _check_usecase(scaffolded)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    _plant(folder / file, old, new)
    done = _check_usecase(scaffolded)
    assert done.returncode == 2, done.stdout + done.stderr
    problems = [row.strip() for row in done.stderr.splitlines() if f"usecases/{scaffolded}/" in row]
    assert len(problems) == 1, done.stderr
    assert problems[0].startswith(f"usecases/{scaffolded}/{line}"), done.stderr


def _check_usecase(name: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    return subprocess.run(
        ["make", "-s", "check-usecase", f"USECASE={name}"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_examples_use_cases_pass() -> None:
    for name in ("flight_delay", "seattle_weather"):
        settings = load_settings("local", environ={}, usecase=name)
        assert list(check(settings, load(name))) == [], name


def test_every_problem_is_listed_not_only_the_first() -> None:
    settings = load_settings("local", environ={}, usecase="seattle_weather").with_overrides(
        {
            "params": {"wet_cm": 1},
            "quality": {"tables": {"observations": {"not_null": ["rain"]}}},
            "monitoring": {"drift": {"ignore": ["month_of_year"]}},
        }
    )
    with pytest.raises(UseCaseError) as raised:
        bind(settings)
    keys = [problem.key for problem in raised.value.problems]
    assert keys == [
        "params.wet_cm",
        "quality.tables.observations.not_null",
        "monitoring.drift.ignore",
    ]


def test_bound_params_are_the_validated_ones() -> None:
    settings = load_settings("local", environ={}, usecase="seattle_weather").with_overrides(
        {"params": {"wet_mm": "0.5"}}
    )
    assert bind(settings).settings.params["wet_mm"] == 0.5


def test_a_badly_typed_param_names_its_key() -> None:
    settings = load_settings("local", environ={}, usecase="seattle_weather").with_overrides(
        {"params": {"wet_mm": "a lot"}}
    )
    usecase = load("seattle_weather")
    (problem,) = check(settings, usecase)
    assert problem.key == "params.wet_mm" and "a lot" in problem.message


def test_a_silver_transform_without_its_columns_and_a_foreign_date_are_refused() -> None:
    settings = load_settings("local", environ={}, usecase="seattle_weather")
    usecase = load("seattle_weather")
    (source,) = usecase.sources
    undeclared = replace(usecase, sources=(replace(source, silver_columns=()),))
    keys = {problem.key for problem in check(settings, undeclared, resolve_references=False)}
    assert "sources.observations.silver_columns" in keys
    # `date` delivered but the date read from another column: collect would overwrite it.
    foreign = replace(source, date_sql="to_date(day_text, 'yyyy/MM/dd')")
    problems = list(check(settings, replace(usecase, sources=(foreign,)), resolve_references=False))
    assert [p.key for p in problems] == ["sources.observations.columns"], problems


def test_a_problem_reads_as_file_key_and_message() -> None:
    assert str(Problem("usecases/x/config.yaml", "params.a", "unknown key")) == (
        "usecases/x/config.yaml: params.a: unknown key"
    )
