"""The human review API (API Gateway REST, IAM auth): reviewers take flagged rows from the review queue
and answer with a score that summarize joins onto the results (`HumanScore` JSON lines under the run's
`reviews/` prefix, see evaluation.aggregate.merge_human_scores).

    GET  /reviews/next  one message from the queue: record, model output, judge score, receipt handle
                        (204 when the queue is empty)
    POST /reviews       {run_id, record_id, model, score 1-10, comment?, receipt_handle}

A rejected request (4xx naming the field) writes nothing. Binding (issue 16 item 9): taking a message
writes a claim (`<bu>/evaluation_runs/_claims/<sha256 of the receipt handle>.json`: run, record, model and the
reviewer who took it); a submission must match its claim field by field and come from the same reviewer, so
a handle cannot score another row. The reviewer is the IAM principal (`reviewer_principal`), not the STS
session, so renaming a session does not add a reviewer. The handle is then checked with
ChangeMessageVisibility before the score is written, and the message and its claim are deleted after it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from functools import lru_cache
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import BadRequestError, ForbiddenError
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


# Identity Center sets the session name of its roles to the signed-in user; callers cannot choose it.
IDENTITY_CENTER_ROLE_PREFIX = "AWSReservedSSO_"
_ASSUMED_ROLE = re.compile(
    r"^arn:(?P<partition>aws[a-z\-]*):sts::(?P<account>\d{12}):assumed-role/(?P<role>[\w+=,.@\-]+)/(?P<session>[\w+=,.@\-]+)$"
)
_IAM_PRINCIPAL = re.compile(r"^arn:aws[a-z\-]*:iam::\d{12}:(user|role)/[\w+=,.@\-/]+$")


def reviewer_principal(caller_arn: str | None) -> str:
    """The IAM principal behind a SigV4 caller: the role for an assumed-role session (a session name is
    the caller's choice, so it must not make a new reviewer), the user for an IAM user. Identity Center
    roles are shared by a permission set's users and their session name is the user, set by AWS: there the
    user stays part of the reviewer."""
    arn = caller_arn or ""
    assumed = _ASSUMED_ROLE.match(arn)
    if assumed:
        role = f"arn:{assumed['partition']}:iam::{assumed['account']}:role/{assumed['role']}"
        if assumed["role"].startswith(IDENTITY_CENTER_ROLE_PREFIX):
            return f"{role}/{assumed['session']}"
        return role
    if _IAM_PRINCIPAL.match(arn):
        return arn
    raise ValueError(f"caller: {arn or 'no IAM identity'!r} is not an IAM user or role session")


class ReviewClaim(BaseModel):
    """What GET /reviews/next handed out under one receipt handle, and to whom."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str
    record_id: str
    model: str
    reviewer: str


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

    def claim_key(self, receipt_handle: str) -> str:
        digest = hashlib.sha256(receipt_handle.encode()).hexdigest()
        return f"{self.store.prefix}/_claims/{digest}.json"

    def next_review(self, reviewer: str) -> dict[str, Any] | None:
        answer = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=1)
        messages = answer.get("Messages", [])
        if not messages:
            return None
        body, handle = json.loads(messages[0]["Body"]), messages[0]["ReceiptHandle"]
        claim = ReviewClaim(
            run_id=str(body.get("run_id")),
            record_id=str(body.get("record_id")),
            model=str(body.get("model")),
            reviewer=reviewer,
        )
        self.store.put_text(self.claim_key(handle), claim.model_dump_json(), "application/json")
        return {**body, "receipt_handle": handle}

    def check_claim(self, submission: ReviewSubmission, reviewer: str) -> str:
        """The claim's key when the submission answers exactly the message its handle was given for."""
        key = self.claim_key(submission.receipt_handle)
        text = self.store.get_text(key)
        if text is None:
            raise BadRequestError("receipt_handle: unknown or expired; take the review again")
        claim = ReviewClaim.model_validate_json(text)
        for field in ("run_id", "record_id", "model"):
            if getattr(claim, field) != getattr(submission, field):
                raise BadRequestError(
                    f"{field}: {getattr(submission, field)!r} does not match the message this receipt handle "
                    f"answers ({getattr(claim, field)!r})"
                )
        if claim.reviewer != reviewer:
            raise ForbiddenError("receipt_handle: this review was taken by another reviewer")
        return key

    def score_key(self, submission: ReviewSubmission, reviewer: str) -> str:
        """One object per reviewer and row: a resubmission replaces the reviewer's earlier score."""
        digest = hashlib.sha256(
            f"{reviewer}\n{submission.model}\n{submission.record_id}".encode()
        ).hexdigest()[:32]
        return f"{self.store.run_prefix(submission.run_id)}reviews/{digest}.jsonl"

    def submit(self, submission: ReviewSubmission, reviewer: str) -> str:
        claim_key = self.check_claim(submission, reviewer)
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
        self.store.s3.delete_object(Bucket=self.store.bucket, Key=claim_key)
        return key


@lru_cache(maxsize=1)
def review_service() -> ReviewService:
    business_unit = os.environ["BUSINESS_UNIT"]
    store = S3ResultStore(os.environ["RESULTS_BUCKET"], f"{business_unit}/evaluation_runs")
    return ReviewService(os.environ["REVIEW_QUEUE_URL"], store)


app = APIGatewayRestResolver()


def current_reviewer() -> str:
    try:
        return reviewer_principal(app.current_event.request_context.identity.user_arn)
    except ValueError as exc:
        raise ForbiddenError(str(exc)) from None


@app.get("/reviews/next")
def next_review() -> Response[str] | dict[str, Any]:
    review = review_service().next_review(current_reviewer())
    if review is None:
        return Response(status_code=204, body="")
    return review


@app.post("/reviews")
def submit_review() -> Response[str]:
    reviewer = current_reviewer()
    submission = parse_submission(app.current_event.body)
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
