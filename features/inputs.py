"""Model inputs, assembled one way for training, batch scoring and serving.

Entity rows (from the use case) + stored features as of each row's event time (offline:
Feast's point-in-time join; online: the online store under the same rules) + request-time
features (the use case's own function of one row) -> one float64 column per model input, in
the order the use case declares (offline) or the model was trained with (online).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from configs import Settings
from features.definitions import build_repo
from features.online import OnlineFeatures, entity_keys
from usecases.contract import EVENT_TIMESTAMP, RowFeatures, UseCase


class InputsError(RuntimeError):
    """The inputs cannot be assembled as the contract promises (the message says why)."""


def request_values(
    compute: RowFeatures, width: int, rows: Iterable[Mapping[str, Any]]
) -> np.ndarray:
    """The request-time features of entity `rows` (`compute` of each), one float64 row each."""
    return np.array([compute(row) for row in rows], dtype="float64").reshape(-1, width)


def with_request_features(frame: pd.DataFrame, usecase: UseCase, params: Any) -> pd.DataFrame:
    """`frame` with the request-time features computed from its rows (replacing any column
    of the same name): the same function serving applies to each item."""
    names = [f.name for f in usecase.request.features]
    compute = usecase.request.compute(params)
    values = request_values(compute, len(names), _rows(frame))
    kept = frame.drop(columns=[c for c in names if c in frame.columns])
    return pd.concat([kept, pd.DataFrame(values, columns=names, index=frame.index)], axis=1)


def _rows(frame: pd.DataFrame) -> Iterator[Mapping[str, Any]]:
    """Each row of `frame` as a read-only mapping by column name. A row function reads a
    few columns: each is turned into Python values once, when first read, instead of the
    whole frame row by row (`to_dict("records")` costs seconds on a year of rows)."""
    columns: dict[str, list[Any]] = {}

    def column(name: str) -> list[Any]:
        if name not in columns:
            columns[name] = frame[name].tolist()
        return columns[name]

    names = tuple(frame.columns)
    for index in range(len(frame)):
        yield _Row(column, names, index)


class _Row(Mapping[str, Any]):
    __slots__ = ("_column", "_index", "_names")

    def __init__(self, column: Callable[[str], list[Any]], names: tuple[str, ...], index: int):
        self._column, self._names, self._index = column, names, index

    def __getitem__(self, name: str) -> Any:
        return self._column(name)[self._index]  # an unknown name: pandas' KeyError

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


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


class OnlineInputs:
    """Model inputs for entity rows from the online store: the request path.

    Built once per served model; a call reads the store once and fills one float64 matrix in
    the model's column order (`features`), no pandas.
    """

    def __init__(
        self,
        store: Any,
        service: Any,
        usecase: UseCase,
        params: Mapping[str, Any],
        features: Sequence[str],
    ) -> None:
        self.online = OnlineFeatures(store, service, usecase)
        self.compute = usecase.request.compute(params)
        self.width = len(usecase.request.features)
        known = [*(f.name for f in usecase.request.features), *self.online.names]
        unknown = sorted(set(features) - set(known))
        if unknown:
            raise InputsError(
                f"the model takes {unknown}, which use case {usecase.name} does not declare"
            )
        # Model column i is column order[i] of [request features..., stored features...].
        self.order = np.array([known.index(name) for name in features], dtype="intp")
        self.stored = np.array(self.online.names, dtype=object)

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, list[list[str]]]:
        """The model inputs of `rows` (one row each, in the model's column order) and, per
        row, the stored features that had no usable value."""
        stored = self.online.read(rows)
        request = request_values(self.compute, self.width, rows)
        inputs = np.hstack([request, stored])[:, self.order]
        absent = np.isnan(stored)
        missing = [list(self.stored[line]) if line.any() else [] for line in absent]
        return inputs, missing
