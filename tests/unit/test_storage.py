"""The storage layout: atomic publish, markers as the record of what is in the lake."""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.adapters.storage import DropMarker, LandedDrop, StorageLayout, content_hash


def marker(drop_id: str, digest: str = "sha256:aa") -> DropMarker:
    return DropMarker(
        "flights", drop_id, digest, f"{drop_id}.csv", "2013-12-31T00:00:00+00:00", 10, 9, 1
    )


def test_publish_makes_a_drop_visible_and_replaces_atomically(make_settings) -> None:
    layout = StorageLayout(make_settings().paths)
    table = layout.silver("flights")
    for content, digest in (("first", "sha256:aa"), ("second", "sha256:bb")):
        temp = layout.temp_dir(table, "2013-01")
        temp.mkdir()
        (temp / "part-0.parquet").write_text(content)
        StorageLayout.write_marker(temp, marker("2013-01", digest))
        assert "2013-01" not in layout.drops_in(table) or content == "second"
        layout.publish(temp, StorageLayout.drop_dir(table, "2013-01"))
    assert layout.drops_in(table)["2013-01"].content_hash == "sha256:bb"
    assert (StorageLayout.drop_dir(table, "2013-01") / "part-0.parquet").read_text() == "second"
    assert sorted(p.name for p in table.iterdir()) == ["drop_id=2013-01"]  # no temp or trash left


def test_a_directory_without_marker_is_not_a_drop(make_settings) -> None:
    layout = StorageLayout(make_settings().paths)
    half_written = StorageLayout.drop_dir(layout.silver("flights"), "2013-02")
    half_written.mkdir(parents=True)
    assert layout.drops_in(layout.silver("flights")) == {}


def test_leftovers_of_a_crash_are_cleaned(make_settings) -> None:
    layout = StorageLayout(make_settings().paths)
    leftover = layout.temp_dir(layout.bronze("weather"), "2013-01")
    leftover.mkdir()
    (leftover / "part-0.parquet").write_text("partial")
    assert layout.clean_temporaries() == 1
    assert not leftover.exists()


def test_quarantine_keeps_a_copy_and_the_reason(make_settings, tmp_path: Path) -> None:
    layout = StorageLayout(make_settings().paths)
    source = tmp_path / "2013-01.csv"
    source.write_text("a,b\n1,2\n")
    digest = content_hash(source)
    where = layout.quarantine(
        LandedDrop("flights", "2013-01", source), digest, {"reasons": ["bad"]}
    )
    assert where.name == f"2013-01-{digest.removeprefix('sha256:')[:12]}"
    assert (where / "2013-01.csv").read_text() == "a,b\n1,2\n"
    assert json.loads((where / "reason.json").read_text()) == {"reasons": ["bad"]}
    assert layout.quarantined("flights", "2013-01", digest) == {"reasons": ["bad"]}
    assert source.exists()  # the landing file is never moved or changed


def test_content_hash_is_of_the_bytes(tmp_path: Path) -> None:
    one, two = tmp_path / "1.csv", tmp_path / "2.csv"
    one.write_text("a\n1\n")
    two.write_text("a\n1\n")
    assert content_hash(one) == content_hash(two)
    two.write_text("a\n2\n")
    assert content_hash(one) != content_hash(two)


def test_object_store_paths_are_refused_locally(make_settings) -> None:
    import pytest

    settings = make_settings(paths={"lake": "s3://bucket/lake"})
    with pytest.raises(NotImplementedError, match=r"paths\.lake"):
        StorageLayout(settings.paths)
