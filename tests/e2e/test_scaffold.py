"""`make new-usecase`: the generated use case, of each kind of target, passes its own tests,
and the platform trains, promotes and packages it with no change to any generic module."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from configs import load_settings
from models.tracking import CHAMPION, Tracker
from pipelines.chain import CHAIN, run_chain
from tests.conftest import layout_overrides
from tests.lake_helpers import problems
from usecases import scaffold

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=sorted(scaffold.TASKS))
def new_usecase(request: pytest.FixtureRequest) -> Iterator[str]:
    """A use case of each task created as `make new-usecase TASK=<task>` creates it, removed
    afterwards."""
    name = f"scaffolded_{uuid.uuid4().hex[:6]}"
    target = scaffold.create(name, task=request.param)
    try:
        yield name
    finally:
        shutil.rmtree(target)


def test_a_new_usecase_passes_its_own_tests(new_usecase: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"usecases/{new_usecase}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "3 passed" in done.stdout


def test_a_new_usecase_trains_promotes_and_packages(
    new_usecase: str, tmp_path: Path, spark
) -> None:
    settings = load_settings("local", environ={}, usecase=new_usecase).with_overrides(
        layout_overrides(tmp_path)
    )
    results = run_chain(settings, CHAIN, spark=spark)
    assert all(r.ok for r in results), problems(results)
    assert [r.stage for r in results] == list(CHAIN)
    tracker = Tracker(settings)
    champion = tracker.alias(CHAMPION)
    assert champion is not None and champion.version == "1"
    assert settings.names.registered_model == new_usecase
    # judged by its own task's metrics
    primary = settings.promotion.primary_metric
    assert f"test_{primary}" in tracker.run_metrics(champion.run_id)


def test_a_bad_name_is_refused_with_the_rule(tmp_path: Path) -> None:
    with pytest.raises(scaffold.ScaffoldError, match="lower-case letters"):
        scaffold.create("Bad-Name", root=tmp_path)
    scaffold.create("fine_name", root=tmp_path)
    with pytest.raises(scaffold.ScaffoldError, match="exists already"):
        scaffold.create("fine_name", root=tmp_path)
    with pytest.raises(scaffold.ScaffoldError, match="one of binary, multiclass, regression"):
        scaffold.create("other_name", root=tmp_path, task="ranking")
