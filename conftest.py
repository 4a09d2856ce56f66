"""What every test of the repository shares, the platform's (`tests/`) and each use case's
(`usecases/<name>/tests/`): the process's one local Spark session, started on first use."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    from configs.settings import SparkConfig
    from pipelines.adapters.spark import get_spark

    session = get_spark(SparkConfig(master="local[2]", shuffle_partitions=2, driver_memory="2g"))
    yield session
    session.stop()
