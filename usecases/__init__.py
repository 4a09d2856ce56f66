"""Use cases: one package each (`usecases/<name>/`), found by the name in config.

`contract.py` is the platform's side of the seam; every other folder here is a use case.
"""

from __future__ import annotations

import importlib
import re
from functools import cache

from usecases.contract import UseCase

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@cache
def load(name: str) -> UseCase:
    """The use case declared by `usecases/<name>/__init__.py` as `USECASE`."""
    if not _NAME.match(name):
        raise ValueError(f"use case name {name!r}: lower-case letters, digits and _ only")
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as err:
        if err.name != f"{__name__}.{name}":
            raise
        raise ValueError(
            f"no use case {name!r}: there is no package usecases/{name}/ "
            "(`make new-usecase NAME=<name>` creates one)"
        ) from None
    declared = getattr(module, "USECASE", None)
    if not isinstance(declared, UseCase):
        raise ValueError(f"usecases/{name}/__init__.py must define USECASE, a UseCase")
    if declared.name != name:
        raise ValueError(f"usecases/{name}/ declares the use case {declared.name!r}")
    return declared
