import json
from types import SimpleNamespace

import boto3
import pytest
from evaluation import handler, review_api
from evaluation.review import SqsReviewQueue
from evaluation.scoring import ScoredRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from common.evaluation_dataset import EvaluationRecord

from ._api_events import api_event
from .fakes import ScriptedModel, make_settings
from .test_service import BUCKET, batch_event, make_runtime

REVIEWER = "arn:aws:iam::111111111111:role/reviewer-alice"
CONTEXT = SimpleNamespace(
    function_name="review",
    memory_limit_in_mb=256,
    invoked_function_arn="arn:aws:lambda:us-east-1:111111111111:function:review",
    aws_request_id="req-1",
)


def call(method: str, path: str, body: object = None, *, principal: str = REVIEWER) -> tuple[int, dict]:
    answer = handler.review_api(api_event(method, path, body, principal=principal), CONTEXT)
    return answer["statusCode"], json.loads(answer["body"]) if answer["body"] else {}


@pytest.fixture
def aws(monkeypatch):
    with mock_aws():
        s3, sqs = boto3.client("s3"), boto3.client("sqs")
        s3.create_bucket(Bucket=BUCKET)
        url = sqs.create_queue(QueueName="reviews")["QueueUrl"]
        monkeypatch.setenv("BUSINESS_UNIT", "retail")
        monkeypatch.setenv("RESULTS_BUCKET", BUCKET)
        monkeypatch.setenv("REVIEW_QUEUE_URL", url)
        review_api.review_service.cache_clear()
        yield SimpleNamespace(s3=s3, sqs=sqs, url=url)
        review_api.review_service.cache_clear()


def objects(s3) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def test_empty_queue_answers_204(aws):
    assert call("GET", "/reviews/next") == (204, {})


def test_reviewer_score_joins_the_summary_and_the_message_is_deleted(aws):
    model = ScriptedModel("fm1", ["Once upon a time."])
    rt, _ = make_runtime(aws.s3, [model], make_settings(human_review={"enabled": True, "sample_rate": 1.0}))
    record = EvaluationRecord(id="s1", input="Tell a story")
    aws.s3.put_object(Bucket=BUCKET, Key="in/data.jsonl", Body=record.model_dump_json() + "\n")
    rt.review_queue = SqsReviewQueue(aws.url, sqs_client=aws.sqs)
    event = {"run_id": "run-1", "use_case": "stories", "dataset": {"bucket": BUCKET, "key": "in/data.jsonl"}}
    from evaluation import service

    service.prepare(event, rt)
    service.score_batch(batch_event([record]), rt)
    service.summarize_run({"run_id": "run-1", "use_case": "stories"}, rt)  # sends the flagged row

    status, review = call("GET", "/reviews/next")
    assert status == 200
    assert (review["run_id"], review["record_id"], review["model"]) == ("run-1", "s1", "fm1")
    assert review["output"] == "Once upon a time." and review["record"]["input"] == "Tell a story"
    body = {k: review[k] for k in ("run_id", "record_id", "model", "receipt_handle")}
    status, stored = call("POST", "/reviews", {**body, "score": 8, "comment": "vivid"})
    assert status == 201
    [key] = [k for k in objects(aws.s3) if "/reviews/" in k]
    assert key.startswith("retail/evaluation_runs/run-1/reviews/") and key.endswith(stored["stored"])
    line = json.loads(aws.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert line == {"record_id": "s1", "model": "fm1", "score": 8.0, "comment": "vivid", "reviewer": REVIEWER}
    assert (
        aws.sqs.get_queue_attributes(QueueUrl=aws.url, AttributeNames=["All"])["Attributes"][
            "ApproximateNumberOfMessagesNotVisible"
        ]
        == "0"
    )
    assert call("GET", "/reviews/next") == (204, {})  # deleted, not just hidden

    out = service.summarize_run({"run_id": "run-1", "use_case": "stories"}, rt)
    summary = json.loads(aws.s3.get_object(Bucket=BUCKET, Key=out["summary"]["key"])["Body"].read())
    assert summary["models"][0]["metrics"]["human_score"]["mean"] == 8.0


def valid_body(handle: str) -> dict:
    return {"run_id": "run-1", "record_id": "s1", "model": "fm1", "score": 7, "receipt_handle": handle}


BAD_VALUES = {
    "run_id": st.sampled_from(["", "../etc", "a b", 5, None, "x" * 129]),
    "record_id": st.sampled_from(["", "/slash", None, 3, "y" * 129]),
    "model": st.sampled_from(["", "bad model", None, "m" * 65]),
    "score": st.one_of(
        st.integers(max_value=0), st.integers(min_value=11), st.sampled_from(["7", 7.5, None])
    ),
    "comment": st.sampled_from([5, ["x"], "c" * 4001]),
    "receipt_handle": st.sampled_from(["", None, 1, "not-a-handle"]),
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(sorted(BAD_VALUES)), data=st.data(), drop=st.booleans(), extra=st.booleans())
def test_bad_submissions_name_the_field_and_write_nothing(aws, field, data, drop, extra):
    aws.sqs.send_message(QueueUrl=aws.url, MessageBody=json.dumps({"run_id": "run-1"}))
    handle = aws.sqs.receive_message(QueueUrl=aws.url)["Messages"][0]["ReceiptHandle"]
    body: dict = valid_body(handle)
    if extra:
        body["reviewer"] = "someone-else"
        field = "reviewer"
    elif drop and field != "comment":
        del body[field]
    else:
        body[field] = data.draw(BAD_VALUES[field])
    status, answer = call("POST", "/reviews", body)
    assert status == 400
    assert answer["message"].startswith(f"{field}:")
    assert objects(aws.s3) == []
    aws.sqs.delete_message(QueueUrl=aws.url, ReceiptHandle=handle)


@pytest.mark.parametrize("body", ["", "{not json", "[1, 2]", "null"])
def test_body_that_is_not_a_json_object_is_refused(aws, body):
    status, answer = call("POST", "/reviews", body)
    assert status == 400 and answer["message"].startswith("body:")
    assert objects(aws.s3) == []


def test_review_message_leaves_out_a_record_too_large_for_sqs():
    from evaluation.review import review_message

    row = ScoredRecord(run_id="r", record_id="big", model="m", output="o")
    huge = EvaluationRecord(id="big", input="x" * 100_000, reference_output="y" * 200_000)
    assert review_message(row, huge)["record"] is None
    assert review_message(row, EvaluationRecord(id="big", input="short"))["record"] == {
        "id": "big",
        "input": "short",
    }
