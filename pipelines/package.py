"""Package: build a Bento of the serving service pinned to the exact champion model version.

The champion is imported from the MLflow registry into BentoML's model store (once per
version), and the Bento carries that model and its tag, so what is deployed is exactly
what the gate promoted. The Bento holds its own Dockerfile (env/docker/Dockerfile).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

import models
from configs import Settings, handoff
from pipelines.adapters.tracking import Tracker
from pipelines.context import StageContext
from pipelines.results import StageResult

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
BENTOFILE = ROOT / "serving" / "bentofile.yaml"


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


def import_champion(
    settings: Settings, tracker: Tracker, champion_version: str | None = None
) -> tuple[Any, Any]:
    """The champion (the version the chain resolved, else the alias) in BentoML's model store,
    imported from MLflow on first use."""
    bentoml = _bentoml(settings)
    champion = tracker.champion(champion_version)
    if champion is None:
        raise LookupError("there is no champion model yet: nothing to package")
    name = settings.names.registered_model
    try:
        known = bentoml.models.list(name)
    except bentoml.exceptions.NotFound:
        known = []
    for stored in known:
        if stored.info.labels.get(handoff.RUN_LABEL) == champion.run_id:
            return champion, stored
    with tempfile.TemporaryDirectory(prefix="champion-") as tmp:
        # Imported from a local copy, so the digest the service checks is of exactly these bytes.
        local = tracker.download_model(champion, Path(tmp))
        metadata = models.metadata_of(local)
        stored = bentoml.mlflow.import_model(
            name,
            model_uri=str(local),
            labels={handoff.VERSION_LABEL: champion.version, handoff.RUN_LABEL: champion.run_id},
            metadata={
                handoff.THRESHOLD_KEY: metadata["threshold"],
                handoff.FEATURES_KEY: metadata[models.FEATURES_KEY],
                handoff.FAMILY_KEY: metadata[models.FAMILY_KEY],
                handoff.FEATURE_SERVICE_LABEL: metadata["feature_service"],
                handoff.DIGEST_KEY: models.folder_digest(local),
            },
        )
    return champion, stored


def _bentos(bentoml: Any, name: str) -> list[Any]:
    try:
        return list(bentoml.bentos.list(name))
    except bentoml.exceptions.NotFound:
        return []


def run(ctx: StageContext) -> StageResult:
    settings = ctx.settings
    result = StageResult("package")
    tracker = Tracker(settings)
    try:
        champion, stored = import_champion(settings, tracker, ctx.handoff.champion_version)
    except LookupError as err:
        result.notes.append(str(err))
        return result
    bentoml = _bentoml(settings)
    names = settings.names
    for existing in _bentos(bentoml, names.bento):
        if existing.info.labels.get(handoff.RUN_LABEL) == champion.run_id:
            result.notes.append(
                f"Bento {existing.tag} already serves version {champion.version}: not rebuilt"
            )
            result.outputs["bento"] = str(Path(existing.path))
            result.outputs["bento tag"] = str(existing.tag)
            result.handoff[handoff.BENTO_TAG_KEY] = str(existing.tag)
            return result
    # The committed bentofile, plus the exact model and its tag: written beside it for the build.
    spec = yaml.safe_load(BENTOFILE.read_text())
    # The class is generic; the Bento (and the service, in its image) is named by the project.
    spec["name"] = names.bento
    spec["models"] = [str(stored.tag)]
    spec["envs"] = [
        {"name": names.model_tag_variable, "value": str(stored.tag)},
        {"name": "MLOPS_USECASE", "value": settings.usecase},
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
                handoff.VERSION_LABEL: champion.version,
                handoff.RUN_LABEL: champion.run_id,
                handoff.FEATURE_SERVICE_LABEL: champion.tags.get("feature_service", ""),
            },
        )
    tracker.tag_version(champion.version, {"bento_tag": str(bento.tag)})
    result.notes.append(
        f"Bento {bento.tag} serves {settings.names.registered_model} version {champion.version}"
    )
    result.outputs["bento"] = str(Path(bento.path))
    result.outputs["bento tag"] = str(bento.tag)
    result.handoff[handoff.BENTO_TAG_KEY] = str(bento.tag)
    return result
