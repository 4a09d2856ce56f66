"""Land: deliver the use case's raw files into the landing zone, as an upstream system would.

One CSV drop per month for the monthly tables (`landing/<table>/2013-01.csv`), one snapshot
drop for the reference tables (`landing/<table>/<snapshot_id>.csv`). Existing drops are never
overwritten: landing the same data again changes nothing.

With `land.scale_factor` N > 1 (benchmarks), the data is delivered N times: copy k is made
new data by the use case's `replicate` (its dates moved k years later, say), so every copy
is new data to every stage.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from configs import Settings
from pipelines.adapters.storage import StorageLayout
from pipelines.context import StageContext
from pipelines.results import StageFailed, StageResult
from storage import files as fs
from usecases.contract import Source, UseCase

log = logging.getLogger(__name__)


def source_dir(settings: Settings, usecase: UseCase) -> Path:
    if settings.land.source_dir:
        return Path(settings.land.source_dir)
    return Path(usecase.default_source_dir())


def read_source(folder: Path, source: Source) -> pd.DataFrame:
    """Read one upstream file with every value kept as its original text."""
    candidates = [folder / source.file, folder / source.file.removesuffix(".zip")]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise StageFailed(f"source file for {source.name} not found: looked for {candidates}")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def split_into_drops(
    frame: pd.DataFrame, source: Source, snapshot_id: str, months: list[str]
) -> dict[str, pd.DataFrame]:
    """Drop id -> rows of that drop. Monthly sources split on their rows' month."""
    if not source.monthly:
        return {snapshot_id: frame}
    assert source.drop_period is not None
    drop_ids = source.drop_period(frame)
    drops = {str(drop_id): rows for drop_id, rows in frame.groupby(drop_ids, sort=True)}
    if months:
        drops = {drop_id: rows for drop_id, rows in drops.items() if drop_id in months}
    return drops


def drops_of(
    frame: pd.DataFrame, source: Source, settings: Settings, usecase: UseCase
) -> Iterator[tuple[str, pd.DataFrame]]:
    """Drop id -> rows, for every copy the scale factor asks for, one copy at a time (a
    monthly copy's drops are its own months; a reference table's copies share one snapshot)."""
    factor, land, missing = settings.land.scale_factor, settings.land, settings.collect.null_token
    replicate = usecase.replicate
    if source.shared_across_copies or factor == 1:
        yield from split_into_drops(frame, source, land.snapshot_id, land.months).items()
    elif replicate is None:
        raise StageFailed(
            f"land.scale_factor {factor}: use case {usecase.name} declares no `replicate`"
        )
    elif not source.monthly:
        copies = pd.concat(
            [replicate(frame, source, k, missing) for k in range(factor)], ignore_index=True
        )
        yield from split_into_drops(copies, source, land.snapshot_id, land.months).items()
    else:
        for copy in range(factor):
            moved = replicate(frame, source, copy, missing)
            yield from split_into_drops(moved, source, land.snapshot_id, land.months).items()


def write_drop(rows: pd.DataFrame, target: str) -> bool:
    """Write a drop atomically. Returns False (and writes nothing) when it is already there."""
    content = rows.to_csv(index=False, lineterminator="\n").encode("utf-8")
    if fs.exists(target):
        if fs.read_bytes(target) != content:
            log.warning("%s is already landed with other content; left as it is", target)
        return False
    fs.write_bytes(target, content)
    return True


def run(ctx: StageContext) -> StageResult:
    settings = ctx.settings
    result = StageResult("land")
    layout = StorageLayout(settings.paths)
    usecase = ctx.usecase
    folder = source_dir(settings, usecase)
    written = existing = 0
    for source in usecase.sources:
        frame = read_source(folder, source)
        drops = 0
        for drop_id, rows in drops_of(frame, source, settings, usecase):
            drops += 1
            result.rows_in += len(rows)
            if write_drop(rows, layout.landing_file(source.name, drop_id)):
                written += 1
                result.rows_out += len(rows)
            else:
                existing += 1
        if source.monthly and settings.land.months and not drops:
            result.fail(
                f"{source.name}: none of the months {settings.land.months} is in the source"
            )
        log.info("land %s: %d drop(s)", source.name, drops)
    result.notes.append(f"{written} drop(s) landed, {existing} already there")
    if settings.land.scale_factor > 1:
        result.notes.append(
            f"scale factor {settings.land.scale_factor}: the source landed that many times"
        )
    result.outputs["landing"] = layout.landing
    return result
