"""The human review queue: flagged rows go to SQS; a small review API (stack work) reads them
and writes reviewers' scores back as JSON lines of `HumanScore` under the run's `reviews/` prefix.

SQS + API rather than Amazon Augmented AI: A2I needs a SageMaker workteam, a task UI template and
a flow definition per account and region, has no local emulation (no moto), and its reviewers
live outside the platform's Cognito users; a queue keeps reviewers in the same user pool, is
testable with moto, and costs nothing while idle.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from evaluation.scoring import ScoredRecord


def review_message(row: ScoredRecord) -> dict[str, Any]:
    return {
        "run_id": row.run_id,
        "record_id": row.record_id,
        "model": row.model,
        "category": row.category,
        "output": row.output,
        "judge_score": row.judge_score,
        "judge_justification": row.judge_justification,
    }


class SqsReviewQueue:
    def __init__(self, queue_url: str, *, sqs_client: Any = None) -> None:
        self.queue_url = queue_url
        self._sqs = sqs_client

    @property
    def sqs(self) -> Any:
        if self._sqs is None:
            import boto3

            self._sqs = boto3.client("sqs")
        return self._sqs

    def submit(self, rows: Iterable[ScoredRecord]) -> int:
        """Send flagged rows, ten per call (the SQS batch limit); returns how many were sent."""
        flagged: Sequence[ScoredRecord] = [r for r in rows if r.human_review and r.error is None]
        for start in range(0, len(flagged), 10):
            chunk = flagged[start : start + 10]
            answer = self.sqs.send_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "MessageBody": json.dumps(review_message(r))} for i, r in enumerate(chunk)
                ],
            )
            if answer.get("Failed"):
                raise RuntimeError(f"review queue refused {len(answer['Failed'])} messages")
        return len(flagged)
