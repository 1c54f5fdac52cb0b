"""Fine-tuning pipeline settings: the `fine_tuning:` section of a business unit's config.

Two kinds of runs (docs/fine-tuning.md):
- tenant runs (end-user personalization) in every stage of `stages`: a tenant's data, run, registry entry
  and served model stay in the stage where the tenant lives, so a prod tenant never touches dev;
- business-unit runs (the fine-tuner's own models) in `business_unit_models_stage` (dev), registered in the
  central registry and promoted dev -> preprod (evaluation gate) -> approval -> prod.

Synth reads them (pipeline definition, parameter defaults, trigger settings), so the model lives here.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from serving_deployer.settings import InstanceType, StageName

PromotionPolicy = Literal["automatic", "reviewed"]

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
        default_factory=lambda: list[StageName](["preprod", "prod"]),
        description="stages whose tenants fine-tune there (each needs serving in that stage)",
    )
    business_unit_models_stage: StageName | None = Field(
        default="dev",
        description="stage where the business unit's own models train (central registry); null: none",
    )
    max_concurrent_runs: Annotated[int, Field(ge=1, le=100)] = Field(
        default=2, description="tenant pipeline executions of this business unit running at once, per stage"
    )
    promotion: dict[str, PromotionPolicy] = Field(
        default_factory=dict,
        description="per use case: automatic (held-out thresholds approve) or reviewed (manual approval)",
    )
    default_promotion: PromotionPolicy = Field(
        default="reviewed", description="promotion policy of a use case that `promotion` does not name"
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
    # Business-unit models always wait for the preprod gate and a manual approval.
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
        if len(set(self.stages)) != len(self.stages):
            raise ValueError("stages: each stage may be listed once")
        if self.use_spot and self.max_wait_hours < self.max_runtime_hours:
            raise ValueError("max_wait_hours: must be at least max_runtime_hours when use_spot is true")
        return self

    def promotion_for(self, use_case: str) -> PromotionPolicy:
        return self.promotion.get(use_case, self.default_promotion)

    def approval_status_for(self, use_case: str) -> str:
        """The registry status a tenant version gets once the held-out thresholds passed."""
        return "Approved" if self.promotion_for(use_case) == "automatic" else "PendingManualApproval"

    def stage_names(self) -> set[str]:
        """Stages that get a fine-tuning stack (tenant pipeline, business-unit pipeline or both)."""
        extra = {self.business_unit_models_stage} if self.business_unit_models_stage else set()
        return set(self.stages) | extra


def check_fine_tuning_placement(
    settings: FineTuningSettings, *, use_cases: list[str], serving_stages: list[str], field: str
) -> None:
    """What only the whole business unit can tell: promotion names its use cases; tenant stages serve."""
    unknown = sorted(set(settings.promotion) - set(use_cases))
    if unknown:
        raise ValueError(f"{field}.promotion: unknown use case(s) {', '.join(unknown)}; known: {use_cases}")
    unserved = [stage for stage in settings.stages if stage not in serving_stages]
    if unserved:
        raise ValueError(
            f"{field}.stages: {', '.join(unserved)} has no serving (serving.stages: {serving_stages}); "
            "a tenant's model is served in the stage where it trains: add the stage to serving.stages "
            "or remove it here"
        )
