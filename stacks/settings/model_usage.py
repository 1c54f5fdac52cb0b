"""Cost attribution and online evaluation of one business unit: `business_units[].model_usage`.

Every key has a default: a business unit without the section gets one Bedrock application inference
profile per model and stage, usage records for every /invoke, and Bedrock model invocation logging; online
evaluation starts once `online_evaluation.sample_rate` is above 0 (it needs `evaluation.judge.model`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

StageName = Literal["dev", "preprod", "prod"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InvocationLogging(_Strict):
    """Bedrock model invocation logging into the stage's encrypted invocation-log bucket."""

    enabled: bool = True
    text: bool = Field(default=True, description="log prompts and completions of text models")
    image: bool = False
    embedding: bool = False
    video: bool = False


class OnlineEvaluation(_Strict):
    """A sample of production /invoke exchanges judged by the business unit's evaluation judge."""

    sample_rate: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.0, description="share of answered /invoke requests sent to the judge; 0 = off"
    )
    stages: list[StageName] = Field(default_factory=lambda: list[StageName](["preprod", "prod"]))
    low_score_below: Annotated[float, Field(ge=1, le=10)] = Field(
        default=5.0, description="samples the judge scores below this go to the human review queue"
    )
    batch_size: Annotated[int, Field(ge=1, le=10)] = Field(
        default=5, description="samples per judge invocation (each is one or more judge calls)"
    )

    @field_validator("stages")
    @classmethod
    def _unique(cls, stages: list[str]) -> list[str]:
        if len(set(stages)) != len(stages):
            raise ValueError("stages: each stage at most once")
        return stages


class ModelUsageSettings(_Strict):
    inference_profiles: Literal["stage", "use_case"] = Field(
        default="stage",
        description="one application inference profile per model and stage, or also per use case "
        "(the application's use case gets its own profiles, so cost reports split by use case)",
    )
    invocation_logging: InvocationLogging = InvocationLogging()
    online_evaluation: OnlineEvaluation = OnlineEvaluation()
