"""Package: build a Bento of the serving service pinned to the exact champion model version.

The champion is imported from the MLflow registry into BentoML's model store (once per
version), and the Bento carries that model and its tag, so what is deployed is exactly
what the gate promoted. The Bento holds its own Dockerfile (env/docker/Dockerfile).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from configs import Settings
from pipelines.adapters.tracking import CHAMPION, Tracker
from pipelines.results import StageResult

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
BENTOFILE = ROOT / "serving" / "bentofile.yaml"
MODEL_TAG_ENV = "FLIGHT_DELAY_MODEL_TAG"  # read by serving.service
# The LightGBM flavour's model file, and the metadata key of its sha256 (checked by serving:
# LightGBM aborts the whole process on a truncated model file instead of raising).
MODEL_FILE = "model.lgb"
MODEL_DIGEST = "model_sha256"


def _bentoml(settings: Settings) -> Any:
    # BentoML reads BENTOML_HOME once, when first imported: set it before, and refuse to
    # switch stores within one process (each environment runs in its own process).
    if "bentoml" in sys.modules and os.environ.get("BENTOML_HOME") != settings.paths.bentoml_home:
        raise RuntimeError(
            f"BentoML is already using {os.environ.get('BENTOML_HOME')!r} in this process, "
            f"not paths.bentoml_home {settings.paths.bentoml_home!r}"
        )
    os.environ["BENTOML_HOME"] = settings.paths.bentoml_home
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    import bentoml

    return bentoml


def import_champion(settings: Settings, tracker: Tracker) -> tuple[Any, Any]:
    """The champion in BentoML's model store (imported from MLflow on first use)."""
    bentoml = _bentoml(settings)
    champion = tracker.alias(CHAMPION)
    if champion is None:
        raise LookupError("there is no champion model yet: nothing to package")
    name = settings.mlflow.registered_model
    try:
        known = bentoml.models.list(name)
    except bentoml.exceptions.NotFound:
        known = []
    for stored in known:
        if stored.info.labels.get("mlflow_run_id") == champion.run_id:
            return champion, stored
    metadata = tracker.mlflow.models.get_model_info(champion.uri).metadata or {}
    with tempfile.TemporaryDirectory(prefix="champion-") as tmp:
        # Imported from a local copy, so the digest the service checks is of exactly these bytes.
        local = Path(
            tracker.mlflow.artifacts.download_artifacts(artifact_uri=champion.uri, dst_path=tmp)
        )
        stored = bentoml.mlflow.import_model(
            name,
            model_uri=str(local),
            labels={"mlflow_model_version": champion.version, "mlflow_run_id": champion.run_id},
            metadata={
                "threshold": metadata["threshold"],
                "features": metadata["features"],
                "feature_service": metadata["feature_service"],
                MODEL_DIGEST: hashlib.sha256((local / MODEL_FILE).read_bytes()).hexdigest(),
            },
        )
    return champion, stored


def _bentos(bentoml: Any) -> list[Any]:
    try:
        return list(bentoml.bentos.list("flight_delay_service"))
    except bentoml.exceptions.NotFound:
        return []


def run(settings: Settings) -> StageResult:
    result = StageResult("package")
    tracker = Tracker(settings.mlflow)
    try:
        champion, stored = import_champion(settings, tracker)
    except LookupError as err:
        result.notes.append(str(err))
        return result
    bentoml = _bentoml(settings)
    for existing in _bentos(bentoml):
        if existing.info.labels.get("mlflow_run_id") == champion.run_id:
            result.notes.append(
                f"Bento {existing.tag} already serves version {champion.version}: not rebuilt"
            )
            result.outputs["bento"] = str(Path(existing.path))
            result.outputs["bento tag"] = str(existing.tag)
            result.handoff["bento_tag"] = str(existing.tag)
            return result
    # The committed bentofile, plus the exact model and its tag: written beside it for the build.
    spec = yaml.safe_load(BENTOFILE.read_text())
    spec["models"] = [str(stored.tag)]
    spec["envs"] = [
        {"name": MODEL_TAG_ENV, "value": str(stored.tag)},
        # One OpenMP thread per worker: threaded LightGBM under concurrent requests ruins the tail.
        {"name": "OMP_NUM_THREADS", "value": "1"},
    ]
    with tempfile.NamedTemporaryFile(
        "w", suffix=".yaml", dir=BENTOFILE.parent, prefix=".bentofile-"
    ) as pinned:
        yaml.safe_dump(spec, pinned)
        pinned.flush()
        bento = bentoml.bentos.build_bentofile(
            pinned.name,
            build_ctx=str(ROOT),
            labels={
                "mlflow_model_version": champion.version,
                "mlflow_run_id": champion.run_id,
                "feature_service": champion.tags.get("feature_service", ""),
            },
        )
    tracker.tag_version(champion.version, {"bento_tag": str(bento.tag)})
    result.notes.append(
        f"Bento {bento.tag} serves {settings.mlflow.registered_model} version {champion.version}"
    )
    result.outputs["bento"] = str(Path(bento.path))
    result.outputs["bento tag"] = str(bento.tag)
    result.handoff["bento_tag"] = str(bento.tag)
    return result
