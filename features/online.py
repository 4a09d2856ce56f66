"""Online feature reads with the same point-in-time rules as the offline join.

Feast does not enforce a view's TTL on online reads: a plane that last flew two months ago
would get its two-month-old history, where training (offline, TTL enforced) saw nothing.
This applies the offline rules to each value, against the flight's scheduled departure: a
value stamped after it, or older than the view's TTL, is treated as missing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from features.definitions import VIEWS

TIMESTAMP_SUFFIX = "__ts"  # Feast's name for a feature's event time in online responses
ENTITY_KEYS = ("tailnum", "origin", "carrier", "route")


class OnlineStoreUnavailable(RuntimeError):
    """The online store did not answer a read (down, unreachable, or failing)."""


def online_features(store: Any, service: Any, flights: pd.DataFrame) -> pd.DataFrame:
    """The service's features for `flights` (columns tailnum, origin, carrier, route,
    sched_dep_utc), as of each flight's scheduled departure; missing values are NaN."""
    rows = flights[list(ENTITY_KEYS)].to_dict("records")
    try:
        response = store.get_online_features(features=service, entity_rows=rows).to_dict(
            include_event_timestamps=True
        )
    except Exception as err:  # each store's client raises its own kinds; all mean "not answering"
        raise OnlineStoreUnavailable(f"{type(err).__name__}: {err}") from err
    as_of = flights["sched_dep_utc"].map(lambda t: t.timestamp()).to_numpy()
    columns = {}
    for _, ttl, fields in VIEWS.values():
        horizon = ttl.total_seconds()
        for feature, _, _ in fields:
            values = pd.to_numeric(
                pd.Series(response[feature], dtype="object"), errors="coerce"
            ).to_numpy("float64")
            stamped = np.asarray(response[feature + TIMESTAMP_SUFFIX], dtype="float64")
            unusable = stamped > as_of
            if horizon > 0:
                unusable |= as_of - stamped > horizon
            values[unusable] = np.nan
            columns[feature] = values
    return pd.DataFrame(columns, index=flights.index)
