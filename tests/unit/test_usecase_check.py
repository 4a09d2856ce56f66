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
        "a promotion metric",
        "config.yaml",
        "    roc_auc: 0.52\n",
        "    rocauc: 0.52\n",
        "config.yaml: promotion.minimum.rocauc: 'rocauc' is not a metric of binary classification",
    ),
    (
        "an example with no row id",
        "request.py",
        '        ROW_ID: f"{item.entity_id}-{day.isoformat()}",\n',
        "",
        "__init__.py: request.example: its entity row carries no 'event_id'",
    ),
    (
        "a reserved column",
        "__init__.py",
        '"outcome": "int"}',
        '"outcome": "int", "_source_file": "string"}',
        "__init__.py: sources.events.columns: '_source_file' is the platform's column",
    ),
]


@pytest.fixture(scope="module")
def checked() -> Iterator[dict[str, tuple[str, subprocess.CompletedProcess[str]]]]:
    """Each mistake planted in a use case of its own as `make new-usecase` writes it, and
    `make check-usecase` run on all of them at once (plus one left as generated): what each
    printed, by mistake."""
    names = {what: f"checked_{uuid.uuid4().hex[:6]}" for what, *_ in MISTAKES}
    names["as generated"] = f"checked_{uuid.uuid4().hex[:6]}"
    targets = [scaffold.create(name) for name in names.values()]
    try:
        for what, file, old, new, _ in MISTAKES:
            _plant(ROOT / "usecases" / names[what] / file, old, new)
        running = {what: _check_usecase(name) for what, name in names.items()}
        yield {what: (names[what], _finished(process)) for what, process in running.items()}
    finally:
        for target in targets:
            shutil.rmtree(target)


@pytest.mark.slow
def test_a_use_case_as_generated_passes_make_check_usecase(checked) -> None:
    name, done = checked["as generated"]
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"use case {name} (local): ok" in done.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("what", "line"), [(m[0], m[4]) for m in MISTAKES], ids=[m[0] for m in MISTAKES]
)
def test_each_mistake_stops_make_check_usecase_with_one_line_naming_file_and_key(
    checked, what: str, line: str
) -> None:
    name, done = checked[what]
    assert done.returncode == 2, done.stdout + done.stderr
    problems = [row.strip() for row in done.stderr.splitlines() if f"usecases/{name}/" in row]
    assert len(problems) == 1, done.stderr
    assert problems[0].startswith(f"usecases/{name}/{line}"), done.stderr


def _finished(process: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def _check_usecase(name: str) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    return subprocess.Popen(
        ["make", "-s", "check-usecase", f"USECASE={name}"],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_every_shipped_use_case_passes() -> None:
    shipped = sorted(
        p.parent.name
        for p in (ROOT / "usecases").glob("*/config.yaml")
        if not p.parent.name.startswith("checked_")
    )
    assert "synthetic" in shipped
    for name in shipped:
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


def test_a_drift_bound_for_no_input_names_its_key() -> None:
    settings = load_settings("local", environ={}, usecase="seattle_weather").with_overrides(
        {"monitoring": {"drift": {"thresholds": {"temp_max_c": 0.3, "score": 0.4}}}}
    )
    (problem,) = check(settings, load("seattle_weather"), resolve_references=False)
    assert problem.key == "monitoring.drift.thresholds.temp_max_c"
    assert problem.file == "usecases/seattle_weather/config.yaml"
