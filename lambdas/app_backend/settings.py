"""Application backend settings: the `application:` section of a business unit's config.

One model for synth (Cognito, API Gateway, WAF) and run time (models, uploads, ratings): the stack puts
`ApplicationSettings.model_dump_json()` into the function's environment (APP_SETTINGS) and the handler
parses it back with this class.
"""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ContentType = Annotated[str, Field(pattern=r"^[a-z]+/[a-z0-9.+\-]+$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PasswordPolicy(_Strict):
    min_length: Annotated[int, Field(ge=8, le=99)] = 12
    require_lowercase: bool = True
    require_uppercase: bool = True
    require_digits: bool = True
    require_symbols: bool = True


class SignUp(_Strict):
    self_sign_up: bool = Field(default=False, description="end users may create their own account")
    mfa: Literal["off", "optional", "required"] = "required"
    password: PasswordPolicy = PasswordPolicy()
    # Cognito "Plus" feature plan: adaptive authentication and compromised-credential checks.
    threat_protection: Literal["off", "audit", "enforced"] = "enforced"


class ApiLimits(_Strict):
    rate_limit: Annotated[float, Field(gt=0, le=10_000)] = 20.0
    burst_limit: Annotated[int, Field(ge=1, le=5_000)] = 40
    daily_quota: Annotated[int, Field(ge=1)] = 10_000


class DefaultModel(_Strict):
    """The model /invoke calls unless a tenant asks for its own: Bedrock, or the business unit's endpoint."""

    provider: Literal["bedrock", "sagemaker"] = "bedrock"
    model_id: Annotated[str, Field(min_length=1, max_length=256)] | None = "amazon.nova-lite-v1:0"
    endpoint_name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")] | None = None
    payload_format: Literal["tgi", "messages"] = "messages"

    @model_validator(mode="after")
    def _target_matches_provider(self) -> DefaultModel:
        if self.provider == "bedrock" and not self.model_id:
            raise ValueError("model_id: required when provider is 'bedrock'")
        if self.provider == "sagemaker" and not self.endpoint_name:
            raise ValueError("endpoint_name: required when provider is 'sagemaker'")
        return self

    @property
    def name(self) -> str:
        return (self.model_id if self.provider == "bedrock" else self.endpoint_name) or ""


class Uploads(_Strict):
    max_bytes: Annotated[int, Field(ge=1, le=5 * 1024**3)] = 50 * 1024**2
    content_types: Annotated[list[ContentType], Field(min_length=1, max_length=20)] = Field(
        default_factory=lambda: ["application/jsonl", "application/json", "text/csv", "text/plain"]
    )
    url_expiry_seconds: Annotated[int, Field(ge=60, le=3600)] = 300


class Ratings(_Strict):
    """Which ratings become evaluation-catalog candidates: good at or above, bad at or below (stars)."""

    good_at_least: Annotated[int, Field(ge=1, le=5)] = 5
    bad_at_most: Annotated[int, Field(ge=1, le=5)] = 1
    max_comment_chars: Annotated[int, Field(ge=0, le=2000)] = 1000

    @model_validator(mode="after")
    def _bands_do_not_overlap(self) -> Ratings:
        if self.bad_at_most >= self.good_at_least:
            raise ValueError("bad_at_most: must be lower than good_at_least")
        return self


class ApplicationSettings(_Strict):
    use_case: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")] | None = Field(
        default=None, description="use case whose evaluation catalog gets rated examples; default: the first"
    )
    sign_up: SignUp = SignUp()
    limits: ApiLimits = ApiLimits()
    waf_in_dev: bool = Field(default=False, description="preprod and prod always get the WAF web ACL")
    default_model: DefaultModel = DefaultModel()
    uploads: Uploads = Uploads()
    ratings: Ratings = Ratings()
    prompt_catalog_url: (
        Annotated[str, Field(pattern=r"^https://[A-Za-z0-9.\-]+(/[A-Za-z0-9._\-]+)*/?$")] | None
    ) = Field(
        default=None,
        description="the prompt catalog API's URL (its stage is /prompt-catalog); until set, /invoke answers 503",
    )

    @classmethod
    def from_env(cls) -> ApplicationSettings:
        return cls.model_validate_json(os.environ.get("APP_SETTINGS", "{}"))
