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
    inference_component: str | None = Field(
        default=None, description="inference component on an endpoint with inference components"
    )
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


# Every metric the engine produces, with its range: a gate floor outside it could never (or always) hold.
UNIT_METRICS = (
    "exact_match", "quasi_exact_match", "token_f1", "rouge1", "rouge2", "rougeL", "bleu", "meteor",
    "label_correct", "accuracy", "precision_macro", "recall_macro", "f1_macro", "balanced_accuracy",
)  # fmt: skip
SCORE_METRICS = (  # 1..10: the judge's rubric and human reviewers
    "judge_overall", "judge_helpfulness", "judge_relevance", "judge_accuracy", "judge_level_of_detail",
    "human_score",
)  # fmt: skip
DEFAULT_QUALITY_FLOOR = {"judge_overall": 6.0}


def metric_range(name: str) -> tuple[float, float] | None:
    """(lowest, highest) value of a metric the engine produces; None for a name it does not produce."""
    if name in UNIT_METRICS:
        return (0.0, 1.0)
    if name in SCORE_METRICS:
        return (1.0, 10.0)
    if name == "judge_overall_stdev":
        return (0.0, 9.0)
    return None


class GateThresholds(_Strict):
    """Pass/fail rules for the promoted model. A quality floor is required: by default the judge's mean
    overall score; a gate without any quality threshold must say why in `quality_floor_opt_out`."""

    model: ModelName | None = Field(default=None, description="model to gate; default: the top-ranked one")
    min_metrics: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_QUALITY_FLOOR),
        description="metric name -> lowest acceptable mean, e.g. {'f1_macro': 0.8}",
    )
    quality_floor_opt_out: Annotated[str, Field(min_length=10, max_length=500)] | None = Field(
        default=None, description="the reason this gate checks no quality metric (refused without one)"
    )
    max_error_rate: Annotated[float, Field(ge=0, le=1)] = 0.05
    max_latency_p95_ms: Annotated[float, Field(gt=0)] | None = None
    max_cost_per_1k_records_usd: Annotated[float, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _quality_floor(self) -> GateThresholds:
        for name, floor in sorted(self.min_metrics.items()):
            bounds = metric_range(name)
            if bounds is None:
                known = ", ".join((*UNIT_METRICS, *SCORE_METRICS))
                raise ValueError(f"min_metrics.{name}: not a metric the engine produces (known: {known})")
            if not bounds[0] <= floor <= bounds[1]:
                raise ValueError(
                    f"min_metrics.{name}: {floor:g} is outside the metric's range {bounds[0]:g}..{bounds[1]:g}"
                )
        if not self.min_metrics and self.quality_floor_opt_out is None:
            raise ValueError(
                "min_metrics: the gate needs at least one quality threshold (default "
                f"{DEFAULT_QUALITY_FLOOR}); to gate on errors, latency and cost only, set "
                "quality_floor_opt_out to the reason"
            )
        return self


class JudgeSettings(_Strict):
    """LLM-as-judge for records without a reference answer."""

    model: CandidateModel | None = Field(default=None, description="the judge; unset = no LLM-as-judge")
    samples: Annotated[int, Field(ge=1, le=10)] = 1
    max_parse_attempts: Annotated[int, Field(ge=1, le=5)] = 2
    judge_references: bool = Field(
        default=False,
        description="also judge records with a reference answer, showing the judge the reference",
    )


class HumanReviewSettings(_Strict):
    """Which records go to human reviewers: judged below the threshold, plus a random sample of all."""

    enabled: bool = False
    below_judge_score: Annotated[float, Field(ge=1, le=10)] = 5.0
    sample_rate: Annotated[float, Field(ge=0, le=1)] = 0.02
    # The review API's stage throttling (requests per second, burst): a handful of reviewers.
    api_rate_limit: Annotated[int, Field(ge=1, le=10_000)] = 10
    api_burst_limit: Annotated[int, Field(ge=1, le=5_000)] = 20
    # A run's human review completes when its flagged rows are all scored, or at this deadline.
    deadline_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 72.0


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
    prompt_catalog_url: (
        Annotated[str, Field(pattern=r"^https://[A-Za-z0-9.\-]+(/[A-Za-z0-9._\-]+)*/?$")] | None
    ) = Field(
        default=None,
        description="the prompt catalog API (stage /prompt-catalog); needed for records with prompt_ref",
    )

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
