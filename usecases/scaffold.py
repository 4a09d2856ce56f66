"""`python -m usecases.scaffold <name>` (`make new-usecase NAME=<name>`): a new use case.

Writes `usecases/<name>/` from `usecases/_template/`: a working use case on a small example
data set (entities with a daily value and a 0/1 outcome), with its own tests, that
`make train USECASE=<name>` trains and `make serve USECASE=<name>` serves. A team then
replaces the example with its own sources, features, label and request.
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


def create(name: str, root: Path = USECASES_DIR, title: str | None = None) -> Path:
    """The new use case's folder, `root/<name>/`, filled from the template."""
    if not NAME.match(name):
        raise ScaffoldError(
            f"use case name {name!r}: 3-24 characters, lower-case letters, digits and _, "
            "starting with a letter"
        )
    target = root / name
    if target.exists():
        raise ScaffoldError(f"{target} exists already: pick another name or remove it")
    tokens = {
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
    args = parser.parse_args(argv)
    try:
        target = create(args.name, title=args.title)
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
