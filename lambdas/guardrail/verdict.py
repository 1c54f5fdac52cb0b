"""Merge layer results into one verdict: block > redact > allow, failure policy on errors."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from guardrail.model import CheckRequest, Finding, LayerResult
from guardrail.redaction import TypedSpan, redact, redact_literals
from guardrail.settings import FailurePolicy

Action = Literal["allow", "redact", "block"]


@dataclass
class Verdict:
    action: Action
    texts: list[str]  # one per content item, redacted where it applies; trusted items unchanged
    findings: list[Finding] = field(default_factory=list)
    latency_ms: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    failure_policy_applied: FailurePolicy | None = None
    # The request's `rendered` prompt, redacted where it applies (None when the request had none).
    rendered: str | None = None

    @property
    def text(self) -> str:
        return "\n\n".join(self.texts)

    def to_dict(self) -> dict[str, object]:
        return {
            "action": self.action,
            "text": self.text,
            "texts": self.texts,
            "findings": [finding.to_dict() for finding in self.findings],
            "latency_ms": self.latency_ms,
            "errors": self.errors,
            "failure_policy_applied": self.failure_policy_applied,
            "rendered": self.rendered,
        }


def placed_spans(request: CheckRequest, findings: list[Finding]) -> dict[int, list[TypedSpan]]:
    """Span item index -> the findings' spans there. A span of the joined items (the whole view when the
    request has no `rendered`) is split onto the items it covers, so the redaction reaches them."""
    placed: dict[int, list[TypedSpan]] = {}
    for finding in findings:
        span = finding.span
        if span is None:
            continue
        if span.item == request.whole_index and request.rendered is None:
            for item, start, end in request.item_spans(span.start, span.end):
                placed.setdefault(item, []).append(TypedSpan(start, end, finding.type))
        else:
            placed.setdefault(span.item, []).append(TypedSpan(span.start, span.end, finding.type))
    return placed


def redacted_texts(request: CheckRequest, findings: list[Finding], masked: dict[int, str]) -> list[str]:
    """Item texts with every span of the given findings replaced by `[TYPE]`.

    Where a service returned masked text for an item, that text is the base and the other findings'
    original substrings are replaced literally (their offsets no longer apply).
    """
    texts = []
    placed = placed_spans(request, findings)
    for index, item in enumerate(request.items):
        spans = placed.get(index, [])
        if index in masked:
            literals = [(item.text[s.start : s.end], s.type) for s in spans]
            texts.append(redact_literals(masked[index], literals))
        else:
            texts.append(redact(item.text, spans))
    return texts


def merge(
    request: CheckRequest,
    results: dict[str, LayerResult],
    errors: dict[str, str],
    latency_ms: dict[str, float],
    policy: FailurePolicy,
) -> Verdict:
    findings = [finding for result in results.values() for finding in result.findings]
    masked = {
        index: text for result in results.values() for index, text in result.masked_texts.items() if text
    }
    redactions = [f for f in findings if f.action == "redact"]
    # A redaction we cannot place (no span, no masked text) would leak: treat it as a block.
    unplaceable = any(_unplaceable(f, masked) for f in redactions)
    if any(f.action == "block" for f in findings) or unplaceable or (errors and policy == "fail_closed"):
        action: Action = "block"
    elif redactions or masked:
        action = "redact"
    else:
        action = "allow"
    rendered = None
    if request.rendered is not None:
        rendered = redacted_rendered(request, redactions)
        if rendered is None:
            action = "block"
    return Verdict(
        action=action,
        rendered=rendered,
        texts=redacted_texts(request, redactions, masked),
        findings=findings,
        latency_ms=latency_ms,
        errors=errors,
        failure_policy_applied=policy if errors else None,
    )


def redacted_rendered(request: CheckRequest, redactions: list[Finding]) -> str | None:
    """The request's `rendered` with every redaction in it: the spans found in it, and each span redacted in
    an item wherever its text occurs in `rendered` (case-insensitively: a template may change the case; the
    Bedrock layer scans the items only). None when a redaction cannot be placed: a service masked an item
    without saying where (an empty span), and the item's text does not occur verbatim in `rendered`."""
    rendered = request.rendered
    assert rendered is not None
    placed = placed_spans(request, redactions)
    spans = list(placed.get(request.whole_index, []))
    for index, item_spans in placed.items():
        if index == request.whole_index:
            continue
        item_text = request.items[index].text
        for span in item_spans:
            # An empty span: somewhere in this item (a masked output); the whole item then stands for it.
            literal = item_text[span.start : span.end] if span.end > span.start else item_text
            found = [
                TypedSpan(m.start(), m.end(), span.type)
                for m in re.finditer(re.escape(literal), rendered, re.IGNORECASE)
            ]
            if not found and span.end <= span.start:
                return None
            # A literal that does not occur is not in the prompt as written (a value the template leaves
            # out); the layers that scan `rendered` itself judge what the template made of it.
            spans.extend(found)
    return redact(rendered, spans)


def _unplaceable(finding: Finding, masked: dict[int, str]) -> bool:
    span = finding.span
    return span is None or (span.end <= span.start and span.item not in masked)
