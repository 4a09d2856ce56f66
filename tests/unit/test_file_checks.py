"""The checks on a raw drop's bytes that run before Spark reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.adapters.storage import LandedDrop
from pipelines.collect import DropPlan, batches, inspect_file

COLUMNS = ["a", "b", "c"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "empty file"),
        (b"a,b,c\n", "no data rows"),
        (b"a,b\n1,2\n", "missing column(s): c"),
        (b"a,b,c,d\n1,2,3,4\n", "unexpected column(s): d"),
        (b"a,b,c,c\n1,2,3,3\n", "appears twice"),
        (b"a,b,c\n1,2,3\n4,5", "looks truncated"),
        (b"a,b,c\n1,caf\xe9,3\n", "not valid UTF-8"),
    ],
)
def test_malformed_files_are_named(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "drop.csv"
    path.write_bytes(content)
    check = inspect_file(path, COLUMNS)
    assert any(problem in p for p in check.problems), check.problems


def test_a_good_file_has_no_problems_and_counts_rows(tmp_path: Path) -> None:
    path = tmp_path / "drop.csv"
    path.write_bytes(b'c,a,b\n1,2,3\n4,"x,y",6\n')
    check = inspect_file(path, COLUMNS)
    assert check.problems == []
    assert check.header == ["c", "a", "b"]  # any column order is accepted
    assert check.data_lines == 2


def test_utf8_split_across_read_chunks_is_fine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipelines.collect as collect

    monkeypatch.setattr(collect, "_CHUNK", 7)
    path = tmp_path / "drop.csv"
    path.write_bytes("a,b,c\n1,Zürich,3\n".encode())
    assert inspect_file(path, COLUMNS).problems == []


def test_drops_are_batched_by_the_size_of_their_files(tmp_path: Path) -> None:
    sizes = {"2013-01": 40, "2013-02": 40, "2013-03": 30, "2013-04": 150, "2013-05": 10}
    items = []
    for drop_id, size in sizes.items():
        path = tmp_path / f"{drop_id}.csv"
        path.write_bytes(b"x" * size)
        items.append(DropPlan(LandedDrop("flights", drop_id, str(path)), "hash", "new"))
    cut = [[item.drop.drop_id for item in batch] for batch in batches(items, 100)]
    # In landing order; a drop larger than the limit is a batch of its own.
    assert cut == [["2013-01", "2013-02"], ["2013-03"], ["2013-04"], ["2013-05"]]
    assert [len(batch) for batch in batches(items, 10_000)] == [5]
