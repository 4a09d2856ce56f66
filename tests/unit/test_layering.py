"""Dependencies point one way: serving and the Feast declarations work without Spark installed
(as in the serving image) and never pull in the batch chain."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Runs in a fresh interpreter in which `pyspark` cannot be imported, as in the serving image.
PROBE = """
import importlib.abc, sys
class NoSpark(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "pyspark" or name.startswith("pyspark."):
            raise ImportError("pyspark is not installed here")
        return None
sys.meta_path.insert(0, NoSpark())
import {module}
print(",".join(sorted(m for m in sys.modules if m.split(".")[0] in ("pipelines", "infra"))))
"""


@pytest.mark.parametrize(
    "module",
    ["serving.service", "features.definitions", "features.store", "features.inputs", "usecases"],
)
def test_module_works_without_spark_and_without_the_batch_chain(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "", f"{module} imports {done.stdout.strip()}"
