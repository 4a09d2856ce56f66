"""The unit tier runs on the platform's own use case, whatever the shell's environment says."""

from __future__ import annotations

import pytest

from configs.settings import USECASE_VARIABLE
from tests.conftest import PLATFORM_USECASE


@pytest.fixture(autouse=True)
def platform_usecase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(USECASE_VARIABLE, PLATFORM_USECASE)
