"""What the monitor publishes to CloudWatch on AWS and what the alarms on it read: the
contract between `monitoring` (which puts the figures) and `infra` (which alarms on them),
written once.

The namespace is the project's (`Settings.names.cloudwatch_namespace`); every figure carries
the use case as a dimension, so several use cases can share an account.
"""

from __future__ import annotations

# Dimension of every figure: the use case's name.
USECASE_DIMENSION = "UseCase"
# Share of the model's inputs that drifted in the window (0..1): the drift alarm's figure.
DRIFTED_SHARE = "DriftedShare"
# The drift statistic of the score.
SCORE_DRIFT = "ScoreDrift"
# The champion's live value of the gate's primary metric, once outcomes arrived: the decay
# alarm's figure (published only when measured on enough outcomes).
CHAMPION_LIVE_METRIC = "ChampionLiveMetric"
# 1 when the monitor decided to retrain, else 0.
RETRAIN = "RetrainDecision"

# -- each release's figures, what the serving deployment's canary alarms read ----------------
# Published by every serving worker as embedded metrics in its log (`serving.figures`), with
# the use case and the release (the image tag the task runs) as dimensions.
RELEASE_DIMENSION = "Release"
# The task's environment variable naming its release (the serving stack sets the image tag).
RELEASE_VARIABLE = "MLOPS_RELEASE"
RELEASE_REQUESTS = "Requests"
RELEASE_ERRORS = "Errors5xx"
RELEASE_LATENCY = "LatencyMs"
RELEASE_SCORE = "Score"
