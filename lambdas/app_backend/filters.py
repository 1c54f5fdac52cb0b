"""The guardrail as the backend sees it: `guardrail.client.GuardrailCaller` (Lambda or in-process, as the
business unit's `guardrails.packaging` says), called with events built here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


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
