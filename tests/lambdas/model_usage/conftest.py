from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from common.lake_records import UsageRecord
from common.model_gateway import ModelRequest, ModelResponse
from common.model_usage import OnlineSample

BU = "finance"
USAGE_BUCKET = "lake-model-metadata"
RESULTS_BUCKET = "lake-evaluation-results"
WHEN = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_METRICS_NAMESPACE": "test",
        "LAKE_STAGE": "prod",  # the stack sets it: writers write under <bu>/<stage>/
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        s3 = boto3.client("s3")
        for bucket in (USAGE_BUCKET, RESULTS_BUCKET):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        yield


def usage_record(request_id: str = "r1", tenant_id: str = "tenant-a", **changes: Any) -> UsageRecord:
    values: dict[str, Any] = {
        "business_unit": BU,
        "model_id": "amazon.nova-lite-v1:0",
        "event_time": WHEN,
        "request_id": request_id,
        "tenant_id": tenant_id,
        "use_case": "report-summarization",
        "provider": "bedrock",
        "model_calls": 1,
        "input_tokens": 100,
        "output_tokens": 40,
        "model_latency_ms": 210.0,
        "request_latency_ms": 380.0,
        "cost_usd": 0.0000156,
    }
    values.update(changes)
    return UsageRecord(**values)


def sample(request_id: str = "r1", **changes: Any) -> OnlineSample:
    values: dict[str, Any] = {
        "business_unit": BU,
        "request_id": request_id,
        "tenant_id": "tenant-a",
        "use_case": "report-summarization",
        "model_id": "amazon.nova-lite-v1:0",
        "prompt_ref": "summarize@2",
        "question": "Summarize the report for [NAME].",
        "answer": "Revenue grew 4 %.",
        "event_time": WHEN,
    }
    values.update(changes)
    return OnlineSample(**values)


def sqs_event(*bodies: str) -> dict[str, Any]:
    return {"Records": [{"messageId": f"m{i}", "body": body} for i, body in enumerate(bodies)]}


def verdict(overall: int) -> str:
    return json.dumps(
        {
            "helpfulness": overall,
            "relevance": overall,
            "accuracy": overall,
            "level_of_detail": overall,
            "overall": overall,
            "justification": f"scored {overall}",
        }
    )


@dataclass
class ScriptedJudge:
    """Answers with the queued texts in order; records every request."""

    replies: list[str]
    name: str = "judge-haiku"
    requests: list[ModelRequest] = field(default_factory=list)

    def invoke(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        return ModelResponse(self.replies.pop(0), 5.0, 300, 60)


def lake_rows(bucket: str) -> list[tuple[str, dict[str, Any]]]:
    s3 = boto3.client("s3")
    rows = []
    for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode()
        rows += [(item["Key"], json.loads(line)) for line in body.splitlines() if line]
    return rows
