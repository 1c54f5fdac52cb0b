from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from app_backend import handler
from app_backend.wiring import SageMakerPipeline
from botocore.stub import ANY, Stubber
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from common.evaluation_dataset import read_records
from common.fine_tuning_runs import RESERVATION_SECONDS, PipelineRef, RunLeases, TenantUseCases
from tests.lambdas.fine_tuning._leases import LEASES_TABLE, create_leases_table

from .conftest import BU, CANDIDATES, RAW, STAGE, USE_CASE, Backend, build_backend


def _invoke(backend: Backend, name: str = "alice@example.com", sub: str = "tenant-a") -> str:
    status, body = backend.call("POST", "/invoke", {"prompt": "greet", "variables": {"name": name}}, sub=sub)
    assert status == 200
    return str(body["request_id"])


def test_a_retried_rating_is_stored_once_and_a_good_one_becomes_a_redacted_candidate(
    backend: Backend,
) -> None:
    request_id = _invoke(backend)
    rating = {"request_id": request_id, "stars": 5, "comment": "great, mail alice@example.com"}

    first = backend.call("POST", "/ratings", rating)
    second = backend.call("POST", "/ratings", rating)

    assert first[0] == second[0] == 201
    assert first[1]["rating_id"] == second[1]["rating_id"]
    assert (first[1]["duplicate"], second[1]["duplicate"]) == (False, True)
    [record] = backend.ratings.written
    assert (record.tenant_id, record.request_id, record.value, record.rating_type) == (
        "tenant-a",
        request_id,
        5,
        "stars",
    )
    assert record.comment == "great, mail [EMAIL]"
    assert record.use_case == USE_CASE
    [key] = backend.objects(CANDIDATES)
    assert key == f"{BU}/{STAGE}/evaluation_candidates/{USE_CASE}/{record.rating_id}.jsonl"
    text = backend.s3.get_object(Bucket=CANDIDATES, Key=key)["Body"].read().decode()
    [candidate] = list(read_records(text.splitlines()))
    assert candidate.prompt_ref == "greet@3"
    assert candidate.variables == {"name": "[EMAIL]"}
    assert candidate.reference_output == "answer to: Hello [EMAIL]"
    assert candidate.labels == ["rated-good"]
    assert "alice@example.com" not in text


def test_bad_thumbs_become_a_candidate_without_reference_and_middling_stars_do_not(backend: Backend) -> None:
    down = _invoke(backend, "x")
    middling = _invoke(backend, "y")
    assert backend.call("POST", "/ratings", {"request_id": down, "thumbs": "down"})[0] == 201
    assert backend.call("POST", "/ratings", {"request_id": middling, "stars": 3})[0] == 201

    assert [r.value for r in backend.ratings.written] == [0, 3]
    [key] = backend.objects(CANDIDATES)
    [candidate] = list(
        read_records(backend.s3.get_object(Bucket=CANDIDATES, Key=key)["Body"].read().decode().splitlines())
    )
    assert candidate.labels == ["rated-bad"]
    assert candidate.reference_output is None


def test_a_retry_after_a_failed_lake_write_publishes_the_same_record_once(backend: Backend) -> None:
    request_id = _invoke(backend, "x")
    backend.ratings.fail_next_flush = True
    status, body = backend.call("POST", "/ratings", {"request_id": request_id, "stars": 2})
    assert (status, body["field"]) == (503, "ratings")
    backend.ratings.buffer.clear()  # a new Lambda instance starts with an empty buffer

    status, body = backend.call("POST", "/ratings", {"request_id": request_id, "stars": 4})

    assert status == 201
    [record] = backend.ratings.written
    assert record.value == 2  # the first rating stands; the retry finished publishing it
    assert body["duplicate"] is True


def test_a_tenant_cannot_rate_another_tenants_request(backend: Backend) -> None:
    request_id = _invoke(backend, "x", sub="tenant-a")
    before = backend.table_items()

    status, body = backend.call("POST", "/ratings", {"request_id": request_id, "stars": 1}, sub="tenant-b")

    assert (status, body["field"]) == (404, "request_id")
    assert backend.table_items() == before
    assert backend.ratings.written == []


def _policy(post: dict[str, Any]) -> dict[str, Any]:
    policy: dict[str, Any] = json.loads(base64.b64decode(post["fields"]["policy"]))
    return policy


def test_presigned_post_is_limited_to_the_tenants_prefix_size_and_type(backend: Backend) -> None:
    status, post = backend.call(
        "POST", "/uploads", {"file_name": "train.jsonl", "content_type": "application/jsonl"}
    )

    assert status == 201
    assert post["key"].startswith(f"{BU}/{STAGE}/tenant=tenant-a/uploads/")
    assert post["key"].endswith("/train.jsonl")
    conditions = _policy(post)["conditions"]
    assert ["content-length-range", 1, 50 * 1024**2] in conditions
    assert {"Content-Type": "application/jsonl"} in conditions
    assert {"key": post["key"]} in conditions
    [call] = backend.sts.calls
    assert call["Tags"] == [{"Key": "TenantId", "Value": "tenant-a"}]


@pytest.mark.parametrize(("url_expiry", "session"), [(60, 900), (300, 900), (900, 900), (3600, 3600)])
def test_the_signing_session_outlives_the_presigned_url(url_expiry: int, session: int) -> None:
    """A presigned POST dies with the credentials that signed it: the tenant session lasts at least
    `uploads.url_expiry_seconds` (docs/application.md, `uploads`), never less than STS's 900 s."""
    from app_backend.settings import Uploads
    from app_backend.uploads import TenantUploads

    class Sts:
        def __init__(self) -> None:
            self.calls: list[dict[str, Any]] = []

        def assume_role(self, **kwargs: Any) -> dict[str, Any]:
            self.calls.append(kwargs)
            return {"Credentials": {}}

    class S3:
        def generate_presigned_post(self, **kwargs: Any) -> dict[str, Any]:
            return {"url": "https://raw", "fields": {}, "expires": kwargs["ExpiresIn"]}

    sts = Sts()
    uploads = TenantUploads(
        bucket=RAW,
        business_unit=BU,
        stage=STAGE,
        role_arn="arn:aws:iam::123456789012:role/upload",
        settings=Uploads(url_expiry_seconds=url_expiry),
        sts=sts,
        s3_factory=lambda _credentials: S3(),
    )
    answer = uploads.presigned_post("tenant-a", "train.jsonl", "application/jsonl")
    assert answer["expires_in"] == url_expiry
    [call] = sts.calls
    assert call["DurationSeconds"] == session >= url_expiry


def test_upload_content_type_outside_the_allowed_list_is_refused(backend: Backend) -> None:
    status, body = backend.call(
        "POST", "/uploads", {"file_name": "x.exe", "content_type": "application/x-msdownload"}
    )
    assert (status, body["field"]) == (422, "body.content_type")
    assert backend.sts.calls == []


def test_two_tenants_through_the_api_see_only_their_own_uploads_and_models(backend: Backend) -> None:
    cognito = boto3.client("cognito-idp")
    pool = cognito.create_user_pool(PoolName="end-users")["UserPool"]["Id"]
    subs = {}
    for user in ("ann", "ben"):
        attrs = cognito.admin_create_user(UserPoolId=pool, Username=user)["User"]["Attributes"]
        subs[user] = next(a["Value"] for a in attrs if a["Name"] == "sub")
    for user, sub in subs.items():
        backend.s3.put_object(Bucket=RAW, Key=f"{BU}/{STAGE}/tenant={sub}/uploads/1/{user}.jsonl", Body=b"{}")
        backend.table.put_item(
            Item={
                "pk": f"TENANT#{sub}",
                "sk": f"MODEL#{user}-model",
                "endpoint_name": "e",
                "created_at": 1,
            }
        )

    for user, sub in subs.items():
        status, body = backend.call("GET", "/uploads", sub=sub)
        assert status == 200
        assert [u["key"].rsplit("/", 1)[1] for u in body["uploads"]] == [f"{user}.jsonl"]
        status, body = backend.call("GET", "/models", sub=sub)
        assert body == {
            "models": [{"name": f"{user}-model", "created_at": 1, "status": "serving"}],
            "fine_tunes": [],
        }


def test_fine_tunes_are_503_when_the_pipeline_is_not_configured(backend: Backend) -> None:
    status, body = backend.call("POST", "/fine-tunes", {"model_name": "mine"})
    assert status == 503
    assert body["message"] == "fine-tuning is not enabled in this environment"
    assert backend.table_items() == []


# The business unit's use cases (their promotion policies are the pipeline's business, not the API's).
USE_CASES = TenantUseCases(default="product-qa", names=("product-qa", "review-summarization"))
PIPELINE = PipelineRef("ft", BU, "prod", max_concurrent_runs=2, max_runtime_hours=12, use_cases=USE_CASES)
EXECUTION = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/ft/execution/abc"
PACKAGE = "arn:aws:sagemaker:us-east-1:123456789012:model-package/exco-retail-prod-tenants-product-qa/3"


def _pipeline(sagemaker: Any) -> SageMakerPipeline:
    """Call inside mock_aws: the cap's lease table is created in moto."""
    return SageMakerPipeline(
        RunLeases(create_leases_table("us-east-1"), LEASES_TABLE, PIPELINE),
        sagemaker,
        raw_bucket=RAW,
        uploads_prefix=lambda tenant: f"{BU}/prod/tenant={tenant}/uploads/",
    )


def _running(pipeline: SageMakerPipeline, count: int) -> None:
    """`count` runs hold slots of the cap (started by uploads or earlier requests)."""
    now = datetime.now(UTC)
    for i in range(count):
        pipeline.leases.bind(pipeline.leases.reserve(f"run-{i}", now=now), f"{EXECUTION}{i}", now=now)


@contextmanager
def _fine_tune_api() -> Iterator[tuple[Backend, SageMakerPipeline, Stubber]]:
    """The API with fine-tuning on: moto for the tables, a Stubber for SageMaker that must end with every
    queued call made (a call nobody queued fails the test)."""
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    with mock_aws(), Stubber(sagemaker) as stub:
        pipeline = _pipeline(sagemaker)
        built = build_backend(fine_tunes=pipeline)
        handler.use_service(built.service)
        try:
            yield built, pipeline, stub
            stub.assert_no_pending_responses()
        finally:
            handler.use_service(None)


def _record_fine_tune(built: Backend, fine_tune_id: str, model_name: str) -> None:
    """tenant-a's fine-tune as POST /fine-tunes stored it, bound to the pipeline's execution."""
    built.table.put_item(
        Item={
            "pk": "TENANT#tenant-a",
            "sk": f"FINETUNE#{fine_tune_id}",
            "model_name": model_name,
            "execution_arn": EXECUTION,
        }
    )


def _expect_start_and_status(stub: Stubber, model_name: str, use_case: str, *, step: str) -> None:
    """tenant-a's run starts with exactly these parameters, then reports `step` as executing."""
    stub.add_response(
        "start_pipeline_execution",
        {"PipelineExecutionArn": EXECUTION},
        {
            "PipelineName": "ft",
            "PipelineExecutionDisplayName": "tenant-tenant-a",
            "PipelineParameters": [
                {"Name": "TenantId", "Value": "tenant-a"},
                {"Name": "ModelName", "Value": model_name},
                {"Name": "InputDataUri", "Value": f"s3://{RAW}/{BU}/prod/tenant=tenant-a/uploads/"},
                {"Name": "UseCase", "Value": use_case},
            ],
            "ClientRequestToken": ANY,
        },
    )
    stub.add_response(
        "describe_pipeline_execution",
        {"PipelineExecutionStatus": "Executing"},
        {"PipelineExecutionArn": EXECUTION},
    )
    stub.add_response(
        "list_pipeline_execution_steps",
        {"PipelineExecutionSteps": [{"StepName": step, "StepStatus": "Executing"}]},
        {"PipelineExecutionArn": EXECUTION},
    )


def test_fine_tune_starts_the_pipeline_with_the_tenant_and_only_its_tenant_can_read_it(aws_env: None) -> None:
    with _fine_tune_api() as (built, pipeline, stub):
        _running(pipeline, 1)
        # No use case asked for: the business unit's default; no registry status in the request.
        _expect_start_and_status(stub, "mine", "product-qa", step="Evaluate")

        status, started = built.call("POST", "/fine-tunes", {"model_name": "mine"})
        assert (status, started["status"], started["use_case"]) == (202, "training", "product-qa")
        status, state = built.call("GET", f"/fine-tunes/{started['fine_tune_id']}")
        assert (status, state["status"], state["model_name"]) == (200, "evaluating", "mine")
        assert state["use_case"] == "product-qa"
        status, body = built.call("GET", f"/fine-tunes/{started['fine_tune_id']}", sub="tenant-b")
        assert (status, body["field"]) == (404, "fine_tune_id")


def test_a_fine_tune_of_another_use_case_names_that_use_case(aws_env: None) -> None:
    with _fine_tune_api() as (built, _, stub):
        _expect_start_and_status(stub, "summaries", "review-summarization", step="ChooseApproval")
        request = {"model_name": "summaries", "use_case": "review-summarization"}
        status, started = built.call("POST", "/fine-tunes", request)
        assert (status, started["use_case"]) == (202, "review-summarization")
        status, listed = built.call("GET", "/models")
        assert status == 200
        assert [(f["fine_tune_id"], f["use_case"], f["status"]) for f in listed["fine_tunes"]] == [
            (started["fine_tune_id"], "review-summarization", "evaluating")
        ]


USE_CASE_NAME = r"[a-z][a-z0-9-]{0,30}[a-z0-9]"  # the config's use case names (stacks/settings/platform.py)
# Well-formed names the business unit lacks (422 from the service), and values the request model refuses
# (400 naming the body's field, as every malformed body is answered).
unknown_use_cases = st.one_of(
    st.from_regex(rf"\A{USE_CASE_NAME}\Z").filter(lambda u: u not in USE_CASES.names),
    st.text(max_size=40).filter(lambda u: u not in USE_CASES.names),
    st.integers(),
    st.lists(st.sampled_from(sorted(USE_CASES.names)), min_size=1, max_size=2),
)


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(use_case=unknown_use_cases)
def test_an_unknown_use_case_is_refused_naming_it_and_takes_no_slot_and_starts_nothing(
    aws_env: None, use_case: Any
) -> None:
    well_formed = isinstance(use_case, str) and re.fullmatch(USE_CASE_NAME, use_case) is not None
    with _fine_tune_api() as (built, pipeline, _):  # no response queued: any start would fail the test
        status, body = built.call("POST", "/fine-tunes", {"model_name": "mine", "use_case": use_case})
        expected = (422, "use_case") if well_formed else (400, "body.use_case")
        assert (status, body["field"]) == expected, body
        if well_formed:
            assert "product-qa, review-summarization" in body["message"]  # what the tenant may pick
        assert pipeline.leases.held(now=datetime.now(UTC)) == []
        assert built.table_items() == [] and built.quota_items() == []  # nothing recorded, no quota used


def test_the_cap_on_concurrent_runs_answers_429_and_starts_nothing(aws_env: None) -> None:
    with _fine_tune_api() as (built, pipeline, _):
        _running(pipeline, 2)
        status, body = built.call("POST", "/fine-tunes", {"model_name": "mine"})
        assert (status, body["field"]) == (429, "fine_tunes")
        assert "max_concurrent_runs is 2" in body["message"]
        assert built.table_items() == []


@pytest.mark.parametrize("stopped", [True, False])
def test_a_start_that_lost_its_slot_is_stopped_and_answered_429_with_why(
    aws_env: None, stopped: bool
) -> None:
    """The start outlived its reservation and another starter took the last slot: the execution is stopped,
    nothing is recorded, and the tenant is told to retry (a stop that fails is a 503, never a silent run)."""
    with _fine_tune_api() as (built, pipeline, stub):
        _running(pipeline, 1)
        racing = RunLeases(pipeline.leases._dynamodb, pipeline.leases.table_name, PIPELINE)
        stub.add_response("start_pipeline_execution", {"PipelineExecutionArn": EXECUTION}, None)
        if stopped:
            stub.add_response(
                "stop_pipeline_execution",
                {"PipelineExecutionArn": EXECUTION},
                {"PipelineExecutionArn": EXECUTION, "ClientRequestToken": ANY},
            )
        else:
            stub.add_client_error("stop_pipeline_execution", "ThrottlingException", "slow down", 400)
        client = pipeline._sagemaker

        class SlowStart:
            def start_pipeline_execution(self, **request: Any) -> Any:
                response = client.start_pipeline_execution(**request)
                later = datetime.now(UTC) + timedelta(seconds=RESERVATION_SECONDS + 1)
                racing.reserve("another-starter", now=later)
                return response

            def stop_pipeline_execution(self, **request: Any) -> Any:
                return client.stop_pipeline_execution(**request)

        pipeline._sagemaker = SlowStart()
        status, body = built.call("POST", "/fine-tunes", {"model_name": "mine"})
        if stopped:
            assert (status, body["field"]) == (429, "fine_tunes"), body
            assert "reservation" in body["message"]
            assert "the execution was stopped; retry later" in body["message"]
        else:
            assert (status, body["field"]) == (503, "fine_tunes"), body
            assert "ThrottlingException" in body["message"]
        assert built.table_items() == []


def _succeeded(stub: Stubber, approval: str, description: str | None = None) -> None:
    stub.add_response(
        "describe_pipeline_execution",
        {"PipelineExecutionStatus": "Succeeded"},
        {"PipelineExecutionArn": EXECUTION},
    )
    stub.add_response(
        "list_pipeline_execution_steps",
        {
            "PipelineExecutionSteps": [
                {
                    "StepName": "RegisterForReview" if approval != "Approved" else "RegisterApproved",
                    "StepStatus": "Succeeded",
                    "Metadata": {"RegisterModel": {"Arn": PACKAGE}},
                }
            ]
        },
        {"PipelineExecutionArn": EXECUTION},
    )
    stub.add_response(
        "describe_model_package",
        {
            "ModelPackageArn": PACKAGE,
            "ModelPackageStatus": "Completed",
            "CreationTime": "2025-01-01T00:00:00Z",
            "ModelPackageName": "x",
            "ModelApprovalStatus": approval,
            "ModelPackageStatusDetails": {"ValidationStatuses": []},
            **({"ApprovalDescription": description} if description else {}),
        },
        {"ModelPackageName": PACKAGE},
    )


@pytest.mark.parametrize(
    ("approval", "deployment", "expected"),
    [
        ("PendingManualApproval", None, ("awaiting_review", None)),
        ("Rejected", None, ("failed", "the review set the model to Rejected")),
        ("Approved", None, ("deploying", None)),
        ("Approved", {"status": "serving"}, ("serving", None)),
        (
            "Approved",
            {"status": "failed", "reason": "test invocation failed"},
            ("failed", "test invocation failed"),
        ),
    ],
)
def test_a_registered_run_reports_review_deployment_and_serving(
    aws_env: None, approval: str, deployment: dict[str, str] | None, expected: tuple[str, str | None]
) -> None:
    with _fine_tune_api() as (built, _, stub):
        _record_fine_tune(built, "a" * 32, "mine")
        if deployment is not None:
            built.table.put_item(
                Item={
                    "pk": "TENANT#tenant-a",
                    "sk": "DEPLOYMENT#exco-retail-prod-tenants-product-qa#3",
                    **deployment,
                }
            )
        _succeeded(stub, approval)
        status, state = built.call("GET", "/fine-tunes/" + "a" * 32)
        assert (status, state["status"], state.get("reason")) == (200, *expected)


def test_a_rejected_version_tells_the_tenant_the_reviewers_reason(aws_env: None) -> None:
    with _fine_tune_api() as (built, _, stub):
        _record_fine_tune(built, "b" * 32, "mine")
        decided = "rejected by arn:aws:iam::123456789012:role/reviewer: answers cite prices that do not exist"
        _succeeded(stub, "Rejected", decided)
        status, state = built.call("GET", "/fine-tunes/" + "b" * 32)
        assert (status, state["status"]) == (200, "failed")
        assert state["reason"] == f"the review set the model to Rejected ({decided})"


def test_a_failed_run_reports_its_reason(aws_env: None) -> None:
    with _fine_tune_api() as (built, _, stub):
        _record_fine_tune(built, "b" * 32, "m")
        stub.add_response(
            "describe_pipeline_execution",
            {"PipelineExecutionStatus": "Failed"},
            {"PipelineExecutionArn": EXECUTION},
        )
        stub.add_response(
            "list_pipeline_execution_steps",
            {
                "PipelineExecutionSteps": [
                    {
                        "StepName": "BelowThresholds",
                        "StepStatus": "Failed",
                        "FailureReason": "Held-out metrics below the thresholds for tenant-a",
                    }
                ]
            },
            {"PipelineExecutionArn": EXECUTION},
        )
        status, state = built.call("GET", "/fine-tunes/" + "b" * 32)
        assert (status, state["status"]) == (200, "failed")
        assert state["reason"] == "Held-out metrics below the thresholds for tenant-a"


def _rating_metrics(captured: str) -> list[dict[str, Any]]:
    blobs = [json.loads(line) for line in captured.splitlines() if line.startswith("{") and '"_aws"' in line]
    return [b for b in blobs if "ratings" in b]


def test_each_stored_rating_emits_the_low_rating_signal_once(backend: Backend, capsys: Any) -> None:
    good, bad = _invoke(backend, "x"), _invoke(backend, "y")
    capsys.readouterr()
    for _ in range(2):  # the retry is stored once and counted once
        assert backend.call("POST", "/ratings", {"request_id": good, "stars": 5})[0] == 201
    assert backend.call("POST", "/ratings", {"request_id": bad, "thumbs": "down"})[0] == 201
    metrics = _rating_metrics(capsys.readouterr().out)
    assert [(m["ratings"], m["low_ratings"], m["business_unit"]) for m in metrics] == [
        ([1.0], [0.0], BU),
        ([1.0], [1.0], BU),
    ]
