"""What a verdict leaves behind: a data lake record (PII redacted) and per-layer CloudWatch metrics."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from common.lake_records import FilterAction, FilterDecisionRecord, LakeRecord
from common.lake_records import Finding as LakeFinding
from guardrail.model import CheckRequest
from guardrail.redaction import redact

if TYPE_CHECKING:
    from guardrail.verdict import Verdict


class RecordSink(Protocol):
    """`common.lake_writer.LakeWriter` satisfies this; tests use a list-backed fake."""

    def append(self, record: LakeRecord) -> None: ...


WITHHELD = "[WITHHELD]"


def lake_text(request: CheckRequest, verdict: Verdict, pii_layers: tuple[str, ...]) -> str:
    """Untrusted text with every PII finding redacted, whatever its action; never detected PII.

    Not stored at all ("") when none of `pii_layers` (the PII detectors enabled for this direction) ran
    successfully (nothing vouches that it is free of PII), when a PII finding names no item, or when PII
    was found in the caller's rendered prompt (its offsets do not lead back to the items). An item with a
    PII finding that has no offsets (the Bedrock guardrail blocks sensitive information without a span,
    or anonymizes a match that is not in the text verbatim) is replaced by `[WITHHELD]`.
    """
    from guardrail.verdict import placed_spans

    if not any(name in verdict.latency_ms and name not in verdict.errors for name in pii_layers):
        return ""
    pii = [finding for finding in verdict.findings if finding.is_pii]
    if any(finding.span is None for finding in pii):
        return ""
    withheld = {f.span.item for f in pii if f.span is not None and f.span.end <= f.span.start}
    if request.rendered is not None and any(
        f.span is not None and f.span.item == request.whole_index for f in pii
    ):
        return ""
    if request.whole_index in withheld:
        return ""
    placed = placed_spans(request, pii)
    texts = [
        WITHHELD if index in withheld else redact(item.text, placed.get(index, []))
        for index, item in enumerate(request.items)
        if not item.trusted
    ]
    return "\n\n".join(texts)


def decision_record(
    request: CheckRequest, verdict: Verdict, pii_layers: tuple[str, ...] = ("pii",)
) -> FilterDecisionRecord:
    return FilterDecisionRecord(
        business_unit=request.business_unit,
        model_id=request.model_id,
        event_time=datetime.now(UTC),
        decision_id=uuid.uuid4().hex,
        request_id=request.request_id,
        tenant_id=request.tenant_id,
        direction=request.direction,
        action=FilterAction(verdict.action),
        failure_policy_applied=verdict.failure_policy_applied,
        findings=[LakeFinding(layer=f.layer, type=f.type, score=f.score) for f in verdict.findings],
        layer_latency_ms=verdict.latency_ms,
        text_redacted=lake_text(request, verdict, pii_layers),
    )


def publish_layer_metrics(request: CheckRequest, verdict: Verdict, namespace: str | None = None) -> None:
    """One EMF blob per layer: calls, blocks, findings, errors, latency; dimensions layer, direction, business
    unit; then one per request: requests, blocked; dimensions direction, business unit (common.quality_metrics).

    EphemeralMetrics keeps each layer's dimensions apart (the shared `Metrics` has one dimension set).
    """
    for layer, latency in verdict.latency_ms.items():
        metrics = EphemeralMetrics(namespace=namespace)
        metrics.add_dimension("layer", layer)
        metrics.add_dimension("direction", request.direction)
        metrics.add_dimension("business_unit", request.business_unit)
        blocked = any(f.layer == layer and f.action == "block" for f in verdict.findings)
        found = any(f.layer == layer for f in verdict.findings)
        metrics.add_metric("calls", MetricUnit.Count, 1)
        metrics.add_metric("blocks", MetricUnit.Count, int(blocked))
        metrics.add_metric("findings", MetricUnit.Count, int(found))  # any action: redactions count
        metrics.add_metric("errors", MetricUnit.Count, int(layer in verdict.errors))
        metrics.add_metric("latency", MetricUnit.Milliseconds, latency)
        metrics.flush_metrics()
    # Per request (no layer): a request blocked by two layers counts once in the block rate.
    metrics = EphemeralMetrics(namespace=namespace)
    metrics.add_dimension("direction", request.direction)
    metrics.add_dimension("business_unit", request.business_unit)
    metrics.add_metric("requests", MetricUnit.Count, 1)
    metrics.add_metric("blocked", MetricUnit.Count, int(verdict.action == "block"))
    metrics.flush_metrics()
