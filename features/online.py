"""Online feature reads with the same point-in-time rules as the offline join.

Feast does not enforce a view's TTL on online reads: an entity last seen two months ago
would get its two-month-old values, where training (offline, TTL enforced) saw nothing.
This applies the offline rules to each value, against the row's `event_timestamp` (the
moment of prediction): a value stamped after it, or older than the view's TTL, is missing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from usecases.contract import EVENT_TIMESTAMP, UseCase

TIMESTAMP_SUFFIX = "__ts"  # Feast's name for a feature's event time in online responses


class OnlineStoreUnavailable(RuntimeError):
    """The online store did not answer a read (down, unreachable, or failing)."""


def entity_keys(usecase: UseCase) -> list[str]:
    """The join keys the use case's views are read by, in declared order."""
    used = {view.entity for view in usecase.views}
    return [entity.join_key for entity in usecase.entities if entity.name in used]


def online_features(store: Any, service: Any, usecase: UseCase, rows: pd.DataFrame) -> pd.DataFrame:
    """The service's features for entity `rows` (every join key and `event_timestamp`, tz-aware),
    as of each row's event time; missing values are NaN."""
    entity_rows = rows[entity_keys(usecase)].to_dict("records")
    try:
        response = store.get_online_features(features=service, entity_rows=entity_rows).to_dict(
            include_event_timestamps=True
        )
    except Exception as err:  # each store's client raises its own kinds; all mean "not answering"
        raise OnlineStoreUnavailable(f"{type(err).__name__}: {err}") from err
    as_of = rows[EVENT_TIMESTAMP].map(lambda t: t.timestamp()).to_numpy()
    columns = {}
    for view in usecase.views:
        horizon = view.ttl.total_seconds()
        for feature in view.features:
            values = pd.to_numeric(
                pd.Series(response[feature.name], dtype="object"), errors="coerce"
            ).to_numpy("float64")
            stamped = np.asarray(response[feature.name + TIMESTAMP_SUFFIX], dtype="float64")
            unusable = stamped > as_of
            if horizon > 0:
                unusable |= as_of - stamped > horizon
            values[unusable] = np.nan
            columns[feature.name] = values
    return pd.DataFrame(columns, index=rows.index)
