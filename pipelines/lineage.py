"""Lineage in one command: `python -m pipelines lineage <model version | prediction id>`.

From a prediction (its id, as the service returned it) or a model version, back to the raw
data: the prediction -> the model version and every gate decision and rollback on it -> its
MLflow run and the git commit that trained it -> the training window -> the landing drops it
learnt from, with their content hashes and gate results -> the FeatureService and the feature
tables -> the Bentos built from it. Everything is read from where the chain recorded it (the
prediction log, the registry, the run's `evaluation/lineage.json`, BentoML's store); nothing is
inferred.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

from configs import Settings, handoff
from models.tracking import CHAMPION, Tracker
from monitoring import prediction_log as pl
from pipelines.results import StageFailed

# A prediction id, or the id of the challenger's shadow record of the same answer.
PREDICTION_ID = re.compile(rf"^[0-9a-f]{{32}}({re.escape(pl.SHADOW_ID_SUFFIX)})?$")
LINEAGE_ARTIFACT = "evaluation/lineage.json"
# The tag fit sets on its run: the commit of the code that trained it.
GIT_COMMIT_TAG = "git_commit"


def find_prediction(settings: Settings, prediction_id: str) -> dict[str, Any] | None:
    """The prediction log's record of `prediction_id` (inputs left out), or None."""
    import pyarrow.compute as pc

    table = pl.read_log(settings.paths.prediction_log)
    if table is None:
        return None
    found = table.filter(pc.equal(table[pl.PREDICTION_ID], prediction_id))
    if found.num_rows == 0:
        return None
    record = found.slice(0, 1).to_pylist()[0]
    return {k: v for k, v in record.items() if not k.startswith(pl.INPUT_PREFIX)}


def trace(settings: Settings, target: str) -> dict[str, Any]:
    """The chain back from `target` (a prediction id or a model version), as a dict."""
    traced: dict[str, Any] = {}
    version = target
    if PREDICTION_ID.match(target):
        prediction = find_prediction(settings, target)
        if prediction is None:
            raise StageFailed(
                f"no prediction {target} in the prediction log ({settings.paths.prediction_log})"
            )
        traced["prediction"] = prediction
        version = str(prediction[pl.MODEL_VERSION])
    elif not target.isdigit():
        raise StageFailed(f"{target!r} is neither a model version (a number) nor a prediction id")
    tracker = Tracker(settings)
    try:
        ref = tracker.version(version)
    except Exception:  # the registry raises its own kinds for an unknown version
        raise StageFailed(f"model version {version} is not in the registry") from None
    champion = tracker.alias(CHAMPION)
    traced["model_version"] = {
        "name": ref.name,
        "version": ref.version,
        "champion_now": bool(champion and champion.version == ref.version),
        "gate": {k: v for k, v in ref.tags.items() if k.startswith("gate.")},
    }
    run = tracker.client.get_run(ref.run_id)
    tags = run.data.tags
    traced["run"] = {
        "run_id": ref.run_id,
        "started": run.info.start_time,
        "git_commit": tags.get(GIT_COMMIT_TAG) or tags.get("mlflow.source.git.commit", "unknown"),
        "training_window": [tags.get("training_from", ""), tags.get("training_to", "")],
        "training_rows": tags.get("training_rows", ""),
        # the training set as MLflow recorded it (log_input): its digest and where it was read
        "training_set": [
            {"name": d.dataset.name, "digest": d.dataset.digest, "source": d.dataset.source}
            for d in (run.inputs.dataset_inputs if run.inputs else [])
        ],
    }
    with tempfile.TemporaryDirectory() as tmp:
        try:
            recorded = json.loads(
                tracker.download(ref.run_id, LINEAGE_ARTIFACT, Path(tmp)).read_text()
            )
        except Exception as err:  # a run without its record: say so, go on with the rest
            recorded = {"missing": f"{LINEAGE_ARTIFACT} not found in run {ref.run_id}: {err}"}
    traced["data"] = recorded
    traced["bentos"] = _bentos_of(settings, ref.version)
    return traced


def _bentos_of(settings: Settings, version: str) -> list[str]:
    """The Bentos in BentoML's store built from `version` (labelled so by `package`)."""
    from pipelines.package import _bentoml

    bentoml = _bentoml(settings)
    try:
        bentos = bentoml.bentos.list(settings.names.bento)
    except bentoml.exceptions.NotFound:
        return []
    return sorted(str(b.tag) for b in bentos if b.info.labels.get(handoff.VERSION_LABEL) == version)


def render(traced: dict[str, Any]) -> str:
    """The chain as people read it, newest link first."""
    lines = []
    prediction = traced.get("prediction")
    if prediction:
        lines.append(
            f"prediction {prediction[pl.PREDICTION_ID]} ({prediction[pl.SOURCE]}): score "
            f"{prediction[pl.SCORE]:.4f}, decision {prediction[pl.DECISION]}, about "
            f"{prediction[pl.EVENT_TIME]}, row {prediction[pl.ROW_ID] or '-'}, made "
            f"{prediction[pl.PREDICTED_AT]}"
        )
    model = traced["model_version"]
    lines.append(
        f"<- model {model['name']} version {model['version']}"
        + (" (champion now)" if model["champion_now"] else "")
    )
    for key, value in sorted(model["gate"].items()):
        if key != "gate.evidence":
            lines.append(f"     {key}: {value}")
    run = traced["run"]
    lines.append(f"<- MLflow run {run['run_id']} at commit {run['git_commit']}")
    lines.append(
        f"<- training window {run['training_window'][0]} .. {run['training_window'][1]} "
        f"({run['training_rows']} rows)"
    )
    for dataset in run["training_set"]:
        lines.append(f"     {dataset['name']} digest {dataset['digest']}")
    data = traced["data"]
    if "missing" in data:
        lines.append(f"<- {data['missing']}")
    for table, drops in sorted(data.get("landing_drops", {}).items()):
        for drop_id, drop in sorted(drops.items()):
            gate = ", ".join(drop.get("gate_results", [])) or "no gate record"
            lines.append(f"<- drop {table}/{drop_id} {drop['content_hash'][:23]}... gate: {gate}")
    service = data.get("feature_service", {})
    if service:
        lines.append(f"<- FeatureService {service['name']} version {service['version']}")
    tables = data.get("feature_tables", {})
    if tables:
        # the feature build's manifest: the silver it read, its gate results per table
        lines.append(f"<- feature tables built {tables.get('built_at', '?')} from silver drops:")
        for table, drops in sorted(tables.get("silver", {}).items()):
            lines.append(f"     {table}: {', '.join(sorted(drops)) if drops else '-'}")
        for table in sorted(tables.get("gate_results", {})):
            lines.append(f"     feature table {table}: gated")
    bentos = traced["bentos"]
    lines.append("-> Bentos: " + (", ".join(bentos) if bentos else "none built here"))
    return "\n".join(lines)
