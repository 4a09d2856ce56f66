"""What `package` hands to `serving` and `infra`, defined once: the BentoML model's labels and
metadata keys, the alias it was packaged from, and the key of the Bento in the handoff file.

The model-tag variable and the Bento's name derive from the project's name (`Settings.names`).
"""

from __future__ import annotations

# The registry alias a Bento is built from.
ALIAS = "champion"
# Labels on the BentoML model and the Bento: which MLflow version and run they carry.
VERSION_LABEL = "mlflow_model_version"
RUN_LABEL = "mlflow_run_id"
FEATURE_SERVICE_LABEL = "feature_service"
# On a Bento that also carries a challenger to score in shadow: the challenger's MLflow run.
SHADOW_RUN_LABEL = "shadow_mlflow_run_id"
# On a Bento: the commit it was built from, and the digest of what it serves (code, use case,
# requirements, model: `configs.source.release_digest`), also the Bento's version. `package`
# hands both off beside the tag, under these keys, for the release record.
COMMIT_LABEL = "git_commit"
DIGEST_LABEL = "release_digest"
# The registry alias of a version the gate did not promote: scored in shadow when asked.
CHALLENGER_ALIAS = "challenger"
# Metadata keys on the BentoML model (with how it answers: `models.answers.Answering`).
FEATURES_KEY = "features"
FAMILY_KEY = "model_family"
# sha256 over every file of the model's folder (`folder_digest`), checked before loading.
DIGEST_KEY = "model_sha256"
# The subfolder of a BentoML model holding the MLflow model.
MLFLOW_MODEL_DIR = "mlflow_model"
# The key of the Bento's tag in what `python -m pipelines --handoff-file <path> package` writes
# (JSON): what `infra` deploys.
BENTO_TAG_KEY = "bento_tag"
# What `monitor` decided (retrain, keep, no verdict): read by the AWS state machine, which runs
# the chain on "retrain" after a scheduled monitor.
DECISION_KEY = "decision"
RETRAIN, KEEP, NO_VERDICT = "retrain", "keep", "no verdict"


def scored_in_shadow(champion_version: str, challenger_version: str | None) -> bool:
    """Whether the challenger is worth scoring in shadow: a version newer than the champion
    (an older one is a past loser the gate has already moved beyond)."""
    return challenger_version is not None and int(challenger_version) > int(champion_version)
