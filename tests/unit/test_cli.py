"""The CLI: config errors exit 2 with the key named, overrides, the summary."""

from __future__ import annotations

import json

import pytest

from pipelines import cli
from pipelines.results import StageResult


def test_config_command_prints_the_resolved_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--set", "collect.max_quarantined_share=0.2", "config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["collect"]["max_quarantined_share"] == 0.2
    assert printed["env"] == "local"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--set", "spark.mastr=x", "config"], "spark.mastr: unknown key"),
        (["--set", "collect.max_quarantined_share=2", "config"], "collect.max_quarantined_share"),
        (["--set", "novalue", "config"], "expected KEY=VALUE"),
        (["--env", "nowhere", "config"], "unknown environment 'nowhere'"),
        (["land", "--months", "2013-1"], "months must look like 2013-01"),
    ],
)
def test_bad_configuration_exits_2_naming_the_problem(argv, message, capsys) -> None:
    assert cli.main(argv) == cli.EXIT_USAGE
    assert message in capsys.readouterr().err


def test_overrides_nest_and_read_yaml() -> None:
    parsed = cli.parse_overrides(["a.b=1", "a.c=[x, y]", "d=true"])
    assert parsed == {"a": {"b": 1, "c": ["x", "y"]}, "d": True}


def test_summary_shows_each_stage_and_what_was_skipped() -> None:
    land = StageResult(
        "land", rows_in=10, rows_out=10, outputs={"landing": "/x"}, notes=["2 drops"]
    )
    collect = StageResult("collect", rows_in=10)
    collect.fail("flights/2013-01 quarantined")
    text = cli.render_summary([land, collect], ["land", "collect", "validate"])
    assert "land       ok" in text
    assert "collect    FAILED" in text
    assert "validate   skipped" in text
    assert "collect: flights/2013-01 quarantined" in text
    assert "land -> landing: /x" in text
