"""A use case bound to its settings, checked once when it loads: the `Project` every stage and
the service receive.

The use case's code declares what it is (`usecases/<name>/__init__.py`); its config says how
it runs (`usecases/<name>/config.yaml`, under `configs/<env>.yaml`). `bind` checks the two
against each other before anything runs, in a second or two and without Spark: the quality
rules name declared tables and columns, `params` passes the use case's own model, every
reference resolves, the report's explanation finds its placeholders, the platform's column
names are left to the platform. Each problem is one line naming the file and the key.

`python -m pipelines check` (`make check-usecase`) runs it on its own; every pipeline command
runs it first and exits 2 on a problem, before Spark starts.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
import string
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from configs import Settings
from models.evaluation import TASKS, Task
from monitoring import prediction_log as pl
from usecases import load
from usecases.contract import (
    EVENT_TIMESTAMP,
    RESERVED_COLUMNS,
    ROW_DATE,
    Source,
    UseCase,
    resolve,
)


@dataclass(frozen=True)
class Problem:
    """One mistake: where it is (a file, a key in it) and what is wrong."""

    file: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.message}"


class UseCaseError(ValueError):
    """The use case and its settings do not agree; `problems` says where, one line each."""

    def __init__(self, name: str, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"use case {name!r}: {len(problems)} problem(s)\n{lines}")


@dataclass(frozen=True)
class Project:
    """The use case and its settings, checked against each other: what every stage runs on.

    `settings.params` holds the use case's params as its model validated them (defaults
    filled in), so the use case's code reads the same values the check accepted.
    """

    settings: Settings
    usecase: UseCase

    @cached_property
    def digest(self) -> str:
        """The use case as the platform judges drops by: its code and config files (its own
        tests and data aside) and the params and quality rules in force, as one hash. A drop
        quarantined under one digest is judged again under another (collect)."""
        hashed = hashlib.sha256()
        package = importlib.import_module(f"usecases.{self.usecase.name}")
        folder = Path(str(package.__file__)).parent
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder)
            if path.suffix in (".py", ".yaml") and not {"tests", "data"} & set(relative.parts):
                hashed.update(relative.as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
        judged = {"params": self.settings.params, "quality": self.settings.quality.model_dump()}
        hashed.update(json.dumps(judged, sort_keys=True, default=str).encode())
        return hashed.hexdigest()[:16]


def bind(settings: Settings, *, resolve_references: bool = True) -> Project:
    """The checked project; raises UseCaseError listing every problem.

    `resolve_references` imports the Spark code the use case names (the batch processes);
    the service, whose image has no Spark, checks everything else.
    """
    usecase = load(settings.usecase)
    problems = list(check(settings, usecase, resolve_references=resolve_references))
    if problems:
        raise UseCaseError(usecase.name, problems)
    params = usecase.params.model_validate(settings.params).model_dump(mode="json")
    return Project(settings.model_copy(update={"params": params}), usecase)


def check(
    settings: Settings, usecase: UseCase, *, resolve_references: bool = True
) -> Iterator[Problem]:
    """Every disagreement between the use case's declarations and its settings."""
    files = _Files(usecase.name)
    params = yield from _params(settings, usecase, files)
    yield from _reserved_columns(usecase, files)
    yield from _quality(settings, usecase, files)
    yield from _examples(usecase, files)
    yield from _monitoring(settings, usecase, files)
    yield from _target(usecase, files)
    yield from _promotion(settings, usecase, files)
    yield from _slices(usecase, files)
    yield from _training(settings, usecase, files)
    if params is not None:
        yield from _explanation(usecase, params, files)
    if resolve_references:
        yield from _references(usecase, files)


@dataclass(frozen=True)
class _Files:
    """Where each kind of thing is written, as a problem names it."""

    name: str

    @property
    def code(self) -> str:
        return f"usecases/{self.name}/__init__.py"

    @property
    def config(self) -> str:
        return f"usecases/{self.name}/config.yaml"


def _params(
    settings: Settings, usecase: UseCase, files: _Files
) -> Generator[Problem, None, dict[str, Any] | None]:
    """The problems of `params`; returns them validated (None when they are not)."""
    try:
        validated = usecase.params.model_validate(settings.params)
    except ValidationError as err:
        for error in err.errors():
            where = ".".join(str(part) for part in ("params", *error["loc"]))
            if error["type"] == "extra_forbidden":
                known = ", ".join(usecase.params.model_fields) or "none"
                message = f"unknown key (the params {usecase.params.__name__} declares: {known})"
            elif error["type"] == "missing":
                message = f"missing ({usecase.params.__name__} requires it)"
            else:
                message = f"{error['msg']} (got {error.get('input')!r})"
            yield Problem(files.config, where, message)
        return None
    return validated.model_dump()


def _table_columns(usecase: UseCase) -> dict[str, set[str]]:
    """Every table the quality gate may check, and its columns: silver tables (with the
    bookkeeping collect adds) and feature tables."""
    tables: dict[str, set[str]] = {}
    for source in usecase.sources:
        tables[source.name] = set(source.silver_column_names) | RESERVED_COLUMNS
    for view in usecase.views:
        key = usecase.entity(view.entity).join_key
        tables[view.name] = {key, EVENT_TIMESTAMP, *(f.name for f in view.features)}
    return tables


def _quality(settings: Settings, usecase: UseCase, files: _Files) -> Iterator[Problem]:
    tables = _table_columns(usecase)
    for table, rules in settings.quality.tables.items():
        where = f"quality.tables.{table}"
        if table not in tables:
            yield Problem(
                files.config,
                where,
                f"no source or feature view is called {table!r} "
                f"(tables: {', '.join(sorted(tables))})",
            )
            continue
        named: list[tuple[str, str]] = [
            *((f"{where}.not_null", column) for column in rules.not_null),
            *((f"{where}.unique", column) for group in rules.unique for column in group),
            *((f"{where}.ranges", column) for column in rules.ranges),
            *((f"{where}.in_set", column) for column in rules.in_set),
        ]
        for key, column in named:
            if column not in tables[table]:
                yield Problem(
                    files.config,
                    key,
                    f"{table} has no column {column!r} "
                    f"(its columns: {', '.join(sorted(tables[table] - RESERVED_COLUMNS))})",
                )


def _reserved_columns(usecase: UseCase, files: _Files) -> Iterator[Problem]:
    reserved = ", ".join(sorted(RESERVED_COLUMNS))
    for source in usecase.sources:
        where = f"sources.{source.name}"
        for key, columns in (
            ("columns", source.column_names),
            ("silver_columns", list(source.silver_columns)),
        ):
            for column in sorted(set(columns) & RESERVED_COLUMNS):
                yield Problem(
                    files.code,
                    f"{where}.{key}",
                    f"{column!r} is the platform's column (reserved: {reserved}): rename it",
                )
        if source.silver and not source.silver_columns:
            yield Problem(
                files.code,
                f"{where}.silver_columns",
                f"missing: declare the columns {source.silver} returns",
            )
        yield from _row_date(source, files)
    for view in usecase.views:
        key = usecase.entity(view.entity).join_key
        for feature in view.features:
            if feature.name in RESERVED_COLUMNS | {EVENT_TIMESTAMP, key}:
                yield Problem(
                    files.code,
                    f"views.{view.name}.features",
                    f"{feature.name!r} is a column every feature table has: rename the feature",
                )


def _row_date(source: Source, files: _Files) -> Iterator[Problem]:
    """A monthly source's `date` is the platform's: a delivered column of that name is
    replaced by the row's date, so it may only be the column the date is read from."""
    if not source.monthly:
        return
    where = f"sources.{source.name}"
    reads_it = bool(source.date_sql and re.search(rf"\b{ROW_DATE}\b", source.date_sql))
    if ROW_DATE in source.columns and not reads_it:
        yield Problem(
            files.code,
            f"{where}.columns",
            f"{ROW_DATE!r} in a monthly source is replaced by the row's date (date_sql "
            f"{source.date_sql!r}): rename the delivered column, or read the date from it",
        )
    if source.silver and source.silver_columns and ROW_DATE not in source.silver_columns:
        yield Problem(
            files.code,
            f"{where}.silver_columns",
            f"a monthly source's silver rows carry {ROW_DATE!r} (yyyy-MM-dd, the row's date): "
            "the transform must pass it on",
        )


def _examples(usecase: UseCase, files: _Files) -> Iterator[Problem]:
    examples = usecase.examples
    table = usecase.source(examples.table)
    if table is None:  # UseCase refuses this when it is declared
        return
    silver = set(table.silver_column_names)
    for column in examples.columns:
        if column not in silver:
            yield Problem(
                files.code,
                "examples.columns",
                f"the silver table {examples.table} has no column {column!r}",
            )
    for key in ("row_id", "split_column"):
        column = getattr(examples, key)
        if column not in examples.columns:
            yield Problem(
                files.code,
                f"examples.{key}",
                f"{column!r} is not among examples.columns (the columns read from "
                f"{examples.table})",
            )
    if table.monthly and ROW_DATE not in silver:
        yield Problem(
            files.code,
            "examples.table",
            f"{examples.table} has no {ROW_DATE!r} column: batch-predict picks rows by it",
        )
    yield from _example_request(usecase, files)
    features = {feature.name for feature in usecase.request.features}
    for name in usecase.request.categorical:
        if name not in features:
            yield Problem(
                files.code,
                "request.categorical",
                f"{name!r} is not one of the request's features ({', '.join(sorted(features))})",
            )


def _example_request(usecase: UseCase, files: _Files) -> Iterator[Problem]:
    """The example item (the README's, the tests', the release's smoke request) is valid and
    names its row: a prediction made for it can be joined with its outcome once that lands."""
    request, row_id = usecase.request, usecase.examples.row_id
    if not request.example:
        return
    try:
        row = request.row(TypeAdapter(request.item).validate_python(dict(request.example)))
    except ValidationError as err:
        yield Problem(files.code, "request.example", f"not a valid item: {_first_error(err)}")
        return
    if row.get(row_id) is None:
        yield Problem(
            files.code,
            "request.example",
            f"its entity row carries no {row_id!r} (examples.row_id): predictions made for it "
            "could never be joined with their outcomes; send the item's id in the example",
        )


def _first_error(err: ValidationError) -> str:
    first = err.errors()[0]
    return f"{'.'.join(str(part) for part in first['loc'])}: {first['msg']}"


def _monitoring(settings: Settings, usecase: UseCase, files: _Files) -> Iterator[Problem]:
    inputs = set(usecase.model_inputs)
    for name in settings.monitoring.drift.ignore:
        if name not in inputs:
            yield Problem(
                files.config,
                "monitoring.drift.ignore",
                f"{name!r} is not a model input ({', '.join(usecase.model_inputs)})",
            )
    answers = {pl.SCORE, pl.PREDICTED_CLASS}
    for name in settings.monitoring.drift.thresholds:
        if name not in inputs | answers:
            yield Problem(
                files.config,
                f"monitoring.drift.thresholds.{name}",
                f"not a model input ({', '.join(usecase.model_inputs)}) nor the answer "
                f"({' or '.join(sorted(answers))})",
            )
    shift = settings.replay.shift
    if shift is None:
        return
    source = usecase.source(shift.source)
    if source is None:
        yield Problem(
            files.config,
            "replay.shift.source",
            f"no source {shift.source!r} ({', '.join(s.name for s in usecase.sources)})",
        )
    elif shift.column not in source.columns:
        yield Problem(
            files.config,
            "replay.shift.column",
            f"{shift.source} has no column {shift.column!r}",
        )
    if shift.expect not in inputs:
        yield Problem(files.config, "replay.shift.expect", f"{shift.expect!r} is not a model input")


def _target(usecase: UseCase, files: _Files) -> Iterator[Problem]:
    target, outcome = usecase.target, usecase.outcome
    if target.kind not in TASKS:
        yield Problem(files.code, "target.kind", f"{target.kind!r}: one of {', '.join(TASKS)}")
        return
    if target.kind == "multiclass" and len(set(target.classes)) < 3:
        yield Problem(files.code, "target.classes", "a multiclass target names 3 classes or more")
    if target.kind != "multiclass" and target.classes:
        yield Problem(files.code, "target.classes", "only a multiclass target has classes")
    if target.kind == "regression" and not target.unit:
        yield Problem(files.code, "target.unit", "a regression target says its unit")
    # The response's fields follow the target (contract.Outcome).
    if target.kind == "regression" and outcome.decision_field:
        yield Problem(
            files.code,
            "outcome.decision_field",
            "a regression answers a value, with no decision: leave decision_field out",
        )
    if target.kind != "regression" and not outcome.decision_field:
        yield Problem(
            files.code,
            "outcome.decision_field",
            f"a {target.kind} target answers a decision: name its response field",
        )
    if target.kind == "binary" and not outcome.positive:
        yield Problem(
            files.code, "outcome.positive", 'a yes/no target names its positive answer ("late")'
        )
    if target.kind != "binary" and outcome.positive:
        yield Problem(files.code, "outcome.positive", "only a yes/no target has a positive answer")
    if outcome.score_field and outcome.score_field == outcome.decision_field:
        yield Problem(
            files.code, "outcome.decision_field", "the score and the decision need two names"
        )


def _promotion(settings: Settings, usecase: UseCase, files: _Files) -> Iterator[Problem]:
    """The gate's rules name metrics of the use case's task: a misspelt one is found here, not
    after a model has been trained."""
    if usecase.target.kind not in TASKS:
        return
    task = TASKS[usecase.target.kind]
    rules = settings.promotion
    named = [
        *(f"promotion.minimum.{metric}" for metric in rules.minimum),
        *(f"promotion.maximum.{metric}" for metric in rules.maximum),
    ]
    for key in named:
        metric = key.rsplit(".", 1)[1]
        if metric not in task.metrics:
            yield Problem(files.config, key, _not_a_metric(metric, task))
    if rules.primary_metric not in task.metrics:
        yield Problem(
            files.config, "promotion.primary_metric", _not_a_metric(rules.primary_metric, task)
        )
    if rules.slices.metric is not None and rules.slices.metric not in task.metrics:
        yield Problem(
            files.config, "promotion.slices.metric", _not_a_metric(rules.slices.metric, task)
        )


def _slices(usecase: UseCase, files: _Files) -> Iterator[Problem]:
    """Each slice cuts the scored rows by a column they carry: a join key or a model input."""
    known = [*usecase.join_keys, *usecase.model_inputs]
    names = [part.name for part in usecase.slices]
    for part in usecase.slices:
        where = f"slices.{part.name}"
        if names.count(part.name) > 1:
            yield Problem(files.code, where, "two slices have this name")
        if part.column not in known:
            yield Problem(
                files.code,
                f"{where}.column",
                f"{part.column!r} is neither a join key nor a model input ({', '.join(known)})",
            )
        if list(part.bands) != sorted(set(part.bands)):
            yield Problem(files.code, f"{where}.bands", "band edges must ascend, each once")


def _training(settings: Settings, usecase: UseCase, files: _Files) -> Iterator[Problem]:
    """A study needs a search space for the family it tunes; calibration maps probabilities
    of a yes/no question."""
    training = settings.training
    family = training.model.family
    if training.tuning.trials > 0 and not training.tuning.space.get(family):
        spaces = ", ".join(training.tuning.space) or "none"
        yield Problem(
            files.config,
            f"training.tuning.space.{family}",
            f"missing: {training.tuning.trials} trials are asked for the {family} family, "
            f"which has no search space (spaces given: {spaces})",
        )
    kind = usecase.target.kind
    if training.calibration != "none" and kind in TASKS and kind != "binary":
        yield Problem(
            files.config,
            "training.calibration",
            f"calibration maps the probabilities of a yes/no question; a {kind} "
            "target has none to map: use none",
        )


def _not_a_metric(metric: str, task: Task) -> str:
    return f"{metric!r} is not a metric of {task.name} (one of {', '.join(task.metrics)})"


def _explanation(usecase: UseCase, params: dict[str, Any], files: _Files) -> Iterator[Problem]:
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(usecase.outcome.explanation)]
    except ValueError as err:
        yield Problem(files.code, "outcome.explanation", f"not a format string: {err}")
        return
    for name in fields:
        if name is None:
            continue
        root = re.split(r"[.\[]", name, maxsplit=1)[0]
        if not root or root.isdigit():
            yield Problem(
                files.code,
                "outcome.explanation",
                f"{{{name}}}: placeholders name a key of params",
            )
        elif root not in params:
            yield Problem(
                files.code,
                "outcome.explanation",
                f"{{{name}}} names no key of params ({', '.join(sorted(params)) or 'none'})",
            )


def _references(usecase: UseCase, files: _Files) -> Iterator[Problem]:
    named = [
        *(
            (f"sources.{source.name}.silver", source.silver)
            for source in usecase.sources
            if source.silver
        ),
        *((f"views.{view.name}.transform", view.transform) for view in usecase.views),
    ]
    for key, ref in named:
        try:
            found = resolve(ref)
        except ValueError as err:
            yield Problem(files.code, key, str(err))
            continue
        if not callable(found):
            yield Problem(files.code, key, f"{ref!r} is not a function")
