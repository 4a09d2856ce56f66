"""`python -m serving`: serve the current champion over HTTP (what `make serve` runs).

Finds the BentoML model imported for the version the MLflow `champion` alias points to (the
`package` stage imports it) and starts `bentoml serve` on the configured host and port.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from configs import ConfigError, handoff, load_settings

ROOT = Path(__file__).resolve().parents[1]


def packaged_model_tags(settings) -> tuple[str, str | None]:
    """The BentoML model tags of the champion and, when shadow scoring is on and the registry
    holds a newer challenger that `package` imported, of the challenger (else None); a
    SystemExit that says what to run when the champion is not there."""
    from models.tracking import CHALLENGER, CHAMPION, Tracker, TrackingUnavailable

    tracker = Tracker(settings)
    name = settings.names.registered_model
    try:
        champion = tracker.alias(CHAMPION)
    except TrackingUnavailable as err:
        raise SystemExit(str(err)) from None
    if champion is None:
        raise SystemExit("no champion model yet: run `make train` first")
    import bentoml

    try:
        stored = {
            m.info.labels.get(handoff.RUN_LABEL): str(m.tag) for m in bentoml.models.list(name)
        }
    except bentoml.exceptions.NotFound:
        stored = {}
    if champion.run_id not in stored:
        raise SystemExit(
            f"champion version {champion.version} is not packaged yet: run `python -m pipelines package`"
        )
    if not settings.serving.shadow_challenger:
        return stored[champion.run_id], None
    challenger = tracker.alias(CHALLENGER)
    if challenger is None:
        return stored[champion.run_id], None
    if not handoff.scored_in_shadow(champion.version, challenger.version):
        return stored[champion.run_id], None
    if challenger.run_id not in stored:
        print(
            f"challenger version {challenger.version} is not packaged: serving without shadow "
            "scoring (run `python -m pipelines package` to add it)",
            file=sys.stderr,
        )
        return stored[champion.run_id], None
    return stored[champion.run_id], stored[challenger.run_id]


def champion_model_tag(settings) -> str:
    """The BentoML model tag of the champion (see `packaged_model_tags`)."""
    return packaged_model_tags(settings.with_overrides({"serving": {"shadow_challenger": False}}))[
        0
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__)
    parser.add_argument("--env", help="config overlay (default: $MLOPS_ENV or local)")
    parser.add_argument("--host", default=os.environ.get("SERVE_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("SERVE_PORT", "3000")))
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.env)
    except ConfigError as err:
        print(f"configuration error: {err}", file=sys.stderr)
        return 2
    os.environ["BENTOML_HOME"] = settings.paths.bentoml_home
    os.environ["MLOPS_ENV"] = settings.env
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one OpenMP thread per worker: no contention
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    os.environ["MLOPS_USECASE"] = settings.usecase
    tag_variable, shadow_variable = (
        settings.names.model_tag_variable,
        settings.names.shadow_model_tag_variable,
    )
    champion, shadow = packaged_model_tags(settings)
    os.environ[tag_variable] = champion
    os.environ.pop(shadow_variable, None)
    if shadow:
        os.environ[shadow_variable] = shadow
    print(
        f"serving {champion}{f' ({shadow} in shadow)' if shadow else ''} "
        f"on http://{args.host}:{args.port}",
        file=sys.stderr,
    )
    command = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        "serving.service:PredictionService",
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--working-dir",
        str(ROOT),
    ]
    os.execv(sys.executable, command)
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
