"""A stand-in for a broken release (tests/e2e/test_canary.py): Python imports this module at
start-up in every process whose path holds this folder, that is the canary's service and its
workers only. Once `serving.service` is imported, its predictions read, on every request, the
fault named in the file $MLOPS_TEST_FAULT_FILE and act it out:

    none    answer as the service does
    errors  fail 30% of requests (a 500)
    slow    answer 200 ms later (the latency rule's bound is the stable release's p99 x 1.5
            plus 60 ms in tests/e2e/test_canary.py)
    shift   answer scores 0.3 higher (at most 1)
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

FAULT_FILE = os.environ.get("MLOPS_TEST_FAULT_FILE", "")
TARGET = "serving.service"


def _break(module: Any) -> None:
    service = module.PredictionService.inner  # the class a bentoml Service wraps
    honest = service.score
    draw = random.Random(0)

    def score(self: Any, items: list[Any], *args: Any, **kwargs: Any) -> Any:
        fault = Path(FAULT_FILE).read_text().strip()
        if fault == "errors" and draw.random() < 0.3:
            raise RuntimeError("an injected fault (tests/canary_faults)")
        if fault == "slow":
            time.sleep(0.2)
        predictions = honest(self, items, *args, **kwargs)
        if fault == "shift":
            for prediction in predictions:
                moved = min(1.0, getattr(prediction, self.score_field) + 0.3)
                setattr(prediction, self.score_field, moved)
        return predictions

    service.score = score


class _AfterImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            load(module)
            _break(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if FAULT_FILE:
    sys.meta_path.insert(0, _AfterImport())
