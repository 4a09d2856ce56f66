"""`python -m pipelines <command>`: each stage alone, or `train` for the whole chain."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import webbrowser
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from configs import ConfigError, Settings, available_envs, load_settings
from configs import handoff as handoff_keys
from pipelines.adapters import run_lock
from pipelines.chain import CHAIN, STAGES, run_chain
from pipelines.results import StageResult
from usecases.project import Project, UseCaseError, bind

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# Where `ui` opens the index page in a browser (elsewhere only where a display is set).
_DESKTOPS = ("darwin", "win32")
# Another run holds the workspace (sysexits' EX_TEMPFAIL: try again later).
EXIT_BUSY = 75
# How an override on the command line meets the setting it names: --set replaces, --merge merges.
REPLACE, MERGE = "set", "merge"
# No usage reporting from the libraries of a batch job (a user's own setting wins).
QUIET_LIBRARIES = {
    "GX_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "true",
    "DO_NOT_TRACK": "1",
    "ITERATIVE_DO_NOT_TRACK": "1",  # Evidently's telemetry (iterative-telemetry)
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines",
        description="The platform's batch chain for the use case in config. Exit codes: 0 ok, "
        "1 a stage failed, 2 bad usage or config, 75 another run holds the workspace "
        "(one run at a time: see run_lock in configs/base.yaml).",
    )
    parser.add_argument(
        "--env",
        help=f"config overlay to use (default: $MLOPS_ENV or local; one of {', '.join(available_envs())})",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        type=lambda pair: (REPLACE, pair),
        metavar="KEY=VALUE",
        help="replace one setting for this run, e.g. --set collect.max_quarantined_share=0.1; "
        "the value is read as YAML, and a mapping replaces the whole section (repeatable)",
    )
    parser.add_argument(
        "--merge",
        dest="overrides",
        action="append",
        type=lambda pair: (MERGE, pair),
        metavar="KEY=MAPPING",
        help="merge a mapping into a section, keeping its other keys, e.g. "
        "--merge 'training.model.params={learning_rate: 0.1}' (repeatable; in order with --set)",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="only warnings, errors and the summary"
    )
    parser.add_argument(
        "--handoff-file",
        metavar="PATH",
        help="hand off through PATH (local or s3://), as JSON: what an earlier command wrote there "
        "is read first (a chain run as one process per stage, as on AWS, passes exact identifiers "
        "this way), then what these stages handed off is added (model version, Bento tag, ...)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    train = commands.add_parser("train", help=f"run the whole chain: {' -> '.join(CHAIN)}")
    _add_land_options(train)
    _add_retry_option(train)
    train.add_argument(
        "--from",
        dest="first",
        choices=CHAIN,
        help="start the chain at this stage (what it needs must already be there)",
    )
    train.add_argument("--to", dest="last", choices=CHAIN, help="stop the chain after this stage")
    for stage in STAGES:
        name = stage.name
        sub = commands.add_parser(name, help=stage.help)
        if name == "land":
            _add_land_options(sub)
        if name == "collect":
            _add_retry_option(sub)
        if name == "monitor":
            sub.add_argument(
                "--retrain",
                action="store_true",
                help="run the whole chain when the monitor decides to retrain (the gate still "
                "decides promotion)",
            )
        if name == "batch-predict":
            period = sub.add_mutually_exclusive_group(required=True)
            period.add_argument("--date", help="score the rows dated on this day (YYYY-MM-DD)")
            period.add_argument("--month", help="score the rows dated in this month (YYYY-MM)")
    commands.add_parser("rollback", help="point the champion alias back at the version it replaced")
    commands.add_parser("promotions", help="list every promotion decision (version, when, why)")
    commands.add_parser(
        "monitoring", help="list every monitor decision (window, retrain or keep, why)"
    )
    ui = commands.add_parser(
        "ui", help="start the MLflow UI on the profile's tracking store; say where the reports are"
    )
    ui.add_argument("--port", type=int, help="default: mlflow.ui_port (5000)")
    lineage = commands.add_parser(
        "lineage",
        help="the chain from a prediction id or a model version back to the raw drops",
    )
    lineage.add_argument("target", help="a prediction id (from /predict) or a model version")
    lineage.add_argument("--json", action="store_true", help="as JSON, for programs")
    commands.add_parser("config", help="print the resolved configuration and exit")
    commands.add_parser(
        "check",
        help="check the use case against its settings (seconds, no Spark); every other "
        "command does it first",
    )
    return parser


def _add_retry_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--retry-quarantined",
        action="store_true",
        help="judge every quarantined drop again (without it, a quarantined drop is collected "
        "again only when its content or the use case changes)",
    )


def _add_land_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--months",
        help="land only these months, comma-separated (e.g. 2013-01,2013-02); default: land.months in config",
    )


def chain_slice(first: str | None = None, last: str | None = None) -> tuple[str, ...]:
    """The chain's stages from `first` to `last`, both included (default: its ends), run in
    one process as `train` runs them all: one Spark session, stages handing off in memory."""
    start = CHAIN.index(first) if first else 0
    stop = CHAIN.index(last) if last else len(CHAIN) - 1
    if start > stop:
        raise ValueError(
            f"--from {first} comes after --to {last} in the chain ({' -> '.join(CHAIN)})"
        )
    return CHAIN[start : stop + 1]


def parse_override(pair: str, flag: str = "--set") -> tuple[str, Any]:
    """`"a.b=[x, y]"` -> `("a.b", ["x", "y"])`: the value is read as YAML."""
    key, sep, raw = pair.partition("=")
    if not sep or not key.strip():
        raise ConfigError(
            f"{flag} {pair!r}: expected KEY=VALUE, e.g. collect.max_quarantined_share=0.1"
        )
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ConfigError(f"{flag} {pair!r}: the value is not valid YAML ({err})") from None


def apply_overrides(settings: Settings, overrides: Sequence[tuple[str, str]]) -> Settings:
    """`--set` and `--merge`, in the order given: (REPLACE | MERGE, "key=value") each."""
    for how, pair in overrides:
        key, value = parse_override(pair, f"--{how}")
        if how == REPLACE:
            settings = settings.with_value(key, value)
            continue
        if not isinstance(value, dict):
            raise ConfigError(f"--merge {pair!r}: merges a mapping; --set replaces a value")
        for part in reversed(key.split(".")):
            value = {part: value}
        settings = settings.with_overrides(value)
    return settings


def _configure_logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for noisy in ("py4j", "great_expectations", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def render_summary(results: list[StageResult], planned: Sequence[str]) -> str:
    width = max(10, *(len(name) + 1 for name in planned))
    lines = [f"{'stage':<{width}} {'status':<8} {'rows in':>10} {'rows out':>10} {'time':>8}"]
    for result in results:
        status = "ok" if result.ok else "FAILED"
        lines.append(
            f"{result.stage:<{width}} {status:<8} {result.rows_in:>10,} {result.rows_out:>10,} {result.seconds:>7.1f}s"
        )
    for name in planned[len(results) :]:
        lines.append(f"{name:<{width}} {'skipped':<8} {'':>10} {'':>10} {'':>8}")
    for result in results:
        for note in result.notes:
            lines.append(f"  {result.stage}: {note}")
    for result in results:
        for label, where in result.outputs.items():
            lines.append(f"  {result.stage} -> {label}: {where}")
    problems = [(r.stage, p) for r in results for p in r.problems]
    if problems:
        lines.append("problems:")
        lines.extend(f"  {stage}: {problem}" for stage, problem in problems)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name, value in QUIET_LIBRARIES.items():
        os.environ.setdefault(name, value)
    _configure_logging(args.quiet)
    try:
        settings = apply_overrides(load_settings(args.env), args.overrides)
        if getattr(args, "months", None):
            settings = settings.with_value("land.months", args.months.split(","))
        if getattr(args, "retry_quarantined", False):
            settings = settings.with_value("collect.retry_quarantined", True)
    except ConfigError as err:
        print(f"configuration error: {err}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "config":
        print(settings.model_dump_json(indent=2))
        return EXIT_OK
    try:
        project = bind(settings)
    except (UseCaseError, ValueError) as err:
        print(f"configuration error: {err}", file=sys.stderr)
        return EXIT_USAGE
    settings = project.settings
    if args.command == "check":
        print(describe(project))
        return EXIT_OK
    if args.command in ("rollback", "promotions"):
        return _registry_command(settings, args.command)
    if args.command == "monitoring":
        return _monitoring(settings)
    if args.command == "ui":
        return _ui(settings, args.port or settings.mlflow.ui_port)
    if args.command == "lineage":
        return _lineage(settings, args.target, as_json=args.json)
    if args.command == "train":
        try:
            planned = chain_slice(args.first, args.last)
        except ValueError as err:
            print(f"train: {err}", file=sys.stderr)
            return EXIT_USAGE
    else:
        planned = (args.command,)
    try:
        handoff = read_handoff(args.handoff_file) if args.handoff_file else {}
    except ValueError as err:
        print(f"handoff file: {err}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "batch-predict":
        handoff["period"] = args.date or args.month
    try:
        # One run at a time writes the workspace: held from the first stage to the last.
        with run_lock.hold(settings.run_lock, args.command):
            code, results = run_stages(project, planned, handoff, args.handoff_file)
            decided = results[-1].handoff.get(handoff_keys.DECISION_KEY) if results else None
            retrain = decided == handoff_keys.RETRAIN
            if args.command == "monitor" and args.retrain and code == EXIT_OK and retrain:
                print(
                    "\nthe monitor decided to retrain: running the chain (the gate decides promotion)"
                )
                return run_and_report(project, CHAIN, None, args.handoff_file)
            return code
    except run_lock.WorkspaceBusy as err:
        print(f"{args.command}: {err}", file=sys.stderr)
        return EXIT_BUSY


def describe(project: Project) -> str:
    """What `check` found, in one line."""
    usecase, settings = project.usecase, project.settings
    return (
        f"use case {usecase.name} ({settings.env}): ok: {len(usecase.sources)} source(s), "
        f"{len(usecase.views)} feature view(s), {len(usecase.model_inputs)} model inputs, "
        f"quality rules on {len(settings.quality.tables)} table(s), "
        f"params {', '.join(settings.params) or 'none'}"
    )


def ui_command(settings: Settings, port: int) -> list[str]:
    """`mlflow ui` on the profile's own tracking store (a server profile has its own UI)."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        settings.mlflow.tracking_uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


def where_things_are(settings: Settings) -> dict[str, str]:
    """What people look at, and where it is."""
    from pipelines import data_docs
    from storage import files as fs

    reports = settings.paths.reports
    return {
        "model reports": reports,
        "Data Docs (the quality gate)": data_docs.index_of(reports),
        "monitoring reports": fs.join(reports, "monitoring"),
        "monitor decisions": settings.paths.monitoring,
        "prediction log": settings.paths.prediction_log,
    }


def _ui(settings: Settings, port: int) -> int:
    from pipelines import index_page

    page = index_page.write(bind(settings.with_overrides({"mlflow": {"ui_port": port}})))
    print(f"{'everything a run produced':<30} {page}")
    for what, where in where_things_are(settings).items():
        print(f"{what:<30} {where}")
    if "://" not in page and (os.environ.get("DISPLAY") or sys.platform in _DESKTOPS):
        webbrowser.open(Path(page).resolve().as_uri())
    if not settings.mlflow.tracking_uri.startswith("sqlite:///"):
        print(f"MLflow: {settings.mlflow.tracking_uri} (a tracking server has its own UI)")
        return EXIT_OK
    print(f"MLflow UI at http://127.0.0.1:{port} (Ctrl-C stops it)", flush=True)
    os.execv(sys.executable, ui_command(settings, port))


def _lineage(settings: Settings, target: str, *, as_json: bool) -> int:
    from models.tracking import TrackingUnavailable
    from pipelines.lineage import render, trace
    from pipelines.results import StageFailed

    try:
        traced = trace(settings, target)
    except (StageFailed, TrackingUnavailable) as err:
        print(f"lineage: {err}", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(traced, indent=2, default=str) if as_json else render(traced))
    return EXIT_OK


def _monitoring(settings: Settings) -> int:
    from pipelines.monitor import decisions, describe_reference

    recorded = decisions(settings)
    if not recorded:
        print("the monitor has decided nothing yet")
    for row in recorded:
        print(
            f"{row['window_from']}..{row['window_to']}  v{row['champion_version']:<4} "
            f"{row['decision']:<10} {'; '.join(row['reasons'])}"
        )
        if row.get("reference"):
            print(f"{'':24}drift judged against {describe_reference(row['reference'])}")
    return EXIT_OK


def read_handoff(location: str) -> dict[str, str]:
    """What earlier commands handed off through `location`; empty when nothing is there yet."""
    from storage import files as fs

    if not fs.is_file(location):
        return {}
    try:
        handed = json.loads(fs.read_text(location))
    except ValueError as err:
        raise ValueError(f"{location} is not JSON ({err})") from None
    if not isinstance(handed, dict) or not all(isinstance(v, str) for v in handed.values()):
        raise ValueError(f"{location} does not hold identifiers by name: {handed!r}")
    return handed


def _registry_command(settings: Settings, command: str) -> int:
    from pipelines import promote

    if command == "rollback":
        result = promote.rollback(settings)
        print(render_summary([result], ["rollback"]))
        return EXIT_OK if result.ok else EXIT_FAILED
    history = promote.promotion_history(settings)
    if not history:
        print("no model versions registered yet")
    for row in history:
        marker = " <- champion" if row["champion_now"] else ""
        print(
            f"v{row['version']:<4} {row['decision']:<13} {row['decided_at']:<26} {row['reason']}{marker}"
        )
    return EXIT_OK


def run_and_report(
    settings: Settings | Project,
    planned: Sequence[str],
    handoff: dict[str, str] | None = None,
    handoff_file: str | None = None,
) -> int:
    return run_stages(settings, planned, handoff, handoff_file)[0]


def run_stages(
    settings: Settings | Project,
    planned: Sequence[str],
    handoff: dict[str, str] | None = None,
    handoff_file: str | None = None,
) -> tuple[int, list[StageResult]]:
    """Run `planned`, print the summary, hand off through `handoff_file`: (exit code, results)."""
    results = run_chain(settings, tuple(planned), handoff=handoff)
    print(render_summary(results, planned))
    from pipelines.index_page import index_of

    bound = settings.settings if isinstance(settings, Project) else settings
    print(f"\neverything this run produced: {index_of(bound)} (make ui opens it)")
    if handoff_file:
        from storage import files as fs

        handed: dict[str, str] = dict(handoff or {})
        for result in results:
            handed |= result.handoff
        fs.write_text(handoff_file, json.dumps(handed, indent=2, sort_keys=True))
    if all(result.ok for result in results):
        return EXIT_OK, results
    failed = next(result for result in results if not result.ok)
    print(f"\n{failed.stage} failed; stages after it did not run.", file=sys.stderr)
    return EXIT_FAILED, results
