"""Direct-invocation Lambda: validate the event, run the engine, return the verdict.

Response: {"statusCode": 200, "verdict": {...}} or {"statusCode": 400, "error": "<field>: <why>"}.
Environment: GUARDRAIL_SETTINGS (GuardrailSettings JSON), optional BEDROCK_GUARDRAIL_ID/VERSION (for a
provisioned guardrail), optional FILTER_DECISIONS_BUCKET (data lake zone for decision records),
BUSINESS_UNIT (the one business unit this function serves; requests for any other are refused).
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.cold_start import keep_out_of_collections
from common.lake_records import BusinessUnitName, SafeId
from guardrail.engine import GuardrailEngine, InvalidRequestError
from guardrail.model import CheckRequest, ContentItem
from guardrail.settings import GuardrailSettings

logger = Logger(service="guardrail", business_unit=os.environ.get("BUSINESS_UNIT", ""))
_engine: GuardrailEngine | None = None


class ContentItemEvent(BaseModel):
    """No `trusted` flag: whoever may invoke the function could set it and skip checks. Trust comes from
    the caller: only code in the caller's own process builds trusted items (`guardrail.model.ContentItem`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: Annotated[str, Field(min_length=1)]


class GuardrailEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    direction: Literal["input", "output"]
    content: Annotated[list[ContentItemEvent], Field(min_length=1, max_length=100)]
    business_unit: BusinessUnitName
    model_id: Annotated[str, Field(min_length=1, max_length=256)]
    request_id: SafeId
    tenant_id: SafeId | None = None
    # The prompt as the model will see it (the template rendered with the values in `content`).
    rendered: Annotated[str, Field(min_length=1)] | None = None


def _error(message: str) -> dict[str, Any]:
    return {"statusCode": 400, "error": message}


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    field = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"])
    field = field.lstrip(".") or "event"
    return f"{field}: {first['msg']}"


def parse_event(
    event: Any, settings: GuardrailSettings, own_business_unit: str | None = None
) -> CheckRequest:
    """The event as a CheckRequest, or InvalidRequestError naming the field.

    With `own_business_unit`, a request for another business unit is refused: its settings, prefix in
    the data lake and metrics dimension would be wrong."""
    if not isinstance(event, dict):
        raise InvalidRequestError("event: must be a JSON object")
    try:
        parsed = GuardrailEvent.model_validate(event)
    except ValidationError as err:
        raise InvalidRequestError(_describe(err)) from err
    if own_business_unit is not None and parsed.business_unit != own_business_unit:
        raise InvalidRequestError(
            f"business_unit: this guardrail serves {own_business_unit!r} only, got {parsed.business_unit!r}"
        )
    size = 0
    texts = [(f"content[{index}].text", item.text) for index, item in enumerate(parsed.content)]
    if parsed.rendered is not None:
        texts.append(("rendered", parsed.rendered))
    for field, text in texts:
        try:
            size += len(text.encode("utf-8"))
        except UnicodeEncodeError as err:
            raise InvalidRequestError(f"{field}: not valid UTF-8 (lone surrogate)") from err
    if size > settings.max_request_bytes:
        raise InvalidRequestError(
            f"content: {size} bytes of text, more than the limit of {settings.max_request_bytes}"
        )
    return CheckRequest(
        direction=parsed.direction,
        items=tuple(ContentItem(item.text) for item in parsed.content),
        business_unit=parsed.business_unit,
        model_id=parsed.model_id,
        request_id=parsed.request_id,
        tenant_id=parsed.tenant_id,
        rendered=parsed.rendered,
    )


def build_engine() -> GuardrailEngine:
    settings = GuardrailSettings.model_validate_json(os.environ.get("GUARDRAIL_SETTINGS", "{}"))
    guardrail_id, version = (
        os.environ.get("BEDROCK_GUARDRAIL_ID"),
        os.environ.get("BEDROCK_GUARDRAIL_VERSION"),
    )
    bucket = os.environ.get("FILTER_DECISIONS_BUCKET")
    sink = None
    if bucket:
        from common.lake_writer import LakeWriter  # type: ignore[import-not-found, unused-ignore]

        sink = LakeWriter(bucket)
    return GuardrailEngine(
        settings, bedrock_ref=(guardrail_id, version) if guardrail_id and version else None, sink=sink
    )


def engine() -> GuardrailEngine:
    global _engine
    if _engine is None:
        _engine = build_engine()
        keep_out_of_collections()
    return _engine


@logger.inject_lambda_context
def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    current = engine()
    try:
        request = parse_event(event, current.settings, os.environ.get("BUSINESS_UNIT") or None)
        verdict = current.check(request)
    except InvalidRequestError as err:
        logger.info("guardrail request rejected", extra={"reason": str(err)})
        return _error(str(err))
    logger.info("guardrail verdict", extra={"action": verdict.action, "request_id": request.request_id})
    return {"statusCode": 200, "verdict": verdict.to_dict()}
