"""The platform's own AWS I/O, as one identity does it on AWS: run with the platform's venv, the
aws profile and that identity's access key, against a moto server that records every request
(tests/infra/test_role_traffic.py judges them against the identity's role).

    python tests/infra/role_driver.py features|monitor|serving

Each part calls the code the stage or the service calls (Feast's apply and its registry,
storage.files through pyarrow, the prediction log's writer, the monitor's decisions), not a
copy of it. Stand-ins: the stages' Spark reads and writes (EMRFS, which needs AWS) and the
online store (Redis) are not exercised here.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

from configs import load_settings
from features.definitions import build_repo, service_name
from features.store import feature_store
from models.answers import Answers
from monitoring import decisions
from monitoring.prediction_log import (
    BATCH_SOURCE,
    SERVICE_SOURCE,
    Batch,
    PredictionLog,
    compact,
    logged_days,
    read_log,
)
from storage import files as fs

RUN = "run-traffic"


def handoff(settings) -> None:
    """What `python -m pipelines --handoff-file s3://<lake>/runs/<run>/handoff.json` does."""
    location = (
        f"s3://{settings.paths.lake.removeprefix('s3://').split('/')[0]}/runs/{RUN}/handoff.json"
    )
    handed = json.loads(fs.read_text(location)) if fs.exists(location) else {}
    fs.write_text(location, json.dumps({**handed, "stage": "done"}))


def prediction_log(settings, source: str) -> None:
    log = PredictionLog(settings.paths.prediction_log, ["x"], source=source)
    at = datetime(2013, 12, 1, tzinfo=UTC)
    answers = Answers(score=[0.4], decision=[False])
    log.log(Batch([f"p1-{source}"], at.timestamp(), [at], "1", [None], answers, [[]], [[1.0]]))
    assert log.flush() == 1, "the prediction log wrote nothing"


def compact_prediction_log(settings) -> None:
    """What the monitor does first: a day's files rewritten as one per source."""
    location = settings.paths.prediction_log
    done = compact(location)
    assert done and done[0].records >= 2, f"nothing compacted: {done}"
    # then what it reads: the newest days' records
    assert read_log(location, days=logged_days(location)[-7:]) is not None


def main(identity: str) -> None:
    settings = load_settings("aws")
    if identity == "features":  # the features job: Feast's apply writes the registry
        feature_store(settings).apply(build_repo(settings).objects)
        handoff(settings)
    elif identity == "monitor":  # the monitor job, and batch scores as batch-predict logs them
        decisions.record(settings.paths.monitoring, {"window_to": "2013-12-31", "decision": "keep"})
        prediction_log(settings, BATCH_SOURCE)
        prediction_log(settings, BATCH_SOURCE + "-again")
        compact_prediction_log(settings)
        handoff(settings)
    elif identity == "serving":  # the service: registry, the monitor's decisions, its log
        store = feature_store(settings, online_only=True)
        store.get_feature_service(service_name(settings))
        assert decisions.newest(settings.paths.monitoring) is not None
        prediction_log(settings, SERVICE_SOURCE)
    else:
        raise SystemExit(f"unknown identity {identity!r}")
    print(f"{identity}: done")


if __name__ == "__main__":
    main(sys.argv[1])
