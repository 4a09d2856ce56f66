"""The command line of `python -m infra.deploy`."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

from configs.settings import ENV_VARIABLE
from infra.config import infra_config
from infra.deploy.common import (
    ROOT,
    DeployError,
    check_credentials,
    check_docker_daemon,
    check_tools,
    run_command,
)
from infra.deploy.destroy import destroy
from infra.deploy.first_deploy import deploy
from infra.deploy.mlflow_ui import mlflow_tunnel
from infra.deploy.releases import (
    promote,
    read_releases,
    release,
    release_lines,
    rollback,
    serving_line,
)
from infra.deploy.spark import run_on_emr
from infra.deploy.status import status, wait_for_run

COMMANDS = (
    "deploy",
    "status",
    "release",
    "rollback",
    "releases",
    "promote",
    "wait",
    "preflight",
    "spark",
    "mlflow-ui",
    "destroy",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m infra.deploy",
        description=sys.modules["infra.deploy"].__doc__,  # the package's: every command
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument(
        "pipeline_args",
        nargs=argparse.REMAINDER,
        help="with `spark`: a `python -m pipelines` command to run on EMR, e.g. batch-predict --month 2013-12",
    )
    parser.add_argument(
        "--app-python",
        default=str(ROOT / ".venv" / "bin" / "python"),
        help="the platform's Python (lands the example data; builds the Bento); default: .venv/bin/python",
    )
    parser.add_argument(
        "--no-land",
        action="store_true",
        help="deploy without landing the use case's example data (you bring your own drops)",
    )
    parser.add_argument(
        "--local-port", type=int, default=5000, help="with `mlflow-ui`: the laptop's port"
    )
    parser.add_argument(
        "--yes",
        action="store_true",
        help="with `destroy`: answer yes (snapshot the database and lift its deletion protection)",
    )
    parser.add_argument(
        "--purge",
        action="store_true",
        help="with `destroy`: also remove what it keeps (buckets, images, snapshots, keys)",
    )
    parser.add_argument(
        "--from",
        dest="source",
        default="",
        help="with `promote`: the environment whose serving image to take (default: the "
        "profile's aws.serving.promote_from)",
    )
    parser.add_argument(
        "--reason",
        default="",
        help="with `release` and `rollback`: why, kept in the release record (`releases`)",
    )
    parser.add_argument(
        "--handoff-file",
        help="with `release`: the chain run's handoff (s3://...), as the state machine passes it",
    )
    return parser


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; options may follow any command but `spark` (whose remaining
    arguments are the `python -m pipelines` command to run)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "spark" and args.pipeline_args:
        args = parser.parse_args([*args.pipeline_args, args.command])
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    import boto3

    session = boto3.session.Session()
    config = infra_config()
    try:
        if args.command == "preflight":
            print(f"credentials: {check_credentials(session)}")
            check_tools()
            check_docker_daemon(run_command)
            print("ready to deploy")
        elif args.command == "deploy":
            deploy(session, config, app_python=args.app_python, land=not args.no_land)
        elif args.command == "release":
            if not args.handoff_file:
                raise DeployError(
                    "release needs --handoff-file s3://<lake>/runs/<run>/handoff.json"
                )
            release(
                session,
                config,
                args.handoff_file,
                app_python=sys.executable,
                reason=args.reason or "the chain's release",
            )
        elif args.command == "status":
            check_credentials(session)
            runs = status(session, config)
            if not runs:
                print("the chain has not run yet")
            for chain_run in runs:
                where = f"  failed at {chain_run.failed_at}" if chain_run.failed_at else ""
                print(
                    f"{chain_run.started:<26} {chain_run.status:<10} {chain_run.stopped:<26} "
                    f"{chain_run.name}{where}"
                )
            print(serving_line(session, config))
        elif args.command == "mlflow-ui":
            check_credentials(session)
            missing = [t for t in ("aws", "session-manager-plugin") if shutil.which(t) is None]
            command = mlflow_tunnel(session, config, args.local_port)
            if missing:
                raise DeployError(
                    f"missing {' and '.join(missing)} (the AWS CLI and its Session Manager "
                    f"plugin); with them, this forwards the UI:\n  {' '.join(command)}"
                )
            print(f"MLflow at http://127.0.0.1:{args.local_port} while this runs (Ctrl-C ends it)")
            subprocess.run(command, check=False)
        elif args.command == "destroy":
            destroy(session, config, yes=args.yes, purge_kept=args.purge)
        elif args.command == "spark":
            check_credentials(session)
            if not args.pipeline_args:
                raise DeployError(
                    "say which command to run, e.g. `spark batch-predict --month 2013-12`"
                )
            run_on_emr(session, config, [args.pipeline_args])
        elif args.command == "promote":
            check_credentials(session)
            source = args.source or config.serving.promote_from
            if not source:
                raise DeployError(
                    f"say which environment to promote from: --from staging (or set "
                    f"aws.serving.promote_from in configs/{config.profile}.yaml)"
                )
            promoted = promote(
                session,
                config,
                infra_config(environ={**os.environ, ENV_VARIABLE: source}),
                reason=args.reason or "promoted",
            )
            if promoted is not None:
                print(f"{config.name}-serving now runs {promoted.bento} ({promoted.reason})")
        elif args.command == "wait":
            check_credentials(session)
            ended = wait_for_run(session, config)
            print(
                f"{ended.name}: {ended.status}"
                + (f" at {ended.failed_at}" if ended.failed_at else "")
            )
            if ended.status != "SUCCEEDED":
                return 2
        elif args.command == "rollback":
            check_credentials(session)
            rollback(session, config, reason=args.reason or "asked for")
        else:
            check_credentials(session)
            for line in release_lines(read_releases(session.client("ssm"), config)):
                print(line)
    except DeployError as err:
        print(f"{args.command} stopped: {err}", file=sys.stderr)
        return 2
    return 0
