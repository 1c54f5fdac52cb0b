import io
import json

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from common.model_gateway import (
    BedrockConverseModel,
    ModelInvocationError,
    ModelRequest,
    ModelResponse,
    ModelThrottledError,
    PrecomputedModel,
    SageMakerEndpointModel,
    build_sagemaker_payload,
    invoke_with_retry,
    load_precomputed,
)


def fake_clock(*ticks):
    values = iter(ticks)
    return lambda: next(values)


def converse_answer(text, tokens_in=11, tokens_out=7):
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": {
            "inputTokens": tokens_in,
            "outputTokens": tokens_out,
            "totalTokens": tokens_in + tokens_out,
        },
        "metrics": {"latencyMs": 5},
    }


def test_bedrock_converse_returns_text_tokens_and_latency():
    client = boto3.client("bedrock-runtime")
    model = BedrockConverseModel(
        "claude", "anthropic.claude-3-haiku-20240307-v1:0", client=client, clock=fake_clock(10.0, 10.25)
    )
    with Stubber(client) as stub:
        stub.add_response(
            "converse",
            converse_answer("Rishi Sunak"),
            {
                "modelId": "anthropic.claude-3-haiku-20240307-v1:0",
                "messages": [{"role": "user", "content": [{"text": "Who?"}]}],
                "system": [{"text": "Be brief."}],
                "inferenceConfig": {"maxTokens": 50, "temperature": 0.0},
            },
        )
        response = model.invoke(ModelRequest("Who?", system="Be brief.", max_tokens=50))
    assert response == ModelResponse("Rishi Sunak", 250.0, 11, 7)


@pytest.mark.parametrize(
    ("code", "error"),
    [("ThrottlingException", ModelThrottledError), ("ValidationException", ModelInvocationError)],
)
def test_bedrock_errors_are_typed(code, error):
    client = boto3.client("bedrock-runtime")
    model = BedrockConverseModel("m", "some.model", client=client)
    with Stubber(client) as stub:
        stub.add_client_error(
            "converse", service_error_code=code, service_message="nope", http_status_code=400
        )
        with pytest.raises(error, match=code):
            model.invoke(ModelRequest("hi"))


def body(payload):
    raw = json.dumps(payload).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


def test_sagemaker_tgi_with_target_model():
    client = boto3.client("sagemaker-runtime")
    model = SageMakerEndpointModel(
        "mme-a", "gpu-mme", target_model="tenant-a.tar.gz", client=client, clock=fake_clock(1.0, 1.5)
    )
    expected_body = json.dumps(
        {"inputs": "Hello", "parameters": {"max_new_tokens": 20, "details": True, "do_sample": False}}
    ).encode()
    with Stubber(client) as stub:
        stub.add_response(
            "invoke_endpoint",
            {
                "Body": body([{"generated_text": "Hi there", "details": {"generated_tokens": 3}}]),
                "ContentType": "application/json",
            },
            {
                "EndpointName": "gpu-mme",
                "TargetModel": "tenant-a.tar.gz",
                "ContentType": "application/json",
                "Accept": "application/json",
                "Body": expected_body,
            },
        )
        response = model.invoke(ModelRequest("Hello", max_tokens=20))
    assert response == ModelResponse("Hi there", 500.0, None, 3)


def test_sagemaker_messages_format_reads_usage():
    client = boto3.client("sagemaker-runtime")
    model = SageMakerEndpointModel("lmi", "lmi-endpoint", payload_format="messages", client=client)
    answer = {
        "choices": [{"message": {"role": "assistant", "content": "42"}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 1},
    }
    with Stubber(client) as stub:
        stub.add_response(
            "invoke_endpoint",
            {"Body": body(answer)},
            {
                "EndpointName": "lmi-endpoint",
                "ContentType": "application/json",
                "Accept": "application/json",
                "Body": ANY,
            },
        )
        response = model.invoke(ModelRequest("6 x 7?", system="Answer with a number."))
    assert (response.text, response.input_tokens, response.output_tokens) == ("42", 9, 1)
    payload = build_sagemaker_payload("messages", ModelRequest("6 x 7?", system="Answer with a number."))
    assert payload["messages"][0] == {"role": "system", "content": "Answer with a number."}


def test_sagemaker_throttling_and_bad_payload():
    client = boto3.client("sagemaker-runtime")
    model = SageMakerEndpointModel("m", "ep", client=client)
    with Stubber(client) as stub:
        stub.add_client_error(
            "invoke_endpoint", service_error_code="ThrottlingException", http_status_code=429
        )
        stub.add_response("invoke_endpoint", {"Body": body({"unexpected": True})})
        with pytest.raises(ModelThrottledError):
            model.invoke(ModelRequest("x"))
        with pytest.raises(ModelInvocationError, match="generated_text"):
            model.invoke(ModelRequest("x"))


class Flaky:
    name = "flaky"

    def __init__(self, failures):
        self.failures, self.calls = failures, 0

    def invoke(self, request):
        self.calls += 1
        if self.calls <= self.failures:
            raise ModelThrottledError("slow down")
        return ModelResponse("ok", 1.0)


def test_retry_backs_off_on_throttling_then_succeeds():
    waits: list[float] = []
    model = Flaky(failures=2)
    assert (
        invoke_with_retry(model, ModelRequest("x"), max_attempts=3, base_delay_s=1, sleep=waits.append).text
        == "ok"
    )
    assert model.calls == 3
    assert len(waits) == 2 and 0 <= waits[0] <= 1 and 0 <= waits[1] <= 2


def test_retry_gives_up_after_max_attempts():
    model = Flaky(failures=5)
    with pytest.raises(ModelThrottledError):
        invoke_with_retry(model, ModelRequest("x"), max_attempts=3, sleep=lambda _s: None)
    assert model.calls == 3


def test_precomputed_outputs():
    models = load_precomputed(
        ['{"id": "r1", "model": "a", "output": "x"}', "", '{"id": "r1", "model": "b", "output": "y"}']
    )
    assert sorted(models) == ["a", "b"]
    assert models["b"].invoke(ModelRequest("ignored", record_id="r1")).text == "y"
    with pytest.raises(ModelInvocationError, match="r2"):
        PrecomputedModel("a", {}).invoke(ModelRequest("p", record_id="r2"))
    with pytest.raises(ValueError, match="line 2"):
        load_precomputed(['{"id": "r1", "model": "a", "output": "x"}', '{"id": "r1"}'])
