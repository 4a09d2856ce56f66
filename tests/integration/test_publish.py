"""Publishing checks what it publishes, and a drop folder is published only with its marker.

Two runs on one workspace once left a published drop as a folder holding nothing but the
gate's record, while both reported it published. The run lock keeps runs apart; these tests
hold the lake's own rules whatever happens beside it."""

from __future__ import annotations

import shutil
from pathlib import Path

from pipelines import validate
from pipelines.adapters.lake import read_silver
from pipelines.adapters.storage import GATE_RECORD, StorageLayout
from pipelines.chain import run_chain
from tests.lake_helpers import chain, land_new_drop, new_month, problems, tree_digest

TABLE, NEW_DROP = "meter_readings", "2024-04"


def test_a_drop_folder_without_its_marker_is_not_published_and_the_next_run_repairs_it(
    lake, spark
) -> None:
    layout = StorageLayout(lake.paths)
    before = read_silver(spark, layout, TABLE).count()
    planted = Path(StorageLayout.drop_dir(layout.silver(TABLE), NEW_DROP))
    planted.mkdir()
    (planted / GATE_RECORD).write_text('{"results": []}')

    # Not a drop, for every reader of silver (features and fit read through these two).
    assert NEW_DROP not in layout.drops_in(layout.silver(TABLE))
    assert read_silver(spark, layout, TABLE).count() == before
    assert len(layout.read_silver_columns(TABLE, ["reading_id"])) == before
    assert StorageLayout.missing_from(str(planted), 0) == "it has no _drop.json"

    landed = new_month(NEW_DROP)
    land_new_drop(lake, TABLE, NEW_DROP, landed)
    results = chain(lake, spark)
    assert all(r.ok for r in results), problems(results)
    assert f"{TABLE}: 1 drop(s) passed and published ({len(landed):,} rows)" in results[-1].notes
    marker = layout.drops_in(layout.silver(TABLE))[NEW_DROP]
    assert marker.rows_out == len(landed)
    assert StorageLayout.missing_from(str(planted), len(landed)) is None
    assert read_silver(spark, layout, TABLE).count() == before + len(landed)


def _staged(lake, spark) -> tuple[StorageLayout, str]:
    """A new month collected and waiting for the gate: the layout and its staged folder."""
    land_new_drop(lake, TABLE, NEW_DROP, new_month(NEW_DROP))
    results = run_chain(lake, ("land", "collect"), spark=spark)
    assert all(r.ok for r in results), problems(results)
    layout = StorageLayout(lake.paths)
    return layout, StorageLayout.drop_dir(layout.staging(TABLE), NEW_DROP)


def test_a_staged_drop_gone_after_the_gate_is_not_published(lake, spark) -> None:
    """What the second of two overlapping runs met: the drop it judged was published (moved
    away) by the first. Publishing it again made an empty folder over the first's drop."""
    layout, staged = _staged(lake, spark)
    judged = layout.drops_in(layout.staging(TABLE))[NEW_DROP]
    shutil.rmtree(staged)
    silver = tree_digest(Path(layout.silver(TABLE)))

    problem = validate._publish(layout, TABLE, judged, [])

    assert problem is not None and "its staged copy changed or went away" in problem
    assert tree_digest(Path(layout.silver(TABLE))) == silver
    assert not Path(staged).exists()


def test_a_publish_that_does_not_hold_the_judged_rows_goes_back_to_staging(lake, spark) -> None:
    layout, staged = _staged(lake, spark)
    judged = layout.drops_in(layout.staging(TABLE))[NEW_DROP]
    for part in Path(staged).glob("*.parquet"):
        part.unlink()  # the data lost between the gate and the rename
    silver = tree_digest(Path(layout.silver(TABLE)))

    problem = validate._publish(layout, TABLE, judged, [])

    assert problem == (
        f"{TABLE}/{NEW_DROP}: published, but it holds 0 rows where {judged.rows_out:,} were "
        "judged: put back in staging for the next run"
    )
    assert tree_digest(Path(layout.silver(TABLE))) == silver
    assert layout.drops_in(layout.staging(TABLE))[NEW_DROP] == judged
