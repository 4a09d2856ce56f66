"""The only module that knows the storage layout of the landing zone, lake and quarantine.

Layout (local; the same shape under s3:// on AWS):

    landing/<table>/<drop_id>.csv                      raw drops, as delivered (never modified)
    lake/bronze/<table>/drop_id=<id>/[date=<d>/]*.parquet   typed, with ingest metadata
    lake/_staging/silver/<table>/drop_id=<id>/...      clean, waiting for the quality gate
    lake/silver/<table>/drop_id=<id>/[date=<d>/]*.parquet   clean and gated: what downstream reads
    quarantine/<table>/<drop_id>-<hash>/               a copy of a refused drop and reason.json

A drop directory is written under a temporary name and renamed into place, and carries its
own `_drop.json` marker: a crash leaves the previous state readable, and readers (Spark,
pyarrow, DuckDB) skip names starting with `_`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from configs.settings import Paths

MARKER = "_drop.json"
REASON = "reason.json"
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class LandedDrop:
    table: str
    drop_id: str
    path: Path


@dataclass(frozen=True)
class DropMarker:
    """What the lake records about a collected drop (written as `_drop.json`)."""

    table: str
    drop_id: str
    content_hash: str
    source_file: str
    ingested_at: str
    rows_in: int
    rows_out: int
    duplicates_dropped: int


class StorageLayout:
    def __init__(self, paths: Paths) -> None:
        for name in ("landing", "lake", "quarantine", "reports"):
            if "://" in getattr(paths, name):
                raise NotImplementedError(
                    f"paths.{name} is {getattr(paths, name)!r}: object-store paths are read by the "
                    "cluster jobs of the aws profile, not by a local run"
                )
        self.landing = Path(paths.landing)
        self.lake = Path(paths.lake)
        self.quarantine_root = Path(paths.quarantine)
        self.reports = Path(paths.reports)

    # -- where things live ------------------------------------------------------------
    def landing_dir(self, table: str) -> Path:
        return self.landing / table

    def landing_file(self, table: str, drop_id: str) -> Path:
        return self.landing_dir(table) / f"{drop_id}.csv"

    def bronze(self, table: str) -> Path:
        return self.lake / "bronze" / table

    def staging(self, table: str) -> Path:
        return self.lake / "_staging" / "silver" / table

    def silver(self, table: str) -> Path:
        return self.lake / "silver" / table

    def quarantine_dir(self, table: str, drop_id: str, content_hash: str) -> Path:
        digest = content_hash.removeprefix("sha256:")
        return self.quarantine_root / table / f"{drop_id}-{digest[:12]}"

    @staticmethod
    def drop_dir(table_dir: Path, drop_id: str) -> Path:
        return table_dir / f"drop_id={drop_id}"

    # -- landing ----------------------------------------------------------------------
    def landed_drops(self, table: str) -> list[LandedDrop]:
        folder = self.landing_dir(table)
        if not folder.is_dir():
            return []
        return [LandedDrop(table, path.stem, path) for path in sorted(folder.glob("*.csv"))]

    # -- drop state -------------------------------------------------------------------
    def drops_in(self, table_dir: Path) -> dict[str, DropMarker]:
        """Committed drops under a bronze, staging or silver table directory."""
        markers = {}
        if table_dir.is_dir():
            for marker_file in sorted(table_dir.glob(f"drop_id=*/{MARKER}")):
                marker = DropMarker(**json.loads(marker_file.read_text()))
                markers[marker.drop_id] = marker
        return markers

    def quarantined(self, table: str, drop_id: str, content_hash: str) -> dict | None:
        reason = self.quarantine_dir(table, drop_id, content_hash) / REASON
        return json.loads(reason.read_text()) if reason.is_file() else None

    def read_silver_columns(self, table: str, columns: list[str]) -> pd.DataFrame | None:
        """Published silver of `table` as pandas (no Spark), read through the drop markers."""
        drops = self.drops_in(self.silver(table))
        if not drops:
            return None
        frames = [
            pd.read_parquet(self.drop_dir(self.silver(table), drop_id), columns=columns)
            for drop_id in sorted(drops)
        ]
        return pd.concat(frames, ignore_index=True)

    # -- atomic writes ----------------------------------------------------------------
    def temp_dir(self, table_dir: Path, drop_id: str) -> Path:
        """A fresh directory beside `table_dir`'s drops, invisible to readers until published."""
        table_dir.mkdir(parents=True, exist_ok=True)
        return table_dir / f"_tmp-{drop_id}-{uuid.uuid4().hex[:8]}"

    @staticmethod
    def write_marker(drop_dir: Path, marker: DropMarker) -> None:
        (drop_dir / MARKER).write_text(json.dumps(asdict(marker), indent=2))

    def publish(self, source_dir: Path, target_dir: Path) -> None:
        """Move a complete drop directory into place, replacing any previous one atomically."""
        target_dir.parent.mkdir(parents=True, exist_ok=True)
        trash = None
        if target_dir.exists():
            trash = target_dir.parent / f"_trash-{uuid.uuid4().hex[:8]}"
            target_dir.rename(trash)
        source_dir.rename(target_dir)
        if trash is not None:
            shutil.rmtree(trash)

    def clean_temporaries(self) -> int:
        """Remove what a crashed run left behind (`_tmp-*`, `_trash-*`); returns how many."""
        removed = 0
        if self.lake.is_dir():
            for leftover in [*self.lake.glob("**/_tmp-*"), *self.lake.glob("**/_trash-*")]:
                if leftover.is_dir():
                    shutil.rmtree(leftover, ignore_errors=True)
                    removed += 1
        return removed

    def quarantine(self, drop: LandedDrop, content_hash: str, reason: dict) -> Path:
        """Keep a copy of a refused drop and why it was refused. The landing file stays."""
        target = self.quarantine_dir(drop.table, drop.drop_id, content_hash)
        temp = target.parent / f"_tmp-{uuid.uuid4().hex[:8]}"
        temp.mkdir(parents=True)
        shutil.copy2(drop.path, temp / drop.path.name)
        (temp / REASON).write_text(json.dumps(reason, indent=2, default=str))
        self.publish(temp, target)
        return target


def content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()
