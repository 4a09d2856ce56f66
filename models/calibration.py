"""Calibration: a map from a binary model's scores to probabilities that match how often the
positive class happens, fitted on the validation rows when it makes the scores better there.

`training.calibration` in config: `none` keeps the scores; `platt` (a logistic curve on the
score's log-odds), `isotonic` (a non-decreasing step function) or `auto`, which picks whichever
of none, Platt and isotonic has the lowest Brier score on the validation rows, each judged on
the half of them it was not fitted on (two folds, seeded): a map is kept only when it lowers
the Brier score by at least MIN_BRIER_GAIN on rows it has not seen. The chosen map is then fitted on every validation row, recorded in the
model's metadata and applied wherever the model predicts (`Calibrated`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

NONE, PLATT, ISOTONIC = "none", "platt", "isotonic"
METHODS = (NONE, PLATT, ISOTONIC)
# `auto` keeps a map only when it lowers the held-out Brier score by at least this much.
MIN_BRIER_GAIN = 0.0005
# The model metadata key the map is recorded under.
CALIBRATION_KEY = "calibration"
_EPSILON = 1e-6


def _logit(scores: np.ndarray) -> np.ndarray:
    clipped = np.clip(scores, _EPSILON, 1 - _EPSILON)
    return np.log(clipped / (1 - clipped))


@dataclass(frozen=True)
class Calibration:
    """A fitted map (`none`: the identity). Platt: p = 1 / (1 + exp(-(a * logit(s) + b)));
    isotonic: linear interpolation between the points (x, y), flat beyond them."""

    method: str = NONE
    a: float = 1.0
    b: float = 0.0
    x: tuple[float, ...] = field(default_factory=tuple)
    y: tuple[float, ...] = field(default_factory=tuple)

    @property
    def identity(self) -> bool:
        return self.method == NONE

    def describe(self) -> str:
        return {NONE: "no calibration", PLATT: "Platt scaling", ISOTONIC: "isotonic"}[self.method]

    def apply(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype="float64")
        if self.method == PLATT:
            return 1.0 / (1.0 + np.exp(-(self.a * _logit(scores) + self.b)))
        if self.method == ISOTONIC:
            return np.interp(scores, self.x, self.y)
        return scores

    def metadata(self) -> dict[str, Any]:
        if self.method == PLATT:
            return {"method": PLATT, "a": self.a, "b": self.b}
        if self.method == ISOTONIC:
            return {"method": ISOTONIC, "x": list(self.x), "y": list(self.y)}
        return {"method": NONE}

    @classmethod
    def from_metadata(cls, recorded: dict[str, Any] | None) -> Calibration:
        if not recorded:
            return cls()
        method = str(recorded.get("method", NONE))
        if method == PLATT:
            return cls(PLATT, a=float(recorded["a"]), b=float(recorded["b"]))
        if method == ISOTONIC:
            return cls(
                ISOTONIC,
                x=tuple(float(v) for v in recorded["x"]),
                y=tuple(float(v) for v in recorded["y"]),
            )
        return cls()


def fit(method: str, labels: np.ndarray, scores: np.ndarray, seed: int) -> Calibration:
    """The map of `method` fitted on these rows."""
    if method == PLATT:
        from sklearn.linear_model import LogisticRegression

        curve = LogisticRegression(C=1e6, random_state=seed).fit(
            _logit(scores).reshape(-1, 1), labels
        )
        return Calibration(PLATT, a=float(curve.coef_[0, 0]), b=float(curve.intercept_[0]))
    if method == ISOTONIC:
        from sklearn.isotonic import IsotonicRegression

        steps = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(scores, labels)
        return Calibration(
            ISOTONIC,
            x=tuple(float(v) for v in steps.X_thresholds_),
            y=tuple(float(v) for v in steps.y_thresholds_),
        )
    return Calibration()


def brier(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(np.mean((np.asarray(scores, dtype="float64") - labels) ** 2))


@dataclass(frozen=True)
class Choice:
    """The map chosen, and each candidate's Brier score on held-out validation rows."""

    calibration: Calibration
    held_out_brier: dict[str, float]


def choose(setting: str, labels: np.ndarray, scores: np.ndarray, seed: int) -> Choice:
    """The map `setting` asks for (`auto`: the lowest held-out Brier of none, Platt and
    isotonic; none unless a map gains at least MIN_BRIER_GAIN), fitted on every validation
    row."""
    candidates = METHODS if setting == "auto" else (NONE, setting)
    fold = np.random.default_rng(seed).permutation(len(labels)) % 2
    halves = [(fold != part, fold == part) for part in (0, 1)]
    if any(len(np.unique(labels[train])) < 2 for train, _ in halves):
        return Choice(Calibration(), {})  # too few rows of one label to fit a map on half
    held_out = {}
    for method in candidates:
        squared = 0.0
        for train, test in halves:
            fitted = fit(method, labels[train], scores[train], seed)
            squared += brier(labels[test], fitted.apply(scores[test])) * int(test.sum())
        held_out[method] = squared / len(labels)
    best = (
        setting
        if setting != "auto"
        else min(candidates, key=lambda method: (held_out[method], METHODS.index(method)))
    )
    if setting == "auto" and held_out[NONE] - held_out[best] < MIN_BRIER_GAIN:
        best = NONE  # a gain within the noise of two folds is no reason to map
    return Choice(fit(best, labels, scores, seed), held_out)


@dataclass
class Calibrated:
    """A binary model whose probabilities pass through a calibration map: the map is applied
    wherever it predicts, and recorded in its metadata (`models.load` applies it again)."""

    inner: Any
    calibration: Calibration
    # The inner model's, as the Model protocol reads them.
    family: str = field(init=False)
    features: list[str] = field(init=False)
    task: str = field(init=False)

    def __post_init__(self) -> None:
        self.family = str(self.inner.family)
        self.features = list(self.inner.features)
        self.task = str(self.inner.task)

    def predict(self, inputs: Any) -> np.ndarray:
        return self.calibration.apply(self.inner.predict(inputs))

    def probabilities(self, inputs: Any) -> np.ndarray:
        return self.predict(inputs)

    def importances(self, data: Any) -> Any:
        return self.inner.importances(data)

    def contributions(self, inputs: Any) -> Any:
        """The model's own contributions, before the map (which is monotone: it keeps the
        order of the scores, so what pushes a score up pushes the probability up)."""
        return self.inner.contributions(inputs)

    def params(self) -> dict[str, Any]:
        return {**self.inner.params(), "calibration": self.calibration.method}

    def summary(self) -> str:
        return f"{self.inner.summary()}, {self.calibration.describe()}"

    def _metadata(self, metadata: dict[str, Any]) -> dict[str, Any]:
        return {**metadata, CALIBRATION_KEY: self.calibration.metadata()}

    def save(self, folder: Any, *, signature: Any, input_example: Any, metadata: dict) -> None:
        self.inner.save(
            folder,
            signature=signature,
            input_example=input_example,
            metadata=self._metadata(metadata),
        )

    def log(self, *, signature: Any, input_example: Any, metadata: dict) -> Any:
        return self.inner.log(
            signature=signature, input_example=input_example, metadata=self._metadata(metadata)
        )
