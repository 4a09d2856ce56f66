"""Collect with a source unlike the use cases': silver is made from the bronze just
written, except where bronze normalised a column the source has (a monthly source's own
`date`), whose typed value silver keeps."""

from __future__ import annotations

from collections.abc import Callable

from configs import Settings
from pipelines.adapters.lake import read_drops
from pipelines.adapters.storage import LandedDrop, StorageLayout, content_hash
from pipelines.collect import DropPlan, _Collector
from storage import files as fs
from usecases.contract import Source

READINGS = Source(
    name="readings",
    file="readings.csv",
    columns={"date": "date", "site": "string", "value": "double"},
    monthly=True,
    date_sql="date",
    drop_period=lambda frame: frame["date"].str[:7],
)


def test_a_monthly_source_with_its_own_date_column(
    spark: object, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    layout = StorageLayout(settings.paths)
    path = layout.landing_file(READINGS.name, "2013-01")
    fs.write_bytes(path, b"date,site,value\n2013-01-05,A,1.5\n2013-01-05,A,1.5\n2013-01-31,B,NA\n")
    plan = DropPlan(LandedDrop(READINGS.name, "2013-01", path), content_hash(path), "new")

    collector = _Collector(lambda: spark, settings, layout, usecase_digest="test")
    outcome = collector.collect([plan], READINGS)["2013-01"]

    assert (outcome.accepted, outcome.rows_in, outcome.rows_out) == (True, 3, 2)
    bronze = read_drops(spark, layout.bronze(READINGS.name), ["2013-01"])
    silver = read_drops(spark, layout.staging(READINGS.name), ["2013-01"])
    assert bronze is not None and silver is not None
    # Bronze partitions by the row's date as text; silver keeps the source's typed date.
    assert dict(bronze.dtypes)["date"] == "string"
    assert dict(silver.dtypes)["date"] == "date"
    rows = sorted((str(r["date"]), r["site"], r["value"]) for r in silver.collect())
    assert rows == [("2013-01-05", "A", 1.5), ("2013-01-31", "B", None)]
