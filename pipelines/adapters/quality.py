"""The only module that talks to Great Expectations (GX 1.x).

Suites are built from `configs` (`quality.tables.<table>`), so the same numbers drive the
gate and its tests. GX never stops anything by itself: callers read `GateResult.success`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import great_expectations as gx
import great_expectations.expectations as gxe
from great_expectations.core.result_format import ResultFormat
from great_expectations.data_context.types.base import ProgressBarsConfig

from configs.settings import TableQuality
from storage import files as fs

log = logging.getLogger(__name__)


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
    evaluated: int
    failures: list[FailedExpectation] = field(default_factory=list)
    result_files: list[str] = field(default_factory=list)  # locations of the JSON results


def row_expectations(rules: TableQuality) -> list[gxe.Expectation]:
    """Expectations on every row of a silver table."""
    expectations: list[gxe.Expectation] = []
    for column in rules.not_null:
        expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=column))
    for columns in rules.unique:
        if len(columns) == 1:
            expectations.append(gxe.ExpectColumnValuesToBeUnique(column=columns[0]))
        else:
            expectations.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=columns))
    for column, bounds in rules.ranges.items():
        expectations.append(
            gxe.ExpectColumnValuesToBeBetween(
                column=column, min_value=bounds.min, max_value=bounds.max, mostly=bounds.mostly
            )
        )
    for column, allowed in rules.in_set.items():
        expectations.append(gxe.ExpectColumnValuesToBeInSet(column=column, value_set=allowed))
    return expectations


def drop_count_expectations(rules: TableQuality) -> list[gxe.Expectation]:
    """Expectations on the per-drop row counts (a frame with columns drop_id, rows)."""
    if rules.rows_per_drop is None:
        return []
    bounds = rules.rows_per_drop
    return [
        gxe.ExpectColumnValuesToBeBetween(column="rows", min_value=bounds.min, max_value=bounds.max)
    ]


class QualityGate:
    """Runs suites on Spark or pandas frames and keeps JSON results and HTML Data Docs."""

    def __init__(self, reports_dir: str) -> None:
        self.reports_dir = reports_dir
        self.results_dir = self.results_dir_for(reports_dir)
        self.docs_dir = self.docs_dir_for(reports_dir)
        # GX sets its own loggers to INFO on import; batch runs want its warnings only.
        logging.getLogger("great_expectations").setLevel(logging.WARNING)
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        for site in self.context.get_site_names():  # keep Data Docs under reports/ only
            self.context.delete_data_docs_site(site)
        self.context.add_data_docs_site(
            site_name="reports",
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": _docs_backend(self.docs_dir),
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        self._spark_source: Any = None
        self._pandas_source: Any = None

    @staticmethod
    def results_dir_for(reports_dir: str) -> str:
        return fs.join(reports_dir, "validation")

    @staticmethod
    def docs_dir_for(reports_dir: str) -> str:
        return fs.join(reports_dir, "data_docs")

    def validate(
        self,
        name: str,
        frame: Any,
        expectations: list[gxe.Expectation],
        run_label: str,
    ) -> GateResult:
        """Validate `frame` (Spark or pandas) against `expectations` as suite `name`.

        The suite runs first as pass/fail only (GX's BOOLEAN_ONLY: on Spark, no job per
        expectation to fetch examples of unexpected values, which scans a passing table whole
        for nothing). Only when it fails are the failed expectations run again for their
        counts and examples, kept as a second result beside the first.
        """
        if not expectations:
            return GateResult(suite=name, success=True, evaluated=0)
        asset_name = f"{name}_{run_label}"
        verdict, by_id = self._run(asset_name, frame, expectations, ResultFormat.BOOLEAN_ONLY)
        result = GateResult(
            suite=name,
            success=bool(verdict.success),
            evaluated=len(verdict.results),
            result_files=[self._keep(asset_name, verdict)],
        )
        if result.success:
            return result
        failed = [by_id[r.expectation_config.id] for r in verdict.results if not r.success]
        details_name = f"{asset_name}_failures"
        details, _ = self._run(details_name, frame, failed, ResultFormat.SUMMARY)
        result.failures = [_describe(r) for r in details.results if not r.success]
        result.result_files.append(self._keep(details_name, details))
        return result

    def _run(
        self, asset_name: str, frame: Any, expectations: list[gxe.Expectation], detail: ResultFormat
    ) -> tuple[Any, dict[str | None, gxe.Expectation]]:
        """One checkpoint run of `expectations` on `frame`: its validation result, and which
        of `expectations` each id in the result stands for."""
        source = self._source_for(frame)
        asset = source.add_dataframe_asset(name=asset_name)
        batch_definition = asset.add_batch_definition_whole_dataframe(f"{asset_name}_whole")
        suite = self.context.suites.add(gx.ExpectationSuite(name=asset_name))
        by_id = {
            suite.add_expectation(expectation.copy(update={"id": None})).id: expectation
            for expectation in expectations
        }
        definition = self.context.validation_definitions.add(
            gx.ValidationDefinition(name=asset_name, data=batch_definition, suite=suite)
        )
        checkpoint = self.context.checkpoints.add(
            gx.Checkpoint(
                name=asset_name,
                validation_definitions=[definition],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="update_data_docs")],
                result_format={"result_format": detail.value, "partial_unexpected_count": 5},
            )
        )
        checkpoint_result = checkpoint.run(batch_parameters={"dataframe": frame})
        (validation_result,) = checkpoint_result.run_results.values()
        return validation_result, by_id

    def _keep(self, asset_name: str, validation_result: Any) -> str:
        """Write a validation result as JSON under the reports; its location."""
        result_file = fs.join(self.results_dir, f"{asset_name}.json")
        fs.write_text(
            result_file, json.dumps(validation_result.to_json_dict(), indent=2, default=str)
        )
        return result_file

    def _source_for(self, frame: Any) -> Any:
        if type(frame).__module__.startswith("pyspark"):
            if self._spark_source is None:
                self._spark_source = self.context.data_sources.add_spark(name="spark")
            return self._spark_source
        if self._pandas_source is None:
            self._pandas_source = self.context.data_sources.add_pandas(name="pandas")
        return self._pandas_source


def _docs_backend(docs_dir: str) -> dict[str, str]:
    """Where GX writes Data Docs: a local folder, or a bucket prefix on S3."""
    if docs_dir.startswith("s3://"):
        bucket, _, prefix = docs_dir.removeprefix("s3://").partition("/")
        return {"class_name": "TupleS3StoreBackend", "bucket": bucket, "prefix": prefix}
    return {"class_name": "TupleFilesystemStoreBackend", "base_directory": docs_dir}


def _describe(result: Any) -> FailedExpectation:
    config = result.expectation_config
    kwargs = config.kwargs
    column = kwargs.get("column") or (
        ", ".join(kwargs["column_list"]) if "column_list" in kwargs else None
    )
    details = result.result or {}
    if "unexpected_count" in details:
        examples = details.get("partial_unexpected_list") or []
        detail = (
            f"{details['unexpected_count']} unexpected of {details.get('element_count', '?')} rows"
            f" ({details.get('unexpected_percent', 0):.3g}%)"
        )
        if examples:
            detail += f", e.g. {examples[:5]}"
    elif result.exception_info and result.exception_info.get("raised_exception"):
        detail = f"could not be evaluated: {result.exception_info.get('exception_message')}"
    else:
        detail = f"observed {details.get('observed_value')!r}"
    bounds = {
        k: kwargs[k] for k in ("min_value", "max_value", "value_set", "mostly") if k in kwargs
    }
    if bounds:
        detail += f"; expected {bounds}"
    return FailedExpectation(expectation=config.type, column=column, detail=detail)
