"""The human review API (API Gateway REST, IAM auth): reviewers take flagged rows from the review queue
and answer with a score that summarize joins onto the results (`HumanScore` JSON lines under the run's
`reviews/` prefix, see evaluation.aggregate.merge_human_scores).

    GET  /reviews/next  one message from the queue: record, model output, judge score, receipt handle
                        (204 when the queue is empty)
    POST /reviews       {run_id, record_id, model, score 1-10, comment?, receipt_handle}
    GET  /candidates?use_case=  end users' rated requests waiting in the feedback zone (not yet accepted)
    POST /datasets/{name}/accept  {use_case?, candidates: [rating id], flagged: [{run_id, record_id,
                        reference_output?, new_id?}], comment?}: the prompt catalog appends them as a new
                        immutable version of the dataset and records the reviewer who accepted them

A rejected request (4xx naming the field) writes nothing. Binding (issue 16 item 9): taking a message
writes a claim (`<bu>/evaluation_runs/_claims/<sha256 of the receipt handle>.json`: run, record, model and the
reviewer who took it); a submission must match its claim field by field and come from the same reviewer, so
a handle cannot score another row. The reviewer is the IAM principal (`reviewer_principal`), not the STS
session, so renaming a session does not add a reviewer. The handle is then checked with
ChangeMessageVisibility before the score is written, and the message and its claim are deleted after it.

Tenant model versions (use case promotion `reviewed`, queued by lambdas/tenant_review) come through the same
queue and GET /reviews/next; their claim also names the version (`model_package_arn`), and they are answered
with

    POST /tenant-models/decisions  {model_package_arn, decision: approve | reject, reason (required to
                        reject), receipt_handle}: the version's ModelApprovalStatus becomes Approved or
                        Rejected, with the reviewer and the reason as its ApprovalDescription

A decision must name the version its handle was given for (another tenant's version is refused) and come
from the reviewer who took it; a version decided meanwhile answers 409 and leaves the registry as it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from functools import lru_cache
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import BadRequestError, ForbiddenError, ServiceError
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from common.evaluation_dataset import EvaluationRecord, RecordId, read_records
from common.lake_records import SafeId
from evaluation.aggregate import HumanScore
from evaluation.aws_clients import LazyClient
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
    model_package_arn: str | None = None  # tenant model versions only (answered by a decision, not a score)


class ReviewSubmission(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: SafeId
    record_id: RecordId
    model: ModelName
    score: Annotated[int, Field(ge=1, le=10, strict=True)]
    comment: Annotated[str, Field(max_length=4000)] | None = None
    receipt_handle: Annotated[str, Field(min_length=1, max_length=8192)]


class ReviewService:
    sqs = LazyClient("sqs")

    def __init__(self, queue_url: str, store: S3ResultStore, *, sqs_client: Any = None) -> None:
        self.queue_url, self.store = queue_url, store
        self._sqs = sqs_client

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
            model_package_arn=str(body["model_package_arn"]) if body.get("kind") == TENANT_MODEL else None,
        )
        self.store.put_text(self.claim_key(handle), claim.model_dump_json(), "application/json")
        return {**body, "receipt_handle": handle}

    def read_claim(self, receipt_handle: str) -> tuple[str, ReviewClaim]:
        """The claim recorded when the handle was handed out, and its key; 400 when there is none."""
        key = self.claim_key(receipt_handle)
        text = self.store.get_text(key)
        if text is None:
            raise BadRequestError("receipt_handle: unknown or expired; take the review again")
        return key, ReviewClaim.model_validate_json(text)

    def check_claim(self, submission: ReviewSubmission, reviewer: str) -> str:
        """The claim's key when the submission answers exactly the message its handle was given for."""
        key, claim = self.read_claim(submission.receipt_handle)
        if claim.model_package_arn is not None:
            raise BadRequestError(
                "receipt_handle: this review is a tenant model version; answer it with POST /tenant-models/decisions"
            )
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

    def hold(self, receipt_handle: str) -> None:
        """Keep the message while the answer is written; an unknown or expired handle is the caller's
        mistake (400), refused before anything is written."""
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=HOLD_SECONDS
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in STALE_HANDLE_ERRORS:
                raise
            raise BadRequestError("receipt_handle: unknown or expired; take the review again") from None

    def finish(self, receipt_handle: str, claim_key: str) -> None:
        """The message is answered: delete it and its claim."""
        self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt_handle)
        self.store.s3.delete_object(Bucket=self.store.bucket, Key=claim_key)

    def submit(self, submission: ReviewSubmission, reviewer: str) -> str:
        claim_key = self.check_claim(submission, reviewer)
        self.hold(submission.receipt_handle)
        score = HumanScore(
            record_id=submission.record_id,
            model=submission.model,
            score=submission.score,
            comment=submission.comment,
            reviewer=reviewer,
        )
        key = self.score_key(submission, reviewer)
        self.store.put_text(key, score.model_dump_json() + "\n", "application/x-ndjson")
        self.finish(submission.receipt_handle, claim_key)
        return key


# ---- tenant model versions: a reviewer's decision sets the registry's approval status ----------------

TENANT_MODEL = "tenant_model"  # the `kind` of review messages lambdas/tenant_review queues
PENDING = "PendingManualApproval"
_TENANT_PACKAGE_ARN = (
    r"^arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]+:\d{12}:model-package/[A-Za-z0-9\-]{1,63}/\d{1,9}$"
)


class TenantDecision(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model_package_arn: Annotated[str, Field(pattern=_TENANT_PACKAGE_ARN)]
    decision: Literal["approve", "reject"]
    reason: Annotated[str, Field(min_length=1, max_length=800)] | None = None
    receipt_handle: Annotated[str, Field(min_length=1, max_length=8192)]

    @model_validator(mode="after")
    def _rejection_says_why(self) -> TenantDecision:
        if self.decision == "reject" and self.reason is None:
            raise ValueError("reason: required to reject (the tenant is told why)")
        return self


class TenantModelDecisions:
    """Reviewers' decisions on tenant versions of this stage's tenant groups (TENANT_GROUPS), applied by
    the review API's role, which may update exactly those groups' versions."""

    sagemaker = LazyClient("sagemaker")

    def __init__(
        self, reviews: ReviewService, tenant_groups: frozenset[str], *, sagemaker: Any = None
    ) -> None:
        self.reviews, self.tenant_groups = reviews, tenant_groups
        self._sagemaker = sagemaker

    def check_claim(self, decision: TenantDecision, reviewer: str) -> str:
        key, claim = self.reviews.read_claim(decision.receipt_handle)
        if claim.model_package_arn is None:
            raise BadRequestError(
                "receipt_handle: this review is not a tenant model version; answer it with POST /reviews"
            )
        if claim.model_package_arn != decision.model_package_arn:
            raise BadRequestError(
                f"model_package_arn: {decision.model_package_arn!r} is not the version this receipt handle "
                f"answers ({claim.model_package_arn!r})"
            )
        if claim.reviewer != reviewer:
            raise ForbiddenError("receipt_handle: this review was taken by another reviewer")
        return key

    def decide(self, decision: TenantDecision, reviewer: str) -> dict[str, Any]:
        claim_key = self.check_claim(decision, reviewer)
        self.reviews.hold(decision.receipt_handle)
        arn = decision.model_package_arn
        described = self.sagemaker.describe_model_package(ModelPackageName=arn)
        if described.get("ModelPackageGroupName") not in self.tenant_groups:
            raise ForbiddenError("model_package_arn: not a version of this stage's tenant groups")
        status = described.get("ModelApprovalStatus")
        if status != PENDING:  # decided meanwhile (or a duplicate message): the registry stays as it is
            self.reviews.finish(decision.receipt_handle, claim_key)
            raise ServiceError(409, f"model_package_arn: already {status}; nothing was changed")
        approved = decision.decision == "approve"
        verdict = "approved" if approved else "rejected"
        description = f"{verdict} by {reviewer}" + (f": {decision.reason}" if decision.reason else "")
        self.sagemaker.update_model_package(
            ModelPackageArn=arn,
            ModelApprovalStatus="Approved" if approved else "Rejected",
            ApprovalDescription=description[:1024],
        )
        self.reviews.finish(decision.receipt_handle, claim_key)
        return {
            "model_package_arn": arn,
            "status": "Approved" if approved else "Rejected",
            "reviewer": reviewer,
        }


class FlaggedAnswer(BaseModel):
    """A row a reviewer saw (from a run's dataset), optionally with the answer it should have had."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: SafeId
    record_id: RecordId
    reference_output: Annotated[str, Field(min_length=1, max_length=100_000)] | None = None
    new_id: RecordId | None = None  # the id in the target dataset, when the run's id is taken there


class AcceptRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    use_case: SafeId | None = None
    candidates: Annotated[list[SafeId], Field(max_length=500)] = Field(default_factory=list)
    flagged: Annotated[list[FlaggedAnswer], Field(max_length=500)] = Field(default_factory=list)
    comment: Annotated[str, Field(max_length=1000)] | None = None

    @model_validator(mode="after")
    def _something_to_accept(self) -> AcceptRequest:
        if not self.candidates and not self.flagged:
            raise ValueError("candidates: give at least one candidate or flagged answer")
        if self.candidates and self.use_case is None:
            raise ValueError("use_case: required with candidates")
        return self


DATASET_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")


class Curation:
    """Rating candidates and flagged answers -> the prompt catalog, which writes the new dataset version."""

    def __init__(
        self,
        store: S3ResultStore,
        catalog: Any,
        *,
        candidates_bucket: str,
        candidates_prefix: str,
        s3: Any = None,
    ) -> None:
        self.store, self.catalog = store, catalog
        self.candidates_bucket, self.candidates_prefix = candidates_bucket, candidates_prefix
        self._s3 = s3

    @property
    def s3(self) -> Any:
        return self._s3 or self.store.s3

    def accepted_key(self, use_case: str, rating_id: str) -> str:
        return f"{self.store.prefix}/_accepted/{use_case}/{rating_id}"

    def candidate_key(self, use_case: str, rating_id: str) -> str:
        return f"{self.candidates_prefix}{use_case}/{rating_id}.jsonl"

    def pending(self, use_case: str, limit: int = 50) -> list[dict[str, Any]]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.candidates_bucket, Prefix=f"{self.candidates_prefix}{use_case}/"
        )
        found: list[dict[str, Any]] = []
        for page in pages:
            for item in page.get("Contents", []):
                rating_id = item["Key"].rsplit("/", 1)[-1].removesuffix(".jsonl")
                if self.store.get_text(self.accepted_key(use_case, rating_id)) is not None:
                    continue
                found.append({"rating_id": rating_id, "record": self._candidate(use_case, rating_id, None)})
                if len(found) >= limit:
                    return found
        return found

    def _candidate(self, use_case: str, rating_id: str, field: str | None) -> dict[str, Any]:
        try:
            body = self.s3.get_object(
                Bucket=self.candidates_bucket, Key=self.candidate_key(use_case, rating_id)
            )
        except self.s3.exceptions.NoSuchKey:
            raise BadRequestError(f"{field}: no candidate {rating_id!r} for use case {use_case!r}") from None
        [record] = list(read_records(body["Body"].read().decode().splitlines()))
        return json.loads(record.model_dump_json(exclude_defaults=True))

    def _flagged(self, answer: FlaggedAnswer, field: str) -> dict[str, Any]:
        text = self.store.get_text(f"{self.store.run_prefix(answer.run_id)}dataset.jsonl")
        if text is None:
            raise BadRequestError(f"{field}.run_id: no run {answer.run_id!r}")
        record: EvaluationRecord | None = next(
            (r for r in read_records(text.splitlines()) if r.id == answer.record_id), None
        )
        if record is None:
            raise BadRequestError(f"{field}.record_id: {answer.record_id!r} is not in run {answer.run_id!r}")
        updates: dict[str, Any] = {}
        if answer.reference_output is not None:
            updates["reference_output"] = answer.reference_output
        if answer.new_id is not None:
            updates["id"] = answer.new_id
        return json.loads(record.model_copy(update=updates).model_dump_json(exclude_defaults=True))

    def accept(self, dataset: str, request: AcceptRequest, reviewer: str) -> tuple[int, dict[str, Any]]:
        if not DATASET_NAME.match(dataset):
            raise BadRequestError("path.name: lowercase letters, digits, '-' and '_', at most 64 characters")
        records = [
            self._candidate(request.use_case or "", rating_id, f"candidates[{i}]")
            for i, rating_id in enumerate(request.candidates)
        ]
        records += [self._flagged(answer, f"flagged[{i}]") for i, answer in enumerate(request.flagged)]
        body = {
            "records": records,
            "accepted_by": reviewer,
            "source": "review-api",
            "comment": request.comment or f"accepted {len(records)} record(s) through the review API",
        }
        status, answer = self.catalog.send("POST", f"/datasets/{dataset}/records", body)
        try:
            document = json.loads(answer or b"{}")
        except ValueError:
            document = {}
        if status >= 500 or status == 429:
            return 503, {"message": f"prompt catalog: answered {status}; nothing was accepted, retry"}
        if status != 201:
            return status, {"message": f"prompt catalog: {document.get('message', status)}"}
        for rating_id in request.candidates:
            self.store.put_text(self.accepted_key(request.use_case or "", rating_id), reviewer, "text/plain")
        return 201, {
            "dataset": dataset,
            "version": document.get("version"),
            "records_key": (document.get("content") or {}).get("records_key"),
            "accepted": [r["id"] for r in records],
        }


@lru_cache(maxsize=1)
def curation() -> Curation:
    from common.prompt_client import PromptClient
    from evaluation.settings import EvaluationSettings

    business_unit = os.environ["BUSINESS_UNIT"]
    settings = EvaluationSettings.model_validate_json(os.environ.get("EVALUATION_SETTINGS", "{}"))
    if not settings.prompt_catalog_url:
        raise ForbiddenError("dataset: accepting needs evaluation.prompt_catalog_url in the config")
    catalog = PromptClient(
        settings.prompt_catalog_url, region=os.environ["AWS_REGION"], business_unit=business_unit
    )
    return Curation(
        review_service().store,
        catalog,
        candidates_bucket=os.environ["CANDIDATES_BUCKET"],
        candidates_prefix=os.environ["CANDIDATES_PREFIX"],
    )


@lru_cache(maxsize=1)
def review_service() -> ReviewService:
    business_unit = os.environ["BUSINESS_UNIT"]
    store = S3ResultStore(os.environ["RESULTS_BUCKET"], f"{business_unit}/evaluation_runs")
    return ReviewService(os.environ["REVIEW_QUEUE_URL"], store)


@lru_cache(maxsize=1)
def tenant_decisions() -> TenantModelDecisions:
    groups = frozenset(json.loads(os.environ.get("TENANT_GROUPS", "[]")))
    if not groups:
        raise ForbiddenError("tenant-models: this stage fine-tunes no tenant models")
    return TenantModelDecisions(review_service(), groups)


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
    submission: ReviewSubmission = parse_body(ReviewSubmission, app.current_event.body)
    key = review_service().submit(submission, reviewer)
    return Response(
        status_code=201, content_type="application/json", body=json.dumps({"stored": key.rsplit("/", 1)[-1]})
    )


@app.post("/tenant-models/decisions")
def decide_tenant_model() -> dict[str, Any]:
    reviewer = current_reviewer()
    decision = parse_body(TenantDecision, app.current_event.body)
    return tenant_decisions().decide(decision, reviewer)


@app.get("/candidates")
def list_candidates() -> dict[str, Any]:
    current_reviewer()
    use_case = app.current_event.get_query_string_value("use_case") or ""
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$", use_case):
        raise BadRequestError("use_case: required, the use case whose candidates to list")
    return {"use_case": use_case, "candidates": curation().pending(use_case)}


@app.post("/datasets/<name>/accept")
def accept(name: str) -> Response[str]:
    reviewer = current_reviewer()
    request = parse_body(AcceptRequest, app.current_event.body)
    status, body = curation().accept(name, request, reviewer)
    return Response(status_code=status, content_type="application/json", body=json.dumps(body))


def parse_body(model: type[BaseModel], body: str | None) -> Any:
    """The body as `model`, or BadRequestError (400) naming the first bad field (every route's bodies)."""
    try:
        data = json.loads(body or "")
    except ValueError:
        raise BadRequestError("body: not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequestError("body: must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "body"
        message = str(err["msg"]).removeprefix("Value error, ")
        if ":" in message and not err["loc"]:
            raise BadRequestError(message) from None
        raise BadRequestError(f"{field}: {message}") from None
