"""Reviewed tenant versions: queued for review with what a reviewer needs (moto SageMaker, S3, SQS), then a
reviewer's decision through the review API sets the version's approval status, bound to the message."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from evaluation import review_api
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws
from tenant_review.handler import queue_for_review

from tests.journeys._tenant_review import REPORT, register_tenant_version
from tests.lambdas.evaluation.test_review_binding import call_as

REGION = "us-east-1"
GROUP = "exco-retail-prod-tenants-product-qa"
FT_BUCKET = "exco-retail-prod-ft-333333333333"
RESULTS = "exco-retail-prod-evaluation"
ALICE = "arn:aws:sts::333333333333:assumed-role/tenant-reviewer/alice"
BOB = "arn:aws:sts::333333333333:assumed-role/other-reviewer/bob"


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_METRICS_NAMESPACE": "test",
    }.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    with mock_aws():
        s3, sqs, sagemaker = boto3.client("s3"), boto3.client("sqs"), boto3.client("sagemaker")
        for bucket in (FT_BUCKET, RESULTS):
            s3.create_bucket(Bucket=bucket)
        url = sqs.create_queue(QueueName="reviews")["QueueUrl"]
        env = {
            "BUSINESS_UNIT": "retail",
            "STAGE": "prod",
            "TENANT_GROUPS": json.dumps([GROUP]),
            "REVIEW_QUEUE_URL": url,
            "RESULTS_BUCKET": RESULTS,
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        review_api.review_service.cache_clear()
        review_api.tenant_decisions.cache_clear()
        yield SimpleNamespace(s3=s3, sqs=sqs, sagemaker=sagemaker, url=url, env=env)
        review_api.review_service.cache_clear()
        review_api.tenant_decisions.cache_clear()


def register(
    aws: SimpleNamespace, tenant: str, status: str = "PendingManualApproval", group: str = GROUP
) -> str:
    return register_tenant_version(
        aws.sagemaker,
        aws.s3,
        group=group,
        bucket=FT_BUCKET,
        tenant=tenant,
        artifact_key=f"models/retail/tenant={tenant}/job/output/model.tar.gz",
        artifact=f"adapter of {tenant}".encode(),
        status=status,
    )


def queue(aws: SimpleNamespace, arn: str) -> dict[str, Any] | None:
    return queue_for_review(arn, aws.sagemaker, aws.s3, aws.sqs, aws.env)


def status_of(aws: SimpleNamespace, arn: str) -> tuple[str, str | None]:
    described = aws.sagemaker.describe_model_package(ModelPackageName=arn)
    return described["ModelApprovalStatus"], described.get("ApprovalDescription")


def test_a_pending_tenant_version_is_queued_with_metrics_and_samples(aws: SimpleNamespace) -> None:
    arn = register(aws, "ann")
    message = queue(aws, arn)
    (sent,) = aws.sqs.receive_message(QueueUrl=aws.url)["Messages"]
    assert json.loads(sent["Body"]) == message
    assert message is not None
    assert {k: message[k] for k in ("kind", "tenant_id", "use_case", "version", "model_package_arn")} == {
        "kind": "tenant_model",
        "tenant_id": "ann",
        "use_case": "product-qa",
        "version": 1,
        "model_package_arn": arn,
    }
    assert message["metrics"] == {"token_f1": 0.71, "exact_match": 0.4}
    assert message["samples"] == REPORT["samples"]
    # The fields every review message is claimed by.
    assert (message["run_id"], message["record_id"], message["model"]) == (GROUP, "v1", "ann")


@pytest.mark.parametrize(
    ("status", "group"),
    [("Approved", GROUP), ("Rejected", GROUP), ("PendingManualApproval", "exco-retail-x")],
)
def test_decided_versions_and_other_groups_are_not_queued(
    aws: SimpleNamespace, status: str, group: str
) -> None:
    assert queue(aws, register(aws, "ann", status, group)) is None
    assert aws.sqs.receive_message(QueueUrl=aws.url).get("Messages", []) == []


def take(principal: str) -> dict[str, Any]:
    status, review = call_as(principal, "GET", "/reviews/next")
    assert status == 200
    return review


def decide(principal: str, review: dict[str, Any], **body: Any) -> tuple[int, dict[str, Any]]:
    request = {
        "model_package_arn": review["model_package_arn"],
        "receipt_handle": review["receipt_handle"],
        **body,
    }
    return call_as(principal, "POST", "/tenant-models/decisions", request)


def in_flight(aws: SimpleNamespace) -> int:
    attributes = aws.sqs.get_queue_attributes(QueueUrl=aws.url, AttributeNames=["All"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessagesNotVisible"]) + int(
        attributes["ApproximateNumberOfMessages"]
    )


def test_a_reviewers_approval_approves_the_version_and_consumes_the_message(aws: SimpleNamespace) -> None:
    arn = register(aws, "ann")
    queue(aws, arn)
    review = take(ALICE)
    assert (review["kind"], review["tenant_id"], review["metrics"]["token_f1"]) == (
        "tenant_model",
        "ann",
        0.71,
    )
    status, body = decide(ALICE, review, decision="approve")
    reviewer = "arn:aws:iam::333333333333:role/tenant-reviewer"
    assert (status, body) == (200, {"model_package_arn": arn, "status": "Approved", "reviewer": reviewer})
    assert status_of(aws, arn) == ("Approved", f"approved by {reviewer}")
    assert in_flight(aws) == 0


def test_a_rejection_needs_and_records_the_reason(aws: SimpleNamespace) -> None:
    arn = register(aws, "ann")
    queue(aws, arn)
    review = take(ALICE)
    status, body = decide(ALICE, review, decision="reject")
    assert (status, body["message"]) == (400, "reason: required to reject (the tenant is told why)")
    assert status_of(aws, arn) == ("PendingManualApproval", None)
    status, _ = decide(ALICE, review, decision="reject", reason="answers invent prices")
    assert status == 200
    assert status_of(aws, arn) == (
        "Rejected",
        "rejected by arn:aws:iam::333333333333:role/tenant-reviewer: answers invent prices",
    )


def test_a_decision_cannot_reach_another_tenants_version(aws: SimpleNamespace) -> None:
    ann, ben = register(aws, "ann"), register(aws, "ben")
    queue(aws, ann)
    review = take(ALICE)
    status, body = decide(ALICE, {**review, "model_package_arn": ben}, decision="approve")
    assert status == 400 and body["message"].startswith("model_package_arn:")
    assert status_of(aws, ben) == ("PendingManualApproval", None)
    assert status_of(aws, ann) == ("PendingManualApproval", None)
    assert in_flight(aws) == 1  # the message waits for a valid answer


def test_a_version_taken_by_one_reviewer_cannot_be_decided_by_another(aws: SimpleNamespace) -> None:
    arn = register(aws, "ann")
    queue(aws, arn)
    review = take(ALICE)
    status, body = decide(BOB, review, decision="approve")
    assert (status, body["message"]) == (403, "receipt_handle: this review was taken by another reviewer")
    assert status_of(aws, arn) == ("PendingManualApproval", None)


def test_a_tenant_version_cannot_be_scored_and_a_scored_row_cannot_be_decided(aws: SimpleNamespace) -> None:
    queue(aws, register(aws, "ann"))
    review = take(ALICE)
    score = {k: review[k] for k in ("run_id", "record_id", "model", "receipt_handle")}
    status, body = call_as(ALICE, "POST", "/reviews", {**score, "score": 9})
    assert status == 400 and "POST /tenant-models/decisions" in body["message"]
    flagged = {"run_id": "run-1", "record_id": "s1", "model": "fm1", "output": "an answer", "record": None}
    aws.sqs.send_message(QueueUrl=aws.url, MessageBody=json.dumps(flagged))
    row = take(ALICE)
    while row.get("kind") == "tenant_model":  # the tenant message may come back first
        row = take(ALICE)
    status, body = decide(
        ALICE, {**row, "model_package_arn": review["model_package_arn"]}, decision="approve"
    )
    assert status == 400 and "POST /reviews" in body["message"]


def test_a_version_decided_meanwhile_answers_409_and_changes_nothing(aws: SimpleNamespace) -> None:
    arn = register(aws, "ann")
    queue(aws, arn)
    review = take(ALICE)
    aws.sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Rejected")
    status, body = decide(ALICE, review, decision="approve")
    assert (status, body["message"]) == (409, "model_package_arn: already Rejected; nothing was changed")
    assert status_of(aws, arn)[0] == "Rejected"
    assert in_flight(aws) == 0  # a stale message is consumed


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        st.dictionaries(
            st.sampled_from(["model_package_arn", "decision", "reason", "receipt_handle", "other"]),
            st.one_of(st.text(max_size=30), st.integers(), st.none()),
        ),
        st.lists(st.integers(), max_size=3),
    )
)
def test_any_bad_decision_body_is_a_4xx_naming_a_field(aws: SimpleNamespace, body: Any) -> None:
    status, answer = call_as(ALICE, "POST", "/tenant-models/decisions", body)
    assert 400 <= status < 500
    assert ":" in answer["message"]
