"""Record schemas for the data lake tables.

These models are the single source of truth for three things: what services append (through
`common.lake_writer`), the Glue table columns the data lake stack declares, and the Athena queries
that later code runs. Partition keys (`dt`, `model`) are derived from `event_time` and `model_id`
and are not stored in the JSON body.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Identifiers end up in S3 keys and Glue partitions: keep them to a safe alphabet.
SafeId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$")]
BusinessUnitName = Annotated[str, Field(min_length=2, max_length=24, pattern=r"^[a-z][a-z0-9-]*[a-z0-9]$")]


class LakeRecord(BaseModel):
    """Base of every lake record: strict, immutable, partitioned by day and model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    TABLE: ClassVar[str]

    business_unit: BusinessUnitName
    model_id: Annotated[str, Field(min_length=1, max_length=256)]
    event_time: datetime

    @field_validator("event_time")
    @classmethod
    def _must_be_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("event_time must be timezone-aware (UTC)")
        return value.astimezone(UTC)

    def partition(self) -> dict[str, str]:
        """Hive-style partition values for this record."""
        return {"dt": self.event_time.strftime("%Y-%m-%d"), "model": partition_safe(self.model_id)}


def partition_safe(value: str) -> str:
    """Model ids such as `anthropic.claude-3:0` or ARNs become a safe partition value."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in value)


class Finding(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    layer: str
    type: str
    score: float | None = None


class EvaluationResultRecord(LakeRecord):
    """One dataset record scored against one model in one evaluation run."""

    TABLE: ClassVar[str] = "evaluation_results"

    run_id: SafeId
    record_id: SafeId
    use_case: SafeId
    category: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    judge_score: float | None = None
    judge_justification: str | None = None
    human_score: float | None = None
    latency_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    error: str | None = None


class HumanReviewRecord(LakeRecord):
    """One reviewer's score of one evaluated row, written when the run's human review completes."""

    TABLE: ClassVar[str] = "human_reviews"

    run_id: SafeId
    record_id: SafeId
    use_case: SafeId
    category: str | None = None
    reviewer: Annotated[str, Field(min_length=1, max_length=512)]  # the IAM principal (evaluation.review_api)
    score: Annotated[float, Field(ge=1, le=10)]
    comment: str | None = Field(default=None, max_length=4000)
    completed_by: Literal["drained", "deadline"]


class RatingRecord(LakeRecord):
    """An end user's rating of one of their own requests; text is already PII-redacted."""

    TABLE: ClassVar[str] = "ratings"

    rating_id: SafeId
    request_id: SafeId
    tenant_id: SafeId
    use_case: SafeId
    rating_type: Literal["stars", "thumbs"]
    value: Annotated[int, Field(ge=0, le=5)]
    comment: str | None = Field(default=None, max_length=2000)
    prompt_ref: str | None = None


class FilterAction(StrEnum):
    ALLOW = "allow"
    REDACT = "redact"
    BLOCK = "block"


class FilterDecisionRecord(LakeRecord):
    """One guardrail verdict; `text_redacted` never holds detected PII."""

    TABLE: ClassVar[str] = "filter_decisions"

    decision_id: SafeId
    request_id: SafeId
    tenant_id: SafeId | None = None
    direction: Literal["input", "output"]
    action: FilterAction
    failure_policy_applied: Literal["fail_closed", "fail_open"] | None = None
    findings: list[Finding] = Field(default_factory=list)
    layer_latency_ms: dict[str, float] = Field(default_factory=dict)
    text_redacted: str = ""


class UsageRecord(LakeRecord):
    """One answered /invoke: who called which model, the tokens, the time and the estimated cost.

    `model_id` is the model's name as the application knows it (the Bedrock model id, or the endpoint of
    a tenant's own model); `cost_usd` is tokens x the dated price table (`common.model_pricing`), null when
    the model has no per-token price (SageMaker endpoints are paid per instance hour, see `make cost`).
    """

    TABLE: ClassVar[str] = "model_usage"

    request_id: SafeId
    tenant_id: SafeId
    use_case: SafeId
    provider: Literal["bedrock", "sagemaker"]
    inference_profile: str | None = Field(default=None, max_length=2048)
    prompt_ref: str | None = Field(default=None, max_length=256)
    model_calls: Annotated[int, Field(ge=0, le=1000)]
    input_tokens: Annotated[int, Field(ge=0)] | None = None
    output_tokens: Annotated[int, Field(ge=0)] | None = None
    model_latency_ms: Annotated[float, Field(ge=0)]
    request_latency_ms: Annotated[float, Field(ge=0)]
    cost_usd: Annotated[float, Field(ge=0)] | None = None
    price_table_date: date | None = None
    blocked: Literal["input", "output"] | None = None
    sampled_for_evaluation: bool = False


LAKE_RECORD_TYPES: tuple[type[LakeRecord], ...] = (
    EvaluationResultRecord,
    RatingRecord,
    FilterDecisionRecord,
    HumanReviewRecord,
    UsageRecord,
)
PARTITION_KEYS: tuple[str, ...] = ("dt", "model")
