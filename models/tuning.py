"""Tuning: an Optuna study over the configured model family's parameters, judged on the
validation rows, before the gate judges the result on the test rows.

`training.tuning` in config: how many trials (or how long), and the search space per model
family (`space.<family>.<param>`: a range, on a log scale or of integers, or a list of choices;
a dotted name reaches into a nested parameter, e.g. `estimator_params.C`). The first trial is
the configured parameters, so the study can only keep them or find better. The sampler is
seeded with `training.seed` and every fit is deterministic: the same data, config and seed give
the same study (a `timeout_s` may cut it short at a different trial on a slower day). The best
trial's configuration is refitted and handed on; every trial is recorded as a nested MLflow run
under the training run (`pipelines.fit`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from copy import deepcopy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from configs.settings import SearchRange, TuningConfig

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trial:
    number: int
    # The sampled values, by their (dotted) names in the search space.
    values: dict[str, Any]
    score: float
    seconds: float
    summary: str


@dataclass(frozen=True)
class Study:
    """What a study tried and found: `metric` on the validation rows, per trial."""

    metric: str
    maximize: bool
    trials: list[Trial] = field(default_factory=list)

    @property
    def best(self) -> Trial:
        pick = max if self.maximize else min
        return pick(self.trials, key=lambda trial: (trial.score, -trial.number))

    @property
    def configured(self) -> Trial:
        """Trial 0: the parameters as configured."""
        return self.trials[0]

    def describe(self) -> str:
        best, first = self.best, self.configured
        return (
            f"tuned over {len(self.trials)} trials: validation {self.metric} "
            f"{best.score:.4f} (trial {best.number}) against {first.score:.4f} as configured"
        )


def with_values(params: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """`params` with each (dotted) name in `values` set, nested dictionaries copied."""
    merged = deepcopy(dict(params))
    for name, value in values.items():
        *path, last = name.split(".")
        target = merged
        for part in path:
            target = target.setdefault(part, {})
        target[last] = value
    return merged


def configured_values(
    params: Mapping[str, Any], space: Mapping[str, SearchRange]
) -> dict[str, Any]:
    """The configured value of each searched parameter that has one (trial 0 tries them)."""
    found = {}
    for name, searched in space.items():
        value: Any = params
        for part in name.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if value is not None and searched.holds(value):
            found[name] = value
    return found


def suggest(trial: Any, name: str, searched: SearchRange) -> Any:
    if searched.choices is not None:
        return trial.suggest_categorical(name, searched.choices)
    low, high = searched.bounds
    if searched.integer:
        return trial.suggest_int(name, int(low), int(high), log=searched.log)
    return trial.suggest_float(name, low, high, log=searched.log)


def distribution(searched: SearchRange) -> BaseDistribution:
    """The range as Optuna describes it (to tell the sampler about a trial it did not run)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if searched.choices is not None:
        return CategoricalDistribution(searched.choices)
    low, high = searched.bounds
    if searched.integer:
        return IntDistribution(int(low), int(high), log=searched.log)
    return FloatDistribution(low, high, log=searched.log)


def tune(
    tuning: TuningConfig,
    family: str,
    params: Mapping[str, Any],
    seed: int,
    metric: str,
    maximize: bool,
    score: Callable[[dict[str, Any]], tuple[float, str]],
) -> tuple[dict[str, Any], Study]:
    """Run the study: `score(params)` fits with those parameters and returns the validation
    metric and a one-line summary of the fit. Trial 0 is `params` as given; the sampler tries
    the others. Returns the best trial's parameters and the study."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = tuning.space[family]
    study = Study(metric, maximize)

    def timed(number: int, values: dict[str, Any]) -> float:
        started = time.perf_counter()
        value, summary = score(with_values(params, values))
        seconds = time.perf_counter() - started
        study.trials.append(Trial(number, values, value, seconds, summary))
        log.info(
            "tuning trial %d of %d: validation %s %.4f (%s; %.1fs)",
            number + 1,
            tuning.trials,
            metric,
            value,
            summary,
            seconds,
        )
        return value

    optimizer = optuna.create_study(
        direction="maximize" if maximize else "minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
    )
    configured = configured_values(params, space)
    value = timed(0, {})
    if set(configured) == set(space):  # the sampler learns from the configured point too
        distributions = {name: distribution(searched) for name, searched in space.items()}
        optimizer.add_trial(
            optuna.trial.create_trial(params=configured, distributions=distributions, value=value)
        )
    if tuning.trials > 1:
        optimizer.optimize(
            lambda trial: timed(
                len(study.trials),
                {name: suggest(trial, name, searched) for name, searched in space.items()},
            ),
            n_trials=tuning.trials - 1,
            timeout=tuning.timeout_s,
        )
    return with_values(params, study.best.values), study
