"""The only module that knows the storage layout of the landing zone, lake and quarantine.

Layout (local folders, or the same shape under s3:// on AWS):

    landing/<table>/<drop_id>.csv                      raw drops, as delivered (never modified)
    lake/bronze/<table>/drop_id=<id>/*.parquet         typed, with ingest metadata
    lake/_staging/silver/<table>/drop_id=<id>/...      clean, waiting for the quality gate
    lake/silver/<table>/drop_id=<id>/*.parquet         clean and gated: what downstream reads
    lake/silver/<table>/drop_id=<id>/_gate.json        the gate's results that let the drop in
    lake/features/<view>/...  lake/features/_manifest.json   feature tables, and what built them
    quarantine/<table>/<drop_id>-<hash>/               a copy of a refused drop and reason.json

A drop directory is written under a temporary name and moved into place, and carries its own
`_drop.json` marker, written last: a crash leaves the previous state readable, readers go
through the markers, and Spark, pyarrow and DuckDB skip names starting with `_`.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import asdict, dataclass

import pandas as pd

from configs.settings import Paths
from storage import files as fs

MARKER = "_drop.json"
REASON = "reason.json"
# Beside a published silver drop: the quality gate's result files that let it in.
GATE_RECORD = "_gate.json"
# Beside the feature tables: the silver state and FeatureService they were built from.
FEATURES_MANIFEST = "_manifest.json"
BRONZE, SILVER, STAGING, FEATURES = "bronze", "silver", "_staging", "features"
# The reason's record of the use case a drop was judged by (usecases/project.py `digest`).
USECASE_DIGEST = "usecase_digest"
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class LandedDrop:
    table: str
    drop_id: str
    path: str  # a location: local path or s3:// URI


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
    """Where each zone's tables and drops live. Locations are strings (local paths or s3://
    URIs); every file operation goes through `storage.files`."""

    def __init__(self, paths: Paths) -> None:
        self.landing = paths.landing
        self.lake = paths.lake
        self.quarantine_root = paths.quarantine
        self.reports = paths.reports

    # -- where things live ------------------------------------------------------------
    def landing_dir(self, table: str) -> str:
        return fs.join(self.landing, table)

    def landing_file(self, table: str, drop_id: str) -> str:
        return fs.join(self.landing_dir(table), f"{drop_id}.csv")

    def zone(self, name: str) -> str:
        """A zone of the lake: BRONZE, SILVER, FEATURES, or STAGING (silver awaiting the gate)."""
        return fs.join(self.lake, STAGING, SILVER) if name == STAGING else fs.join(self.lake, name)

    def bronze(self, table: str) -> str:
        return fs.join(self.zone(BRONZE), table)

    def staging(self, table: str) -> str:
        return fs.join(self.zone(STAGING), table)

    def silver(self, table: str) -> str:
        return fs.join(self.zone(SILVER), table)

    @property
    def features_manifest(self) -> str:
        return fs.join(self.zone(FEATURES), FEATURES_MANIFEST)

    def features_staging(self) -> str:
        """A fresh folder the feature tables are written to before they are moved into place."""
        return fs.join(self.zone(FEATURES), f"_staging-{uuid.uuid4().hex[:8]}")

    @staticmethod
    def gate_record(drop_dir: str) -> str:
        return fs.join(drop_dir, GATE_RECORD)

    def quarantine_dir(self, table: str, drop_id: str, content_hash: str) -> str:
        digest = content_hash.removeprefix("sha256:")
        return fs.join(self.quarantine_root, table, f"{drop_id}-{digest[:12]}")

    @staticmethod
    def drop_dir(table_dir: str, drop_id: str) -> str:
        return fs.join(table_dir, f"drop_id={drop_id}")

    # -- landing ----------------------------------------------------------------------
    def landed_drops(self, table: str) -> list[LandedDrop]:
        folder = self.landing_dir(table)
        return [
            LandedDrop(table, name.removesuffix(".csv"), fs.join(folder, name))
            for name in fs.children(folder)
            if name.endswith(".csv")
        ]

    # -- drop state -------------------------------------------------------------------
    def drops_in(self, table_dir: str) -> dict[str, DropMarker]:
        """Committed drops (those with a marker) under a bronze, staging or silver table."""
        markers = {}
        for name in fs.children(table_dir):
            if not name.startswith("drop_id="):
                continue
            marker = self.marker(fs.join(table_dir, name))
            if marker is not None:
                markers[marker.drop_id] = marker
        return markers

    @staticmethod
    def marker(drop_dir: str) -> DropMarker | None:
        """The drop's marker: what makes a drop folder a drop (None: not one, whatever it holds)."""
        marker_file = fs.join(drop_dir, MARKER)
        if not fs.is_file(marker_file):
            return None
        return DropMarker(**json.loads(fs.read_text(marker_file)))

    @classmethod
    def missing_from(cls, drop_dir: str, rows: int) -> str | None:
        """What a drop folder lacks of a whole drop of `rows` rows (its marker, its data, its
        rows), or None when it is whole. Reads the parquet footers only."""
        import pyarrow.dataset as ds

        if cls.marker(drop_dir) is None:
            return f"it has no {MARKER}"
        filesystem, path = fs.resolve(drop_dir)
        try:  # files named _* (the marker, the gate's record) are not data
            found = ds.dataset(path, filesystem=filesystem, format="parquet").count_rows()
        except (OSError, ValueError) as err:
            return f"its data cannot be read ({err})"
        if found != rows:
            return f"it holds {found:,} rows where {rows:,} were judged"
        return None

    def quarantined(self, table: str, drop_id: str, content_hash: str) -> dict | None:
        reason = fs.join(self.quarantine_dir(table, drop_id, content_hash), REASON)
        return json.loads(fs.read_text(reason)) if fs.is_file(reason) else None

    def read_silver_columns(self, table: str, columns: list[str]) -> pd.DataFrame | None:
        """Published silver of `table` as pandas (no Spark), read through the drop markers."""
        drops = self.drops_in(self.silver(table))
        if not drops:
            return None
        frames = []
        for drop_id in sorted(drops):
            filesystem, path = fs.resolve(self.drop_dir(self.silver(table), drop_id))
            frames.append(pd.read_parquet(path, columns=columns, filesystem=filesystem))
        return pd.concat(frames, ignore_index=True)

    # -- atomic writes ----------------------------------------------------------------
    def temp_dir(self, table_dir: str, drop_id: str) -> str:
        """A fresh location beside `table_dir`'s drops, invisible to readers until published."""
        fs.make_dirs(table_dir)
        return fs.join(table_dir, f"_tmp-{drop_id}-{uuid.uuid4().hex[:8]}")

    @staticmethod
    def write_marker(drop_dir: str, marker: DropMarker) -> None:
        fs.write_text(fs.join(drop_dir, MARKER), json.dumps(asdict(marker), indent=2))

    def publish(self, source_dir: str, target_dir: str, commit_last: str = MARKER) -> None:
        """Move a complete drop directory into place, replacing any previous one.

        Locally the previous drop is renamed aside and the new one renamed in: readers see
        one or the other. On S3 the previous drop is removed first, then the new one copied
        with its marker last: for that moment the drop is absent, never half there.
        """
        fs.make_dirs(fs.parent(target_dir))
        trash = None
        if fs.exists(target_dir):
            trash = fs.join(fs.parent(target_dir), f"_trash-{uuid.uuid4().hex[:8]}")
            fs.move(target_dir, trash, commit_last=commit_last)
        fs.move(source_dir, target_dir, commit_last=commit_last)
        if trash is not None:
            fs.delete_tree(trash)

    def clean_temporaries(self) -> int:
        """Remove what a crashed run left behind (`_tmp-*`, `_trash-*`); returns how many."""
        removed = 0
        for folder in fs.walk_dirs(self.lake):
            if fs.name(folder).startswith(("_tmp-", "_trash-")) and fs.exists(folder):
                fs.delete_tree(folder)
                removed += 1
        return removed

    def release(self, table: str, drop_id: str, content_hash: str) -> None:
        """Forget a quarantined drop that has since been accepted (its landing file stays)."""
        fs.delete_tree(self.quarantine_dir(table, drop_id, content_hash))

    def quarantine(self, drop: LandedDrop, content_hash: str, reason: dict) -> str:
        """Keep a copy of a refused drop and why it was refused. The landing file stays."""
        target = self.quarantine_dir(drop.table, drop.drop_id, content_hash)
        temp = fs.join(fs.parent(target), f"_tmp-{uuid.uuid4().hex[:8]}")
        fs.make_dirs(temp)
        fs.copy_file(drop.path, fs.join(temp, fs.name(drop.path)))
        fs.write_text(fs.join(temp, REASON), json.dumps(reason, indent=2, default=str))
        self.publish(temp, target)
        return target


def content_hash(location: str) -> str:
    digest = hashlib.sha256()
    with fs.open_input(location) as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()
