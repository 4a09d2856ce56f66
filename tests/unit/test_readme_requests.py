"""The README's example requests are ones the service takes, and each names its row: a
prediction made for it is logged under the row's id and joined with its outcome once it lands
(`monitoring.label_delay` later), so the traffic the README teaches is traffic the monitor can
measure."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from usecases import load

ROOT = Path(__file__).resolve().parents[2]
# `curl ... -d '<json>'`, the body possibly over several lines
BODY = re.compile(r"curl [^\n]*?-d '(\{.*?\})'", re.DOTALL)
# every use case package the repository ships (a fork may have deleted the examples)
SHIPPED = sorted(
    path.parent.name
    for path in (ROOT / "usecases").glob("*/__init__.py")
    if not path.parent.name.startswith("_")
)


def readme_bodies() -> list[dict]:
    text = (ROOT / "README.md").read_text(encoding="utf-8").replace("\\\n", "")
    return [json.loads(match) for match in BODY.findall(text)]


def shipped_by_items_field() -> dict[str, list]:
    by_field: dict[str, list] = {}
    for name in SHIPPED:
        usecase = load(name)
        by_field.setdefault(usecase.request.items_field, []).append(usecase)
    return by_field


def test_the_readme_has_example_requests() -> None:
    assert readme_bodies(), "no `curl ... -d '{...}'` request in the README"


@pytest.mark.parametrize("body", readme_bodies(), ids=lambda body: next(iter(body)))
def test_each_readme_request_is_valid_and_names_its_rows(body: dict) -> None:
    # The items, and at most the flag asking for explanations (`explain`).
    (field,) = [key for key in body if key != "explain"]
    assert body.get("explain", False) in (True, False)
    usecases = shipped_by_items_field().get(field)
    if usecases is None:  # a use case the README has a team generate (`make new-usecase`)
        assert field == "items", f"no shipped use case takes {field!r}"
        return
    for usecase in usecases:
        for item in body[field]:
            row = usecase.request.row(usecase.request.item.model_validate(item))
            assert row.get(usecase.examples.row_id), (
                f"{usecase.name}: the README's item {item} carries no {usecase.examples.row_id}"
            )
