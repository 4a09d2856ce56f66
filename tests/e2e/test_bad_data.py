"""Every kind of bad delivery, made to a platform that has trained and serves a champion.

Each case of the table in RELIABILITY.md ("Bad data") is one parameter below: a new drop (or a
redelivery) is corrupted in that one way, the whole chain runs, and the test checks that the
drop is quarantined or stopped by the gate with a message naming the problem, that the landing
file is left as delivered, and that the published silver, the feature tables, the Feast
registry, the online store and the registry's champion are exactly as they were.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from configs import Settings
from models.tracking import CHAMPION, Tracker
from pipelines.adapters.storage import StorageLayout
from pipelines.chain import CHAIN, run_chain
from tests.conftest import platform_settings
from tests.lake_helpers import new_month, problems, read_landed, tree_digest

ROOT = Path(__file__).resolve().parents[2]
TABLE = "meter_readings"
NEW_DROP = "2024-04"


def as_csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False, lineterminator="\n").encode()


def edit(column: str, value: str, row: int = 3) -> Callable[[pd.DataFrame], bytes]:
    def change(frame: pd.DataFrame) -> bytes:
        frame.loc[row, column] = value
        return as_csv(frame)

    return change


def duplicate_reading(frame: pd.DataFrame) -> bytes:
    """Row 5 again with another value: the same reading's key, two versions of it."""
    copy = frame.iloc[[5]].assign(value="1.5")
    return as_csv(pd.concat([frame, copy], ignore_index=True))


def truncated(frame: pd.DataFrame) -> bytes:
    return as_csv(frame)[:-40]


def malformed_line(frame: pd.DataFrame) -> bytes:
    lines = as_csv(frame).split(b"\n")
    lines[4] = lines[4] + b",surplus"
    return b"\n".join(lines)


@dataclass(frozen=True)
class Case:
    name: str
    # April's drop (a month never delivered) -> the bytes delivered. For a redelivery,
    # January's own file is rewritten instead.
    deliver: Callable[[pd.DataFrame], bytes]
    stage: str  # the stage that stops it
    message: str  # a regular expression the failure must match
    redelivery: bool = False


CASES = [
    Case(
        "missing column",
        lambda f: as_csv(f.drop(columns=["value"])),
        "collect",
        r"missing column\(s\): value",
    ),
    Case(
        "extra column",
        lambda f: as_csv(f.assign(gate="B12")),
        "collect",
        r"unexpected column\(s\): gate",
    ),
    Case("wrong type", edit("value", "high"), "collect", r"value: high is not a double"),
    Case("malformed line", malformed_line, "collect", r"malformed line"),
    Case(
        "null in a key",
        edit("meter_id", "NA"),
        "validate",
        r"expect_column_values_to_not_be_null on meter_id",
    ),
    Case(
        "out-of-range value",
        edit("value", "99999"),
        "validate",
        r"expect_column_values_to_be_between on value",
    ),
    Case(
        "unknown facility",
        edit("facility_id", "S9"),
        "collect",
        r"no time zone for facility S9",
    ),
    Case(
        "duplicate reading",
        duplicate_reading,
        "validate",
        r"expect_column_values_to_be_unique on reading_id",
    ),
    Case(
        "date in the future",
        edit("year", "2031"),
        "collect",
        r"dated 2031-04, outside its drop 2024-04",
    ),
    Case(
        "timestamp in the future",
        edit("read_utc", "2031-04-01T09:00:00Z"),
        "collect",
        r"read_utc 2031-04-01 09:00:00 is not on the row's date 2024-04-01",
    ),
    Case("empty file", lambda f: b"", "collect", r"empty file \(0 bytes\)"),
    Case(
        "header only",
        lambda f: as_csv(f.iloc[:0]),
        "collect",
        r"no data rows \(header only\)",
    ),
    Case("truncated file", truncated, "collect", r"the file looks truncated"),
    Case(
        "wrong encoding",
        lambda f: as_csv(f).decode().encode("utf-16"),
        "collect",
        r"not valid UTF-8 \(byte 0\): wrong encoding",
    ),
    Case(
        "month redelivered with other content",
        edit("value", "0.123"),
        "collect",
        r"drop 2024-01 was already collected with content sha256:\w+; a corrected re-delivery",
        redelivery=True,
    ),
]


def platform_state(settings: Settings, root: Path) -> dict[str, object]:
    """What a bad delivery must not change: published data, features, stores, the champion."""
    lake = Path(StorageLayout(settings.paths).lake)
    tracker = Tracker(settings)
    champion = tracker.alias(CHAMPION)
    return {
        "silver": tree_digest(lake / "silver"),
        "features": tree_digest(lake / "features"),
        "feast registry and online store": tree_digest(root / "feast"),
        "champion": champion.version if champion else None,
        "versions": [ref.version for ref in tracker.versions()],
    }


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_bad_delivery_is_refused_and_nothing_published_changes(
    platform_trained_root: Path, tmp_path: Path, spark, case: Case
) -> None:
    root = tmp_path / "platform"
    shutil.copytree(platform_trained_root, root, ignore=shutil.ignore_patterns("serve-*.log"))
    settings = platform_settings(root)
    layout = StorageLayout(settings.paths)
    before = platform_state(settings, root)
    drop_id = "2024-01" if case.redelivery else NEW_DROP
    delivered = case.deliver(
        read_landed(settings, TABLE, "2024-01") if case.redelivery else new_month(NEW_DROP)
    )
    target = Path(layout.landing_file(TABLE, drop_id))
    target.write_bytes(delivered)

    results = run_chain(settings, CHAIN, spark=spark)

    failed = results[-1]
    assert (failed.stage, failed.ok) == (case.stage, False), problems(results)
    assert re.search(case.message, problems(results)), problems(results)
    assert platform_state(settings, root) == before
    assert target.read_bytes() == delivered  # the delivery is kept as it came
    assert layout.drops_in(layout.staging(TABLE)) == {}
    (reason_file,) = (Path(layout.quarantine_root) / TABLE).glob(f"{drop_id}-*/reason.json")
    reason = json.loads(reason_file.read_text())
    assert reason["stage"] == case.stage
    assert re.search(case.message, " ".join(reason["reasons"]))
    assert (reason_file.parent / f"{drop_id}.csv").read_bytes() == delivered


def test_every_case_is_in_the_reliability_table() -> None:
    table = (ROOT / "RELIABILITY.md").read_text()
    missing = [case.name for case in CASES if f"| {case.name} |" not in table]
    assert not missing, f"cases without a row in RELIABILITY.md: {missing}"
