"""Typed platform configuration: the pydantic models and the loader."""

from stacks.settings.loader import DEFAULT_CONFIG, ConfigError, load_config, parse_config
from stacks.settings.platform import (
    STAGES,
    BusinessUnit,
    EnvironmentSpec,
    PlatformConfig,
    Stage,
    StageSettings,
)

__all__ = [
    "DEFAULT_CONFIG",
    "STAGES",
    "BusinessUnit",
    "ConfigError",
    "EnvironmentSpec",
    "PlatformConfig",
    "Stage",
    "StageSettings",
    "load_config",
    "parse_config",
]
