"""The online point-in-time rule at its edges, as the offline join has it (Feast's offline
retrieval keeps a value stamped at or before the row's moment and no older than the view's
TTL, both ends included): `OnlineFeatures.read` against a stand-in for Feast's online store
(the store itself cannot pin a stamp to the second; its response format is Feast's
`OnlineResponse.to_dict(include_event_timestamps=True)`: values, and `<name>__ts` in whole
seconds since the epoch, 0 where there is no value).

A value stamped exactly at the moment of prediction is used, one second later it is missing;
a value exactly one TTL old is used, one second older it is missing; a view with TTL 0 keeps
its value however old."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from features.online import TIMESTAMP_SUFFIX, OnlineFeatures, entity_keys
from tests.serving_helpers import PLATFORM
from usecases.contract import EVENT_TIMESTAMP, UseCase

MOMENT = datetime(2024, 3, 10, 12, 0, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


class StandInStore:
    """Answers every feature with the value 1.0 stamped at `stamps[feature]` (or no value)."""

    def __init__(self, names: Sequence[str], stamps: Mapping[str, datetime | None]) -> None:
        self.names, self.stamps = list(names), stamps

    def get_online_features(self, features: Any, entity_rows: list[dict[str, Any]]) -> Any:
        rows = len(entity_rows)
        response: dict[str, list[Any]] = {}
        for name in self.names:
            stamp = self.stamps.get(name)
            response[name] = [None if stamp is None else 1.0] * rows
            response[name + TIMESTAMP_SUFFIX] = [
                0 if stamp is None else int(stamp.timestamp())
            ] * rows
        return _Response(response)


@dataclasses.dataclass
class _Response:
    response: dict[str, list[Any]]

    def to_dict(self, include_event_timestamps: bool = False) -> dict[str, list[Any]]:
        assert include_event_timestamps
        return self.response


def read(usecase: UseCase, stamped: dict[str, datetime | None]) -> dict[str, float]:
    """Each stored feature's value as read at MOMENT, given when each one was stamped."""
    online = OnlineFeatures(StandInStore(usecase.stored_features, stamped), None, usecase)
    row = {key: "k" for key in entity_keys(usecase)} | {EVENT_TIMESTAMP: MOMENT}
    (values,) = online.read([row])
    return dict(zip(online.names, values, strict=True))


def first_of_each_view(usecase: UseCase) -> list[tuple[str, timedelta]]:
    return [(view.features[0].name, view.ttl) for view in usecase.views]


@pytest.mark.parametrize(
    ("offset", "used"),
    [(timedelta(0), True), (SECOND, False), (-SECOND, True)],
    ids=["stamped at the moment", "a second after", "a second before"],
)
def test_a_value_stamped_after_the_moment_is_missing(offset: timedelta, used: bool) -> None:
    for name, _ in first_of_each_view(PLATFORM):
        value = read(PLATFORM, {name: MOMENT + offset})[name]
        assert (value == 1.0) if used else np.isnan(value), (name, offset)


@pytest.mark.parametrize(
    ("older", "used"),
    [(timedelta(0), True), (SECOND, False), (-SECOND, True)],
    ids=["exactly one TTL old", "a second older", "a second younger"],
)
def test_a_value_older_than_the_view_s_ttl_is_missing(older: timedelta, used: bool) -> None:
    views = first_of_each_view(PLATFORM)
    assert all(ttl > timedelta(0) for _, ttl in views)
    for name, ttl in views:
        value = read(PLATFORM, {name: MOMENT - ttl - older})[name]
        assert (value == 1.0) if used else np.isnan(value), (name, ttl, older)


def test_a_view_with_ttl_0_keeps_its_value_however_old() -> None:
    forever = dataclasses.replace(PLATFORM.views[0], ttl=timedelta(0))
    usecase = dataclasses.replace(PLATFORM, views=(forever, *PLATFORM.views[1:]))
    name = forever.features[0].name
    long_ago = MOMENT - timedelta(days=3650)
    assert read(usecase, {name: long_ago})[name] == 1.0
    assert np.isnan(read(usecase, {name: MOMENT + SECOND})[name])  # the future is still not


def test_no_value_is_missing() -> None:
    assert all(np.isnan(v) for v in read(PLATFORM, {}).values())
