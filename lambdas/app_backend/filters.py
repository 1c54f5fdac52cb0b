"""The guardrail as the backend sees it: something that checks an event and returns a verdict dict.

`InputOutputFilter` has the shape of the guardrail's own caller (`guardrail.client.GuardrailCaller`:
`check(event) -> Verdict.to_dict()`), so the Lambda-or-in-process client drops in unchanged once it is
on main. Until then `EngineFilter` runs `GuardrailEngine` in-process.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from guardrail.engine import GuardrailEngine
from guardrail.model import CheckRequest, ContentItem


class InputOutputFilter(Protocol):
    def check(self, event: Mapping[str, Any]) -> dict[str, Any]: ...


class EngineFilter:
    """Runs the guardrail engine in this process (needs the guardrail's IAM permissions)."""

    def __init__(self, engine: GuardrailEngine) -> None:
        self.engine = engine

    def check(self, event: Mapping[str, Any]) -> dict[str, Any]:
        request = CheckRequest(
            direction=event["direction"],
            items=tuple(ContentItem(item["text"], bool(item.get("trusted"))) for item in event["content"]),
            business_unit=event["business_unit"],
            model_id=event["model_id"],
            request_id=event["request_id"],
            tenant_id=event.get("tenant_id"),
        )
        return self.engine.check(request).to_dict()


def filter_event(
    direction: str, text: str, *, business_unit: str, model_id: str, request_id: str, tenant_id: str
) -> dict[str, Any]:
    return {
        "direction": direction,
        "content": [{"text": text}],
        "business_unit": business_unit,
        "model_id": model_id,
        "request_id": request_id,
        "tenant_id": tenant_id,
    }


def redacted_or_none(verdict: Mapping[str, Any]) -> str | None:
    """Text safe to keep: PII actions are block or redact, so an unblocked verdict without layer errors
    has every detected PII span redacted. Anything else is not stored at all."""
    if verdict.get("action") == "block" or verdict.get("errors"):
        return None
    text = verdict.get("text")
    return text if isinstance(text, str) else None
