"""Tooling account settings: image repository lifecycle and the CI/CD pipelines. Platform-level, not per BU.

Every key has a default, so a config without a `tooling` section gets: keep the newest 30 tagged images,
drop untagged images after 7 days, run the evaluation gate after every preprod deployment and give it an
hour, keep pipeline artifacts for 30 days, deploy at most 3 business units at once per wave.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class ImageRepositorySettings(BaseModel):
    """Lifecycle of the training and inference image repositories (ECR)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    keep_tagged_images: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=30, description="newest tagged images kept per repository; older ones expire"
    )
    untagged_expiry_days: Annotated[int, Field(ge=1, le=365)] = Field(
        default=7, description="days after which an untagged image (a failed or replaced push) expires"
    )


class PipelineSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    evaluation_gate: bool = Field(
        default=True,
        description="run the evaluation gate (role <env>-evaluation-gate in the preprod account) after preprod",
    )
    evaluation_gate_timeout_minutes: Annotated[int, Field(ge=5, le=480)] = Field(
        default=60,
        description="how long the gate waits for the evaluation state machine (CodeBuild: 8 h max)",
    )
    artifact_expiry_days: Annotated[int, Field(ge=1, le=3650)] = Field(
        default=30, description="days pipeline artifacts (source zips, cloud assemblies) are kept"
    )
    max_parallel_deployments: Annotated[int, Field(ge=1, le=10)] = Field(
        default=3,
        description=(
            "business units one pipeline wave deploys at once; a wave also stays within CodePipeline's "
            "50 actions per stage"
        ),
    )


class ToolingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    images: ImageRepositorySettings = ImageRepositorySettings()
    pipelines: PipelineSettings = PipelineSettings()
