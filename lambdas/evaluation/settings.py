"""The evaluation engine's settings: one section of a business unit's config.

The stack passes `EvaluationSettings.model_dump_json()` to the Lambdas in the `EVALUATION_SETTINGS`
environment variable; they parse it back with this same model (stacks/settings/evaluation.py
re-exports it). Every field has a default, so a business unit that omits the section still works.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.model_gateway import PayloadFormat

ModelName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CandidateModel(_Strict):
    """A model to evaluate, where it is hosted and what it costs."""

    name: ModelName
    provider: Literal["bedrock", "sagemaker"]
    model_id: str | None = Field(default=None, description="Bedrock model id or inference profile")
    endpoint_name: str | None = Field(default=None, description="SageMaker endpoint name")
    target_model: str | None = Field(default=None, description="model artifact on a multi-model endpoint")
    payload_format: PayloadFormat = "tgi"
    price_per_1k_input_tokens_usd: Annotated[float, Field(ge=0)] = 0.0
    price_per_1k_output_tokens_usd: Annotated[float, Field(ge=0)] = 0.0
    price_table_date: date | None = Field(default=None, description="when the prices were copied")

    @model_validator(mode="after")
    def _host_is_named(self) -> CandidateModel:
        if self.provider == "bedrock" and not self.model_id:
            raise ValueError("model_id: required when provider is 'bedrock'")
        if self.provider == "sagemaker" and not self.endpoint_name:
            raise ValueError("endpoint_name: required when provider is 'sagemaker'")
        return self

    def cost_usd(self, input_tokens: int | None, output_tokens: int | None) -> float | None:
        if input_tokens is None and output_tokens is None:
            return None
        return (
            (input_tokens or 0) * self.price_per_1k_input_tokens_usd
            + (output_tokens or 0) * self.price_per_1k_output_tokens_usd
        ) / 1000


class SelectionWeights(_Strict):
    """How much quality, speed and cost count when ranking models; they must sum to 1.

    The default follows the article's example: cost first, then quality (precision), then speed.
    """

    quality: Annotated[float, Field(ge=0, le=1)] = 0.35
    speed: Annotated[float, Field(ge=0, le=1)] = 0.15
    cost: Annotated[float, Field(ge=0, le=1)] = 0.5

    @model_validator(mode="after")
    def _sum_to_one(self) -> SelectionWeights:
        total = self.quality + self.speed + self.cost
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"weights: quality + speed + cost must sum to 1, got {total:g}")
        return self


class GateThresholds(_Strict):
    """Pass/fail rules for the promoted model; an unset rule is not checked."""

    model: ModelName | None = Field(default=None, description="model to gate; default: the top-ranked one")
    min_metrics: dict[str, float] = Field(
        default_factory=dict, description="metric name -> lowest acceptable mean, e.g. {'f1_macro': 0.8}"
    )
    max_error_rate: Annotated[float, Field(ge=0, le=1)] = 0.05
    max_latency_p95_ms: Annotated[float, Field(gt=0)] | None = None
    max_cost_per_1k_records_usd: Annotated[float, Field(ge=0)] | None = None


class JudgeSettings(_Strict):
    """LLM-as-judge for records without a reference answer."""

    model: CandidateModel | None = Field(default=None, description="the judge; unset = no LLM-as-judge")
    samples: Annotated[int, Field(ge=1, le=10)] = 1
    max_parse_attempts: Annotated[int, Field(ge=1, le=5)] = 2


class HumanReviewSettings(_Strict):
    """Which records go to human reviewers: judged below the threshold, plus a random sample of all."""

    enabled: bool = False
    below_judge_score: Annotated[float, Field(ge=1, le=10)] = 5.0
    sample_rate: Annotated[float, Field(ge=0, le=1)] = 0.02
    # The review API's stage throttling (requests per second, burst): a handful of reviewers.
    api_rate_limit: Annotated[int, Field(ge=1, le=10_000)] = 10
    api_burst_limit: Annotated[int, Field(ge=1, le=5_000)] = 20


class EvaluationSettings(_Strict):
    candidates: list[CandidateModel] = Field(default_factory=list)
    weights: SelectionWeights = Field(default_factory=SelectionWeights)
    quality_metric: str = Field(
        default="auto", description="metric that stands for quality in the ranking; 'auto' picks by data"
    )
    gate: GateThresholds = Field(default_factory=GateThresholds)
    judge: JudgeSettings = Field(default_factory=JudgeSettings)
    human_review: HumanReviewSettings = Field(default_factory=HumanReviewSettings)
    concurrency_limit: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=8, description="model calls in flight at once across the whole run (model quotas)"
    )
    batch_size: Annotated[int, Field(ge=1, le=1000)] = Field(default=20, description="records per Lambda")
    batch_workers: Annotated[int, Field(ge=1, le=64)] = Field(
        default=4, description="parallel model calls inside one batch Lambda"
    )
    max_attempts: Annotated[int, Field(ge=1, le=10)] = Field(
        default=5, description="tries per throttled call"
    )
    strict_dataset: bool = Field(default=True, description="reject the run on a malformed dataset line")

    @model_validator(mode="after")
    def _unique_names(self) -> EvaluationSettings:
        names = [c.name for c in self.candidates]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"candidates: model names must be unique, repeated: {', '.join(duplicates)}")
        if self.gate.model is not None and self.gate.model not in names:
            raise ValueError(
                f"gate.model: {self.gate.model!r} is not one of the candidates ({', '.join(names)})"
            )
        return self

    @property
    def map_max_concurrency(self) -> int:
        """Distributed Map MaxConcurrency so that batches x workers stays within the concurrency limit."""
        return max(1, self.concurrency_limit // self.workers_per_batch)

    @property
    def workers_per_batch(self) -> int:
        return min(self.batch_workers, self.concurrency_limit)

    def candidate(self, name: str) -> CandidateModel | None:
        return next((c for c in self.candidates if c.name == name), None)
