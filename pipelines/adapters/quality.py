"""The quality gate: Spark measures each table's rules in one pass, Great Expectations (GX 1.x)
judges the measurements and keeps the record. The only module that talks to GX.

Rules come from `configs` (`quality.tables.<table>`), so the same numbers drive the gate and its
tests. GX's Spark engine runs a Spark job per column a suite touches (it sets each column's
nulls apart first), which made the gate about a third of the chain's Spark time at scale
(BENCHMARKS.md, "Where the Spark stages' time goes"). So the work is split:

- Spark measures every row rule of a table in one aggregation, per drop (or over the whole
  table, for tables without drops): how many rows each rule speaks of (non-null values, for
  ranges and sets) and how many of those break it. Uniqueness is one group-by on the keys,
  which also sees published silver: a key is taken when published silver, an earlier drop or an
  earlier row of the same drop holds it.
- GX validates those measurements: a frame with one row per drop and one column per rule (the
  share of the drop's rows that break it), one expectation per rule (`share <= 1 - mostly`),
  plus the drop's row count. GX says which drops failed which rule; the JSON result is kept
  with the measurements it judged, and each expectation carries a description in plain words.
  Data Docs are rendered from the kept results by the platform (`pipelines/data_docs.py`).

A rule holds for each drop on its own: a delivery is judged on its rows, not diluted in the
table (published silver has passed already). GX never stops anything by itself: callers read
`GateResult.success` and `GateResult.failures`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from configs.settings import TableQuality

# The measurements' row (a drop, or the whole table) and row count column, and what a kept
# result records beside GX's verdict: the record Data Docs are rendered from.
from pipelines.data_docs import (
    CHECKED,
    CHECKED_BY_DROP,
    CHECKED_RUN,
    CHECKED_TABLE,
    GROUP,
    MEASURED,
    ROWS,
    results_dir,
)
from storage import files as fs

log = logging.getLogger(__name__)

_EXAMPLES = 5


@dataclass(frozen=True)
class Rule:
    """One rule of a suite: what Spark counts, and what GX is told about it."""

    expectation: str  # the GX expectation the rule is (named in messages)
    column: str  # its column(s), as messages name them
    label: str  # the measurements' column: the share of rows that break it
    description: str  # the rule in plain words, for Data Docs
    judged: Column | None = None  # the rows it speaks of (None: all rows)
    broken: Column | None = None  # a row breaks it (None for uniqueness: see `keys`)
    keys: tuple[str, ...] = ()  # uniqueness: the key columns
    allowed_share: float = 0.0  # 1 - mostly
    expected: dict[str, Any] = field(default_factory=dict)  # its bounds, for messages


def rules_for(quality: TableQuality) -> list[Rule]:
    """The row rules of one table's suite, in config order."""
    rules: list[Rule] = []
    for column in quality.not_null:
        rules.append(
            Rule(
                expectation="expect_column_values_to_not_be_null",
                column=column,
                label=f"{column} is null",
                description=f"Every row has a {column}.",
                broken=F.col(column).isNull(),
            )
        )
    for columns in quality.unique:
        names = ", ".join(columns)
        rules.append(
            Rule(
                expectation="expect_column_values_to_be_unique"
                if len(columns) == 1
                else "expect_compound_columns_to_be_unique",
                column=names,
                label=f"{names} already taken",
                description=f"No two rows of the table have the same {names}.",
                keys=tuple(columns),
            )
        )
    for column, bounds in quality.ranges.items():
        value = F.col(column)
        outside = F.lit(False)
        if bounds.min is not None:
            outside = outside | (value < bounds.min)
        if bounds.max is not None:
            outside = outside | (value > bounds.max)
        interval = f"[{_number(bounds.min, '-inf')}, {_number(bounds.max, 'inf')}]"
        values = (
            f"Every {column} value (where given) is"
            if bounds.mostly >= 1
            else f"At least {bounds.mostly:.4g} of the {column} values (where given) are"
        )
        rules.append(
            Rule(
                expectation="expect_column_values_to_be_between",
                column=column,
                label=f"{column} outside {interval}",
                description=f"{values} within {interval}.",
                judged=value.isNotNull(),
                broken=outside,
                allowed_share=1.0 - bounds.mostly,
                expected={"min_value": bounds.min, "max_value": bounds.max}
                | ({"mostly": bounds.mostly} if bounds.mostly < 1 else {}),
            )
        )
    for column, allowed in quality.in_set.items():
        rules.append(
            Rule(
                expectation="expect_column_values_to_be_in_set",
                column=column,
                label=f"{column} not in its set",
                description=f"Every {column} (where given) is one of {', '.join(allowed)}.",
                judged=F.col(column).isNotNull(),
                broken=~F.col(column).isin(allowed),
                expected={"value_set": allowed},
            )
        )
    return rules


@dataclass(frozen=True)
class FailedExpectation:
    expectation: str
    column: str | None
    detail: str

    def __str__(self) -> str:
        target = f" on {self.column}" if self.column else ""
        return f"{self.expectation}{target}: {self.detail}"


@dataclass
class GateResult:
    suite: str
    success: bool
    evaluated: int  # expectations
    groups: list[str] = field(default_factory=list)  # the drops measured (or the table)
    failures: dict[str, list[FailedExpectation]] = field(default_factory=dict)  # by drop
    result_files: list[str] = field(default_factory=list)  # locations of the JSON results

    def all_failures(self) -> list[FailedExpectation]:
        return [failure for group in self.failures.values() for failure in group]


@dataclass
class _Measured:
    """Per group: rows, and per rule (rows it speaks of, rows that break it)."""

    rows: dict[str, int]
    counts: dict[str, dict[str, tuple[int, int]]]  # rule label -> group -> (judged, broken)

    def frame(self, rules: list[Rule]) -> pd.DataFrame:
        groups = sorted(self.rows)
        data: dict[str, list[Any]] = {GROUP: groups, ROWS: [self.rows[g] for g in groups]}
        for rule in rules:
            shares = []
            for group in groups:
                judged, broken = self.counts[rule.label].get(group, (0, 0))
                shares.append(broken / judged if judged else 0.0)
            data[rule.label] = shares
        return pd.DataFrame(data)


def measure(
    frame: DataFrame, rules: list[Rule], group: Column, published: DataFrame | None = None
) -> _Measured:
    """Spark's part: every row rule in one aggregation by `group`, then each uniqueness rule in
    one group-by on its keys over `published` (already in the table) and `frame`."""
    row_rules = [rule for rule in rules if rule.broken is not None]
    aggregates = [F.count(F.lit(1)).alias(ROWS)]
    for i, rule in enumerate(row_rules):
        judged = rule.judged if rule.judged is not None else F.lit(True)
        assert rule.broken is not None
        aggregates += [
            F.count_if(judged).alias(f"judged_{i}"),
            F.count_if(judged & rule.broken).alias(f"broken_{i}"),
        ]
    rows: dict[str, int] = {}
    counts: dict[str, dict[str, tuple[int, int]]] = {rule.label: {} for rule in rules}
    for row in frame.groupBy(group.alias(GROUP)).agg(*aggregates).collect():
        name = str(row[GROUP])
        rows[name] = row[ROWS]
        for i, rule in enumerate(row_rules):
            counts[rule.label][name] = (row[f"judged_{i}"], row[f"broken_{i}"])
    for rule in rules:
        if rule.keys:
            found = _taken(frame, rule.keys, group, published)
            taken = {
                str(row[GROUP]): row["taken"]
                for row in (
                    found.groupBy(GROUP).agg(F.sum("taken").alias("taken")).collect()
                    if found is not None
                    else []
                )
            }
            counts[rule.label] = {name: (n, taken.get(name, 0)) for name, n in rows.items()}
    return _Measured(rows, counts)


def _taken(
    frame: DataFrame, keys: tuple[str, ...], group: Column, published: DataFrame | None
) -> DataFrame | None:
    """Per group and key: how many of the group's rows have a key already taken, by published
    rows, by an earlier group, or by an earlier row of the same group (only keys with any).

    One group-by on the keys finds the keys held more than once; only when there are any (bad
    data) are they traced to their groups; None when no key is."""
    source = "_source"
    rows = frame.select(*keys, group.cast("string").alias(source))
    if published is not None:
        rows = published.select(*keys, F.lit(None).cast("string").alias(source)).unionByName(rows)
    repeated = rows.groupBy(*keys).count().where(F.col("count") > 1).select(*keys)
    if repeated.isEmpty():
        return None
    per_source = rows.join(repeated, list(keys)).groupBy(*keys, source).count()
    earlier = Window.partitionBy(*keys).orderBy(F.col(source).asc_nulls_first())
    before = F.coalesce(
        F.sum("count").over(earlier.rowsBetween(Window.unboundedPreceding, -1)), F.lit(0)
    )
    taken = F.when(before > 0, F.col("count")).otherwise(F.col("count") - 1)
    return (
        per_source.withColumn("taken", taken)
        .where(F.col(source).isNotNull() & (F.col("taken") > 0))
        .select(*keys, F.col(source).alias(GROUP), "taken")
    )


class QualityGate:
    """Measures frames with Spark, judges them with GX, keeps the JSON results."""

    def __init__(self, reports_dir: str) -> None:
        self.reports_dir = reports_dir
        self.results_dir = self.results_dir_for(reports_dir)
        # GX sets its own loggers to INFO on import; batch runs want its warnings only.
        logging.getLogger("great_expectations").setLevel(logging.WARNING)
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        for site in self.context.get_site_names():  # the platform renders Data Docs itself
            self.context.delete_data_docs_site(site)
        self._source = self.context.data_sources.add_pandas(name="measurements")

    @staticmethod
    def results_dir_for(reports_dir: str) -> str:
        return results_dir(reports_dir)

    def check(
        self,
        name: str,
        frame: DataFrame,
        quality: TableQuality,
        run_label: str,
        *,
        by_drop: bool = True,
        published: DataFrame | None = None,
        attempt: int | None = None,
    ) -> GateResult:
        """Check `frame` against the suite `quality` of table `name`: each drop on its own
        (`by_drop`, with `published` rows for uniqueness), or the frame as one table. Results
        of one stage's run share `run_label`; `attempt` tells a second check of the same table
        in that run from the first."""
        rules = rules_for(quality)
        group = F.col(GROUP) if by_drop else F.lit(name)
        measured = measure(frame, rules, group, published)
        counts = quality.rows_per_drop if by_drop else None
        expectations: list[gxe.Expectation] = [
            gxe.ExpectColumnValuesToBeBetween(
                column=rule.label,
                min_value=0,
                max_value=rule.allowed_share,
                description=rule.description,
                meta={"rule": rule.expectation, "column": rule.column},
            )
            for rule in rules
        ]
        if counts is not None:
            expectations.append(
                gxe.ExpectColumnValuesToBeBetween(
                    column=ROWS,
                    min_value=counts.min,
                    max_value=counts.max,
                    description=f"Each drop has {counts.min:,} to {counts.max:,} rows.",
                )
            )
        result = GateResult(suite=name, success=True, evaluated=len(expectations))
        result.groups = sorted(measured.rows)
        if not expectations or not measured.rows:
            return result
        measurements = measured.frame(rules)
        asset_name = f"{name}_{run_label}" + (f"_{attempt}" if attempt is not None else "")
        verdict = self._run(asset_name, measurements, expectations)
        result.success = bool(verdict.success)
        checked = {
            CHECKED_TABLE: name,
            CHECKED_BY_DROP: by_drop,
            CHECKED_RUN: run_label,
            MEASURED: measurements,
        }
        result.result_files.append(self._keep(asset_name, verdict, checked))
        by_label = {rule.label: rule for rule in rules}
        for outcome in verdict.results:
            if outcome.success:
                continue
            column = outcome.expectation_config.kwargs["column"]
            # A rule GX could not evaluate names no drop: it holds every drop back.
            for group_name in _failed_groups(outcome) or result.groups:
                if column == ROWS:
                    assert counts is not None
                    failure = FailedExpectation(
                        "expect_column_values_to_be_between",
                        "rows per drop",
                        f"{measured.rows[group_name]:,} rows; expected {counts.min:,} to"
                        f" {counts.max:,}",
                    )
                else:
                    rule = by_label[column]
                    failure = self._describe(rule, measured, group_name, frame, group, published)
                result.failures.setdefault(group_name, []).append(failure)
        return result

    def _run(
        self, asset_name: str, measurements: pd.DataFrame, expectations: list[gxe.Expectation]
    ) -> Any:
        """One GX checkpoint run of `expectations` on the measurements: its validation result."""
        asset = self._source.add_dataframe_asset(name=asset_name)
        batch_definition = asset.add_batch_definition_whole_dataframe(f"{asset_name}_whole")
        suite = self.context.suites.add(gx.ExpectationSuite(name=asset_name))
        for expectation in expectations:
            suite.add_expectation(expectation)
        definition = self.context.validation_definitions.add(
            gx.ValidationDefinition(name=asset_name, data=batch_definition, suite=suite)
        )
        checkpoint = self.context.checkpoints.add(
            gx.Checkpoint(
                name=asset_name,
                validation_definitions=[definition],
                actions=[],  # the platform renders Data Docs from the kept results
                result_format={
                    "result_format": "COMPLETE",
                    "unexpected_index_column_names": [GROUP],
                },
            )
        )
        checkpoint_result = checkpoint.run(batch_parameters={"dataframe": measurements})
        (validation_result,) = checkpoint_result.run_results.values()
        return validation_result

    def _keep(self, asset_name: str, validation_result: Any, checked: dict[str, Any]) -> str:
        """Write a validation result as JSON under the reports, with what was checked in its
        `meta` (the table, by drop or whole, the measurements GX judged); its location."""
        record = validation_result.to_json_dict()
        record["meta"][CHECKED] = checked | {MEASURED: checked[MEASURED].to_dict(orient="records")}
        result_file = fs.join(self.results_dir, f"{asset_name}.json")
        fs.write_text(result_file, json.dumps(record, indent=2, default=str))
        return result_file

    @staticmethod
    def _describe(
        rule: Rule,
        measured: _Measured,
        group_name: str,
        frame: DataFrame,
        group: Column,
        published: DataFrame | None,
    ) -> FailedExpectation:
        """What broke, how often, and a few examples (one small Spark query: failures only)."""
        judged, broken = measured.counts[rule.label][group_name]
        detail = f"{broken:,} of {judged:,} rows ({100 * broken / judged:.3g}%)"
        if rule.keys:
            found = _taken(frame, rule.keys, group, published)
            examples = (
                [
                    ", ".join(map(str, row))
                    for row in found.where(F.col(GROUP) == group_name)
                    .select(*rule.keys)
                    .limit(_EXAMPLES)
                    .collect()
                ]
                if found is not None
                else []
            )
        elif rule.judged is not None:  # not-null rules have no value to show
            assert rule.broken is not None
            examples = [
                row[0]
                for row in frame.where((group == group_name) & rule.judged & rule.broken)
                .select(rule.column)
                .limit(_EXAMPLES)
                .collect()
            ]
        else:
            examples = []
        if examples:
            detail += f", e.g. {examples}"
        if rule.expected:
            detail += f"; expected {rule.expected}"
        return FailedExpectation(rule.expectation, rule.column, detail)


def _failed_groups(outcome: Any) -> list[str]:
    """The drops (measurement rows) a failed expectation names, from GX's result."""
    indices = (outcome.result or {}).get("unexpected_index_list") or []
    return sorted({str(index[GROUP]) for index in indices})


def _number(value: float | None, missing: str) -> str:
    return missing if value is None else f"{value:g}"
