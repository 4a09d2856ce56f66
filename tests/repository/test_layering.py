"""Dependencies point one way: serving and the Feast declarations work without Spark installed
(as in the serving image) and never pull in the batch chain."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from configs.settings import USECASE_VARIABLE
from tests.conftest import PLATFORM_USECASE

MODULES = (
    "usecases",
    "usecases.project",
    "features.inputs",
    "features.definitions",
    "features.store",
    "serving.service",
)
# Runs in a fresh interpreter in which `pyspark` cannot be imported, as in the serving image,
# and imports each module in turn: what each brings of the batch side that the ones before it
# did not (a module that needs one already brought was refused with the one before it).
PROBE = """
import importlib, importlib.abc, json, sys
class NoSpark(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "pyspark" or name.startswith("pyspark."):
            raise ImportError("pyspark is not installed here")
        return None
sys.meta_path.insert(0, NoSpark())
brought, seen = {}, set()
for module in sys.argv[1:]:
    try:
        importlib.import_module(module)
    except Exception as err:
        brought[module] = f"cannot be imported: {err!r}"
        continue
    batch = {m for m in sys.modules if m.split(".")[0] in ("pipelines", "infra")}
    brought[module] = ",".join(sorted(batch - seen))
    seen |= batch
print(json.dumps(brought))
"""


@pytest.fixture(scope="module")
def brought() -> dict[str, str]:
    environ = {**os.environ, USECASE_VARIABLE: PLATFORM_USECASE}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *MODULES],
        capture_output=True,
        text=True,
        timeout=120,
        env=environ,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("module", MODULES)
def test_module_works_without_spark_and_without_the_batch_chain(
    brought: dict[str, str], module: str
) -> None:
    assert brought[module] == "", f"{module}: {brought[module]}"
