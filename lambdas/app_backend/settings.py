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
PromptName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,63}$")]
HttpsUrl = Annotated[
    str, Field(pattern=r"^https://[A-Za-z0-9.\-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~\-/]*)?$", max_length=1024)
]
LocalUrl = Annotated[
    str, Field(pattern=r"^http://localhost(:[0-9]{1,5})?(/[A-Za-z0-9._~\-/]*)?$", max_length=1024)
]


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
    """The API stage's throttling for all tenants together; per-tenant limits are `tenant_limits`."""

    rate_limit: Annotated[float, Field(gt=0, le=10_000)] = 20.0
    burst_limit: Annotated[int, Field(ge=1, le=5_000)] = 40


class HostedSignIn(_Strict):
    """Cognito's hosted sign-in for the web client: authorization code with PKCE, to these URLs only.

    Without callback URLs the client has no OAuth flow at all (SRP sign-in from the front end only).
    `http://localhost` is accepted for local development, like Cognito itself does.
    """

    callback_urls: Annotated[list[HttpsUrl | LocalUrl], Field(max_length=100)] = Field(default_factory=list)
    logout_urls: Annotated[list[HttpsUrl | LocalUrl], Field(max_length=100)] = Field(default_factory=list)
    domain_prefix: Annotated[str, Field(pattern=r"^[a-z0-9](-?[a-z0-9]){0,62}$")] | None = Field(
        default=None,
        description="Cognito domain prefix of the hosted sign-in pages (required with callbacks)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> HostedSignIn:
        if self.logout_urls and not self.callback_urls:
            raise ValueError("callback_urls: required when logout_urls are given")
        if self.callback_urls and self.domain_prefix is None:
            raise ValueError("domain_prefix: required when callback_urls are given")
        return self


class RouteLimit(_Strict):
    per_minute: Annotated[int, Field(ge=1, le=100_000)]
    per_day: Annotated[int, Field(ge=1, le=10_000_000)]

    @model_validator(mode="after")
    def _day_holds_a_minute(self) -> RouteLimit:
        if self.per_day < self.per_minute:
            raise ValueError("per_day: must be at least per_minute")
        return self


class TenantLimits(_Strict):
    """Per tenant (end user) and route: requests per minute and per UTC day (lambdas/app_backend/quotas.py)."""

    invoke: RouteLimit = RouteLimit(per_minute=20, per_day=1_000)
    uploads: RouteLimit = RouteLimit(per_minute=10, per_day=100)
    # Each accepted POST /fine-tunes starts a GPU training run.
    fine_tunes: RouteLimit = RouteLimit(per_minute=1, per_day=3)


class EndUserCatalog(_Strict):
    """What end users may call on /invoke: catalog prompt and chain names of this use case (none by default).

    The alias is not theirs to choose: a stage serves its own alias (dev, preprod or prod).
    """

    prompts: Annotated[list[PromptName], Field(max_length=200)] = Field(default_factory=list)
    chains: Annotated[list[PromptName], Field(max_length=200)] = Field(default_factory=list)


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
    tenant_limits: TenantLimits = TenantLimits()
    end_user_catalog: EndUserCatalog = EndUserCatalog()
    hosted_sign_in: HostedSignIn = HostedSignIn()
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
