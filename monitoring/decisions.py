"""What the monitor decided, and why: one JSON file per decision under
`paths.monitoring/decisions/`, never rewritten. Written by the `monitor` stage, listed by
`python -m pipelines monitoring`, and read by the service for its monitoring gauges."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from storage import files as fs

FOLDER = "decisions"


def record(location: str, decision: dict[str, Any]) -> str:
    """Write `decision` (a verdict's fields) under `location`; returns where."""
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%S%fZ")
    target = fs.join(location, FOLDER, f"{decision['window_to']}-{stamp}.json")
    fs.write_text(target, json.dumps({"decided_at": stamp, **decision}, default=str))
    return target


def _names(location: str) -> list[str]:
    folder = fs.join(location, FOLDER)
    if not fs.is_dir(folder):
        return []
    return sorted(name for name in fs.children(folder) if name.endswith(".json"))


def every(location: str) -> list[dict[str, Any]]:
    """Every recorded decision, oldest first (by the window judged, then when)."""
    return [json.loads(fs.read_text(fs.join(location, FOLDER, name))) for name in _names(location)]


def newest(location: str) -> dict[str, Any] | None:
    """The decision on the newest window (the last one made on it), or None."""
    names = _names(location)
    return json.loads(fs.read_text(fs.join(location, FOLDER, names[-1]))) if names else None
