"""Configuration: the YAML files in this folder and the typed schema that validates them."""

from configs.settings import ConfigError, Settings, available_envs, load_settings

__all__ = ["ConfigError", "Settings", "available_envs", "load_settings"]
