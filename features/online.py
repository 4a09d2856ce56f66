"""Online feature reads with the same point-in-time rules as the offline join.

Feast does not enforce a view's TTL on online reads: an entity last seen two months ago
would get its two-month-old values, where training (offline, TTL enforced) saw nothing.
This applies the offline rules to each value, against the row's `event_timestamp` (the
moment of prediction): a value stamped after it, or older than the view's TTL, is missing.

It sits on the request path: one Feast read, then numpy over the whole response at once,
no pandas.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from usecases.contract import EVENT_TIMESTAMP, UseCase

TIMESTAMP_SUFFIX = "__ts"  # Feast's name for a feature's event time in online responses


class OnlineStoreUnavailable(RuntimeError):
    """The online store did not answer a read (down, unreachable, or failing)."""


def entity_keys(usecase: UseCase) -> list[str]:
    """The join keys the use case's views are read by, in declared order."""
    used = {view.entity for view in usecase.views}
    return [entity.join_key for entity in usecase.entities if entity.name in used]


class OnlineFeatures:
    """The use case's stored features for entity rows, as of each row's event time.

    Built once (the names, keys and horizons do not change while serving); `read` is the
    request path.
    """

    def __init__(self, store: Any, service: Any, usecase: UseCase) -> None:
        self.store = store
        self.service = service
        self.keys = entity_keys(usecase)
        self.names = usecase.stored_features
        # Per feature, the longest a value stays usable, in seconds (a TTL of 0: forever).
        self.horizons = np.array(
            [view.ttl.total_seconds() or np.inf for view in usecase.views for _ in view.features],
            dtype="float64",
        )

    def read(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """One row of float64 per entity row (every join key and an aware `event_timestamp`),
        one column per stored feature (`names`); a missing or unusable value is NaN."""
        entity_rows = [{key: row[key] for key in self.keys} for row in rows]
        try:
            response = self.store.get_online_features(
                features=self.service, entity_rows=entity_rows
            ).to_dict(include_event_timestamps=True)
        except (
            Exception
        ) as err:  # each store's client raises its own kinds; all mean "not answering"
            raise OnlineStoreUnavailable(f"{type(err).__name__}: {err}") from err
        values = np.array([_numbers(response[name]) for name in self.names], dtype="float64").T
        stamped = np.array(
            [response[name + TIMESTAMP_SUFFIX] for name in self.names], dtype="float64"
        ).T
        as_of = np.array([row[EVENT_TIMESTAMP].timestamp() for row in rows], dtype="float64")
        age = as_of[:, None] - stamped
        # NaN stamps (no value) compare False: those values are already missing.
        values[(age < 0) | (age > self.horizons)] = np.nan
        return values.reshape(len(rows), len(self.names))


def _numbers(values: list[Any]) -> list[Any]:
    """A response column as numbers: None stays None (NaN once in float64), and anything
    that is not a number (a value of an unexpected type) becomes None too."""
    return [v if v is None or isinstance(v, int | float) else _number(v) for v in values]


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
