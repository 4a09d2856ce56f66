"""The chain as a user runs it: `python -m pipelines train`, its exit codes and its summary."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import cli
from pipelines.adapters.storage import StorageLayout
from tests.conftest import slice_overrides
from tests.lake_helpers import silver_digest

ROOT = Path(__file__).resolve().parents[2]


def flags_for(root: Path) -> list[str]:
    """`--set` and `--merge` flags for every setting the tests change (leaves of slice_overrides)."""

    def leaves(node: dict, prefix: str = "") -> list[tuple[str, object]]:
        pairs = []
        for key, value in node.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict) and key not in ("registry", "online_store", "params"):
                pairs.extend(leaves(value, f"{path}."))
            else:
                pairs.append((path, value))
        return pairs

    # A mapping is merged into its section, as the settings the other tests use are.
    return [
        arg
        for key, value in leaves(slice_overrides(root))
        for arg in ("--merge" if isinstance(value, dict) else "--set", f"{key}={json.dumps(value)}")
    ]


def test_train_runs_the_chain_then_a_bad_drop_stops_it(tmp_path: Path, spark, capsys) -> None:
    flags = flags_for(tmp_path)
    assert cli.main([*flags, "train"]) == cli.EXIT_OK
    summary = capsys.readouterr().out
    for stage in (
        "land",
        "collect",
        "validate",
        "features",
        "fit",
        "promote",
        "materialize",
        "report",
        "package",
    ):
        assert re.search(rf"^{stage} +ok ", summary, re.MULTILINE), summary
    assert "flights: 3 drop(s) passed and published" in summary
    assert "report: champion: flight_delay version 1; test roc_auc" in summary

    from tests.conftest import settings_for

    settings = settings_for(tmp_path)
    before = silver_digest(settings)
    bad = Path(StorageLayout(settings.paths).landing_file("flights", "2013-04"))
    bad.write_text("year,month\n2013,4\n")

    assert cli.main([*flags, "train"]) == cli.EXIT_FAILED
    captured = capsys.readouterr()
    assert re.search(r"^collect +FAILED ", captured.out, re.MULTILINE)
    assert re.search(r"^validate +skipped", captured.out, re.MULTILINE)
    assert "missing column(s): day, dep_time" in captured.out
    assert "collect failed; stages after it did not run." in captured.err
    assert silver_digest(settings) == before


def run_module(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipelines", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_module_entry_point_lands_and_reports(tmp_path: Path) -> None:
    done = run_module(*flags_for(tmp_path), "-q", "land", "--months", "2013-02", cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^land +ok ", done.stdout, re.MULTILINE)
    assert [p.name for p in (tmp_path / "landing" / "flights").iterdir()] == ["2013-02.csv"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--set", "collect.max_quarantined_share=2", "config"), "collect.max_quarantined_share"),
        (("--env", "staging", "config"), "unknown environment 'staging'"),
    ],
)
def test_module_entry_point_exits_2_on_bad_config(tmp_path: Path, args, message) -> None:
    done = run_module(*args, cwd=ROOT)
    assert done.returncode == 2
    assert message in done.stderr
