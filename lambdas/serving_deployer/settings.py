"""GPU serving settings: one section (`serving:`) of a business unit's config.

The serving stack passes `ServingSettings.model_dump_json()` to the deployer Lambda in the
`SERVING_SETTINGS` environment variable; the Lambda parses it back with this same model
(stacks/settings/serving.py re-exports it and adds the region and price checks that only synth needs).
Every field has a default, so a business unit that omits the section still works.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from serving_runtime.lmi import LmiSettings

StageName = Literal["dev", "preprod", "prod"]
InstanceType = Annotated[str, Field(pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")]


class ServingMode(StrEnum):
    # One SageMaker multi-model endpoint on GPU instances; each model is an artifact under a prefix,
    # loaded on first call (TargetModel). The GPU multi-model container is NVIDIA Triton.
    MULTI_MODEL_ENDPOINT = "multi_model_endpoint"
    # One base-model inference component plus one adapter component per fine-tuned model (LoRA);
    # copies and instances may scale to zero.
    INFERENCE_COMPONENTS = "inference_components"


class ServingAlarms(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    errors_per_5_minutes: Annotated[int, Field(ge=1)] = Field(
        default=5, description="5XX invocation errors in 5 minutes that raise the alarm"
    )
    latency_p90_ms: Annotated[int, Field(ge=1)] = Field(
        default=3000, description="p90 model latency (milliseconds) that raises the alarm"
    )
    gpu_memory_percent: Annotated[float, Field(gt=0, le=100)] = Field(
        default=90.0, description="average GPU memory utilization (percent) that raises the alarm"
    )


class ServingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    stages: list[StageName] = Field(
        default_factory=lambda: list[StageName](["preprod", "prod"]),
        description="stages that get a GPU endpoint",
    )
    mode: ServingMode = ServingMode.INFERENCE_COMPONENTS
    instance_type: InstanceType = "ml.g5.2xlarge"
    initial_instances: Annotated[int, Field(ge=1, le=100)] = 1
    min_capacity: Annotated[int, Field(ge=0, le=100)] = Field(
        default=0,
        description="autoscaling minimum: instances (multi_model_endpoint, at least 1) or base-model "
        "copies (inference_components, 0 scales to zero)",
    )
    max_capacity: Annotated[int, Field(ge=1, le=100)] = 2
    scaling_target: Annotated[float, Field(gt=0)] = Field(
        default=4.0,
        description="target invocations per instance per minute (multi_model_endpoint) or concurrent "
        "requests per copy (inference_components)",
    )
    image: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._/-]*:[A-Za-z0-9._-]+$")] | None = Field(
        default=None,
        description="repository:tag in the region's AWS Deep Learning Containers registry; defaults to "
        "Triton for multi_model_endpoint and LMI for inference_components",
    )
    image_uri: str | None = Field(
        default=None,
        description="a full image URI (e.g. an ECR repository in the tooling account); wins over image",
    )
    base_model_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9._\-/]+/$")] = Field(
        default="base-models/default/",
        description="key prefix of the base model in the serving model bucket (inference_components)",
    )
    accelerators_per_copy: Annotated[int, Field(ge=1, le=8)] = 1
    memory_per_copy_mb: Annotated[int, Field(ge=1024)] = 16384
    models_per_instance: Annotated[int, Field(ge=1)] = Field(
        default=50, description="fine-tuned models one instance serves at the target load (for make cost)"
    )
    data_capture: bool = False
    data_capture_percent: Annotated[int, Field(ge=1, le=100)] = 10
    test_payload: str = Field(
        default='{"inputs": "ping", "parameters": {"max_new_tokens": 1}}',
        description="JSON body of the deployer's test invocation",
    )
    alarms: ServingAlarms = ServingAlarms()
    lmi: LmiSettings = Field(
        default=LmiSettings(),
        description="LMI engine and LoRA limits of the base component (inference_components; docs/serving.md)",
    )

    @model_validator(mode="after")
    def _capacity_is_consistent(self) -> ServingSettings:
        if self.min_capacity > self.max_capacity:
            raise ValueError(f"min_capacity: {self.min_capacity} is above max_capacity {self.max_capacity}")
        if not self.min_capacity <= self.initial_instances <= max(self.max_capacity, 1):
            raise ValueError(
                f"initial_instances: must lie between min_capacity ({self.min_capacity}) and "
                f"max_capacity ({self.max_capacity})"
            )
        if self.mode is ServingMode.MULTI_MODEL_ENDPOINT and self.min_capacity < 1:
            raise ValueError(
                "min_capacity: a multi_model_endpoint cannot scale to zero; use 1 or more, "
                "or mode inference_components"
            )
        if len(set(self.stages)) != len(self.stages):
            raise ValueError("stages: each stage may be listed once")
        return self

    @property
    def default_image(self) -> str:
        if self.image is not None:
            return self.image
        if self.mode is ServingMode.MULTI_MODEL_ENDPOINT:
            return "sagemaker-tritonserver:24.09-py3"
        return "djl-inference:0.31.0-lmi13.0.0-cu124"
