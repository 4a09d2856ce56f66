"""The storage layout: atomic publish, markers as the record of what is in the lake.

Every test runs twice: on local folders and on S3 (moto's server, through the same pyarrow
filesystem the aws profile uses), so the lake behaves the same on a laptop and on AWS.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from configs import Settings
from pipelines.adapters.storage import DropMarker, LandedDrop, StorageLayout, content_hash
from storage import files as fs

BUCKET = "lake-tests"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on loopback, with fake credentials, for this module."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {
        k: os.environ.get(k)
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", fs.ENDPOINT_VARIABLE)
    }
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="us-east-1"
    )
    os.environ[fs.ENDPOINT_VARIABLE] = endpoint
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    try:
        yield endpoint
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(params=["local", "s3"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "local":
        return str(tmp_path / "zones")
    request.getfixturevalue("s3_endpoint")
    return f"s3://{BUCKET}/{uuid.uuid4().hex[:8]}"


@pytest.fixture
def layout(make_settings: Callable[..., Settings], root: str) -> StorageLayout:
    zones = {name: fs.join(root, name) for name in ("landing", "lake", "quarantine", "reports")}
    return StorageLayout(make_settings(paths=zones).paths)


def marker(drop_id: str, digest: str = "sha256:aa") -> DropMarker:
    return DropMarker(
        "flights", drop_id, digest, f"{drop_id}.csv", "2013-12-31T00:00:00+00:00", 10, 9, 1
    )


def test_publish_makes_a_drop_visible_and_replaces_it(layout: StorageLayout) -> None:
    table = layout.silver("flights")
    for content, digest in (("first", "sha256:aa"), ("second", "sha256:bb")):
        temp = layout.temp_dir(table, "2013-01")
        fs.write_text(fs.join(temp, "part-0.parquet"), content)
        StorageLayout.write_marker(temp, marker("2013-01", digest))
        assert "2013-01" not in layout.drops_in(table) or content == "second"
        layout.publish(temp, StorageLayout.drop_dir(table, "2013-01"))
    assert layout.drops_in(table)["2013-01"].content_hash == "sha256:bb"
    drop = StorageLayout.drop_dir(table, "2013-01")
    assert fs.read_text(fs.join(drop, "part-0.parquet")) == "second"
    assert fs.children(table) == ["drop_id=2013-01"]  # no temp or trash left


def test_a_directory_without_marker_is_not_a_drop(layout: StorageLayout) -> None:
    half_written = StorageLayout.drop_dir(layout.silver("flights"), "2013-02")
    fs.write_text(fs.join(half_written, "part-0.parquet"), "half")
    assert layout.drops_in(layout.silver("flights")) == {}


def test_leftovers_of_a_crash_are_cleaned(layout: StorageLayout) -> None:
    leftover = layout.temp_dir(layout.bronze("weather"), "2013-01")
    fs.write_text(fs.join(leftover, "part-0.parquet"), "partial")
    assert layout.clean_temporaries() == 1
    assert not fs.exists(fs.join(leftover, "part-0.parquet"))


def test_quarantine_keeps_a_copy_and_the_reason(layout: StorageLayout) -> None:
    source = layout.landing_file("flights", "2013-01")
    fs.write_text(source, "a,b\n1,2\n")
    digest = content_hash(source)
    where = layout.quarantine(
        LandedDrop("flights", "2013-01", source), digest, {"reasons": ["bad"]}
    )
    assert fs.name(where) == f"2013-01-{digest.removeprefix('sha256:')[:12]}"
    assert fs.read_text(fs.join(where, "2013-01.csv")) == "a,b\n1,2\n"
    assert json.loads(fs.read_text(fs.join(where, "reason.json"))) == {"reasons": ["bad"]}
    assert layout.quarantined("flights", "2013-01", digest) == {"reasons": ["bad"]}
    assert fs.read_text(source) == "a,b\n1,2\n"  # the landing file is never moved or changed
    assert [d.drop_id for d in layout.landed_drops("flights")] == ["2013-01"]


def test_content_hash_is_of_the_bytes(root: str) -> None:
    one, two = fs.join(root, "1.csv"), fs.join(root, "2.csv")
    fs.write_text(one, "a\n1\n")
    fs.write_text(two, "a\n1\n")
    assert content_hash(one) == content_hash(two)
    fs.write_text(two, "a\n2\n")
    assert content_hash(one) != content_hash(two)


def test_silver_is_read_through_the_markers(layout: StorageLayout, tmp_path: Path) -> None:
    import pandas as pd

    table = layout.silver("flights")
    for drop_id, committed in (("2013-01", True), ("2013-02", False)):
        local = tmp_path / f"{drop_id}.parquet"
        pd.DataFrame({"flight_id": [drop_id]}).to_parquet(local)
        drop = StorageLayout.drop_dir(table, drop_id)
        fs.upload(local, fs.join(drop, "part-0.parquet"))
        if committed:
            StorageLayout.write_marker(drop, marker(drop_id))
    frame = layout.read_silver_columns("flights", ["flight_id"])
    assert frame is not None and list(frame["flight_id"]) == ["2013-01"]
