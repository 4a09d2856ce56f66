"""The seam between the platform and its use cases holds: no generic module spells a use
case's vocabulary (its tables, columns, entities, views, features, label, request names) in
code, and none imports a use case by name. Comments and docstrings may give examples."""

from __future__ import annotations

import ast
import io
import re
import shutil
import tokenize
import uuid
from pathlib import Path

import pytest

from usecases import load
from usecases.contract import UseCase

ROOT = Path(__file__).resolve().parents[2]
GENERIC = ("pipelines", "features", "serving", "infra")
USECASES = sorted(
    p.parent.name for p in (ROOT / "usecases").glob("*/__init__.py") if p.parent.name != "_template"
)
# Words a use case may use without owning them: the platform's own (dates, parts of a
# timestamp, "name", "type", "model") or a programmer's ("temp", "dest", "engine", "tz", "days",
# "alt" of an image, "value", "events", "probability").
SHARED_WORDS = frozenset(
    {"date", "name", "year", "month", "day", "hour", "minute", "type", "model", "event_timestamp"}
    | {"temp", "dest", "engine", "tz", "alt", "days", "value", "events", "probability"}
)


def seam_words() -> frozenset[str]:
    """The seam's own words: every identifier of usecases/contract.py's code, and each part of
    it ("items" of `items_field`, "entity", "outcome", "positive", "label", ...): a use case that
    calls its things by the platform's words does not own them."""
    names = {
        text for _, text in code_words(ROOT / "usecases" / "contract.py") if text.isidentifier()
    }
    return frozenset(names | {part for name in names for part in name.lower().split("_") if part})


def vocabulary(usecase: UseCase) -> dict[str, str]:
    """The distinctive names a use case's contract declares, each with where it is declared
    (a key of its `USECASE`)."""
    named: dict[str, str] = {usecase.name: "name"}
    examples = usecase.examples
    for key in ("table", "row_id", "label", "split_column"):
        named.setdefault(getattr(examples, key), f"examples.{key}")
    named.setdefault(usecase.request.items_field, "request.items_field")
    named.setdefault(usecase.request.item.__name__, "request.item")
    named.setdefault(usecase.outcome.score_field, "outcome.score_field")
    named.setdefault(usecase.outcome.decision_field, "outcome.decision_field")
    for source in usecase.sources:
        named.setdefault(source.name, "sources")
        for column in source.columns:
            named.setdefault(column, f"sources.{source.name}.columns")
    for entity in usecase.entities:
        named.setdefault(entity.name, "entities")
        named.setdefault(entity.join_key, f"entities.{entity.name}.join_key")
    for view in usecase.views:
        named.setdefault(view.name, "views")
        for feature in view.features:
            named.setdefault(feature.name, f"views.{view.name}.features")
    for feature in usecase.request.features:
        named.setdefault(feature.name, "request.features")
    shared = SHARED_WORDS | seam_words()
    return {word: where for word, where in named.items() if word and word.lower() not in shared}


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


def seam_violations(files: list[Path], words: dict[str, str], usecase: str = "") -> list[str]:
    """Each place generic code spells one of `words`, and which name of the use case to
    change (or which line to take it from the use case's declaration instead)."""
    pattern = re.compile(r"\b(" + "|".join(sorted(map(re.escape, words))) + r")\b")
    hits = []
    for path in files:
        for line, text in code_words(path):
            for match in pattern.finditer(text):
                where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
                word = match.group(1)
                hits.append(
                    f"{where}:{line}: {word!r} in {text[:60]} is use case {usecase}'s "
                    f"(usecases/{usecase}/__init__.py: {words[word]}): read it from the use "
                    "case's declaration here, or, if it is a generic word, rename it there"
                )
    return hits


def generic_files() -> list[Path]:
    return sorted(p for folder in GENERIC for p in (ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("name", USECASES)
def test_no_generic_module_spells_a_use_case_vocabulary(name: str) -> None:
    words = vocabulary(load(name))
    assert seam_violations(generic_files(), words, name) == []


@pytest.mark.parametrize("name", USECASES)
def test_the_check_finds_a_planted_name(name: str, tmp_path: Path) -> None:
    usecase = load(name)
    word = usecase.examples.row_id
    planted = tmp_path / "planted.py"
    planted.write_text(f'"""A docstring may say {word}."""\n\nKEY = "{word}"  # {word} too\n')
    hits = seam_violations([planted], vocabulary(usecase), name)
    assert len(hits) == 1 and hits[0].startswith(f'planted.py:3: {word!r} in "{word}" is use case')
    assert f"usecases/{name}/__init__.py: examples.row_id" in hits[0]


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


def test_a_scaffolded_use_case_passes_the_seam_and_the_check_as_generated() -> None:
    """What `make new-usecase` writes, untouched, owns none of the platform's words and
    agrees with its own config (its own tests run with the rest: `testpaths`)."""
    from configs import load_settings
    from usecases import scaffold
    from usecases.project import bind

    name = f"seam_{uuid.uuid4().hex[:6]}"
    target = scaffold.create(name)
    try:
        words = vocabulary(load(name))
        assert seam_violations(generic_files(), words, name) == []
        bind(load_settings("local", environ={}, usecase=name))
    finally:
        shutil.rmtree(target)
