"""Request bodies of the API and the errors that become 4xx answers (each names its field)."""

from __future__ import annotations

from typing import Annotated, Literal

from prompt_catalog.errors import (
    BadRequestError,
    CatalogError,
    ConflictError,
    NotFoundError,
    UnprocessableError,
    from_validation_error,
)
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from common.lake_records import SafeId

__all__ = [
    "ApiError",
    "BadRequestError",
    "ConflictError",
    "ModelEmptyOutputError",
    "NotEnabledError",
    "NotFoundError",
    "TooManyRequestsError",
    "UnauthorizedError",
    "UnprocessableError",
    "UpstreamUnavailableError",
]

PromptName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,63}$")]
VariableName = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,63}$")]
FileName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$")]
ModelName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9\-]{0,47}$")]
UseCaseName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")]  # the config's use case names


def _utf8(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not valid UTF-8 text (lone surrogate)") from None
    return value


Text = Annotated[str, AfterValidator(_utf8)]
VariableValue = Annotated[Text, Field(max_length=100_000)] | int | float | bool


# The catalog's errors carry (field, message, status); the backend answers with the same family.
ApiError = CatalogError


class UnauthorizedError(CatalogError):
    status = 401


class UpstreamUnavailableError(CatalogError):
    """The catalog, the model, the lake or the pipeline is down or throttling: worth a retry later."""

    status = 503


class NotEnabledError(CatalogError):
    status = 503


class ModelEmptyOutputError(CatalogError):
    """The model answered without any text: nothing to filter, show or rate (a retry may do better)."""

    status = 502


class ForbiddenError(CatalogError):
    status = 403


class TooManyRequestsError(CatalogError):
    """A limit is reached: the tenant's rate or quota on a route, or the business unit's cap on concurrent
    fine-tuning runs; `retry_after` seconds until a retry may succeed."""

    status = 429

    def __init__(self, field: str, message: str, *, retry_after: int) -> None:
        super().__init__(field, message)
        self.retry_after = retry_after


def bad_request(exc: ValidationError) -> BadRequestError:
    return from_validation_error(exc, "body")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InvokeBody(_Body):
    # No `alias`: the stage fixes which catalog alias end users get (issue 16 item 12).
    prompt: PromptName | None = None
    chain: PromptName | None = None
    variables: Annotated[dict[VariableName, VariableValue], Field(max_length=50)] = Field(
        default_factory=dict
    )
    # auto: the tenant's own served model, the base model while it has none.
    model: Literal["auto", "default", "personal"] = "auto"

    @model_validator(mode="after")
    def _one_target(self) -> InvokeBody:
        if (self.prompt is None) == (self.chain is None):
            raise ValueError("give exactly one of 'prompt' or 'chain'")
        return self

    @property
    def name(self) -> str:
        return self.prompt or self.chain or ""


class RatingBody(_Body):
    request_id: SafeId
    stars: Annotated[int, Field(ge=1, le=5)] | None = None
    thumbs: Literal["up", "down"] | None = None
    comment: Annotated[Text, Field(min_length=1, max_length=2000)] | None = None

    @model_validator(mode="after")
    def _one_rating(self) -> RatingBody:
        if (self.stars is None) == (self.thumbs is None):
            raise ValueError("give exactly one of 'stars' (1-5) or 'thumbs' ('up' or 'down')")
        return self


class UploadBody(_Body):
    file_name: FileName
    content_type: Annotated[str, Field(min_length=3, max_length=100)]


class FineTuneBody(_Body):
    model_name: ModelName
    # One of the business unit's use cases (checked by the service); None: the business unit's default.
    use_case: UseCaseName | None = None
