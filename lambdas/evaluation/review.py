"""The human review queue: flagged rows go to SQS; a small review API (stack work) reads them
and writes reviewers' scores back as JSON lines of `HumanScore` under the run's `reviews/` prefix.

SQS + API rather than Amazon Augmented AI: A2I needs a SageMaker workteam, a task UI template and
a flow definition per account and region, has no local emulation (no moto), and its reviewers
live outside the platform's IAM principals; a queue keeps reviewers as IAM principals of the business
unit account (the review API is IAM-authorized), is testable with moto, and costs nothing while idle.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from common.evaluation_dataset import EvaluationRecord
from evaluation.aws_clients import LazyClient
from evaluation.scoring import ScoredRecord

# SQS takes 256 KiB per message; a longer record is left out (the reviewer sees the output only).
MAX_MESSAGE_BYTES = 240 * 1024


def review_message(row: ScoredRecord, record: EvaluationRecord | None = None) -> dict[str, Any]:
    message = {
        "run_id": row.run_id,
        "record_id": row.record_id,
        "model": row.model,
        "category": row.category,
        "output": row.output,
        "judge_score": row.judge_score,
        "judge_justification": row.judge_justification,
        "record": None if record is None else record.model_dump(mode="json", exclude_defaults=True),
    }
    if len(json.dumps(message).encode()) > MAX_MESSAGE_BYTES:
        message["record"] = None
    return message


class SqsReviewQueue:
    sqs = LazyClient("sqs")

    def __init__(self, queue_url: str, *, sqs_client: Any = None) -> None:
        self.queue_url = queue_url
        self._sqs = sqs_client

    def submit(
        self, rows: Iterable[ScoredRecord], records: Mapping[str, EvaluationRecord] | None = None
    ) -> int:
        """Send flagged rows, ten per call (the SQS batch limit); returns how many were sent."""
        flagged: Sequence[ScoredRecord] = [r for r in rows if r.human_review and r.error is None]
        for start in range(0, len(flagged), 10):
            chunk = flagged[start : start + 10]
            answer = self.sqs.send_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {
                        "Id": str(i),
                        "MessageBody": json.dumps(review_message(r, (records or {}).get(r.record_id))),
                    }
                    for i, r in enumerate(chunk)
                ],
            )
            if answer.get("Failed"):
                raise RuntimeError(f"review queue refused {len(answer['Failed'])} messages")
        return len(flagged)
