"""Monitoring settings of one business unit: alarm thresholds, who is notified, monthly budgets per stage.

Every key has a default, so a business unit without a `monitoring:` section gets dashboards, alarms and
budgets; it only receives notifications once `emails` or `https_endpoints` name someone.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator

Percent = Annotated[float, Field(gt=0, le=100)]
# A simple check: SNS confirms each address by mail anyway; this catches typos and YAML slips.
Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AlarmThresholds(_Strict):
    """Thresholds of the monitoring stack's alarms (each alarm fires after 2 of 2 five-minute periods)."""

    lambda_errors_per_5_minutes: Annotated[int, Field(ge=1)] = 5
    lambda_throttles_per_5_minutes: Annotated[int, Field(ge=1)] = 1
    lambda_duration_p99_percent_of_timeout: Percent = Field(
        default=80, description="p99 duration as a share of the function's timeout"
    )
    evaluation_failed_executions: Annotated[int, Field(ge=1)] = 1
    guardrail_error_rate_percent: Percent = Field(
        default=5,
        description="layer errors / layer calls per direction (fail-closed turns errors into blocks)",
    )
    guardrail_block_rate_percent: Percent = Field(
        default=30, description="blocked / checked per direction; a jump usually means abuse or a bad prompt"
    )
    min_judge_score: Annotated[float, Field(ge=1, le=10)] = Field(
        default=6, description="lowest acceptable mean judge score (1-10) of any model in an evaluation run"
    )
    max_judge_score_drop: Annotated[float, Field(gt=0, le=9)] = Field(
        default=1, description="largest acceptable fall of the mean judge score from one run to the next"
    )
    low_rating_percent: Percent = Field(
        default=20, description="share of end-user ratings at or below the low-rating mark (app backend)"
    )


class Budgets(_Strict):
    """Monthly cost budget per stage in USD (filtered by the BusinessUnit and Stage cost allocation tags)."""

    dev: Annotated[float, Field(gt=0)] = 500
    preprod: Annotated[float, Field(gt=0)] = 1000
    prod: Annotated[float, Field(gt=0)] = 5000

    def of(self, stage: str) -> float:
        return float(getattr(self, stage))


class ModelBudgets(Budgets):
    """Monthly Amazon Bedrock spend per stage in USD: service Amazon Bedrock, BusinessUnit and Stage tags
    (carried by the stage's application inference profiles, through which every model call goes)."""

    dev: Annotated[float, Field(gt=0)] = 100
    preprod: Annotated[float, Field(gt=0)] = 300
    prod: Annotated[float, Field(gt=0)] = 2000


class MonitoringSettings(_Strict):
    emails: list[Email] = Field(default_factory=list, description="SNS email subscriptions (confirm by mail)")
    https_endpoints: list[HttpUrl] = Field(
        default_factory=list,
        description="SNS HTTPS subscriptions, e.g. an AWS Chatbot / Amazon Q Developer or incident tool webhook",
    )
    alarms: AlarmThresholds = AlarmThresholds()
    budgets: Budgets = Budgets()
    model_budgets: ModelBudgets = ModelBudgets()
    budget_actual_percent: Percent = Field(default=80, description="alert when actual spend reaches this")
    budget_forecast_percent: Annotated[float, Field(gt=0, le=1000)] = Field(
        default=100, description="alert when forecast spend reaches this"
    )

    @field_validator("https_endpoints")
    @classmethod
    def _https_only(cls, endpoints: list[HttpUrl]) -> list[HttpUrl]:
        for url in endpoints:
            if url.scheme != "https":
                raise ValueError(f"{url}: SNS delivers alarms only to https:// endpoints here (no http)")
        return endpoints

    @field_validator("emails", "https_endpoints")
    @classmethod
    def _unique(cls, values: list[object]) -> list[object]:
        seen = [str(v) for v in values]
        duplicates = sorted({v for v in seen if seen.count(v) > 1})
        if duplicates:
            raise ValueError(f"listed more than once: {', '.join(duplicates)}")
        return values
