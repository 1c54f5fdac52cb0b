"""Issue 16 item 9: a review submission is bound to the message it answers, the reviewer to the IAM
principal. Written before the fix: each of these passed a forged or inflated review on main."""

import json

import pytest
from evaluation import review_api

from .test_review_api import BUCKET, aws, call, objects  # noqa: F401 - the aws fixture

ALICE_SESSION_1 = "arn:aws:sts::111111111111:assumed-role/reviewer/alice-1"
ALICE_SESSION_2 = "arn:aws:sts::111111111111:assumed-role/reviewer/alice-2"
BOB = "arn:aws:sts::111111111111:assumed-role/other-reviewer/bob"
SSO_ALICE = "arn:aws:sts::111111111111:assumed-role/AWSReservedSSO_Reviewers_0123abcd/alice@example.com"
SSO_BOB = "arn:aws:sts::111111111111:assumed-role/AWSReservedSSO_Reviewers_0123abcd/bob@example.com"


def call_as(principal: str, method: str, path: str, body: object = None) -> tuple[int, dict]:
    """The review API called by `principal` (also used by tests/lambdas/tenant_review)."""
    return call(method, path, body, principal=principal)


def flag(aws, run_id="run-1", record_id="s1", model="fm1"):  # noqa: F811
    body = {"run_id": run_id, "record_id": record_id, "model": model, "output": "an answer", "record": None}
    aws.sqs.send_message(QueueUrl=aws.url, MessageBody=json.dumps(body))


def take(principal: str) -> dict:
    status, review = call_as(principal, "GET", "/reviews/next")
    assert status == 200
    return review


def answer(review: dict, **overrides) -> dict:
    body = {k: review[k] for k in ("run_id", "record_id", "model", "receipt_handle")}
    return {**body, "score": 2, **overrides}


def review_objects(s3) -> list[str]:
    return [k for k in objects(s3) if "/reviews/" in k]


def in_flight(aws) -> int:  # noqa: F811
    attributes = aws.sqs.get_queue_attributes(QueueUrl=aws.url, AttributeNames=["All"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessagesNotVisible"])


@pytest.mark.parametrize(
    ("field", "forged"), [("record_id", "s2"), ("model", "fm2"), ("run_id", "run-other")]
)
def test_a_handle_cannot_score_another_row(aws, field, forged):  # noqa: F811
    flag(aws)
    review = take(ALICE_SESSION_1)
    status, body = call_as(ALICE_SESSION_1, "POST", "/reviews", answer(review, **{field: forged}))
    assert status == 400
    assert body["message"].startswith(f"{field}:") and "message" in body["message"]
    assert review_objects(aws.s3) == []
    assert in_flight(aws) == 1  # the message is not consumed by a refused submission


def test_a_handle_taken_by_one_reviewer_cannot_be_answered_by_another(aws):  # noqa: F811
    flag(aws)
    review = take(ALICE_SESSION_1)
    status, body = call_as(BOB, "POST", "/reviews", answer(review))
    assert status == 403
    assert body["message"].startswith("receipt_handle:")
    assert review_objects(aws.s3) == []


def test_session_names_of_one_role_are_one_reviewer(aws):  # noqa: F811
    flag(aws)
    flag(aws)  # the same row sent twice (e.g. a re-sent batch): a second score must not add weight
    for session in (ALICE_SESSION_1, ALICE_SESSION_2):
        review = take(session)
        assert call_as(session, "POST", "/reviews", answer(review))[0] == 201
    [key] = review_objects(aws.s3)
    stored = json.loads(aws.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert stored["reviewer"] == "arn:aws:iam::111111111111:role/reviewer"


def test_identity_center_users_sharing_a_permission_set_are_separate_reviewers(aws):  # noqa: F811
    flag(aws)
    flag(aws)
    for user in (SSO_ALICE, SSO_BOB):
        review = take(user)
        assert call_as(user, "POST", "/reviews", answer(review))[0] == 201
    reviewers = {
        json.loads(aws.s3.get_object(Bucket=BUCKET, Key=k)["Body"].read())["reviewer"]
        for k in review_objects(aws.s3)
    }
    assert reviewers == {
        "arn:aws:iam::111111111111:role/AWSReservedSSO_Reviewers_0123abcd/alice@example.com",
        "arn:aws:iam::111111111111:role/AWSReservedSSO_Reviewers_0123abcd/bob@example.com",
    }


def test_a_caller_without_an_iam_principal_is_refused(aws):  # noqa: F811
    flag(aws)
    status, body = call_as("", "GET", "/reviews/next")
    assert status == 403 and body["message"].startswith("caller:")


@pytest.mark.parametrize(
    ("arn", "expected"),
    [
        ("arn:aws:iam::111111111111:user/carol", "arn:aws:iam::111111111111:user/carol"),
        ("arn:aws:sts::111111111111:assumed-role/r/s", "arn:aws:iam::111111111111:role/r"),
        ("arn:aws-cn:sts::111111111111:assumed-role/r/s", "arn:aws-cn:iam::111111111111:role/r"),
    ],
)
def test_reviewer_principal(arn, expected):
    assert review_api.reviewer_principal(arn) == expected


@pytest.mark.parametrize("arn", ["", "unknown", "arn:aws:sts::1:federated-user/x", "arn:aws:iam::1:root/x/y"])
def test_reviewer_principal_refuses_what_is_not_a_user_or_role(arn):
    with pytest.raises(ValueError, match="caller"):
        review_api.reviewer_principal(arn)
