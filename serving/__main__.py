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


def champion_model_tag(settings) -> str:
    """The BentoML model tag of the champion, or a SystemExit that says what to run."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(
        tracking_uri=settings.mlflow.tracking_uri, registry_uri=settings.mlflow.tracking_uri
    )
    try:
        champion = client.get_model_version_by_alias(settings.names.registered_model, handoff.ALIAS)
    except MlflowException:
        raise SystemExit("no champion model yet: run `make train` first") from None
    import bentoml

    try:
        stored = bentoml.models.list(settings.names.registered_model)
    except bentoml.exceptions.NotFound:
        stored = []
    for model in stored:
        if model.info.labels.get(handoff.RUN_LABEL) == champion.run_id:
            return str(model.tag)
    raise SystemExit(
        f"champion version {champion.version} is not packaged yet: run `python -m pipelines package`"
    )


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
    tag_variable = settings.names.model_tag_variable
    os.environ[tag_variable] = champion_model_tag(settings)
    print(f"serving {os.environ[tag_variable]} on http://{args.host}:{args.port}", file=sys.stderr)
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
