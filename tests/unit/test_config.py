"""The typed config: overlays, ${VAR} placeholders, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from configs import ConfigError, available_envs, load_settings
from configs.settings import CONFIG_DIR
from tests.conftest import PLATFORM_USECASE


def write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text)


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    write(
        tmp_path,
        "base.yaml",
        "usecase: synthetic\nspark:\n  shuffle_partitions: 8\ncollect:\n  max_quarantined_share: 0.0\n",
    )
    write(tmp_path, "local.yaml", "spark:\n  master: local[2]\n")
    return tmp_path


def test_every_shipped_environment_loads() -> None:
    assert set(available_envs()) >= {"local", "services", "aws"}
    for env in ("local", "services"):
        assert load_settings(env, environ={}, usecase=PLATFORM_USECASE).env == env
    aws = load_settings(
        "aws",
        usecase=PLATFORM_USECASE,
        environ={
            "MLOPS_LANDING_BUCKET": "landing-b",
            "MLOPS_LAKE_BUCKET": "lake-b",
            "MLOPS_REDIS_ENDPOINT": "redis.internal",
            "MLOPS_REDIS_USER": "feast-writer",
            "MLOPS_REDIS_AUTH_TOKEN": "token",
            "MLFLOW_TRACKING_URI": "http://mlflow.internal",
        },
    )
    assert aws.paths.lake == "s3://lake-b/lake"
    assert aws.spark.master == ""  # spark-submit decides on EMR
    assert aws.features.offline_store == {"type": "spark"}
    assert aws.features.online_store["connection_string"].startswith("redis.internal:6379,ssl=true")
    assert aws.features.registry["path"] == "s3://lake-b/feast/registry.db"


def test_the_aws_profile_names_what_it_misses() -> None:
    with pytest.raises(ConfigError, match="MLOPS_LAKE_BUCKET is not set"):
        load_settings("aws", environ={"MLOPS_LANDING_BUCKET": "b"}, usecase=PLATFORM_USECASE)


def test_overlay_merges_into_base(config_dir: Path) -> None:
    settings = load_settings("local", config_dir=config_dir, environ={})
    assert settings.spark.master == "local[2]"
    assert settings.spark.shuffle_partitions == 8  # from base, untouched by the overlay


def test_env_variable_picks_the_overlay(config_dir: Path) -> None:
    write(config_dir, "services.yaml", "spark:\n  master: local[1]\n")
    settings = load_settings(config_dir=config_dir, environ={"MLOPS_ENV": "services"})
    assert (settings.env, settings.spark.master) == ("services", "local[1]")


def test_placeholders_are_filled_from_the_environment(config_dir: Path) -> None:
    write(config_dir, "local.yaml", "spark:\n  master: ${MASTER}\n  app_name: ${APP:-fallback}\n")
    settings = load_settings("local", config_dir=config_dir, environ={"MASTER": "local[3]"})
    assert (settings.spark.master, settings.spark.app_name) == ("local[3]", "fallback")


def test_missing_variable_names_the_key_and_the_variable(config_dir: Path) -> None:
    write(config_dir, "local.yaml", "spark:\n  master: ${NOT_SET_ANYWHERE}\n")
    with pytest.raises(ConfigError, match=r"spark\.master: environment variable NOT_SET_ANYWHERE"):
        load_settings("local", config_dir=config_dir, environ={})


def test_unknown_key_is_refused_with_its_path(config_dir: Path) -> None:
    write(config_dir, "local.yaml", "spark:\n  mastr: local[2]\n")
    with pytest.raises(ConfigError, match=r"spark\.mastr: unknown key"):
        load_settings("local", config_dir=config_dir, environ={})


def test_wrong_value_is_refused_with_its_path(config_dir: Path) -> None:
    write(config_dir, "local.yaml", "collect:\n  max_quarantined_share: 1.5\n")
    with pytest.raises(
        ConfigError, match=r"collect\.max_quarantined_share: .*less than or equal to 1"
    ):
        load_settings("local", config_dir=config_dir, environ={})


def test_inverted_range_in_a_quality_rule_is_refused(config_dir: Path) -> None:
    write(
        config_dir,
        "local.yaml",
        "quality:\n  tables:\n    t:\n      ranges:\n        x: {min: 5, max: 1}\n",
    )
    with pytest.raises(ConfigError, match=r"quality\.tables\.t\.ranges\.x"):
        load_settings("local", config_dir=config_dir, environ={})


def test_unknown_environment_lists_the_available_ones(config_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown environment 'prod'.*available: local"):
        load_settings("prod", config_dir=config_dir, environ={})


def test_invalid_yaml_names_the_file(config_dir: Path) -> None:
    write(config_dir, "local.yaml", "spark: [unclosed\n")
    with pytest.raises(ConfigError, match=r"local\.yaml is not valid YAML"):
        load_settings("local", config_dir=config_dir, environ={})


def test_relative_paths_resolve_against_the_working_directory(
    config_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings("local", config_dir=config_dir, environ={})
    assert settings.paths.lake == str(tmp_path / "data" / "lake")


def test_overrides_are_validated_too() -> None:
    settings = load_settings("local", environ={}, usecase=PLATFORM_USECASE)
    assert (
        settings.with_overrides(
            {"collect": {"max_quarantined_share": 0.25}}
        ).collect.max_quarantined_share
        == 0.25
    )
    with pytest.raises(ConfigError, match=r"land\.months"):
        settings.with_overrides({"land": {"months": ["2013-13"]}})


def test_shipped_quality_rules_cover_every_source() -> None:
    from usecases import load

    settings = load_settings("local", environ={}, usecase=PLATFORM_USECASE)
    tables = settings.quality.tables
    assert {source.name for source in load(settings.usecase).sources} <= set(tables)
    assert CONFIG_DIR.name == "configs"


def test_overrides_from_the_environment_are_merged_last(config_dir: Path) -> None:
    environ = {"MLOPS_OVERRIDES": '{"spark": {"master": "local[4]"}}'}
    assert load_settings("local", config_dir=config_dir, environ=environ).spark.master == "local[4]"
    with pytest.raises(ConfigError, match="MLOPS_OVERRIDES is not valid JSON"):
        load_settings("local", config_dir=config_dir, environ={"MLOPS_OVERRIDES": "{nope"})


def test_an_overlay_naming_another_backend_replaces_the_section() -> None:
    local = load_settings("local", environ={}, usecase=PLATFORM_USECASE)
    redis = local.with_overrides(
        {"features": {"online_store": {"type": "redis", "connection_string": "h:1"}}}
    )
    assert redis.features.online_store == {"type": "redis", "connection_string": "h:1"}
    # the same back end still merges key by key
    moved = local.with_overrides({"features": {"online_store": {"path": "/elsewhere/online.db"}}})
    assert moved.features.online_store == {"type": "sqlite", "path": "/elsewhere/online.db"}


def test_the_services_profile_uses_postgres_redis_and_a_tracking_server() -> None:
    settings = load_settings(
        "services",
        environ={"MLFLOW_TRACKING_URI": "http://mlflow:5000"},
        usecase=PLATFORM_USECASE,
    )
    assert settings.mlflow.tracking_uri == "http://mlflow:5000"
    assert settings.mlflow.artifact_location is None  # the server's proxied store
    assert settings.mlflow.server is not None
    assert settings.mlflow.server.backend_store_uri.startswith("postgresql+psycopg://")
    assert Path(settings.mlflow.server.artifacts_destination).is_absolute()
    assert settings.features.registry["registry_type"] == "sql"
    assert settings.features.registry["path"].startswith("postgresql+psycopg://")
    assert settings.features.online_store["type"] == "redis"
    assert "path" not in settings.features.online_store


def test_a_missing_or_unknown_use_case_is_named(config_dir: Path) -> None:
    write(config_dir, "base.yaml", "spark:\n  shuffle_partitions: 8\n")
    with pytest.raises(ConfigError, match="no use case: set `usecase`"):
        load_settings("local", config_dir=config_dir, environ={})
    with pytest.raises(ConfigError, match=r"unknown use case 'nope'.*available: .*synthetic"):
        load_settings("local", config_dir=config_dir, environ={"MLOPS_USECASE": "nope"})


def test_an_endpoint_opened_to_the_internet_needs_a_certificate() -> None:
    """`aws.serving.public` without a certificate is refused at load, naming what to set: an
    opened endpoint is never plain HTTP (its API keys would travel in the clear)."""
    from configs.settings import AwsServingConfig

    assert AwsServingConfig().public is False
    with pytest.raises(ValueError, match=r"public.*certificate_arn"):
        AwsServingConfig(public=True)
    opened = AwsServingConfig(public=True, certificate_arn="arn:aws:acm:eu-west-1:1:certificate/x")
    assert opened.public


def test_the_overload_queue_budget_is_at_most_the_burst_one() -> None:
    settings = load_settings("local", environ={}, usecase=PLATFORM_USECASE)
    serving = settings.with_overrides({"serving": {"overload_queue_ms": 5}}).serving
    assert (serving.overload_queue_ms, serving.max_queue_ms) == (5, 100)
    with pytest.raises(ConfigError, match=r"overload_queue_ms \(150\).*max_queue_ms \(100\)"):
        settings.with_overrides({"serving": {"overload_queue_ms": 150}})
