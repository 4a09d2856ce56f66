"""The only module that creates the Spark session: one per process, configured from settings."""

from __future__ import annotations

import os

from pyspark.sql import SparkSession

from configs.settings import SparkConfig

# The local JVM: the parallel collector (throughput, every core). Not C1 only
# (-XX:TieredStopAtLevel=1): it started the session about 2 s sooner but ran every Spark job
# about half as fast (BENCHMARKS.md, "Where the Spark stages' time goes").
_LOCAL_JVM = "-XX:+UseParallelGC"


def get_spark(config: SparkConfig) -> SparkSession:
    """Return the process's Spark session, creating it on first use."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder
    # Empty: the master spark-submit was given (EMR Serverless sets its own).
    if config.master:
        builder = builder.master(config.master)
    builder = (
        builder.appName(config.app_name)
        .config("spark.driver.memory", config.driver_memory)
        .config("spark.sql.shuffle.partitions", str(config.shuffle_partitions))
        # Timestamps are instants in UTC everywhere; local clock times are converted on entry.
        .config("spark.sql.session.timeZone", "UTC")
        # Parquet readable by pyarrow, DuckDB and Feast (no INT96).
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        # Partition values (drop ids, dates) stay strings, exactly as written.
        .config("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
    )
    if config.master.startswith("local"):
        builder = builder.config("spark.driver.extraJavaOptions", _LOCAL_JVM)
    for key, value in config.conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
