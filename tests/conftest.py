"""Shared fixtures: settings of the platform's own use case (usecases/synthetic) pointed at a
temporary lake and, for the integration and e2e tiers, a baseline lake built once and copied for
each test that changes it (the one Spark session is the root conftest's)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from configs import Settings, load_settings
from configs.settings import _deep_merge

for _name, _value in {
    "GX_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "true",
}.items():
    os.environ.setdefault(_name, _value)

# BentoML reads its home once per process: every test shares one store, made for this run.
BENTOML_HOME = tempfile.mkdtemp(prefix="bentoml-tests-")
os.environ["BENTOML_HOME"] = BENTOML_HOME


def layout_overrides(root: Path) -> dict[str, Any]:
    """Every location under `root` (lake, stores, tracking), and a small local Spark."""
    return {
        "paths": {
            "landing": str(root / "landing"),
            "lake": str(root / "lake"),
            "quarantine": str(root / "quarantine"),
            "reports": str(root / "reports"),
            "prediction_log": str(root / "prediction_log"),
            "monitoring": str(root / "monitoring"),
            "bentoml_home": BENTOML_HOME,
        },
        "run_lock": {"path": str(root / "run.lock")},
        "spark": {"master": "local[2]", "shuffle_partitions": 2, "driver_memory": "2g"},
        "features": {
            "registry": {"registry_type": "file", "path": str(root / "feast" / "registry.db")},
            "online_store": {"type": "sqlite", "path": str(root / "feast" / "online.db")},
        },
        "mlflow": {
            "tracking_uri": f"sqlite:///{root / 'mlflow' / 'mlflow.db'}",
            "artifact_location": str(root / "mlflow" / "artifacts"),
        },
    }


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings of the platform's own use case under `tmp_path`, with `overrides`."""
    return lambda **overrides: platform_settings(tmp_path, **overrides)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath) or "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.spark)


# The platform's own use case (usecases/synthetic): what the platform's tests run on.
PLATFORM_USECASE = "synthetic"


# The service's gauges show a new monitor decision within a second.
QUICK_GAUGES = {"monitoring": {"gauges_refresh_s": 1}}


def platform_overrides(root: Path) -> dict[str, Any]:
    """What the platform's tests set over its use case's config: every location under `root`."""
    return _deep_merge(layout_overrides(root), QUICK_GAUGES)


def platform_settings(root: Path, **overrides: Any) -> Settings:
    """Local settings of the platform's own use case, every zone under `root`."""
    settings = load_settings("local", environ={}, usecase=PLATFORM_USECASE)
    merged = settings.with_overrides(platform_overrides(root))
    return merged.with_overrides(overrides) if overrides else merged


def _data_stages(root: Path, settings: Settings, spark: object) -> Path:
    from pipelines.chain import DATA_STAGES, run_chain

    results = run_chain(settings, DATA_STAGES, spark=spark)
    assert [r.stage for r in results] == ["land", "collect", "validate"]
    assert all(r.ok for r in results), [p for r in results for p in r.problems]
    return root


@pytest.fixture(scope="session")
def baseline_root(tmp_path_factory: pytest.TempPathFactory, spark) -> Path:
    """The platform's use case landed, collected and gated once."""
    root = tmp_path_factory.mktemp("baseline")
    return _data_stages(root, platform_settings(root), spark)


@pytest.fixture
def lake(baseline_root: Path, tmp_path: Path) -> Settings:
    """Settings over a private copy of the baseline lake (landed, collected and gated)."""
    root = tmp_path / "copy"
    shutil.copytree(baseline_root, root)
    return platform_settings(root)
