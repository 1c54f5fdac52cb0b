"""Compose the whole platform from the config: one shared stage and one stage per business unit x stage."""

from __future__ import annotations

from dataclasses import dataclass, field

from constructs import Construct

from stacks.settings import PlatformConfig, Stage
from stacks.stages import BusinessUnitStage, SharedStage


@dataclass
class Platform:
    shared: SharedStage
    business_unit_stages: dict[tuple[str, Stage], BusinessUnitStage] = field(default_factory=dict)


def build_platform(scope: Construct, config: PlatformConfig) -> Platform:
    platform = Platform(shared=SharedStage(scope, "shared", config=config))
    for environment in config.environments():
        key = (environment.business_unit.name, environment.stage)
        platform.business_unit_stages[key] = BusinessUnitStage(
            scope,
            f"{environment.business_unit.name}-{environment.stage.value}",
            config=config,
            environment=environment,
        )
    return platform
