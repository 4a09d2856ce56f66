"""The chain as a user runs it: `python -m pipelines train`, its exit codes and its summary
(on the platform's own use case)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from configs.settings import USECASE_VARIABLE
from pipelines import cli
from pipelines.adapters.storage import StorageLayout
from tests.conftest import PLATFORM_USECASE, platform_settings
from tests.lake_helpers import cli_flags, silver_digest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def platform_usecase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(USECASE_VARIABLE, PLATFORM_USECASE)


def test_train_runs_the_chain_then_a_bad_drop_stops_it(tmp_path: Path, spark, capsys) -> None:
    flags = cli_flags(tmp_path)
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
    assert "meter_readings: 3 drop(s) passed and published" in summary
    assert "report: champion: synthetic_meters version 1; test roc_auc" in summary

    settings = platform_settings(tmp_path)
    before = silver_digest(settings)
    bad = Path(StorageLayout(settings.paths).landing_file("meter_readings", "2024-04"))
    bad.write_text("year,month\n2024,4\n")

    assert cli.main([*flags, "train"]) == cli.EXIT_FAILED
    captured = capsys.readouterr()
    assert re.search(r"^collect +FAILED ", captured.out, re.MULTILINE)
    assert re.search(r"^validate +skipped", captured.out, re.MULTILINE)
    assert "missing column(s): meter_id, facility_id, day, hhmm" in captured.out
    assert "collect failed; stages after it did not run." in captured.err
    assert silver_digest(settings) == before


def run_module(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipelines", *args],
        cwd=cwd,
        env={**os.environ, USECASE_VARIABLE: PLATFORM_USECASE},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_module_entry_point_lands_and_reports(tmp_path: Path) -> None:
    done = run_module(*cli_flags(tmp_path), "-q", "land", "--months", "2024-02", cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^land +ok ", done.stdout, re.MULTILINE)
    landed = tmp_path / "landing" / "meter_readings"
    assert [p.name for p in landed.iterdir()] == ["2024-02.csv"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--set", "collect.max_quarantined_share=2", "config"), "collect.max_quarantined_share"),
        (("--env", "qa", "config"), "unknown environment 'qa'"),
    ],
)
def test_module_entry_point_exits_2_on_bad_config(tmp_path: Path, args, message) -> None:
    done = run_module(*args, cwd=ROOT)
    assert done.returncode == 2
    assert message in done.stderr
