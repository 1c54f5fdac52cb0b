"""The messages the application backend sends after answering /invoke, and their queues.

Two hops, both asynchronous so that neither the lake nor the judge sits in the request path:
- every answered /invoke: a `UsageRecord` (the lake row itself) to the usage queue, which the usage
  writer function appends to the lake's `model_usage` table in batches;
- a sample of them: an `OnlineSample` (question and answer after the filters, PII redacted) to the online
  evaluation queue, which the online judge function scores with the offline judge.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from common.lake_records import BusinessUnitName, SafeId, UsageRecord

MAX_SAMPLE_TEXT_CHARS = 100_000  # keeps a sample well inside the 256 KiB SQS message limit


def sampled(request_id: str, rate: float) -> bool:
    """A stable coin flip per request id: the same request is sampled on every retry."""
    if rate <= 0:
        return False
    digest = hashlib.sha256(f"online-evaluation/{request_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


class OnlineSample(BaseModel):
    """One production exchange for the judge: what the model was asked and what the user got, redacted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    business_unit: BusinessUnitName
    request_id: SafeId
    tenant_id: SafeId
    use_case: SafeId
    model_id: Annotated[str, Field(min_length=1, max_length=256)]
    prompt_ref: Annotated[str, Field(min_length=1, max_length=256)]
    question: Annotated[str, Field(min_length=1, max_length=MAX_SAMPLE_TEXT_CHARS)]
    answer: Annotated[str, Field(min_length=1, max_length=MAX_SAMPLE_TEXT_CHARS)]
    event_time: datetime


class SqsMessages:
    """Sends one JSON message per call to one queue (boto3 SQS client created on first use)."""

    def __init__(self, queue_url: str, *, sqs_client: Any = None) -> None:
        self.queue_url = queue_url
        self._sqs = sqs_client

    @property
    def sqs(self) -> Any:
        if self._sqs is None:
            import boto3

            self._sqs = boto3.client("sqs")
        return self._sqs

    def send(self, message: UsageRecord | OnlineSample) -> None:
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=message.model_dump_json())
