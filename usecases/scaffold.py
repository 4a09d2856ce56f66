"""`python -m usecases.scaffold <name> [--task binary|multiclass|regression]`
(`make new-usecase NAME=<name> TASK=<task>`): a new use case.

Writes `usecases/<name>/` from `usecases/_template/`: a working use case on a small example
data set (entities with a daily value and a 0/1 outcome), with its own tests, that
`make train USECASE=<name>` trains and `make serve USECASE=<name>` serves. The task says what
it predicts from the example: the day's 0/1 outcome (binary), the day's level of the value,
low, middle or high (multiclass), or the day's value itself (regression). A team then replaces
the example with its own sources, features, label and request.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

USECASES_DIR = Path(__file__).resolve().parent
TEMPLATE = USECASES_DIR / "_template"
NAME = re.compile(r"^[a-z][a-z0-9_]{2,23}$")
# Four months of example data: January and February to learn, March to tune, April to test.
FIRST_DAY, DAYS, ENTITIES = "2024-01-01", 121, 6


# What differs between the kinds of target, as the template's tokens: the label, the target and
# its answer, the estimator, the gate's rules, the generated test's check of the labels.
TASKS: dict[str, dict[str, str]] = {
    "binary": {
        "{{label_words}}": "the day's outcome",
        "{{numpy}}": "",
        "{{label_constants}}": 'LABEL = "outcome"',
        "{{label_doc}}": "Entity rows labelled with the day's 0/1 outcome.",
        "{{label_values}}": 'events["outcome"].astype("int64").to_numpy()',
        "{{label_check}}": "assert set(labelled[rows.LABEL]) == {0, 1}",
        "{{target}}": 'Target("binary")',
        "{{outcome}}": """        score_field="probability",
        decision_field="positive",
        question="Will the outcome be positive on this day?",
        items="days",
        positive="positive",
        explanation=(
            "For an entity and a day, will the outcome be positive? The model answers at the "
            "start of the day from the entity's recent values and the day of the week."
        ),""",
        "{{estimator}}": "sklearn.linear_model.LogisticRegression",
        "{{promotion}}": """# The champion/challenger gate. A first model must only beat chance (0.5); once you know what
# your models reach, raise the bound to what a model must reach to be worth serving.
promotion:
  minimum:
    roc_auc: 0.52
  primary_metric: roc_auc
  min_improvement: 0.001""",
    },
    "multiclass": {
        "{{label_words}}": "the day's level of the value: low, middle or high",
        "{{numpy}}": "import numpy as np\n",
        "{{label_constants}}": """LABEL = "level"
# The classes, in the order of the labels (a label is its index here), and the values that
# separate them.
CLASSES = ("low", "middle", "high")
BOUNDS = (-3.0, -1.0)""",
        "{{label_doc}}": "Entity rows labelled with the index of the day's level (CLASSES).",
        "{{label_values}}": 'np.digitize(events["value"].to_numpy(), BOUNDS)',
        "{{label_check}}": "assert set(labelled[rows.LABEL]) == set(range(len(rows.CLASSES)))",
        "{{target}}": 'Target("multiclass", classes=rows.CLASSES)',
        "{{outcome}}": """        score_field="level_probabilities",
        decision_field="level",
        question="Will the value be low, middle or high on this day?",
        items="days",
        explanation=(
            "For an entity and a day, will its value be low, middle or high? The model answers "
            "at the start of the day from the entity's recent values and the day of the week, "
            "with how likely each one is."
        ),""",
        "{{estimator}}": "sklearn.linear_model.LogisticRegression",
        "{{promotion}}": """# The champion/challenger gate. A first model must beat guessing one of three (a third
# right); once you know what your models reach, raise the bound.
promotion:
  minimum:
    accuracy: 0.4
  primary_metric: macro_f1
  min_improvement: 0.001

monitoring:
  retrain:
    # Retrain when the live macro F1 of the served answers falls below this.
    min_live_metric: 0.4""",
    },
    "regression": {
        "{{label_words}}": "the day's value",
        "{{numpy}}": "",
        "{{label_constants}}": 'LABEL = "value"',
        "{{label_doc}}": "Entity rows labelled with the day's value.",
        "{{label_values}}": 'events["value"].astype("float64").to_numpy()',
        "{{label_check}}": 'assert labelled[rows.LABEL].dtype == "float64"',
        "{{target}}": 'Target("regression", unit="units")',
        "{{outcome}}": """        score_field="value",
        question="What will the value be on this day?",
        items="days",
        explanation=(
            "For an entity and a day, its value. The model answers at the start of the day "
            "from the entity's recent values and the day of the week, with a range the value "
            "usually falls in."
        ),""",
        "{{estimator}}": "sklearn.linear_model.Ridge",
        "{{promotion}}": """# The champion/challenger gate, on the mean absolute error (lower is better). A first model
# must be off by less than 1 unit on average; once you know what your models reach, lower
# the bound.
promotion:
  maximum:
    mae: 1.0
  primary_metric: mae
  min_improvement: 0.001

monitoring:
  retrain:
    # Retrain when the served values are off by more than this on average, live.
    min_live_metric: 1.0""",
    },
}


class ScaffoldError(ValueError):
    """The use case cannot be created as asked (the message says why)."""


def example_events(seed: int = 7) -> pd.DataFrame:
    """Deterministic example rows: each entity's value drifts day by day, and the outcome of a
    day is likelier after a high value the day before (so there is something to learn)."""
    rng = np.random.default_rng(seed)
    days = pd.date_range(FIRST_DAY, periods=DAYS, freq="D")
    frames = []
    for index in range(ENTITIES):
        values = np.cumsum(rng.normal(0.0, 1.0, DAYS)) * 0.3
        yesterday = np.concatenate([[0.0], values[:-1]])
        chance = 1.0 / (1.0 + np.exp(-2.0 * yesterday))
        frames.append(
            pd.DataFrame(
                {
                    "entity_id": f"e{index + 1}",
                    "day": days.strftime("%Y-%m-%d"),
                    "value": np.round(values, 4),
                    "outcome": (rng.random(DAYS) < chance).astype(int),
                }
            )
        )
    return pd.concat(frames, ignore_index=True).sort_values(["day", "entity_id"])


def create(
    name: str, root: Path = USECASES_DIR, title: str | None = None, task: str = "binary"
) -> Path:
    """The new use case's folder, `root/<name>/`, filled from the template for `task`."""
    if task not in TASKS:
        raise ScaffoldError(f"task {task!r}: one of {', '.join(TASKS)}")
    if not NAME.match(name):
        raise ScaffoldError(
            f"use case name {name!r}: 3-24 characters, lower-case letters, digits and _, "
            "starting with a letter"
        )
    target = root / name
    if target.exists():
        raise ScaffoldError(f"{target} exists already: pick another name or remove it")
    tokens = {
        **TASKS[task],
        "{{task}}": task,
        "{{name}}": name,
        "{{project}}": name.replace("_", "-"),
        "{{title}}": title or name.replace("_", " ").capitalize(),
    }
    for template in sorted(TEMPLATE.rglob("*.tmpl")):
        text = template.read_text(encoding="utf-8")
        for token, value in tokens.items():
            text = text.replace(token, value)
        out = target / template.relative_to(TEMPLATE).with_suffix("")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    (target / "tests" / "__init__.py").write_text("")
    (target / "data").mkdir(exist_ok=True)
    example_events().to_csv(target / "data" / "events.csv", index=False, lineterminator="\n")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m usecases.scaffold", description=__doc__)
    parser.add_argument("name", help="the use case's name, e.g. churn (a Python package name)")
    parser.add_argument("--title", help="what it predicts, in a few words")
    parser.add_argument(
        "--task", choices=sorted(TASKS), default="binary", help="what kind of target (binary)"
    )
    args = parser.parse_args(argv)
    try:
        target = create(args.name, title=args.title, task=args.task)
    except ScaffoldError as err:
        print(f"new-usecase: {err}", file=sys.stderr)
        return 2
    print(
        f"created {target.relative_to(USECASES_DIR.parent)}/\n"
        f"  make test-usecase USECASE={args.name}   # its own tests (seconds)\n"
        f"  make train USECASE={args.name}          # the whole chain on its example data\n"
        f"  make serve USECASE={args.name}          # then POST /predict"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
