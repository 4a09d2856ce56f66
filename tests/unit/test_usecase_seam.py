"""The seam between the platform and its use cases holds: no generic module spells a use
case's vocabulary (its tables, columns, entities, views, features, label, request names) in
code, and none imports a use case by name. Comments and docstrings may give examples."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

from usecases import load
from usecases.contract import UseCase

ROOT = Path(__file__).resolve().parents[2]
GENERIC = ("pipelines", "features", "serving", "infra")
USECASES = sorted(
    p.parent.name for p in (ROOT / "usecases").glob("*/__init__.py") if p.parent.name != "_template"
)
# Column names that are the platform's own words too (dates, parts of a timestamp, "name",
# "type", "model") or a programmer's ("temp", "dest", "engine", "tz", "days", "alt" of an image):
# a use case may use them without owning them.
SHARED_WORDS = frozenset(
    {"date", "name", "year", "month", "day", "hour", "minute", "type", "model", "event_timestamp"}
    | {"temp", "dest", "engine", "tz", "alt", "days"}
)


def vocabulary(usecase: UseCase) -> set[str]:
    """The names a use case's contract declares."""
    words = {usecase.name, usecase.examples.table, usecase.examples.row_id}
    words |= {usecase.examples.label, usecase.examples.split_column}
    words |= {usecase.request.items_field, usecase.outcome.score_field}
    words |= {usecase.outcome.decision_field, usecase.request.item.__name__}
    for source in usecase.sources:
        words |= {source.name, *source.columns}
    for entity in usecase.entities:
        words |= {entity.name, entity.join_key}
    for view in usecase.views:
        words |= {view.name, *(f.name for f in view.features)}
    words |= {f.name for f in usecase.request.features}
    return words - SHARED_WORDS


def code_words(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every identifier and string in code: comments and docstrings left out."""
    source = path.read_text(encoding="utf-8")
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(body[0].lineno)
    found = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.NAME or (
            token.type == tokenize.STRING and token.start[0] not in docstrings
        ):
            found.append((token.start[0], token.string))
    return found


def seam_violations(files: list[Path], words: set[str]) -> list[str]:
    pattern = re.compile(r"\b(" + "|".join(sorted(map(re.escape, words))) + r")\b")
    hits = []
    for path in files:
        for line, text in code_words(path):
            for match in pattern.finditer(text):
                where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
                hits.append(f"{where}:{line}: {match.group(1)!r} in {text[:60]}")
    return hits


def generic_files() -> list[Path]:
    return sorted(p for folder in GENERIC for p in (ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("name", USECASES)
def test_no_generic_module_spells_a_use_case_vocabulary(name: str) -> None:
    words = vocabulary(load(name))
    assert seam_violations(generic_files(), words) == []


@pytest.mark.parametrize("name", USECASES)
def test_the_check_finds_a_planted_name(name: str, tmp_path: Path) -> None:
    usecase = load(name)
    word = usecase.examples.row_id
    planted = tmp_path / "planted.py"
    planted.write_text(f'"""A docstring may say {word}."""\n\nKEY = "{word}"  # {word} too\n')
    hits = seam_violations([planted], vocabulary(usecase))
    assert hits == [f'planted.py:3: {word!r} in "{word}"']


def test_no_generic_module_imports_a_use_case_by_name() -> None:
    allowed = {"usecases", "usecases.contract", "usecases.project"}
    for path in generic_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                if module.startswith("usecases"):
                    assert module in allowed, f"{path.relative_to(ROOT)} imports {module}"
