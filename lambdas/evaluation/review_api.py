"""The human review API (API Gateway REST, IAM auth): reviewers take flagged rows from the review queue
and answer with a score that summarize joins onto the results (`HumanScore` JSON lines under the run's
`reviews/` prefix, see evaluation.aggregate.merge_human_scores).

    GET  /reviews/next  one message from the queue: record, model output, judge score, receipt handle
                        (204 when the queue is empty)
    POST /reviews       {run_id, record_id, model, score 1-10, comment?, receipt_handle}

A rejected request (4xx naming the field) writes nothing. The receipt handle is checked with
ChangeMessageVisibility before the score is written, and the message is deleted after it.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import BadRequestError
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.evaluation_dataset import RecordId
from common.lake_records import SafeId
from evaluation.aggregate import HumanScore
from evaluation.settings import ModelName
from evaluation.store import S3ResultStore

# The reviewer keeps the message while writing the score; the queue's own visibility timeout applies
# from the receive, this is only how long the check before the write holds it.
HOLD_SECONDS = 300
STALE_HANDLE_ERRORS = {
    "ReceiptHandleIsInvalid",
    "MessageNotInflight",
    "InvalidParameterValue",
    "AWS.SimpleQueueService.MessageNotInflight",
}


class ReviewSubmission(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: SafeId
    record_id: RecordId
    model: ModelName
    score: Annotated[int, Field(ge=1, le=10, strict=True)]
    comment: Annotated[str, Field(max_length=4000)] | None = None
    receipt_handle: Annotated[str, Field(min_length=1, max_length=8192)]


class ReviewService:
    def __init__(self, queue_url: str, store: S3ResultStore, *, sqs_client: Any = None) -> None:
        self.queue_url, self.store = queue_url, store
        self._sqs = sqs_client

    @property
    def sqs(self) -> Any:
        if self._sqs is None:
            import boto3

            self._sqs = boto3.client("sqs")
        return self._sqs

    def next_review(self) -> dict[str, Any] | None:
        answer = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=1)
        messages = answer.get("Messages", [])
        if not messages:
            return None
        return {**json.loads(messages[0]["Body"]), "receipt_handle": messages[0]["ReceiptHandle"]}

    def score_key(self, submission: ReviewSubmission, reviewer: str) -> str:
        """One object per reviewer and row: a resubmission replaces the reviewer's earlier score."""
        digest = hashlib.sha256(
            f"{reviewer}\n{submission.model}\n{submission.record_id}".encode()
        ).hexdigest()[:32]
        return f"{self.store.run_prefix(submission.run_id)}reviews/{digest}.jsonl"

    def submit(self, submission: ReviewSubmission, reviewer: str) -> str:
        try:  # an unknown or expired handle is the caller's mistake: refuse before writing anything
            self.sqs.change_message_visibility(
                QueueUrl=self.queue_url,
                ReceiptHandle=submission.receipt_handle,
                VisibilityTimeout=HOLD_SECONDS,
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in STALE_HANDLE_ERRORS:
                raise
            raise BadRequestError("receipt_handle: unknown or expired; take the review again") from None
        score = HumanScore(
            record_id=submission.record_id,
            model=submission.model,
            score=submission.score,
            comment=submission.comment,
            reviewer=reviewer,
        )
        key = self.score_key(submission, reviewer)
        self.store.put_text(key, score.model_dump_json() + "\n", "application/x-ndjson")
        self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=submission.receipt_handle)
        return key


@lru_cache(maxsize=1)
def review_service() -> ReviewService:
    business_unit = os.environ["BUSINESS_UNIT"]
    store = S3ResultStore(os.environ["RESULTS_BUCKET"], f"{business_unit}/evaluation_runs")
    return ReviewService(os.environ["REVIEW_QUEUE_URL"], store)


app = APIGatewayRestResolver()


@app.get("/reviews/next")
def next_review() -> Response[str] | dict[str, Any]:
    review = review_service().next_review()
    if review is None:
        return Response(status_code=204, body="")
    return review


@app.post("/reviews")
def submit_review() -> Response[str]:
    submission = parse_submission(app.current_event.body)
    reviewer = app.current_event.request_context.identity.user_arn or "unknown"
    key = review_service().submit(submission, reviewer)
    return Response(
        status_code=201, content_type="application/json", body=json.dumps({"stored": key.rsplit("/", 1)[-1]})
    )


def parse_submission(body: str | None) -> ReviewSubmission:
    """The body as a ReviewSubmission, or BadRequestError (400) naming the first bad field."""
    try:
        data = json.loads(body or "")
    except ValueError:
        raise BadRequestError("body: not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequestError("body: must be a JSON object")
    try:
        return ReviewSubmission.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "body"
        raise BadRequestError(f"{field}: {err['msg']}") from None
