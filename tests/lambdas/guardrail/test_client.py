"""The client helper: in-process or Lambda invoke, chosen by `packaging`; same verdict, same refusals."""

from __future__ import annotations

import io
import json

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from guardrail.client import (
    InProcessGuardrail,
    InvalidRequestError,
    LambdaGuardrail,
    guardrail_client,
)
from guardrail.engine import GuardrailEngine
from guardrail.settings import DirectionSettings, GuardrailSettings, LayerSwitches

from .conftest import CountingLayer

LOCAL_ONLY = DirectionSettings(layers=LayerSwitches(toxicity=False, pii=False))
FUNCTION = "exco-retail-dev-guardrail-Filter"


def _event(**overrides):
    event = {
        "direction": "output",
        "content": [{"text": "The answer is 42."}],
        "business_unit": "retail",
        "model_id": "anthropic.claude-3:0",
        "request_id": "req-1",
    }
    return {**event, **overrides}


def _payload(body) -> StreamingBody:
    raw = json.dumps(body).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


@pytest.fixture
def lambda_stub(_aws_env):
    client = boto3.client("lambda", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def _invoke_params(event):
    return {
        "FunctionName": FUNCTION,
        "InvocationType": "RequestResponse",
        "Payload": json.dumps(event).encode(),
    }


def test_packaging_picks_the_caller():
    in_process = guardrail_client(GuardrailSettings(packaging="in_process"), business_unit="retail")
    assert isinstance(in_process, InProcessGuardrail)
    invoker = guardrail_client(GuardrailSettings(), business_unit="retail", function_name=FUNCTION)
    assert isinstance(invoker, LambdaGuardrail) and invoker.function_name == FUNCTION
    with pytest.raises(ValueError, match="function_name: required"):
        guardrail_client(GuardrailSettings(packaging="lambda"), business_unit="retail")


def test_in_process_runs_the_engine_and_returns_the_verdict_dict():
    layer = CountingLayer()
    settings = GuardrailSettings(input=LOCAL_ONLY, output=LOCAL_ONLY, packaging="in_process")
    engine = GuardrailEngine(settings, layers={"local_rules": layer}, metrics=False)
    verdict = guardrail_client(settings, business_unit="retail", engine=engine).check(_event())
    assert verdict["action"] == "allow"
    assert verdict["texts"] == ["The answer is 42."]
    assert set(verdict["latency_ms"]) == {"local_rules"}
    assert layer.calls == 1


def test_in_process_refuses_another_business_unit_before_any_layer_runs():
    layer = CountingLayer()
    settings = GuardrailSettings(packaging="in_process")
    engine = GuardrailEngine(settings, layers={"local_rules": layer}, metrics=False)
    guard = guardrail_client(settings, business_unit="retail", engine=engine)
    with pytest.raises(InvalidRequestError, match=r"^business_unit: this guardrail serves 'retail' only"):
        guard.check(_event(business_unit="finance"))
    assert layer.calls == 0


def test_lambda_invoke_returns_the_function_s_verdict(lambda_stub):
    client, stubber = lambda_stub
    verdict = {"action": "redact", "text": "Mail [EMAIL]", "texts": ["Mail [EMAIL]"], "findings": []}
    stubber.add_response(
        "invoke",
        {"StatusCode": 200, "Payload": _payload({"statusCode": 200, "verdict": verdict})},
        _invoke_params(_event()),
    )
    guard = LambdaGuardrail(
        GuardrailSettings(), business_unit="retail", function_name=FUNCTION, lambda_client=client
    )
    assert guard.check(_event()) == verdict


def test_lambda_400_is_raised_with_the_function_s_message(lambda_stub):
    client, stubber = lambda_stub
    stubber.add_response(
        "invoke",
        {"StatusCode": 200, "Payload": _payload({"statusCode": 400, "error": "content: too long"})},
        _invoke_params(_event()),
    )
    guard = LambdaGuardrail(
        GuardrailSettings(), business_unit="retail", function_name=FUNCTION, lambda_client=client
    )
    with pytest.raises(InvalidRequestError, match=r"^content: too long$"):
        guard.check(_event())


def test_bad_request_is_refused_before_invoking(lambda_stub):
    client, _ = lambda_stub  # no response queued: an invoke would fail the stubber
    guard = LambdaGuardrail(
        GuardrailSettings(), business_unit="retail", function_name=FUNCTION, lambda_client=client
    )
    with pytest.raises(InvalidRequestError, match=r"^content\[0\]\.text"):
        guard.check(_event(content=[{"text": ""}]))


@pytest.mark.parametrize(("policy", "action"), [("fail_closed", "block"), ("fail_open", "allow")])
def test_function_error_follows_the_direction_s_failure_policy(lambda_stub, policy, action):
    client, stubber = lambda_stub
    stubber.add_response(
        "invoke",
        {
            "StatusCode": 200,
            "FunctionError": "Unhandled",
            "Payload": _payload({"errorMessage": "Task timed out after 30.00 seconds"}),
        },
        _invoke_params(_event()),
    )
    settings = GuardrailSettings(output=DirectionSettings(failure_policy=policy))
    guard = LambdaGuardrail(settings, business_unit="retail", function_name=FUNCTION, lambda_client=client)
    verdict = guard.check(_event())
    assert verdict["action"] == action
    assert verdict["failure_policy_applied"] == policy
    assert "Task timed out" in verdict["errors"]["guardrail"]
    assert verdict["texts"] == ["The answer is 42."]


def test_an_unreachable_function_blocks_by_default(lambda_stub):
    client, stubber = lambda_stub
    stubber.add_client_error("invoke", "TooManyRequestsException", "Rate exceeded", http_status_code=429)
    guard = LambdaGuardrail(
        GuardrailSettings(), business_unit="retail", function_name=FUNCTION, lambda_client=client
    )
    verdict = guard.check(_event(direction="input"))
    assert verdict["action"] == "block"
    assert verdict["failure_policy_applied"] == "fail_closed"
    assert verdict["errors"]["guardrail"].startswith("TooManyRequestsException: ")


def test_in_process_engine_uses_the_provisioned_guardrail_reference():
    settings = GuardrailSettings(packaging="in_process")
    guard = guardrail_client(settings, business_unit="retail", bedrock_ref=("gr1abc", "3"))
    bedrock_layer = guard.engine._layers["bedrock"]  # type: ignore[attr-defined]
    assert (bedrock_layer._id, bedrock_layer._version) == ("gr1abc", "3")
