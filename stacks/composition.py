"""Compose the whole platform from the config: one shared stage and one stage per business unit x stage."""

from __future__ import annotations

from dataclasses import dataclass, field

from constructs import Construct

from stacks.pipeline_stack import Deployment, PipelineStack
from stacks.settings import STAGES, PlatformConfig, Stage
from stacks.stages import (
    SHARED_BUSINESS_UNIT,
    SHARED_STAGE,
    BusinessUnitStage,
    SharedStage,
    tag_cost_allocation,
)


@dataclass
class Platform:
    shared: SharedStage
    business_unit_stages: dict[tuple[str, Stage], BusinessUnitStage] = field(default_factory=dict)
    # CI/CD (tooling account): "dev" | "preprod" | "prod" -> the pipeline of that stage's branch, deploying
    # every business unit's environment of the stage in waves; prod's first wave is the shared stage
    pipelines: dict[str, PipelineStack] = field(default_factory=dict)


def pipeline_stack_name(config: PlatformConfig, name: str) -> str:
    """Construct id = stack name, so `cdk deploy '<prefix>-*-pipeline'` selects exactly the pipelines."""
    return f"{config.organization.prefix}-{name}-pipeline"


def build_platform(scope: Construct, config: PlatformConfig) -> Platform:
    platform = Platform(shared=SharedStage(scope, "shared", config=config))
    for environment in config.environments():
        key = (environment.business_unit.name, environment.stage)
        platform.business_unit_stages[key] = BusinessUnitStage(
            scope,
            f"{environment.business_unit.name}-{environment.stage.value}",
            config=config,
            environment=environment,
            shared_network=platform.shared.networks.get(environment.region),
        )

    # ---- CI/CD pipelines (tooling account): one per branch, so a push synthesizes once ----
    # The shared stage rides on the main branch's pipeline as its first wave, behind its own approval: a
    # second pipeline on main would synthesize the same commit twice (docs/cicd.md, "Synths per push").
    branches = config.source.branches
    for stage in STAGES:
        platform.pipelines[stage.value] = PipelineStack(
            scope,
            pipeline_stack_name(config, stage.value),
            config=config,
            name=stage.value,
            branch=branches.of(stage),
            deployments=[
                Deployment(bu_stage, bu_stage.environment_spec)
                for (_, of_stage), bu_stage in platform.business_unit_stages.items()
                if of_stage is stage
            ],
            stage=stage,
            shared=Deployment(platform.shared, None) if stage is Stage.PROD else None,
        )
    # The pipelines are shared by every business unit: they carry the shared cost allocation tags.
    for pipeline in platform.pipelines.values():
        tag_cost_allocation(
            pipeline,
            business_unit=SHARED_BUSINESS_UNIT,
            stage=SHARED_STAGE,
            cost_center=config.organization.cost_center,
        )
    return platform
