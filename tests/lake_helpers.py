"""Helpers for tests that work on a lake: deliver drops, run the chain, prove nothing changed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from configs import Settings
from pipelines.adapters.storage import StorageLayout
from pipelines.chain import run_chain
from pipelines.results import StageResult
from tests.conftest import layout_overrides


def tree_digest(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under `folder` (to prove it was not touched)."""
    if not folder.exists():
        return {}
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def silver_digest(settings: Settings) -> dict[str, str]:
    return tree_digest(Path(StorageLayout(settings.paths).lake) / "silver")


def read_landed(settings: Settings, table: str, drop_id: str) -> pd.DataFrame:
    path = Path(StorageLayout(settings.paths).landing_file(table, drop_id))
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def new_month(drop_id: str) -> pd.DataFrame:
    """A month of the platform's use case's readings that was never delivered, as raw text
    (made by its generator, as the upstream would deliver it)."""
    from datetime import date

    from usecases.synthetic import data

    year, month = (int(part) for part in drop_id.split("-"))
    first = date(year, month, 1)
    days = ((date(year + month // 12, month % 12 + 1, 1)) - first).days
    return data.readings(first_day=first, days=days, seed=year * 100 + month).astype(str)


def land_new_drop(settings: Settings, table: str, drop_id: str, frame: pd.DataFrame) -> Path:
    """Deliver `frame` as drop `drop_id` of `table` in the landing zone."""
    target = Path(StorageLayout(settings.paths).landing_file(table, drop_id))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(frame.to_csv(index=False, lineterminator="\n"))
    return target


def cli_flags(root: Path) -> list[str]:
    """`--set` and `--merge` flags for every setting the tests change (leaves of the layout)."""

    def leaves(node: dict, prefix: str = "") -> list[tuple[str, object]]:
        pairs = []
        for key, value in node.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict) and key not in ("registry", "online_store"):
                pairs.extend(leaves(value, f"{path}."))
            else:
                pairs.append((path, value))
        return pairs

    # A mapping is merged into its section, as the settings the other tests use are.
    return [
        arg
        for key, value in leaves(layout_overrides(root))
        for arg in ("--merge" if isinstance(value, dict) else "--set", f"{key}={json.dumps(value)}")
    ]


def chain(settings: Settings, spark) -> list[StageResult]:
    return run_chain(settings, ("land", "collect", "validate"), spark=spark)


def problems(results: list[StageResult]) -> str:
    return "\n".join(p for r in results for p in r.problems)
