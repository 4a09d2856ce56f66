"""The platform's contract with a use case: what a use case declares, as small frozen objects.

A use case is one package, `usecases/<name>/`, whose `__init__.py` defines `USECASE`, a
`UseCase`. The platform finds it by the name in config (`usecase: <name>`) and never imports
it by name; the use case imports this module and nothing else of the platform.

Spark code is named by reference (`"package.module:function"`), not imported: serving loads
the same declarations in an image without Spark, and only the batch stages resolve them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict

# The column that carries an entity row's or a feature row's moment in time, everywhere.
EVENT_TIMESTAMP = "event_timestamp"

# Bookkeeping columns on rows being collected. A silver transform keeps both: it may append to
# PROBLEMS (a row with a problem refuses its whole drop), and passes `carried(...)` through.
PROBLEMS = "_problems"
DROP_ID = "drop_id"
# What collect adds to every row it writes to bronze and silver: the drop's content hash, its
# file and when it was collected.
CONTENT_HASH, SOURCE_FILE, INGESTED_AT = "_content_hash", "_source_file", "_ingested_at"
# The platform's columns: a use case's source, silver rows or features may not use these names.
RESERVED_COLUMNS = frozenset({PROBLEMS, DROP_ID, CONTENT_HASH, SOURCE_FILE, INGESTED_AT})
# A monthly source's row date, yyyy-MM-dd, on its bronze and silver rows: collect writes it in
# bronze (from `date_sql`, replacing a delivered column of that name), and each monthly silver
# transform carries it (batch-predict picks a day's or month's rows by it).
ROW_DATE = "date"


def carried(columns: Sequence[str]) -> list[str]:
    """The bookkeeping columns a transform passes through untouched (the drop id, when present)."""
    return [DROP_ID] if DROP_ID in columns else []


# One entity row -> its request-time features, in the order `Request.features` declares.
RowFeatures = Callable[[Mapping[str, Any]], Sequence[float]]

# "package.module:attribute": code resolved only by the stage that runs it (see `resolve`).
Ref = str


def resolve(ref: Ref) -> Any:
    """The object a reference names, e.g. `usecases.flight_delay.silver:flights_to_silver`."""
    module, sep, attribute = ref.partition(":")
    if not sep or not module or not attribute:
        raise ValueError(f"{ref!r} is not a reference of the form 'package.module:attribute'")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"{ref!r} cannot be resolved: {err}") from err


@dataclass(frozen=True)
class Source:
    """One raw table as the upstream delivers it: its file, its columns and how it arrives.

    Monthly sources arrive as one drop per month, each row dated inside its drop's month;
    the others as one snapshot per delivery (`land.snapshot_id`).
    """

    name: str
    # File name in the upstream delivery (a `.zip` of one CSV is read too).
    file: str
    # Column -> Spark SQL type, in the upstream's order. Types are enforced at collect.
    columns: dict[str, str]
    monthly: bool
    # Monthly sources: the row's date as a Spark SQL expression over the typed columns, e.g.
    # "make_date(year, month, day)" (partitions bronze, and a row dated outside its drop's
    # month refuses the drop) ...
    date_sql: str | None = None
    # ... and the drop a raw row belongs to ("YYYY-MM"), from the raw text columns at landing.
    drop_period: Callable[[pd.DataFrame], pd.Series] | None = None
    # A UTC timestamp column that must fall within a day of the row's date, when there is one.
    instant_column: str | None = None
    # The silver transform, `(typed rows, SilverContext) -> silver rows`; None keeps the
    # table as delivered (reference tables) ...
    silver: Ref | None = None
    # ... and the columns of the rows it returns (besides the bookkeeping ones), which the
    # quality rules and the examples are checked against when the use case loads, and the
    # transform's rows against at collect.
    silver_columns: tuple[str, ...] = ()
    # Scale-factor runs (benchmarks): a snapshot every copy shares rather than replicates.
    shared_across_copies: bool = False

    def __post_init__(self) -> None:
        if self.monthly and (self.date_sql is None or self.drop_period is None):
            raise ValueError(f"source {self.name}: a monthly source needs date_sql and drop_period")

    @property
    def column_names(self) -> list[str]:
        return list(self.columns)

    @property
    def silver_column_names(self) -> list[str]:
        """The columns of this table's silver rows (bookkeeping aside)."""
        return list(self.silver_columns) if self.silver else self.column_names


@dataclass(frozen=True)
class Entity:
    """What features are looked up by: a Feast entity and its join key (one column)."""

    name: str
    join_key: str
    description: str


@dataclass(frozen=True)
class Feature:
    """One model input and what it means in plain words (the report uses the words)."""

    name: str
    dtype: Literal["float", "int"]
    description: str


@dataclass(frozen=True)
class View:
    """A feature view: its entity, how long a value stays valid, its features, and the Spark
    transform that computes its table from silver, `(FeatureContext) -> DataFrame` with the
    entity's join key, `event_timestamp` and every feature."""

    name: str
    entity: str
    # Zero: valid forever (static attributes).
    ttl: timedelta
    features: tuple[Feature, ...]
    transform: Ref
    # The silver tables the transform reads: a change to any of them rebuilds the table.
    inputs: tuple[str, ...]


@dataclass(frozen=True)
class Examples:
    """How rows of silver become examples: entity rows for training and batch scoring."""

    # The silver table with one row per thing to predict, and the columns to read from it.
    table: str
    columns: tuple[str, ...]
    # The example's unique id, and the date column the time split is made on.
    row_id: str
    split_column: str
    # Silver rows -> entity rows: row id, every entity's join key, `event_timestamp` (the moment
    # of prediction), the request's inputs and the split column.
    entity_frame: Callable[[pd.DataFrame], pd.DataFrame]
    # Silver rows and the use case's params -> the rows to learn from: entity rows with the
    # label column added.
    labelled: Callable[[pd.DataFrame, Mapping[str, Any]], pd.DataFrame]
    label: str
    # Columns known only after the moment of prediction: never a model input.
    never_inputs: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Request:
    """The serving contract: what a client sends, and the features computed from it.

    Request-time features are written once, as a function of one entity row in plain Python:
    serving applies it to each item of a request (no pandas on the request path), training
    and batch scoring to each row of their frames, so the two cannot compute them apart.
    """

    # The pydantic model of one item of a request.
    item: type
    # The request's field holding the list of items, e.g. "flights".
    items_field: str
    max_items: int
    # One validated item -> its entity row: every join key, `EVENT_TIMESTAMP` (an aware
    # datetime) and what `compute` reads (the columns `Examples.entity_frame` makes, by name).
    row: Callable[[Any], dict[str, Any]]
    # Params -> the function from one entity row (a mapping by column name) to its
    # request-time features, one float per `features`, in that order (NaN where unknown).
    compute: Callable[[Mapping[str, Any]], RowFeatures]
    features: tuple[Feature, ...]
    # Integer-coded categories among `features` (model families that know categories use it).
    categorical: tuple[str, ...] = ()
    # One item as the tests and the README send it.
    example: Mapping[str, Any] = field(default_factory=dict)
    # An entity row the readiness probe reads from the online store (any value will do).
    probe_row: Mapping[str, str] = field(default_factory=dict)
    # Silver rows (the examples' columns) -> one item each, as a client would have sent it for
    # that row: the many different requests the serving benchmarks send. Optional.
    from_silver: Callable[[pd.DataFrame], list[dict[str, Any]]] | None = None


@dataclass(frozen=True)
class Target:
    """What is predicted: `binary`, a yes/no question (the label is 0 or 1); `multiclass`, one
    of `classes` (the label is the class's index in `classes`); `regression`, an amount in
    `unit` (the label is the amount)."""

    kind: str = "binary"
    classes: tuple[str, ...] = ()
    unit: str = ""


@dataclass(frozen=True)
class Outcome:
    """How a prediction reads, in the response and in the report.

    The response's fields, by the target's kind: binary, `score_field` (the probability) and
    `decision_field` (yes or no at the threshold); multiclass, `decision_field` (the likeliest
    class) and `score_field` (each class's probability); regression, `score_field` (the value)
    with `<score_field>_low` and `<score_field>_high` (its prediction interval), and no
    `decision_field`.
    """

    score_field: str
    # The report's words: "Will this flight arrive late?", "flights" ...
    question: str
    items: str
    # A paragraph saying what is predicted from what, for people who are not engineers;
    # `{name}` is filled from the use case's params.
    explanation: str
    decision_field: str = ""
    # ... and what a positive answer is called ("late"): binary targets only.
    positive: str = ""


@dataclass(frozen=True)
class Slice:
    """A way to cut the examples into parts the model is also judged on one by one (an
    airline, an airport, a month, a band of distances): each value of `column` (an entity's
    join key or a model input) is a part, or, when `bands` are given (ascending edges of a
    number), each band: "under 500", "500-1000", ..., "2000 and over". The report and the model
    card show each part's metrics; the gate refuses a candidate much worse on any part with
    enough examples (`promotion.slices`)."""

    name: str
    column: str
    # In plain words, for the report: "the airline", "the distance flown".
    description: str
    bands: tuple[float, ...] = ()


@dataclass(frozen=True)
class Governance:
    """What the model card says the model is for and where it should not be trusted, in plain
    words (the platform writes the rest of the card from what it measured)."""

    intended_use: str = ""
    limits: tuple[str, ...] = ()


class NoParams(BaseModel):
    """The params of a use case that declares none: any key under `params` is a mistake."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class UseCase:
    name: str
    description: str
    # In collection order: a table a silver transform reads comes before it.
    sources: tuple[Source, ...]
    entities: tuple[Entity, ...]
    views: tuple[View, ...]
    examples: Examples
    request: Request
    outcome: Outcome
    # The upstream files when `land.source_dir` is not set (a package's data folder).
    default_source_dir: Callable[[], str]
    # Scale-factor runs (benchmarks): copy k of a source's raw text, as new data.
    replicate: Callable[[pd.DataFrame, Source, int, str], pd.DataFrame] | None = None
    # The pydantic model of `params` in the use case's config.yaml (declare it with
    # `extra="forbid"`, so a misspelt key is refused when the use case loads).
    params: type[BaseModel] = NoParams
    # What is predicted (the task): a yes/no question unless the use case says otherwise.
    target: Target = field(default_factory=Target)
    # The parts of the examples the model is judged on one by one (see `Slice`).
    slices: tuple[Slice, ...] = ()
    # The model card's intended use and limits.
    governance: Governance = field(default_factory=Governance)

    def __post_init__(self) -> None:
        entities = {entity.name for entity in self.entities}
        sources = {source.name for source in self.sources}
        for view in self.views:
            if view.entity not in entities:
                raise ValueError(f"view {view.name}: unknown entity {view.entity!r}")
            unknown = sorted(set(view.inputs) - sources)
            if unknown:
                raise ValueError(f"view {view.name}: unknown input table(s) {unknown}")
        names = [f.name for f in self.request.features] + [
            f.name for view in self.views for f in view.features
        ]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"use case {self.name}: feature names used twice: {twice}")
        if self.examples.table not in sources:
            raise ValueError(f"examples.table {self.examples.table!r} is not a source")

    def source(self, name: str) -> Source | None:
        return next((source for source in self.sources if source.name == name), None)

    def entity(self, name: str) -> Entity:
        return next(entity for entity in self.entities if entity.name == name)

    @property
    def join_keys(self) -> list[str]:
        return [entity.join_key for entity in self.entities]

    @property
    def stored_features(self) -> list[str]:
        """The features read from the store, in declared order (never Feast's order)."""
        return [f.name for view in self.views for f in view.features]

    @property
    def model_inputs(self) -> list[str]:
        """Every model input, in a fixed order: request-time features, then stored features."""
        return [*(f.name for f in self.request.features), *self.stored_features]

    def describe(self, feature: str) -> str:
        """A feature in plain words, for reports."""
        for known in (*self.request.features, *(f for v in self.views for f in v.features)):
            if known.name == feature:
                return known.description
        return feature


@dataclass
class SilverContext:
    """What a silver transform may read besides its own rows."""

    # Reference tables already collected (staged or published), by source name.
    table: Callable[[str], Any]
    params: Mapping[str, Any]


@dataclass
class FeatureContext:
    """What a feature transform reads: published silver by table, and the use case's params."""

    silver: Callable[[str], Any]
    params: Mapping[str, Any]
    # The id of the reference tables' snapshot (e.g. "2013"): when their rows became valid.
    snapshot_id: str
