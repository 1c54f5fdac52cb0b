"""Value types shared by the layers, the engine and the handler."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from guardrail.settings import Direction

FindingAction = Literal["block", "redact", "flag"]


@dataclass(frozen=True)
class ContentItem:
    """One piece of the text to check. Trusted items (system prompt, tool definitions) come from the
    application itself and are not scanned; untrusted ones (user text, retrieved documents, model
    output) are."""

    text: str
    trusted: bool = False


@dataclass(frozen=True)
class Span:
    """Character (code point) range [start, end) inside content item `item`."""

    item: int
    start: int
    end: int


@dataclass(frozen=True)
class Finding:
    layer: str
    type: str
    action: FindingAction
    score: float | None = None
    span: Span | None = None
    # PII findings are redacted from the text the data lake keeps, whatever their action.
    is_pii: bool = False

    def to_dict(self) -> dict[str, object]:
        span = (
            None
            if self.span is None
            else {"item": self.span.item, "start": self.span.start, "end": self.span.end}
        )
        return {
            "layer": self.layer,
            "type": self.type,
            "action": self.action,
            "score": self.score,
            "span": span,
        }


@dataclass
class LayerResult:
    findings: list[Finding] = field(default_factory=list)
    # Item index -> text a service already masked (Bedrock ANONYMIZED) where spans could not be located.
    masked_texts: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckRequest:
    direction: Direction
    items: tuple[ContentItem, ...]
    business_unit: str
    model_id: str
    request_id: str
    tenant_id: str | None = None

    def untrusted(self) -> Iterator[tuple[int, ContentItem]]:
        """(index, item) of the items every layer scans."""
        return ((index, item) for index, item in enumerate(self.items) if not item.trusted)
