"""Fixtures shared by the end-to-end modules: the whole chain trained once, and the champion
served over HTTP once, for every module that only reads them (tests that change anything work
on a copy, or put back what they changed).

What these tests run in-process (the service class, the release's smoke check) loads the
platform's own use case, whatever the shell says (`make` exports its default use case).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from configs.settings import USECASE_VARIABLE
from pipelines.chain import CHAIN, run_chain
from tests.conftest import PLATFORM_USECASE, platform_overrides, platform_settings
from tests.lake_helpers import problems
from tests.serving_helpers import serving

os.environ[USECASE_VARIABLE] = PLATFORM_USECASE


@pytest.fixture(scope="session")
def platform_trained_root(tmp_path_factory: pytest.TempPathFactory, spark) -> Path:
    """The whole chain run once on the platform's own use case: a champion, materialized
    features, a Bento."""
    root = tmp_path_factory.mktemp("platform-trained")
    results = run_chain(platform_settings(root), CHAIN, spark=spark)
    assert all(r.ok for r in results), problems(results)
    return root


@pytest.fixture(scope="session")
def served(platform_trained_root: Path) -> Iterator[tuple[str, Path]]:
    """`python -m serving` over the platform's champion: (its URL, its log file)."""
    with serving(platform_trained_root, platform_overrides(platform_trained_root)) as (
        url,
        _,
        log_path,
    ):
        yield url, log_path


@pytest.fixture(scope="session")
def server(served: tuple[str, Path]) -> str:
    return served[0]
