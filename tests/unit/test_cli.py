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


def test_an_override_is_read_as_yaml() -> None:
    assert cli.parse_override("a.c=[x, y]") == ("a.c", ["x", "y"])
    assert cli.parse_override("d=true") == ("d", True)


def _model_params(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert cli.main([*argv, "config"]) == 0
    return json.loads(capsys.readouterr().out)["training"]["model"]["params"]  # type: ignore[no-any-return]


def test_set_replaces_a_section_whole_and_merge_keeps_its_other_keys(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Switching an estimator with --set keeps nothing of the old one's parameters."""
    before = _model_params(capsys)
    assert len(before) > 2 and before["num_leaves"] != 3
    replaced = _model_params(capsys, "--set", "training.model.params={objective: binary}")
    assert replaced == {"objective": "binary"}
    merged = _model_params(capsys, "--merge", "training.model.params={num_leaves: 3}")
    assert merged == {**before, "num_leaves": 3}
    # In the order given: the merge lands on what --set left.
    both = _model_params(
        capsys,
        "--set",
        "training.model.params={objective: binary}",
        "--merge",
        "training.model.params={num_leaves: 3}",
    )
    assert both == {"objective": "binary", "num_leaves": 3}


def test_merge_takes_only_a_mapping(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--merge", "training.seed=3", "config"]) == cli.EXIT_USAGE
    assert "--merge 'training.seed=3': merges a mapping" in capsys.readouterr().err


def test_summary_shows_each_stage_and_what_was_skipped() -> None:
    land = StageResult(
        "land", rows_in=10, rows_out=10, outputs={"landing": "/x"}, notes=["2 drops"]
    )
    collect = StageResult("collect", rows_in=10)
    collect.fail("readings/2024-01 quarantined")
    text = cli.render_summary([land, collect], ["land", "collect", "validate"])
    assert "land       ok" in text
    assert "collect    FAILED" in text
    assert "validate   skipped" in text
    assert "collect: readings/2024-01 quarantined" in text
    assert "land -> landing: /x" in text


def test_a_handoff_file_carries_identifiers_from_one_command_to_the_next(
    tmp_path, monkeypatch
) -> None:
    """On AWS each stage is its own process (an EMR job): the run's handoff file gives each
    the exact identifiers the ones before it handed off, and keeps them for the next."""
    seen: list[dict[str, str | None]] = []

    def fake_chain(settings, stages, spark=None, handoff=None):
        from dataclasses import asdict

        from pipelines.context import Handoff
        from pipelines.results import StageResult

        received = Handoff()
        received.update(dict(handoff or {}))
        seen.append(asdict(received))
        result = StageResult(stages[0])
        result.handoff = {"decided_version": "7", "champion_version": "7"}
        return [result]

    monkeypatch.setattr(cli, "run_chain", fake_chain)
    handed = tmp_path / "runs" / "run-1" / "handoff.json"
    handed.parent.mkdir(parents=True)
    handed.write_text(json.dumps({"model_version": "7", "run_id": "abc"}))

    assert cli.main(["--handoff-file", str(handed), "promote"]) == cli.EXIT_OK
    assert seen[0]["model_version"] == "7" and seen[0]["run_id"] == "abc"
    assert json.loads(handed.read_text()) == {
        "model_version": "7",
        "run_id": "abc",
        "decided_version": "7",
        "champion_version": "7",
    }
    # a file that is not a handoff is refused by name, and left as it was
    handed.write_text("[1, 2]")
    assert cli.main(["--handoff-file", str(handed), "promote"]) == cli.EXIT_USAGE
    assert handed.read_text() == "[1, 2]"
    # no file yet: the first stage of a run starts from nothing
    first = tmp_path / "runs" / "run-2" / "handoff.json"
    assert cli.main(["--handoff-file", str(first), "collect"]) == cli.EXIT_OK
    assert seen[-1]["model_version"] is None
    assert json.loads(first.read_text())["decided_version"] == "7"


@pytest.mark.parametrize(("decision", "chain_runs"), [("retrain", True), ("keep", False)])
def test_monitor_retrain_runs_the_chain_only_when_it_decides_to(
    monkeypatch, decision: str, chain_runs: bool
) -> None:
    ran: list[tuple[str, ...]] = []

    def fake_chain(settings, stages, spark=None, handoff=None):
        ran.append(tuple(stages))
        result = StageResult(stages[0])
        if stages == ("monitor",):
            result.handoff = {"decision": decision}
        return [result]

    monkeypatch.setattr(cli, "run_chain", fake_chain)
    assert cli.main(["monitor", "--retrain"]) == cli.EXIT_OK
    assert ran == ([("monitor",), cli.CHAIN] if chain_runs else [("monitor",)])
    ran.clear()
    assert cli.main(["monitor"]) == cli.EXIT_OK  # without --retrain: decides, never trains
    assert ran == [("monitor",)]


def test_train_runs_a_slice_of_the_chain_in_one_process(monkeypatch, capsys) -> None:
    ran: list[tuple[str, ...]] = []

    def fake_chain(settings, stages, spark=None, handoff=None):
        ran.append(tuple(stages))
        return [StageResult(stage) for stage in stages]

    monkeypatch.setattr(cli, "run_chain", fake_chain)
    assert cli.main(["train", "--from", "collect", "--to", "features"]) == cli.EXIT_OK
    assert cli.main(["train", "--to", "collect"]) == cli.EXIT_OK
    assert cli.main(["train", "--from", "package"]) == cli.EXIT_OK
    chain = cli.CHAIN
    assert ran == [
        ("collect", "validate", "features"),
        ("land", "collect"),
        chain[chain.index("package") :],
    ]
    assert cli.main(["train", "--from", "features", "--to", "collect"]) == cli.EXIT_USAGE
    assert "--from features comes after --to collect" in capsys.readouterr().err
    assert len(ran) == 3


@pytest.mark.slow
def test_make_ui_starts_mlflow_on_the_local_store_and_says_where_reports_are(
    tmp_path, capsys, monkeypatch
) -> None:
    from tests.conftest import platform_settings

    settings = platform_settings(tmp_path)
    command = cli.ui_command(settings, 5055)
    assert command[1:4] == ["-m", "mlflow", "ui"]
    assert command[command.index("--backend-store-uri") + 1] == settings.mlflow.tracking_uri
    assert command[-2:] == ["--port", "5055"]
    where = cli.where_things_are(settings)
    assert where["Data Docs (the quality gate)"].endswith("data_docs/index.html")
    assert where["monitoring reports"].startswith(settings.paths.reports)
    started: list[list[str]] = []
    monkeypatch.setattr(cli.os, "execv", lambda exe, argv: started.append(argv))
    cli._ui(settings, 5055)
    assert started == [command]
    printed = capsys.readouterr().out
    assert "MLflow UI at http://127.0.0.1:5055" in printed and settings.paths.monitoring in printed
