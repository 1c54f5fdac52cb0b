"""Value types shared by the layers, the engine and the handler."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from guardrail.settings import Direction

FindingAction = Literal["block", "redact", "flag"]


@dataclass(frozen=True)
class ContentItem:
    """One piece of the text to check. Trusted items (system prompt, tool definitions) come from the
    application itself: every layer scans them except the prompt-injection checks, which fire on system
    prompts. Trust is never read from a request payload: only code in the caller's own process can build
    a trusted item (see `guardrail.handler.parse_event`)."""

    text: str
    trusted: bool = False


class Span(NamedTuple):
    """Character (code point) range [start, end) inside content item `item`. (Named tuples: the local
    rules make one per match, and a tuple is built at a third of a frozen dataclass's cost.)"""

    item: int
    start: int
    end: int


class Finding(NamedTuple):
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
    # The prompt as the model will see it (template rendered with the values in `items`), when the
    # caller renders one: PII split across values only shows whole here.
    rendered: str | None = None

    def untrusted(self) -> Iterator[tuple[int, ContentItem]]:
        """(index, item) of the items the injection checks and the Bedrock guardrail scan."""
        return ((index, item) for index, item in enumerate(self.items) if not item.trusted)

    @property
    def whole_index(self) -> int:
        """Span item index of the whole view (`whole_view`): one past the last content item."""
        return len(self.items)

    def whole_view(self) -> str | None:
        """The text the model sees as one piece, scanned for PII and deny terms in addition to each item:
        `rendered`, or else the untrusted items back to back (two or more of them). None: nothing to add."""
        if self.rendered is not None:
            return self.rendered
        texts = [item.text for _, item in self.untrusted()]
        return "".join(texts) if len(texts) > 1 else None

    def scanned(self) -> Iterator[tuple[int, str]]:
        """(span item index, text) of everything the PII and deny checks scan: every item, then the whole."""
        yield from ((index, item.text) for index, item in enumerate(self.items))
        whole = self.whole_view()
        if whole is not None:
            yield self.whole_index, whole

    def item_spans(self, start: int, end: int) -> list[tuple[int, int, int]]:
        """A span of the joined untrusted items (no `rendered`) as (item, start, end) parts per item."""
        parts: list[tuple[int, int, int]] = []
        offset = 0
        for index, item in self.untrusted():
            lo, hi = max(start, offset), min(end, offset + len(item.text))
            if lo < hi:
                parts.append((index, lo - offset, hi - offset))
            offset += len(item.text)
        return parts
