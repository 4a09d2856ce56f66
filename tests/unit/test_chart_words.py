"""The report's charts speak the reader's words: every title, axis, legend and bar label that
`plot_all` draws is taken as drawn (matplotlib's own calls, recorded) and none is a model input's
column name or an engineer's term the chart could say plainly."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import pytest

from pipelines.fit import plot_all
from tests.serving_helpers import PLATFORM

matplotlib.use("Agg")
import matplotlib.pyplot as plt

JARGON = ("true positive rate", "false positive rate", "ROC curve (test)", "Precision-recall")


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Run `plot_all` on the platform's use case, recording every word it puts on a chart."""
    words: list[str] = []

    def record(*args: Any, **kwargs: Any) -> None:
        words.extend(str(a) for a in args if isinstance(a, str))
        if "label" in kwargs:
            words.append(str(kwargs["label"]))

    for call in ("xlabel", "ylabel", "title"):
        monkeypatch.setattr(plt, call, record)
    real_barh, real_plot = plt.barh, plt.plot
    monkeypatch.setattr(
        plt,
        "barh",
        lambda names, *a, **k: (words.extend(map(str, names)), real_barh(names, *a, **k)),
    )
    monkeypatch.setattr(plt, "plot", lambda *a, **k: (record(**k), real_plot(*a, **k)))
    rng = np.random.default_rng(0)
    rows = 400
    labels = rng.integers(0, 2, rows)
    scores = np.clip(labels * 0.3 + rng.random(rows) * 0.7, 0, 1)
    inputs = list(PLATFORM.model_inputs)
    explanation = pd.DataFrame(
        {
            "feature": inputs,
            "share": np.linspace(0.4, 0.05, len(inputs)),
            "direction": [1, -1] * (len(inputs) // 2) + [0] * (len(inputs) % 2),
        }
    )
    test = pd.DataFrame(
        {part.column: rng.choice([1.0, 7.0, 13.0, 19.0], rows) for part in PLATFORM.slices}
    )
    fitted = SimpleNamespace(
        explanation=explanation, importance=None, split=SimpleNamespace(test=test)
    )
    written = plot_all(tmp_path, labels, scores, fitted, PLATFORM)  # type: ignore[arg-type]
    assert written and all(path.is_file() for path in written)
    return words


def test_no_chart_names_a_column_or_uses_jargon(drawn: list[str]) -> None:
    columns = set(PLATFORM.model_inputs)
    assert not [word for word in drawn if word in columns], drawn
    assert not [word for word in drawn if any(term in word for term in JARGON)], drawn
    assert {PLATFORM.describe(name) for name in PLATFORM.model_inputs} <= set(drawn)
