"""A release is code plus model: on the trained platform, packaging twice builds once, and a
change to the code alone (a request field, a transform, a pinned requirement) makes a new
Bento of the same model version. The package stage builds from a copy of the files a Bento
holds (its module's ROOT and BENTOFILE pointed at the copy), so the change is made there."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from configs import handoff
from configs.source import served_files
from pipelines import package
from pipelines.chain import run_chain
from tests.conftest import platform_settings
from tests.lake_helpers import problems

# One change of each kind a team ships without a new model: (file, text, replacement).
CODE_CHANGES = {
    "a request field": (
        "usecases/synthetic/request.py",
        "facility_id: str = Field(min_length=1, max_length=8,",
        "facility_id: str = Field(min_length=1, max_length=12,",
    ),
    "a transform": (
        "usecases/synthetic/request.py",
        'return f"{meter_id}-{taken.astimezone(UTC):%Y%m%dT%H%MZ}"',
        'return f"{meter_id.upper()}-{taken.astimezone(UTC):%Y%m%dT%H%MZ}"',
    ),
    "a pinned requirement": (
        "serving/requirements.txt",
        "python-json-logger==4.2.0",
        "python-json-logger==4.1.0",
    ),
}


@pytest.fixture
def code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of what a Bento holds, which the package stage builds from."""
    copy = tmp_path / "code"
    spec = yaml.safe_load(package.BENTOFILE.read_text())
    for path in [package.BENTOFILE, *served_files(package.ROOT, spec["include"])]:
        target = copy / path.relative_to(package.ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    bentofile = copy / package.BENTOFILE.relative_to(package.ROOT)
    monkeypatch.setattr(package, "ROOT", copy)
    monkeypatch.setattr(package, "BENTOFILE", bentofile)
    return copy


def test_a_code_only_change_makes_a_new_bento_and_nothing_changed_makes_none(
    platform_trained_root: Path, code: Path, spark
) -> None:
    settings = platform_settings(platform_trained_root)

    def packaged() -> tuple[str, dict[str, str], list[str]]:
        (result,) = run_chain(settings, ("package",), spark=spark)
        assert result.ok, problems([result])
        import bentoml

        tag = result.handoff[handoff.BENTO_TAG_KEY]
        return tag, dict(bentoml.bentos.get(tag).info.labels), result.notes

    first, labels, _ = packaged()
    again, _, notes = packaged()
    assert again == first and "not rebuilt" in notes[0], notes
    assert first.split(":")[1] == labels[handoff.DIGEST_LABEL][: package.VERSION_DIGITS]
    assert labels[handoff.COMMIT_LABEL]  # the commit (or "unknown" outside a checkout)

    tags = {first}
    for kind, (name, text, replacement) in CODE_CHANGES.items():
        path = code / name
        assert text in path.read_text(), f"{kind}: {name} no longer holds {text!r}"
        path.write_text(path.read_text().replace(text, replacement))
        tag, changed, notes = packaged()
        assert tag not in tags, f"{kind} did not make a new Bento: {notes}"
        # the same model, from other code
        assert changed[handoff.VERSION_LABEL] == labels[handoff.VERSION_LABEL]
        assert changed[handoff.DIGEST_LABEL] != labels[handoff.DIGEST_LABEL]
        tags.add(tag)
    # and what the Bento holds is the changed code
    import bentoml

    src = Path(bentoml.bentos.get(tag).path) / "src"
    assert "max_length=12" in (src / "usecases" / "synthetic" / "request.py").read_text()
    # the digest covers exactly the files the Bento holds (BentoML's reading of the patterns)
    spec = yaml.safe_load(package.BENTOFILE.read_text())
    digested = {p.relative_to(code).as_posix() for p in served_files(code, spec["include"])}
    held = {
        p.relative_to(src).as_posix()
        for p in src.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    # beside them BentoML keeps the build's bentofile (the pinned one, digested as the original)
    assert digested == held - {"bentofile.yaml"}
