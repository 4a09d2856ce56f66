"""Package: build a Bento of the serving service pinned to the exact champion model version.

The champion is imported from the MLflow registry into BentoML's model store (once per
version), and the Bento carries that model and its tag, so what is deployed is exactly
what the gate promoted. The Bento holds its own Dockerfile (env/docker/Dockerfile).

A release is code plus model: the Bento's version is the digest of everything it serves (the
files the bentofile includes, the bentofile itself, the model runs and the use case), and its
labels carry that digest and the commit. A Bento is reused only when nothing of that changed,
so a fix to the service, a request field, a transform or a pinned requirement is packaged
(and released) without a new model, and packaging twice builds once.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

import models
from configs import Settings, handoff
from configs.source import git_commit, release_digest, served_files
from models.answers import Answering
from models.tracking import CHALLENGER, Tracker
from pipelines import card
from pipelines.context import StageContext
from pipelines.results import StageFailed, StageResult

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
BENTOFILE = ROOT / "serving" / "bentofile.yaml"
# Hex digits of the release digest in the Bento's version (and so in the image tag).
VERSION_DIGITS = 16


def digest_of(settings: Settings, champion_run: str, shadow_run: str = "") -> str:
    """The release digest of a Bento serving `champion_run` (and `shadow_run` in shadow) from
    this working tree."""
    spec = yaml.safe_load(BENTOFILE.read_text())
    files = [BENTOFILE, *served_files(ROOT, spec.get("include", []))]
    parts = {"usecase": settings.usecase, "champion": champion_run, "shadow": shadow_run}
    return release_digest(ROOT, set(files), parts)


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
    champion = tracker.champion(champion_version)
    if champion is None:
        raise LookupError("there is no champion model yet: nothing to package")
    return champion, import_version(settings, tracker, champion)


def shadow_challenger(settings: Settings, tracker: Tracker, champion: Any) -> Any | None:
    """The challenger to score in shadow beside `champion`, when the switch is on and the
    registry holds one newer than it; else None."""
    if not settings.serving.shadow_challenger:
        return None
    challenger = tracker.alias(CHALLENGER)
    if challenger is None or not handoff.scored_in_shadow(champion.version, challenger.version):
        return None
    return challenger


def import_version(settings: Settings, tracker: Tracker, version: Any) -> Any:
    """Model `version` (a registry reference) in BentoML's model store, imported on first use."""
    bentoml = _bentoml(settings)
    name = settings.names.registered_model
    try:
        known = bentoml.models.list(name)
    except bentoml.exceptions.NotFound:
        known = []
    for stored in known:
        if stored.info.labels.get(handoff.RUN_LABEL) == version.run_id:
            return stored
    with tempfile.TemporaryDirectory(prefix="model-") as tmp:
        # Imported from a local copy, so the digest the service checks is of exactly these bytes.
        local = tracker.download_model(version, Path(tmp))
        metadata = models.metadata_of(local)
        # The model card travels with the model (and is covered by its digest).
        if tracker.artifacts(version.run_id, card.CARD_DIR):
            with tempfile.TemporaryDirectory(prefix="card-") as cards:
                found = tracker.download(version.run_id, card.CARD_DIR, Path(cards))
                shutil.copytree(found, local / card.CARD_DIR)
        return bentoml.mlflow.import_model(
            name,
            model_uri=str(local),
            labels={handoff.VERSION_LABEL: version.version, handoff.RUN_LABEL: version.run_id},
            metadata={
                **Answering.from_metadata(metadata).metadata(),
                handoff.FEATURES_KEY: metadata[models.FEATURES_KEY],
                handoff.FAMILY_KEY: metadata[models.FAMILY_KEY],
                handoff.FEATURE_SERVICE_LABEL: metadata["feature_service"],
                handoff.DIGEST_KEY: models.folder_digest(local),
            },
        )


def _bentos(bentoml: Any, name: str) -> list[Any]:
    try:
        return list(bentoml.bentos.list(name))
    except bentoml.exceptions.NotFound:
        return []


def run(ctx: StageContext) -> StageResult:
    settings = ctx.settings
    result = StageResult("package")
    tracker = Tracker(settings)
    champion = tracker.champion(ctx.handoff.champion_version)
    if champion is None:
        result.notes.append("there is no champion model yet: nothing to package")
        return result
    if card.CARD_MARKDOWN not in tracker.artifacts(champion.run_id, card.CARD_DIR):
        raise StageFailed(
            f"the champion, version {champion.version}, has no model card (run {champion.run_id} "
            f"holds no {card.CARD_DIR}/{card.CARD_MARKDOWN}): every version served carries one; "
            "`python -m pipelines report` writes the champion's card when it has none"
        )
    _, stored = import_champion(settings, tracker, champion.version)
    challenger = shadow_challenger(settings, tracker, champion)
    shadow = import_version(settings, tracker, challenger) if challenger else None
    shadow_run = challenger.run_id if challenger else ""
    bentoml = _bentoml(settings)
    names = settings.names
    digest = digest_of(settings, champion.run_id, shadow_run)
    served = f"version {champion.version}" + (
        f" (version {challenger.version} in shadow)" if challenger else ""
    )
    for existing in _bentos(bentoml, names.bento):
        if existing.info.labels.get(handoff.DIGEST_LABEL) == digest:
            result.notes.append(
                f"Bento {existing.tag} already serves {served} from this code "
                f"(digest {digest[:VERSION_DIGITS]}): not rebuilt"
            )
            return _handed(result, existing)
    # The committed bentofile, plus the exact model and its tag: written beside it for the build.
    spec = yaml.safe_load(BENTOFILE.read_text())
    # The class is generic; the Bento (and the service, in its image) is named by the project.
    spec["name"] = names.bento
    spec["models"] = [str(stored.tag)] + ([str(shadow.tag)] if shadow else [])
    spec["envs"] = [
        {"name": names.model_tag_variable, "value": str(stored.tag)},
        *([{"name": names.shadow_model_tag_variable, "value": str(shadow.tag)}] if shadow else []),
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
            version=digest[:VERSION_DIGITS],
            labels={
                handoff.DIGEST_LABEL: digest,
                handoff.COMMIT_LABEL: git_commit(ROOT),
                handoff.VERSION_LABEL: champion.version,
                handoff.RUN_LABEL: champion.run_id,
                handoff.FEATURE_SERVICE_LABEL: champion.tags.get("feature_service", ""),
                **({handoff.SHADOW_RUN_LABEL: shadow_run} if shadow else {}),
            },
        )
    tracker.tag_version(champion.version, {"bento_tag": str(bento.tag)})
    result.notes.append(
        f"Bento {bento.tag} serves {settings.names.registered_model} {served}, "
        f"built from commit {bento.info.labels[handoff.COMMIT_LABEL]}"
    )
    return _handed(result, bento)


def _handed(result: StageResult, bento: Any) -> StageResult:
    """`result` with the Bento's place, tag, digest and commit in its outputs and handoff."""
    labels = bento.info.labels
    result.outputs["bento"] = str(Path(bento.path))
    result.outputs["bento tag"] = str(bento.tag)
    result.handoff[handoff.BENTO_TAG_KEY] = str(bento.tag)
    for key in (handoff.DIGEST_LABEL, handoff.COMMIT_LABEL):
        result.handoff[key] = labels.get(key, "")
    return result
