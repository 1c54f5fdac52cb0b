"""The raw-upload trigger (Stubber: StartPipelineExecution) and the pure parts of the pipeline's jobs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from fine_tuning_jobs.evaluate import report
from fine_tuning_jobs.preprocess import split
from fine_tuning_jobs.train import load_hyperparameters
from fine_tuning_trigger.core import AtCapacityError, PipelineRef, Upload, start_pipeline, tenant_of
from hypothesis import given
from hypothesis import strategies as st


@pytest.fixture
def sagemaker() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("sagemaker", region_name="eu-west-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


PIPELINE = PipelineRef(
    "exco-retail-prod-fine-tuning", "retail", "prod", max_concurrent_runs=2, max_runtime_hours=12
)
NOW = datetime(2025, 1, 1, tzinfo=UTC)
EXECUTION = "arn:aws:sagemaker:eu-west-1:333333333333:pipeline/exco-retail-prod-fine-tuning/execution/abc"


def expect_running(stubber: Stubber, statuses: list[str]) -> None:
    stubber.add_response(
        "list_pipeline_executions",
        {
            "PipelineExecutionSummaries": [
                {"PipelineExecutionArn": f"{EXECUTION}{i}", "PipelineExecutionStatus": status}
                for i, status in enumerate(statuses)
            ]
        },
        {
            "PipelineName": PIPELINE.name,
            "CreatedAfter": NOW - timedelta(hours=37),
            "SortBy": "CreationTime",
            "SortOrder": "Descending",
        },
    )


def test_a_tenant_upload_starts_the_pipeline_with_its_tenant_id(sagemaker: Any) -> None:
    client, stubber = sagemaker
    expect_running(stubber, ["Executing", "Succeeded", "Failed"])
    stubber.add_response(
        "start_pipeline_execution",
        {"PipelineExecutionArn": EXECUTION},
        {
            "PipelineName": PIPELINE.name,
            "PipelineExecutionDisplayName": "tenant-acme",
            "PipelineParameters": [
                {"Name": "TenantId", "Value": "acme"},
                {"Name": "ModelName", "Value": "personal"},
                {"Name": "InputDataUri", "Value": "s3://raw/retail/prod/tenant=acme/uploads/"},
            ],
            "ClientRequestToken": ANY,
        },
    )
    upload = Upload("raw", "retail/prod/tenant=acme/uploads/1/data.jsonl")
    assert start_pipeline(client, PIPELINE, upload, now=NOW) == EXECUTION


def test_the_cap_keeps_the_upload_waiting_and_starts_nothing(sagemaker: Any) -> None:
    client, stubber = sagemaker
    expect_running(stubber, ["Executing", "Executing"])
    upload = Upload("raw", "retail/prod/tenant=acme/uploads/1/data.jsonl")
    with pytest.raises(AtCapacityError, match="max_concurrent_runs is 2"):
        start_pipeline(client, PIPELINE, upload, now=NOW)


@pytest.mark.parametrize(
    "key",
    [
        "finance/prod/tenant=acme/uploads/1/data.jsonl",
        "retail/dev/tenant=acme/uploads/1/data.jsonl",  # another stage's tenant
        "retail/preprod/tenant=acme/uploads/1/data.jsonl",
        "retail/prod/data.jsonl",
        "retail/prod/tenant=acme/uploads/1/notes.txt",
        "retail/prod/tenant=../uploads/x.jsonl",
        "retail/tenant=acme/uploads/1/data.jsonl",  # no stage segment
    ],
)
def test_other_keys_start_nothing(sagemaker: Any, key: str) -> None:
    client, _ = sagemaker
    assert start_pipeline(client, PIPELINE, Upload("raw", key), now=NOW) is None


@given(st.text(max_size=80))
def test_tenant_of_never_returns_a_path_segment_with_a_slash(key: str) -> None:
    tenant = tenant_of(key, "retail", "prod")
    assert tenant is None or ("/" not in tenant and key.startswith(f"retail/prod/tenant={tenant}/"))


def sqs_event(*bodies: str) -> dict[str, Any]:
    return {"Records": [{"messageId": f"m{i}", "body": body} for i, body in enumerate(bodies)]}


def s3_event(key: str) -> str:
    return json.dumps(
        {
            "version": "0",
            "id": "17793124-05d4-b198-2fde-7ededc63b103",
            "detail-type": "Object Created",
            "source": "aws.s3",
            "account": "222222222222",
            "time": "2025-01-01T00:00:00Z",
            "region": "eu-west-1",
            "resources": ["arn:aws:s3:::raw"],
            "detail": {
                "version": "0",
                "bucket": {"name": "raw"},
                "object": {
                    "key": key,
                    "size": 5,
                    "etag": "b1946ac92492d2347c6235b4d2611184",
                    "sequencer": "00",
                },
                "request-id": "N4N7GDK58NMKJ12R",
                "requester": "123456789012",
                "source-ip-address": "1.2.3.4",
                "reason": "PutObject",
            },
        }
    )


class LambdaContext:
    function_name = "trigger"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-1:333333333333:function:trigger"
    aws_request_id = "req-1"


@pytest.mark.parametrize("body", ["not json", json.dumps({"detail-type": "Object Created"})])
def test_handler_reports_bad_and_waiting_messages_for_a_retry_never_dropping_them(
    sagemaker: Any, monkeypatch: pytest.MonkeyPatch, body: str
) -> None:
    from fine_tuning_trigger import handler

    client, stubber = sagemaker
    for name, value in {
        "PIPELINE_NAME": PIPELINE.name,
        "BUSINESS_UNIT": "retail",
        "STAGE": "prod",
        "MAX_CONCURRENT_RUNS": "2",
        "MAX_RUNTIME_HOURS": "12",
        "POWERTOOLS_TRACE_DISABLED": "1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(handler, "sagemaker_client", lambda: client)
    stubber.add_response(
        "list_pipeline_executions",
        {
            "PipelineExecutionSummaries": [
                {"PipelineExecutionArn": f"{EXECUTION}{i}", "PipelineExecutionStatus": "Executing"}
                for i in (1, 2)
            ]
        },
    )
    event = sqs_event(body, s3_event("retail/prod/tenant=acme/uploads/1/data.jsonl"))
    result = handler.lambda_handler(event, LambdaContext())
    assert result == {"batchItemFailures": [{"itemIdentifier": "m0"}, {"itemIdentifier": "m1"}]}


def test_split_is_deterministic_and_covers_every_record() -> None:
    lines = [json.dumps({"prompt": f"q{i}", "reference": f"a{i}"}) for i in range(400)]
    first, second = split(lines, 0.1), split(lines, 0.1)
    assert first == second
    assert sum(len(v) for v in first.values()) == 400
    assert 20 <= len(first["heldout"]) <= 60 and 20 <= len(first["validation"]) <= 60


def test_split_names_the_bad_line() -> None:
    with pytest.raises(ValueError, match="line 2: needs string fields"):
        split(['{"prompt": "q", "reference": "a"}', '{"prompt": "q"}'], 0.1)


def test_report_averages_the_evaluation_engines_metrics() -> None:
    result = report([("the cat sat", "the cat sat"), ("a dog", "the cat sat")], ["exact_match", "token_f1"])
    assert result["metrics"]["exact_match"]["value"] == 0.5
    assert result["metrics"]["token_f1"]["value"] == 0.5  # "dog" shares no token with "cat sat"


def test_hyperparameters_default_when_absent(tmp_path: Any) -> None:
    path = tmp_path / "hp.json"
    path.write_text(json.dumps({"lora_rank": "8"}))
    assert load_hyperparameters(path)["lora_rank"] == 8.0
    assert load_hyperparameters(tmp_path / "missing.json")["epochs"] == 3.0


@given(
    st.one_of(
        st.text(max_size=200), st.dictionaries(st.text(max_size=10), st.text(max_size=10)).map(json.dumps)
    )
)
def test_any_message_body_is_either_started_or_kept_for_a_retry_never_a_crash(body: str) -> None:
    from fine_tuning_trigger import handler

    client = boto3.client("sagemaker", region_name="eu-west-1")
    with Stubber(client):  # a start would need a stubbed response: none of these bodies is an upload event
        result = handler.handle_records([{"messageId": "m0", "body": body}], PIPELINE, client)
    assert result == [{"itemIdentifier": "m0"}]
