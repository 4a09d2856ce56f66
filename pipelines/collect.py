"""Collect (Spark): new landing drops -> typed bronze and clean silver, staged for the gate.

A drop is taken whole or refused whole: a file with a wrong header, a bad encoding, a
truncated last line, or any row whose values do not parse is quarantined with a reason,
and nothing of it reaches the lake. Collecting a drop that is already in the lake with the
same content changes nothing; the same drop id with other content is refused as a conflict.
"""

from __future__ import annotations

import codecs
import csv
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from configs import Settings
from pipelines.adapters.lake import read_drops, read_snapshot
from pipelines.adapters.storage import (
    BRONZE,
    STAGING,
    USECASE_DIGEST,
    DropMarker,
    LandedDrop,
    StorageLayout,
    content_hash,
)
from pipelines.context import StageContext
from pipelines.results import StageFailed, StageResult
from storage import files as fs
from usecases.contract import (
    CONTENT_HASH,
    DROP_ID,
    INGESTED_AT,
    PROBLEMS,
    RESERVED_COLUMNS,
    ROW_DATE,
    SOURCE_FILE,
    SilverContext,
    Source,
    carried,
    resolve,
)

log = logging.getLogger(__name__)

CORRUPT = "_corrupt_record"
# Which drop a row came from (DROP_ID), while drops are collected together, is written as the
# partition directory `drop_id=<id>`, which is the drop's directory in the lake.
_CHUNK = 1 << 20


# --- checks on the file itself (no Spark) --------------------------------------------------


@dataclass
class FileCheck:
    header: list[str] = field(default_factory=list)
    data_lines: int = 0
    problems: list[str] = field(default_factory=list)


def inspect_file(path: str, expected_columns: list[str]) -> FileCheck:
    """Encoding, header and completeness of a raw CSV drop, in one streaming pass."""
    check = FileCheck()
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    first_line = ""
    newlines = 0
    last_byte = b""
    offset = 0
    with fs.open_input(path) as handle:
        while chunk := handle.read(_CHUNK):
            try:
                text = decoder.decode(chunk)
            except UnicodeDecodeError as err:
                check.problems.append(
                    f"not valid UTF-8 (byte {offset + err.start}): wrong encoding"
                )
                return check
            if newlines == 0:
                first_line += text.split("\n", 1)[0]
            newlines += chunk.count(b"\n")
            last_byte = chunk[-1:]
            offset += len(chunk)
    if offset == 0:
        check.problems.append("empty file (0 bytes)")
        return check
    check.header = next(csv.reader([first_line.rstrip("\r")]), [])
    check.data_lines = max(newlines - 1, 0) + (0 if last_byte == b"\n" else 1 if newlines else 0)
    missing = [c for c in expected_columns if c not in check.header]
    extra = [c for c in check.header if c not in expected_columns]
    if missing:
        check.problems.append(f"missing column(s): {', '.join(missing)}")
    if extra:
        check.problems.append(f"unexpected column(s): {', '.join(extra)}")
    if len(set(check.header)) != len(check.header):
        check.problems.append("a column name appears twice in the header")
    if last_byte != b"\n":
        check.problems.append("the last line has no line ending: the file looks truncated")
    if check.data_lines == 0:
        check.problems.append("no data rows (header only)")
    return check


# --- pure transforms --------------------------------------------------------------------


def raw_schema(header: list[str]) -> T.StructType:
    """Every column as text, in the file's own order, plus Spark's corrupt-record column."""
    fields = [T.StructField(name, T.StringType()) for name in header]
    return T.StructType([*fields, T.StructField(CORRUPT, T.StringType())])


def parse(raw: DataFrame, source: Source) -> DataFrame:
    """Cast each column to its contract type; `_problems` lists what did not parse, per row."""
    typed = [F.col(name).try_cast(kind).alias(name) for name, kind in source.columns.items()]
    problems = [
        F.when(
            F.col(CORRUPT).isNotNull(), F.lit("malformed line (wrong number of fields or quoting)")
        )
    ] + [
        F.when(
            F.col(name).isNotNull() & F.col(name).try_cast(kind).isNull(),
            F.concat(F.lit(f"{name}: "), F.col(name), F.lit(f" is not a {kind}")),
        )
        for name, kind in source.columns.items()
    ]
    return raw.select(
        *typed,
        F.filter(F.array(*problems), lambda p: p.isNotNull()).alias(PROBLEMS),
        *carried(raw.columns),
    )


def dated_outside_drop(typed: DataFrame, source: Source) -> DataFrame:
    """Monthly drops: a row must be dated in its drop's month, and its UTC instant (the
    source's `instant_column`, if any) within a day of that date. A row from another month,
    typically a future one (an export or a clock gone wrong), is a problem of its row, so the
    drop is quarantined whole.

    The reference is the drop's own month, not the wall clock: collect replays history, and
    `land.scale_factor` moves copies of the data into later years by design.
    """
    assert source.date_sql is not None
    row_date = F.expr(source.date_sql)
    period = F.date_format(row_date, "yyyy-MM")
    checks = [
        F.when(
            ~F.col(DROP_ID).startswith(period),
            F.concat(F.lit("dated "), period, F.lit(", outside its drop "), F.col(DROP_ID)),
        )
    ]
    if source.instant_column:
        instant = F.col(source.instant_column)
        checks.append(
            F.when(
                F.abs(F.datediff(F.to_date(instant), row_date)) > 1,
                F.concat(
                    F.lit(f"{source.instant_column} "),
                    instant.cast("string"),
                    F.lit(" is not on the row's date "),
                    row_date.cast("string"),
                ),
            )
        )
    problems = F.array(*checks)
    return typed.withColumn(
        PROBLEMS, F.concat(F.col(PROBLEMS), F.filter(problems, lambda p: p.isNotNull()))
    )


def bronze_frame(typed: DataFrame, source: Source) -> DataFrame:
    """The typed columns, plus (monthly sources) the row's date as `ROW_DATE`, yyyy-MM-dd, which
    orders bronze: a source column of that name (allowed only when `date_sql` reads it, see
    usecases/project.py) is replaced by its normalised form."""
    columns = [*source.column_names, *carried(typed.columns)]
    if source.monthly:
        assert source.date_sql is not None
        day = F.date_format(F.expr(source.date_sql), "yyyy-MM-dd").alias(ROW_DATE)
        return typed.select(*(c for c in columns if c != ROW_DATE), day)
    return typed.select(*columns)


def with_ingest_metadata(frame: DataFrame, drops: DataFrame, ingested_at: datetime) -> DataFrame:
    """Each row with its drop's content hash and file name (`drops`: one row per drop id)."""
    return frame.join(F.broadcast(drops), DROP_ID).select(
        *frame.columns,
        CONTENT_HASH,
        SOURCE_FILE,
        F.lit(ingested_at).cast("timestamp").alias(INGESTED_AT),
    )


# --- the runner -------------------------------------------------------------------------


@dataclass
class DropPlan:
    drop: LandedDrop
    content_hash: str
    state: str  # new | collected | staged | quarantined | conflict
    detail: str = ""
    # Quarantined before, and judged again: the use case changed since, or the run was asked to.
    retried: bool = False


def plan(
    layout: StorageLayout, source: Source, usecase_digest: str = "", retry: bool = False
) -> list[DropPlan]:
    """Classify each landed drop of `source` against what the lake already holds.

    A quarantined drop stays refused while its content and the use case it was judged by
    (`usecase_digest`, see usecases/project.py) are the same; a drop refused under another
    digest, or every one when `retry`, is judged again as new."""
    silver = layout.drops_in(layout.silver(source.name))
    staged = layout.drops_in(layout.staging(source.name))
    plans = []
    for drop in layout.landed_drops(source.name):
        digest = content_hash(drop.path)
        known = silver.get(drop.drop_id) or staged.get(drop.drop_id)
        refused = layout.quarantined(source.name, drop.drop_id, digest)
        if refused and not retry and refused.get(USECASE_DIGEST) == usecase_digest:
            plans.append(DropPlan(drop, digest, "quarantined"))
        elif known is None:
            plans.append(DropPlan(drop, digest, "new", retried=refused is not None))
        elif known.content_hash == digest:
            plans.append(
                DropPlan(drop, digest, "collected" if drop.drop_id in silver else "staged")
            )
        else:
            plans.append(
                DropPlan(
                    drop,
                    digest,
                    "conflict",
                    f"drop {drop.drop_id} was already collected with content {known.content_hash}; "
                    "a corrected re-delivery needs a new drop id",
                )
            )
    return plans


@dataclass(frozen=True)
class DropOutcome:
    accepted: bool
    rows_in: int
    rows_out: int
    reasons: list[str] = field(default_factory=list)


class _Collector:
    def __init__(
        self,
        spark: Callable[[], SparkSession],
        settings: Settings,
        layout: StorageLayout,
        usecase_digest: str,
    ) -> None:
        self._spark = spark
        self.settings = settings
        self.layout = layout
        self.usecase_digest = usecase_digest
        self.ingested_at = datetime.now(UTC).replace(microsecond=0)
        self._tables: dict[str, DataFrame] = {}
        self.context = SilverContext(table=self.reference_table, params=settings.params)

    @property
    def spark(self) -> SparkSession:
        return self._spark()

    def reference_table(self, name: str) -> DataFrame:
        """A reference table a silver transform reads: the newest snapshot, staged or published
        (read once per run)."""
        if name not in self._tables:
            table = read_snapshot(self.spark, self.layout, name, include_staged=True)
            if table is None:
                raise RuntimeError(f"no {name} data in the lake: collect the {name} drop first")
            self._tables[name] = table.cache()
        return self._tables[name]

    def quarantine(
        self, item: DropPlan, reasons: list[str], examples: list[dict] | None = None
    ) -> str:
        where = self.layout.quarantine(
            item.drop,
            item.content_hash,
            {
                "table": item.drop.table,
                "drop_id": item.drop.drop_id,
                "content_hash": item.content_hash,
                "stage": "collect",
                USECASE_DIGEST: self.usecase_digest,
                "reasons": reasons,
                "examples": examples or [],
                "quarantined_at": self.ingested_at.isoformat(),
                "source_file": item.drop.path,
            },
        )
        log.warning(
            "quarantined %s/%s: %s -> %s",
            item.drop.table,
            item.drop.drop_id,
            "; ".join(reasons),
            where,
        )
        return where

    def collect(self, items: list[DropPlan], source: Source) -> dict[str, DropOutcome]:
        """Collect new drops of one table in one Spark job: each drop is staged whole or
        quarantined whole, on its own merits. Returns the outcome per drop id."""
        outcomes: dict[str, DropOutcome] = {}
        by_header: dict[tuple[str, ...], list[DropPlan]] = {}
        for item in items:
            check = inspect_file(item.drop.path, source.column_names)
            if check.problems:
                self.quarantine(item, check.problems)
                outcomes[item.drop.drop_id] = DropOutcome(
                    False, check.data_lines, 0, check.problems
                )
            else:
                by_header.setdefault(tuple(check.header), []).append(item)
        for header, group in by_header.items():
            outcomes |= self._collect_parsed(group, list(header), source)
        return outcomes

    def _read(self, items: list[DropPlan], header: list[str]) -> DataFrame:
        """The drops' rows as text, each with its drop id (a drop's file is `<drop_id>.csv`)."""
        raw = self.spark.read.csv(
            [item.drop.path for item in items],
            schema=raw_schema(header),
            header=True,
            mode="PERMISSIVE",
            columnNameOfCorruptRecord=CORRUPT,
            nullValue=self.settings.collect.null_token,
            encoding="UTF-8",
        )
        file_name = F.col("_metadata.file_name")
        return raw.withColumn(DROP_ID, F.regexp_replace(file_name, r"\.csv$", ""))

    def _collect_parsed(
        self,
        items: list[DropPlan],
        header: list[str],
        source: Source,
    ) -> dict[str, DropOutcome]:
        """Two writes for the whole batch, both under temporary folders: the typed rows to
        bronze, then the good drops' silver rows to staging. The files are parsed once, while
        bronze is written (rows and rows with a problem are counted on the way); silver is
        made from the bronze just written, not from the CSV again nor from a cache. Counts
        per drop are read from the written files. Only whole, good drops are published."""
        by_id = {item.drop.drop_id: item for item in items}
        typed = parse(self._read(items, header), source)
        if source.monthly:
            typed = dated_outside_drop(typed, source)
        bronze_temp = self.layout.temp_dir(self.layout.bronze(source.name), "batch")
        silver_temp = self.layout.temp_dir(self.layout.staging(source.name), "batch")
        try:
            parsed = Observation()
            observed = typed.observe(parsed, F.count_if(F.size(PROBLEMS) > 0).alias("bad"))
            self._write(bronze_frame(observed, source), bronze_temp, by_id, source)
            rows_in = _rows_per_drop(self.spark.read.parquet(bronze_temp))
            # Rows that do not parse are rare: only then are they counted per drop (the CSV
            # files are parsed again for it).
            counts = _rows_and_bad_rows(typed) if parsed.get["bad"] else {}
            outcomes: dict[str, DropOutcome] = {}
            for drop_id, item in by_id.items():
                rows, bad_rows = counts.get(drop_id, (rows_in.get(drop_id, 0), 0))
                if bad_rows or not rows:
                    reasons = self._refuse(item, typed, rows, bad_rows)
                    outcomes[drop_id] = DropOutcome(False, rows, 0, reasons)
            good = sorted(set(by_id) - set(outcomes))
            if not good:
                return outcomes
            candidate = self._to_silver(self._typed_rows(typed, bronze_temp, good, source), source)
            # A silver transform's own problems (say, an airport without a time zone) are
            # counted while silver is written; they are rare, so only then per drop.
            placed = Observation()
            observed = candidate.observe(placed, F.count_if(F.size(PROBLEMS) > 0).alias("bad"))
            # Exact duplicate rows are dropped within a drop: the shuffle that puts each drop
            # in one task (one file per drop) is the one the de-duplication needs.
            silver = observed.drop(PROBLEMS).repartition(DROP_ID).dropDuplicates()
            self._write(silver, silver_temp, by_id, source)
            if placed.get["bad"]:
                for drop_id, (rows, bad_rows) in _rows_and_bad_rows(candidate).items():
                    if bad_rows:
                        reasons = self._refuse(by_id[drop_id], candidate, rows, bad_rows)
                        outcomes[drop_id] = DropOutcome(False, rows, 0, reasons)
            rows_out = _rows_per_drop(self.spark.read.parquet(silver_temp))
            markers = {
                drop_id: DropMarker(
                    table=source.name,
                    drop_id=drop_id,
                    content_hash=by_id[drop_id].content_hash,
                    source_file=fs.name(by_id[drop_id].drop.path),
                    ingested_at=self.ingested_at.isoformat(),
                    rows_in=rows_in[drop_id],
                    rows_out=rows_out[drop_id],
                    duplicates_dropped=rows_in[drop_id] - rows_out[drop_id],
                )
                for drop_id in good
                if drop_id not in outcomes
            }
            self._publish(bronze_temp, self.layout.bronze(source.name), markers)
            self._publish(silver_temp, self.layout.staging(source.name), markers)
            for drop_id, marker in markers.items():
                outcomes[drop_id] = DropOutcome(True, marker.rows_in, marker.rows_out)
            return outcomes
        finally:
            fs.delete_tree(bronze_temp)
            fs.delete_tree(silver_temp)

    def _typed_rows(
        self, typed: DataFrame, bronze_temp: str, good: list[str], source: Source
    ) -> DataFrame:
        """The good drops' typed rows, as the silver transform takes them (every row without
        a problem). Read from the bronze just written, which holds them typed; except when
        bronze replaced a source column (a monthly source's own `date`): then parsed again."""
        if source.monthly and ROW_DATE in source.column_names:
            return typed.where(F.col(DROP_ID).isin(good))
        bronze = read_drops(self.spark, bronze_temp, good)
        assert bronze is not None  # `good` is never empty
        return bronze.select(
            *source.column_names, F.array().cast("array<string>").alias(PROBLEMS), DROP_ID
        )

    def _refuse(
        self, item: DropPlan, candidate: DataFrame, rows_in: int, bad_rows: int
    ) -> list[str]:
        """Quarantine a drop with rows that do not parse; returns the reasons."""
        if not rows_in:
            reasons = ["no row of the file could be read"]
            self.quarantine(item, reasons)
            return reasons
        examples = [
            {"problems": row[PROBLEMS]}
            for row in candidate.where(
                (F.col(DROP_ID) == item.drop.drop_id) & (F.size(PROBLEMS) > 0)
            )
            .select(PROBLEMS)
            .limit(self.settings.collect.examples_in_reason)
            .collect()
        ]
        first = "; ".join(examples[0]["problems"]) if examples else ""
        reasons = [
            f"{bad_rows} of {rows_in} row(s) do not parse or cannot be placed in time"
            f" (first: {first})"
        ]
        self.quarantine(item, reasons, examples)
        return reasons

    def _to_silver(self, typed: DataFrame, source: Source) -> DataFrame:
        if source.silver is None:  # reference tables are kept as delivered
            return typed
        rows: DataFrame = resolve(source.silver)(typed, self.context)
        made = {column for column in rows.columns if column not in RESERVED_COLUMNS}
        declared = set(source.silver_columns)
        if made != declared:
            raise StageFailed(
                f"{source.silver} returned the columns {sorted(made)}, but the source "
                f"{source.name} declares silver_columns {sorted(declared)} (missing: "
                f"{sorted(declared - made)}, not declared: {sorted(made - declared)}): make "
                "the transform and its declaration agree; nothing was written"
            )
        return rows

    def _write(
        self,
        frame: DataFrame,
        temp: str,
        items: dict[str, DropPlan],
        source: Source,
    ) -> None:
        """Write the drops of `frame` in one job under `temp`, as `drop_id=<id>/` folders,
        which are exactly drops' directories in the lake (see `_publish`).

        A drop is one file, its rows in date order (parquet's statistics then prune by date):
        a file per day and drop made thousands of small files at scale, whose writing and
        listing cost more than the data (BENCHMARKS.md, collect + features at scale). Rows
        are sorted within each task, not shuffled: a drop is in one task when its frame was
        partitioned by drop (silver), and for bronze as long as Spark reads its file whole,
        which it does unless the file is larger than the batch's share of a core
        (`spark.sql.files.maxPartitionBytes`); a larger drop is then a few files.
        """
        drops = self.spark.createDataFrame(
            [
                (drop_id, item.content_hash, fs.name(item.drop.path))
                for drop_id, item in items.items()
            ],
            f"{DROP_ID} string, {CONTENT_HASH} string, {SOURCE_FILE} string",
        )
        frame = with_ingest_metadata(frame, drops, self.ingested_at)
        order = [ROW_DATE] if source.monthly else []
        (
            frame.sortWithinPartitions(DROP_ID, *order)
            .write.mode("error")
            .partitionBy(DROP_ID)
            .parquet(temp)
        )

    def _publish(self, temp: str, table_dir: str, markers: dict[str, DropMarker]) -> None:
        """Move each accepted drop's directory from `temp` into `table_dir`, with its marker."""
        for drop_id, marker in markers.items():
            written = StorageLayout.drop_dir(temp, drop_id)
            StorageLayout.write_marker(written, marker)
            self.layout.publish(written, StorageLayout.drop_dir(table_dir, drop_id))


def _rows_and_bad_rows(frame: DataFrame) -> dict[str, tuple[int, int]]:
    """Drop id -> (rows, rows with a problem)."""
    return {
        row[DROP_ID]: (row["rows"], row["bad"])
        for row in frame.groupBy(DROP_ID)
        .agg(F.count(F.lit(1)).alias("rows"), F.count_if(F.size(PROBLEMS) > 0).alias("bad"))
        .collect()
    }


def _rows_per_drop(written: DataFrame) -> dict[str, int]:
    """Drop id -> rows, of parquet just written (Spark reads the files' row counts only)."""
    return {row[DROP_ID]: row["count"] for row in written.groupBy(DROP_ID).count().collect()}


def batches(items: list[DropPlan], limit_bytes: int) -> list[list[DropPlan]]:
    """`items` in order, cut into batches whose files add up to at most `limit_bytes` (a drop
    larger than that is a batch of its own)."""
    cut: list[list[DropPlan]] = []
    size = 0
    for item in items:
        length = fs.size(item.drop.path)
        if not cut or size + length > limit_bytes:
            cut.append([])
            size = 0
        cut[-1].append(item)
        size += length
    return cut


def run(ctx: StageContext) -> StageResult:
    settings, spark = ctx.settings, ctx.spark
    result = StageResult("collect")
    layout = StorageLayout(settings.paths)
    if removed := layout.clean_temporaries():
        result.notes.append(f"removed {removed} leftover temporary folder(s) of an interrupted run")
    collector = _Collector(spark, settings, layout, ctx.project.digest)
    sources = ctx.usecase.sources
    retry = settings.collect.retry_quarantined
    plans = {source.name: plan(layout, source, ctx.project.digest, retry) for source in sources}
    retried = [item for items in plans.values() for item in items if item.retried]
    if retried:
        why = "as asked (--retry-quarantined)" if retry else "the use case changed since"
        result.notes.append(
            f"{len(retried)} quarantined drop(s) judged again: {why}: "
            + ", ".join(f"{item.drop.table}/{item.drop.drop_id}" for item in retried)
        )
    total = sum(len(items) for items in plans.values())
    if total == 0:
        result.fail(
            f"no drops in the landing zone {layout.landing}: run `python -m pipelines land` first"
        )
        return result
    counts = {"collected": 0, "already collected": 0, "awaiting gate": 0, "quarantined": 0}
    for items in plans.values():
        for item in items:
            if item.state == "collected":
                counts["already collected"] += 1
            elif item.state == "staged":
                counts["awaiting gate"] += 1
            elif item.state == "quarantined":
                counts["quarantined"] += 1
                result.problems.append(
                    f"{item.drop.table}/{item.drop.drop_id} is still quarantined (same content)"
                )
            elif item.state == "conflict":
                collector.quarantine(item, [item.detail])
                counts["quarantined"] += 1
                result.problems.append(f"{item.drop.table}/{item.drop.drop_id}: {item.detail}")
    for source in sources:
        todo = [item for item in plans[source.name] if item.state == "new"]
        done = 0
        for batch in batches(todo, settings.collect.batch_mib * 2**20):
            log.info(
                "collect %s: drops %s..%s [%d-%d of %d new]",
                source.name,
                batch[0].drop.drop_id,
                batch[-1].drop.drop_id,
                done + 1,
                done + len(batch),
                len(todo),
            )
            done += len(batch)
            try:
                outcomes = collector.collect(batch, source)
            except RuntimeError as err:
                result.fail(f"{source.name}: {err}")
                continue
            for item in batch:
                outcome = outcomes[item.drop.drop_id]
                result.rows_in += outcome.rows_in
                result.rows_out += outcome.rows_out
                if outcome.accepted:
                    counts["collected"] += 1
                    if item.retried:  # its quarantine copy and reason are history now
                        layout.release(source.name, item.drop.drop_id, item.content_hash)
                    continue
                counts["quarantined"] += 1
                where = layout.quarantine_dir(source.name, item.drop.drop_id, item.content_hash)
                result.problems.append(
                    f"{source.name}/{item.drop.drop_id} quarantined: {'; '.join(outcome.reasons)}"
                    f" (details: {where}/reason.json)"
                )
    share = counts["quarantined"] / total
    result.notes.append(
        ", ".join(f"{n} {label}" for label, n in counts.items()) + f" (of {total} landed)"
    )
    if counts["quarantined"] and share > settings.collect.max_quarantined_share:
        result.fail(
            f"{counts['quarantined']} of {total} drop(s) quarantined ({share:.1%}), above the allowed "
            f"{settings.collect.max_quarantined_share:.1%} (collect.max_quarantined_share): fix or "
            "replace the drop upstream, or remove it from the landing zone, and run again"
        )
    result.outputs |= {
        "bronze": layout.zone(BRONZE),
        "staged silver": layout.zone(STAGING),
        "quarantine": layout.quarantine_root,
    }
    return result
