"""Each release's figures as the canary alarms read them (`serving.figures`): the embedded
metric format's record, written when the interval passed or a figure holds 100 values."""

from __future__ import annotations

import json

from configs import cloudwatch
from serving.figures import MAX_VALUES, ReleaseFigures


def test_a_line_names_the_release_and_carries_its_figures() -> None:
    lines: list[str] = []
    clock = iter([0.0, 1.0, 2.0, 61.0])
    figures = ReleaseFigures(
        "ns", "meters", "abc123", 60.0, lines.append, lambda: next(clock), lambda: 7
    )
    figures.scored([0.25, 0.5])
    figures.answered(200, 3.2)
    figures.answered(503, 1.0)
    assert lines == []  # not yet due
    figures.answered(200, 4.0)  # 61 s after the start: due
    (line,) = [json.loads(x) for x in lines]
    assert (
        line[cloudwatch.RELEASE_DIMENSION] == "abc123"
        and line[cloudwatch.USECASE_DIMENSION] == "meters"
    )
    assert (line[cloudwatch.RELEASE_REQUESTS], line[cloudwatch.RELEASE_ERRORS]) == (3, 1)
    assert line[cloudwatch.RELEASE_LATENCY] == [3.2, 1.0, 4.0]
    assert line[cloudwatch.RELEASE_SCORE] == [0.25, 0.5]
    (directive,) = line["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "ns" and line["_aws"]["Timestamp"] == 7
    assert directive["Dimensions"] == [[cloudwatch.USECASE_DIMENSION, cloudwatch.RELEASE_DIMENSION]]
    assert {m["Name"] for m in directive["Metrics"]} == {
        cloudwatch.RELEASE_REQUESTS,
        cloudwatch.RELEASE_ERRORS,
        cloudwatch.RELEASE_LATENCY,
        cloudwatch.RELEASE_SCORE,
    }


def test_a_line_holds_at_most_the_format_s_hundred_values() -> None:
    lines: list[str] = []
    figures = ReleaseFigures("ns", "meters", "abc123", 3600.0, lines.append, lambda: 0.0)
    for _ in range(2 * MAX_VALUES + 5):
        figures.answered(200, 1.0)
    assert len(lines) == 2
    assert all(len(json.loads(x)[cloudwatch.RELEASE_LATENCY]) == MAX_VALUES for x in lines)
