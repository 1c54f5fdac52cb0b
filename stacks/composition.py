"""Compose the whole platform from the config: one shared stage and one stage per business unit x stage."""

from __future__ import annotations

from dataclasses import dataclass, field

from constructs import Construct

from stacks.pipeline_stack import PipelineStack
from stacks.settings import PlatformConfig, Stage
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
    # CI/CD: "shared" and (business unit, stage) -> the pipeline stack (tooling account) deploying it
    pipelines: dict[str | tuple[str, Stage], PipelineStack] = field(default_factory=dict)


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

    # ---- CI/CD pipelines (tooling account): each deploys one of the stages above from its branch ----
    branches = config.source.branches
    platform.pipelines["shared"] = PipelineStack(
        scope,
        "shared-pipeline",
        config=config,
        name="shared",
        branch=branches.prod,
        deploys=platform.shared,
        environment=None,
    )
    tag_cost_allocation(
        platform.pipelines["shared"],
        business_unit=SHARED_BUSINESS_UNIT,
        stage=SHARED_STAGE,
        cost_center=config.organization.cost_center,
    )
    for (bu, stage), bu_stage in platform.business_unit_stages.items():
        platform.pipelines[(bu, stage)] = PipelineStack(
            scope,
            f"{bu}-{stage.value}-pipeline",
            config=config,
            name=f"{bu}-{stage.value}",
            branch=branches.of(stage),
            deploys=bu_stage,
            environment=bu_stage.environment_spec,
        )
        tag_cost_allocation(
            platform.pipelines[(bu, stage)],
            business_unit=bu,
            stage=stage.value,
            cost_center=bu_stage.environment_spec.business_unit.cost_center,
        )
    return platform
