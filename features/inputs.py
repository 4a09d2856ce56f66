"""Model inputs, assembled one way for training, batch scoring and serving.

Entity rows (from the use case) + stored features as of each row's event time (offline:
Feast's point-in-time join; online: the online store under the same rules) + request-time
features (the use case's own function) -> one float64 column per model input, in the order
the use case declares.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from configs import Settings
from features.definitions import build_repo
from features.online import entity_keys, online_features
from usecases.contract import EVENT_TIMESTAMP, UseCase


class InputsError(RuntimeError):
    """The inputs cannot be assembled as the contract promises (the message says why)."""


def with_request_features(frame: pd.DataFrame, usecase: UseCase, params: Any) -> pd.DataFrame:
    """`frame` with the request-time features computed from its columns (replacing any
    column of the same name)."""
    request = usecase.request.compute(frame, params)
    kept = frame.drop(columns=[c for c in request.columns if c in frame.columns])
    return pd.concat([kept, request], axis=1)


def as_model_inputs(frame: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """Every input as float64: offline, Feast returns ints as floats where a value is missing,
    and online a missing value is None; one dtype keeps training and serving alike."""
    return frame[features].astype("float64")


def offline_frame(store: Any, settings: Settings, rows: pd.DataFrame) -> pd.DataFrame:
    """Entity rows (labelled or not) joined point-in-time with the FeatureService, plus the
    request features: the training set for `fit`, the scoring frame for `batch-predict`."""
    repo = build_repo(settings)
    usecase = repo.usecase
    row_id = usecase.examples.row_id
    service = store.get_feature_service(repo.service.name)
    joined = store.get_historical_features(
        entity_df=rows[[row_id, *entity_keys(usecase), EVENT_TIMESTAMP]], features=service
    ).to_df()
    if len(joined) != len(rows) or joined[row_id].duplicated().any():
        raise InputsError(
            f"the point-in-time join returned {len(joined)} rows for {len(rows)} entity rows; "
            "every row must come back exactly once"
        )
    features = joined[[row_id, *repo.feature_names]]
    frame = rows.merge(features, on=row_id, how="left", validate="one_to_one")
    frame = with_request_features(frame, usecase, settings.params)
    inputs = usecase.model_inputs
    frame[inputs] = as_model_inputs(frame, inputs)
    return frame.sort_values([EVENT_TIMESTAMP, row_id]).reset_index(drop=True)


def online_inputs(
    store: Any, service: Any, usecase: UseCase, params: Any, rows: pd.DataFrame, features: list[str]
) -> tuple[pd.DataFrame, list[list[str]]]:
    """Model inputs for entity `rows` from the online store, in the model's column order
    (`features`), and per row the stored features that had no usable value."""
    online = online_features(store, service, usecase, rows)
    frame = pd.concat([usecase.request.compute(rows, params), online], axis=1)
    absent = online.isna().to_numpy()
    names = list(online.columns)
    missing = [[names[i] for i in row.nonzero()[0]] for row in absent]
    return as_model_inputs(frame, features), missing
