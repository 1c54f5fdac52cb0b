"""The LMI (Large Model Inference) container's configuration for the base-model inference component.

LMI reads `OPTION_*` environment variables as its `serving.properties`. With vLLM as the rolling-batch
engine and LoRA enabled, every adapter inference component on the base component is loaded by vLLM's
LoRA support: up to `max_loras` distinct adapters in one batch (batched LoRA kernels, not a loop over
adapters), up to `max_cpu_loras` kept in host memory, least recently used out. `max_lora_rank` is the
largest rank vLLM accepts; the deployer refuses an adapter above it before it reaches the endpoint
(`packaging.build_serving_package`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from serving_runtime.adapter_format import LMI_RANKS

BASE_MODEL_DIR = "/opt/ml/model"  # where SageMaker mounts the base component's model data


class LmiSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: Literal["vllm", "lmi-dist"] = Field(default="vllm", description="LMI rolling-batch engine")
    max_lora_rank: Annotated[int, Field(description=f"largest adapter rank served; one of {LMI_RANKS}")] = 16
    lora_target_modules: tuple[str, ...] = Field(
        default=("q_proj", "k_proj", "v_proj", "o_proj"),
        min_length=1,
        description="projections the base component applies adapters to (the fine-tuning jobs train these); "
        "the deployer refuses an adapter that targets others",
    )
    max_loras: Annotated[int, Field(ge=1, le=256)] = Field(
        default=32, description="distinct adapters in one batch, each kept in a GPU slot"
    )
    max_cpu_loras: Annotated[int, Field(ge=1, le=8192)] = Field(
        default=1024, description="adapters kept in host memory and paged into GPU slots on demand"
    )
    max_model_len: Annotated[int, Field(ge=128, le=131072)] = 4096
    max_rolling_batch_size: Annotated[int, Field(ge=1, le=1024)] = 64
    dtype: Literal["bf16", "fp16"] = "bf16"

    @model_validator(mode="after")
    def _check(self) -> LmiSettings:
        if self.max_lora_rank not in LMI_RANKS:
            raise ValueError(
                f"max_lora_rank: {self.max_lora_rank} is not a rank vLLM serves; use one of {list(LMI_RANKS)}"
            )
        if self.max_cpu_loras < self.max_loras:
            raise ValueError(f"max_cpu_loras: must be at least max_loras ({self.max_loras})")
        return self


def lmi_environment(settings: LmiSettings, *, tensor_parallel_degree: int) -> dict[str, str]:
    """Environment of the base model's container (`serving.properties` as LMI's OPTION_* variables)."""
    return {
        "HF_MODEL_ID": BASE_MODEL_DIR,
        "HF_HUB_OFFLINE": "1",  # network isolation: the base weights come from the bucket, never a hub
        "OPTION_ROLLING_BATCH": settings.engine,
        "OPTION_TENSOR_PARALLEL_DEGREE": str(tensor_parallel_degree),
        "OPTION_DTYPE": settings.dtype,
        "OPTION_MAX_MODEL_LEN": str(settings.max_model_len),
        "OPTION_MAX_ROLLING_BATCH_SIZE": str(settings.max_rolling_batch_size),
        "OPTION_ENABLE_LORA": "true",
        "OPTION_MAX_LORAS": str(settings.max_loras),
        "OPTION_MAX_LORA_RANK": str(settings.max_lora_rank),
        "OPTION_MAX_CPU_LORAS": str(settings.max_cpu_loras),
    }
