"""Fine-tuning pipeline settings: the `fine_tuning:` section of a business unit's config.

Only synth reads them (they become the SageMaker Pipeline definition and its parameter defaults), so the
model lives here rather than beside a Lambda.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from serving_deployer.settings import InstanceType, StageName

# Metrics the evaluation engine computes for free text (lambdas/evaluation/metrics.py: text_metrics).
TEXT_METRICS = (
    "exact_match",
    "quasi_exact_match",
    "token_f1",
    "rouge1",
    "rouge2",
    "rougeL",
    "bleu",
    "meteor",
)


# The jobs call transformers with `dtype=` and `eval_strategy=` (4.56 and later), and their wheels are
# downloaded for Python 3.12 (stacks/blocks/job_deps.py).
MIN_TRANSFORMERS = (4, 56)
JOB_PYTHON_TAG = "py312"


def check_training_image(image: str) -> None:
    """A Hugging Face DLC tag must name transformers >= 4.56 and py312; other repositories are the owner's call."""
    repository, _, tag = image.partition(":")
    if not repository.endswith("huggingface-pytorch-training"):
        return
    found = re.search(r"transformers(\d+)\.(\d+)", tag)
    if found is None or (int(found.group(1)), int(found.group(2))) < MIN_TRANSFORMERS:
        raise ValueError(
            f"training_image: {tag} has transformers older than {'.'.join(map(str, MIN_TRANSFORMERS))} "
            "(or none in its tag); the training script needs `dtype` and `eval_strategy`"
        )
    if f"-{JOB_PYTHON_TAG}-" not in f"-{tag}-":
        raise ValueError(
            f"training_image: {tag} is not a {JOB_PYTHON_TAG} image; the job wheels are built for it"
        )


class LoraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rank: Annotated[int, Field(ge=1, le=256)] = 16
    alpha: Annotated[int, Field(ge=1, le=512)] = 32
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.05
    epochs: Annotated[int, Field(ge=1, le=50)] = 3
    learning_rate: Annotated[float, Field(gt=0, lt=1)] = 2e-4
    early_stopping_patience: Annotated[int, Field(ge=0, le=20)] = Field(
        default=0, description="stop after this many epochs without a lower validation loss (0: off)"
    )


class FineTuningSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    stages: list[StageName] = Field(
        default_factory=lambda: list[StageName](["dev"]), description="stages that get the pipeline"
    )
    training_instance_type: InstanceType = "ml.g5.2xlarge"
    training_instance_count: Annotated[int, Field(ge=1, le=8)] = 1
    evaluation_instance_type: InstanceType = "ml.g5.xlarge"
    processing_instance_type: InstanceType = Field(
        default="ml.m5.xlarge", description="CPU instance that formats the tenant's data"
    )
    volume_size_gb: Annotated[int, Field(ge=10, le=1024)] = 100
    max_runtime_hours: Annotated[int, Field(ge=1, le=120)] = 12
    use_spot: bool = Field(default=False, description="managed spot training; checkpoints go to S3")
    max_wait_hours: Annotated[int, Field(ge=1, le=120)] = 24
    training_image: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._/-]*:[A-Za-z0-9._-]+$")] = Field(
        default="huggingface-pytorch-training:2.9.0-transformers5.3.0-gpu-py312-cu130-ubuntu22.04",
        description="repository:tag of a Hugging Face training DLC: transformers >= 4.56, Python 3.12",
    )
    image_uri: str | None = Field(
        default=None, description="full training/processing image URI; wins over training_image"
    )
    base_model_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9._\-/]+/$")] = Field(
        default="base-models/default/", description="key prefix of the base model in the fine-tuning bucket"
    )
    held_out_fraction: Annotated[float, Field(gt=0, lt=0.5)] = 0.1
    evaluation_batch_size: Annotated[int, Field(ge=1, le=256)] = Field(
        default=16, description="held-out prompts generated per forward pass in the evaluate step"
    )
    lora: LoraSettings = LoraSettings()
    thresholds: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=lambda: {"token_f1": 0.5, "rougeL": 0.4},
        description="minimum held-out metric values a model needs to be registered",
    )
    approval_status: Literal["PendingManualApproval"] = "PendingManualApproval"

    @model_validator(mode="after")
    def _check(self) -> FineTuningSettings:
        check_training_image(self.training_image)
        unknown = sorted(set(self.thresholds) - set(TEXT_METRICS))
        if unknown:
            raise ValueError(
                f"thresholds: unknown metric(s) {', '.join(unknown)}; allowed: {', '.join(TEXT_METRICS)}"
            )
        if not self.thresholds:
            raise ValueError("thresholds: name at least one metric and its minimum")
        if self.use_spot and self.max_wait_hours < self.max_runtime_hours:
            raise ValueError("max_wait_hours: must be at least max_runtime_hours when use_spot is true")
        return self
