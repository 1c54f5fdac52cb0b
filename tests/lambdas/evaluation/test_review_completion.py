"""Issue 14 items 3 and 4: human reviews complete a run by themselves; testers accept rows into datasets."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from evaluation import service
from evaluation.review import SqsReviewQueue
from evaluation.review_api import AcceptRequest, Curation, ReviewService, ReviewSubmission
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from common.evaluation_dataset import EvaluationRecord, dump_records
from common.lake_records import HumanReviewRecord

from .fakes import ScriptedModel, make_settings
from .test_review_api import aws, call  # noqa: F401 - fixture
from .test_service import BUCKET, batch_event, make_runtime

REVIEWER = "arn:aws:iam::111111111111:role/reviewer"
RECORDS = [EvaluationRecord(id=f"s{i}", input=f"Tell story {i}", category="stories") for i in range(3)]


def flagged_run(aws, deadline_hours=72.0):  # noqa: F811
    model = ScriptedModel("fm1", ["Once upon a time."])
    review = {"enabled": True, "sample_rate": 1.0, "deadline_hours": deadline_hours}
    clock = {"now": datetime(2026, 11, 26, 9, tzinfo=UTC)}
    rt, written = make_runtime(aws.s3, [model], make_settings(human_review=review))
    rt.now = lambda: clock["now"]
    rt.review_queue = SqsReviewQueue(aws.url, sqs_client=aws.sqs)
    aws.s3.put_object(Bucket=BUCKET, Key="in/data.jsonl", Body=dump_records(RECORDS))
    event = {"run_id": "run-1", "use_case": "stories", "dataset": {"bucket": BUCKET, "key": "in/data.jsonl"}}
    service.prepare(event, rt)
    service.score_batch(batch_event(RECORDS), rt)
    service.summarize_run({"run_id": "run-1", "use_case": "stories"}, rt)
    return rt, written, clock


def review_all(aws, count, score=8):  # noqa: F811
    reviews = ReviewService(aws.url, service_store(aws), sqs_client=aws.sqs)
    for _ in range(count):
        message = reviews.next_review(REVIEWER)
        body = {k: message[k] for k in ("run_id", "record_id", "model", "receipt_handle")}
        reviews.submit(ReviewSubmission(**body, score=score), REVIEWER)


def service_store(aws):  # noqa: F811
    from evaluation.store import S3ResultStore

    return S3ResultStore(BUCKET, "retail/evaluation_runs", s3_client=aws.s3)


def summary(aws):  # noqa: F811
    return json.loads(
        aws.s3.get_object(Bucket=BUCKET, Key="retail/evaluation_runs/run-1/summary.json")["Body"].read()
    )


def test_a_drained_review_recomputes_the_summary_and_writes_human_scores_to_the_lake(aws):  # noqa: F811
    rt, written, _ = flagged_run(aws)
    assert summary(aws)["human_review"] == {
        "state": "open", "expected": 3, "reviewed": 0, "deadline": "2026-11-29T09:00:00+00:00", "completed_by": None
    }  # fmt: skip
    review_all(aws, 2)
    assert service.complete_reviews({}, rt) == {"completed": []}  # one row still unreviewed
    review_all(aws, 1)
    before = len(written)
    assert service.complete_reviews({}, rt) == {"completed": [{"run_id": "run-1", "completed_by": "drained"}]}
    human = [r for r in written[before:] if isinstance(r, HumanReviewRecord)]
    assert sorted(r.record_id for r in human) == ["s0", "s1", "s2"]
    assert {(r.reviewer, r.score, r.completed_by, r.category) for r in human} == {
        (REVIEWER, 8.0, "drained", "stories")
    }
    assert summary(aws)["models"][0]["metrics"]["human_score"]["mean"] == 8.0
    assert summary(aws)["human_review"]["state"] == "complete"
    assert service.complete_reviews({}, rt) == {"completed": []}  # closed once


def test_the_deadline_completes_a_review_nobody_finished(aws):  # noqa: F811
    rt, written, clock = flagged_run(aws, deadline_hours=24)
    review_all(aws, 1, score=3)
    clock["now"] += timedelta(hours=23)
    assert service.complete_reviews({}, rt) == {"completed": []}
    clock["now"] += timedelta(hours=2)
    assert service.complete_reviews({}, rt)["completed"] == [{"run_id": "run-1", "completed_by": "deadline"}]
    [record] = [r for r in written if isinstance(r, HumanReviewRecord)]
    assert (record.score, record.completed_by) == (3.0, "deadline")
    assert summary(aws)["human_review"]["reviewed"] == 1


class FakeCatalog:
    def __init__(self, status=201, answer=None):
        self.status, self.answer, self.sent = status, answer, []

    def send(self, method, path, body=None):
        self.sent.append((method, path, body))
        default = {"version": 2, "content": {"records_key": "retail/shared/datasets/qa/2/dataset.jsonl"}}
        return self.status, json.dumps(self.answer or default).encode()


def curation(aws, catalog):  # noqa: F811
    aws.s3.create_bucket(Bucket="feedback")
    return Curation(
        service_store(aws),
        catalog,
        candidates_bucket="feedback",
        candidates_prefix="retail/evaluation_candidates/",
    )


def test_accepting_sends_candidates_and_flagged_rows_with_the_reviewer(aws):  # noqa: F811
    flagged_run(aws)
    candidate = EvaluationRecord(
        id="rating-r1", prompt_ref="qa@1", variables={"q": "x"}, labels=["rated-good"]
    )
    catalog = FakeCatalog()
    cur = curation(aws, catalog)
    aws.s3.put_object(
        Bucket="feedback", Key="retail/evaluation_candidates/qa/r1.jsonl", Body=dump_records([candidate])
    )
    request = AcceptRequest(
        use_case="qa",
        candidates=["r1"],
        flagged=[
            {"run_id": "run-1", "record_id": "s1", "reference_output": "A fine story.", "new_id": "story-1"}
        ],
    )
    status, body = cur.accept("qa", request, REVIEWER)
    assert (status, body["version"], body["accepted"]) == (201, 2, ["rating-r1", "story-1"])
    [(method, path, sent)] = catalog.sent
    assert (method, path, sent["accepted_by"]) == ("POST", "/datasets/qa/records", REVIEWER)
    assert sent["records"][1] == {
        "id": "story-1", "input": "Tell story 1", "reference_output": "A fine story.", "category": "stories"
    }  # fmt: skip
    assert cur.pending("qa") == []  # accepted candidates are no longer pending


@pytest.mark.parametrize(("status", "expected"), [(409, 409), (404, 404), (500, 503), (429, 503)])
def test_a_catalog_refusal_accepts_nothing(aws, status, expected):  # noqa: F811
    cur = curation(aws, FakeCatalog(status=status, answer={"message": "body.records[0].id: taken"}))
    record = EvaluationRecord(id="rating-r1", input="hi")
    aws.s3.put_object(
        Bucket="feedback", Key="retail/evaluation_candidates/qa/r1.jsonl", Body=dump_records([record])
    )
    answer = cur.accept("qa", AcceptRequest(use_case="qa", candidates=["r1"]), REVIEWER)
    assert answer[0] == expected
    assert [c["rating_id"] for c in cur.pending("qa")] == ["r1"]  # still pending


def test_unknown_candidates_and_rows_name_the_field(aws):  # noqa: F811
    from aws_lambda_powertools.event_handler.exceptions import BadRequestError

    flagged_run(aws)
    catalog = FakeCatalog()
    cur = curation(aws, catalog)
    with pytest.raises(BadRequestError, match=r"^candidates\[0\]: no candidate 'nope'"):
        cur.accept("qa", AcceptRequest(use_case="qa", candidates=["nope"]), REVIEWER)
    with pytest.raises(BadRequestError, match=r"^flagged\[0\]\.record_id: 'zz' is not in run 'run-1'"):
        cur.accept("qa", AcceptRequest(flagged=[{"run_id": "run-1", "record_id": "zz"}]), REVIEWER)
    with pytest.raises(BadRequestError, match=r"^path\.name"):
        cur.accept("../x", AcceptRequest(flagged=[{"run_id": "run-1", "record_id": "s1"}]), REVIEWER)
    assert catalog.sent == []


BAD_ACCEPT = st.one_of(
    st.just({}),
    st.just({"candidates": ["r1"]}),  # no use_case
    st.fixed_dictionaries({"use_case": st.just("qa"), "candidates": st.lists(st.sampled_from(["", "../x", "a b"]), min_size=1)}),
    st.fixed_dictionaries({"flagged": st.lists(st.fixed_dictionaries({"run_id": st.sampled_from(["", "a/b"]), "record_id": st.just("s1")}), min_size=1)}),
    st.fixed_dictionaries({"use_case": st.just("qa"), "candidates": st.just(["r1"]), "extra": st.integers()}),
)  # fmt: skip


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BAD_ACCEPT)
def test_bad_accept_bodies_are_refused_by_field(body):
    with pytest.raises(ValidationError) as caught:
        AcceptRequest.model_validate(body)
    first = caught.value.errors()[0]
    assert first["loc"] or ":" in first["msg"]  # a field path, or a message that starts with the field


HANDLER_BAD_BODIES = st.one_of(
    st.sampled_from(["", "not json", "[]", "null", "42"]),
    BAD_ACCEPT.map(json.dumps),
)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=HANDLER_BAD_BODIES, name=st.sampled_from(["qa", "product-qa"]))
def test_the_accept_route_answers_bad_bodies_with_a_400_naming_the_field(aws, body, name):  # noqa: F811
    status, answer = call("POST", f"/datasets/{name}/accept", principal=REVIEWER)
    assert status == 400 and answer["message"].startswith("body:")
    status, answer = call("POST", f"/datasets/{name}/accept", body, principal=REVIEWER)  # sent as it is
    assert status == 400, answer
    field = answer["message"].split(":", 1)[0]
    assert field in {"body", "use_case", "candidates", "flagged", "extra"} or field.startswith(
        ("candidates.", "flagged.")
    )
