"""/invoke queues a usage record per answer and, for the sampled share, a redacted exchange for the judge."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import boto3
import pytest
from app_backend.wiring import build_service

from common.lake_records import UsageRecord
from common.model_gateway import ModelRequest, ModelResponse
from common.model_pricing import ModelPrice
from common.model_usage import OnlineSample, SqsMessages, sampled

from .conftest import BU, USE_CASE, Backend, Messages

PRICE = ModelPrice(input_per_1k_tokens_usd=0.5, output_per_1k_tokens_usd=2.0, price_date=date(2025, 6, 1))


class CountingModel:
    """Reports tokens like Bedrock does: 10 in and 4 out per call."""

    name = "amazon.nova-lite-v1:0"

    def __init__(self) -> None:
        self.calls: list[ModelRequest] = []

    def invoke(self, request: ModelRequest) -> ModelResponse:
        self.calls.append(request)
        return ModelResponse(f"answer to: {request.prompt}", 12.5, 10, 4)


@pytest.fixture
def queues(backend: Backend) -> tuple[Messages, Messages]:
    usage, samples = Messages(), Messages()
    backend.service.usage, backend.service.samples = usage, samples
    backend.service.model_price = PRICE
    backend.service.default_model = CountingModel()
    backend.service.inference_profile = "arn:aws:bedrock:eu-west-1:1:application-inference-profile/p1"
    return usage, samples


def test_every_answer_gets_a_usage_record_with_tokens_latency_and_estimated_cost(
    backend: Backend, queues: tuple[Messages, Messages]
) -> None:
    usage, _ = queues
    status, body = backend.call("POST", "/invoke", {"prompt": "greet", "variables": {"name": "Bo"}})
    assert status == 200
    [record] = usage.sent
    assert isinstance(record, UsageRecord)
    assert (record.request_id, record.tenant_id, record.business_unit) == (body["request_id"], "tenant-a", BU)
    assert (record.use_case, record.model_id, record.provider) == (
        USE_CASE,
        "amazon.nova-lite-v1:0",
        "bedrock",
    )
    assert record.inference_profile == "arn:aws:bedrock:eu-west-1:1:application-inference-profile/p1"
    assert (record.model_calls, record.input_tokens, record.output_tokens) == (1, 10, 4)
    assert record.model_latency_ms == 12.5 and record.request_latency_ms >= 0
    assert record.cost_usd == pytest.approx((10 * 0.5 + 4 * 2.0) / 1000)
    assert record.price_table_date == date(2025, 6, 1)
    assert record.prompt_ref == "greet@3" and record.blocked is None


def test_a_chain_sums_its_model_calls(backend: Backend, queues: tuple[Messages, Messages]) -> None:
    usage, _ = queues
    status, _ = backend.call("POST", "/invoke", {"chain": "greet-then-shout", "variables": {"name": "Bo"}})
    assert status == 200
    [record] = usage.sent
    assert isinstance(record, UsageRecord)
    assert (record.model_calls, record.input_tokens, record.output_tokens) == (2, 20, 8)
    assert record.model_latency_ms == 25.0


def test_blocked_input_is_recorded_without_model_calls_or_cost(
    backend: Backend, queues: tuple[Messages, Messages]
) -> None:
    usage, samples = queues
    backend.service.sample_rate = 1.0
    status, body = backend.call("POST", "/invoke", {"prompt": "greet", "variables": {"name": "BLOCKME"}})
    assert status == 200 and body["blocked"] == "input"
    [record] = usage.sent
    assert isinstance(record, UsageRecord)
    assert (record.model_calls, record.input_tokens, record.output_tokens, record.cost_usd) == (0, 0, 0, 0.0)
    assert record.blocked == "input"
    assert samples.sent == []  # nothing was answered, nothing to judge


def test_sampled_exchanges_are_the_redacted_question_and_answer(
    backend: Backend, queues: tuple[Messages, Messages]
) -> None:
    usage, samples = queues
    backend.service.sample_rate = 1.0
    status, body = backend.call(
        "POST", "/invoke", {"prompt": "greet", "variables": {"name": "alice@example.com"}}
    )
    assert status == 200
    [sample] = samples.sent
    assert isinstance(sample, OnlineSample)
    assert sample.request_id == body["request_id"] and sample.prompt_ref == "greet@3"
    assert sample.question == "Hello [EMAIL]"
    assert sample.answer == body["output"] == "answer to: Hello [EMAIL]"
    assert "alice@example.com" not in sample.model_dump_json()
    [record] = usage.sent
    assert isinstance(record, UsageRecord) and record.sampled_for_evaluation


def test_a_chain_sample_carries_the_filtered_variables_not_intermediate_outputs(
    backend: Backend, queues: tuple[Messages, Messages]
) -> None:
    _, samples = queues
    backend.service.sample_rate = 1.0
    backend.call("POST", "/invoke", {"chain": "greet-then-shout", "variables": {"name": "Bo"}})
    [sample] = samples.sent
    assert isinstance(sample, OnlineSample)
    assert json.loads(sample.question) == {"name": "Bo"}


def test_blocked_output_is_never_sampled(backend: Backend, queues: tuple[Messages, Messages]) -> None:
    usage, samples = queues
    backend.service.sample_rate = 1.0
    backend.service.default_model = type(
        "Leaky", (CountingModel,), {"invoke": lambda self, r: ModelResponse("BLOCKME", 1.0, 1, 1)}
    )()
    status, body = backend.call("POST", "/invoke", {"prompt": "greet", "variables": {"name": "Bo"}})
    assert status == 200 and body["blocked"] == "output"
    assert samples.sent == []
    [record] = usage.sent
    assert isinstance(record, UsageRecord) and record.blocked == "output" and record.model_calls == 1


def test_rate_zero_samples_nothing(backend: Backend, queues: tuple[Messages, Messages]) -> None:
    _, samples = queues
    backend.service.sample_rate = 0.0
    for _ in range(5):
        backend.call("POST", "/invoke", {"prompt": "greet", "variables": {"name": "Bo"}})
    assert samples.sent == []


def test_the_sample_share_follows_the_rate_and_is_stable_per_request() -> None:
    ids = [f"{n:032x}" for n in range(4000)]
    share = sum(sampled(i, 0.1) for i in ids) / len(ids)
    assert 0.08 < share < 0.12
    assert [sampled(i, 0.1) for i in ids[:50]] == [sampled(i, 0.1) for i in ids[:50]]
    assert not any(sampled(i, 0.0) for i in ids) and all(sampled(i, 1.0) for i in ids)


def test_a_queue_outage_never_fails_the_answer(backend: Backend, queues: tuple[Messages, Messages]) -> None:
    backend.service.usage = Messages(fail=True)
    status, body = backend.call("POST", "/invoke", {"prompt": "greet", "variables": {"name": "Bo"}})
    assert status == 200 and body["output"] == "answer to: Hello Bo"


def test_a_tenant_model_has_no_per_token_price(backend: Backend, queues: tuple[Messages, Messages]) -> None:
    usage, _ = queues
    backend.table.put_item(
        Item={
            "pk": "TENANT#tenant-a",
            "sk": "MODEL#mine",
            "endpoint_name": "exco-retail-prod-x",
            "created_at": 1,
        }
    )
    status, _ = backend.call(
        "POST", "/invoke", {"prompt": "greet", "variables": {"name": "Bo"}, "model": "personal"}
    )
    assert status == 200
    [record] = usage.sent
    assert isinstance(record, UsageRecord)
    assert record.provider == "sagemaker" and record.cost_usd is None and record.inference_profile is None


def test_wiring_sends_to_the_queues_the_stack_names(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto import mock_aws

    with mock_aws():
        sqs = boto3.client("sqs")
        usage_url = sqs.create_queue(QueueName="usage")["QueueUrl"]
        samples_url = sqs.create_queue(QueueName="samples")["QueueUrl"]
        env: dict[str, Any] = {
            "BUSINESS_UNIT": BU,
            "LAKE_STAGE": "prod",
            "USE_CASE": USE_CASE,
            "TABLE_NAME": "t",
            "FEEDBACK_BUCKET": "f",
            "RAW_BUCKET": "r",
            "UPLOAD_ROLE_ARN": "arn:aws:iam::123456789012:role/u",
            "GUARDRAIL_FUNCTION": "g",
            "DEFAULT_MODEL_PROFILE_ARN": "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/p",
            "MODEL_PRICE": PRICE.model_dump_json(),
            "USAGE_QUEUE_URL": usage_url,
            "ONLINE_EVALUATION_QUEUE_URL": samples_url,
            "ONLINE_EVALUATION_SAMPLE_RATE": "0.25",
        }
        service = build_service(env)
        assert service.default_model.model_id == env["DEFAULT_MODEL_PROFILE_ARN"]  # type: ignore[attr-defined]
        assert service.default_model.name == "amazon.nova-lite-v1:0"
        assert service.model_price == PRICE and service.sample_rate == 0.25
        assert isinstance(service.usage, SqsMessages) and service.usage.queue_url == usage_url
        assert isinstance(service.samples, SqsMessages) and service.samples.queue_url == samples_url
        without = build_service({k: v for k, v in env.items() if "QUEUE" not in k and "SAMPLE" not in k})
        assert without.usage is None and without.samples is None and without.sample_rate == 0.0
