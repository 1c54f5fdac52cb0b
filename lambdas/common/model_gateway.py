"""One way to call a model, whatever hosts it.

`ModelClient` is the interface; adapters call Amazon Bedrock (Converse API), SageMaker endpoints
(`invoke_endpoint`, with `TargetModel` for multi-model endpoints) or look up precomputed outputs.
Every adapter returns a `ModelResponse` with the text, the latency and token counts (when the host
reports them), and raises `ModelThrottledError` (retry later) or `ModelInvocationError` (do not).
boto3 clients are created lazily or injected, so tests pass botocore Stubber / moto clients.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

# Error codes that mean "the service is busy, try again", for Bedrock and SageMaker runtime alike.
RETRYABLE_ERROR_CODES = frozenset(
    {
        "ThrottlingException",
        "TooManyRequestsException",
        "ServiceUnavailableException",
        "ServiceUnavailable",
        "ModelNotReadyException",
        "InternalServerException",
    }
)


class ModelError(Exception):
    """Base of every model-call failure."""


class ModelThrottledError(ModelError):
    """The host is throttling or briefly unavailable: retrying with backoff may succeed."""


class ModelInvocationError(ModelError):
    """The call failed for a reason a retry will not fix (bad request, missing output, bad payload)."""


@dataclass(frozen=True)
class ModelRequest:
    prompt: str
    record_id: str | None = None  # precomputed outputs are looked up by it
    system: str | None = None
    max_tokens: int = 1024
    temperature: float = 0.0


@dataclass(frozen=True)
class ModelResponse:
    text: str
    latency_ms: float
    input_tokens: int | None = None
    output_tokens: int | None = None


class ModelClient(Protocol):
    """Anything that turns a request into a response; `name` identifies it in results."""

    name: str

    def invoke(self, request: ModelRequest) -> ModelResponse: ...


def _classify(exc: Exception, where: str) -> ModelError:
    from botocore.exceptions import ClientError  # botocore is in every Lambda runtime

    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        message = exc.response.get("Error", {}).get("Message", "")
        if code in RETRYABLE_ERROR_CODES:
            return ModelThrottledError(f"{where}: {code}: {message}")
        return ModelInvocationError(f"{where}: {code}: {message}")
    return ModelInvocationError(f"{where}: {type(exc).__name__}: {exc}")


@dataclass
class BedrockConverseModel:
    """A Bedrock model (or inference profile) called through the Converse API."""

    name: str
    model_id: str
    client: Any = None
    clock: Callable[[], float] = time.perf_counter

    def _client(self) -> Any:
        if self.client is None:
            import boto3

            self.client = boto3.client("bedrock-runtime")
        return self.client

    def invoke(self, request: ModelRequest) -> ModelResponse:
        params: dict[str, Any] = {
            "modelId": self.model_id,
            "messages": [{"role": "user", "content": [{"text": request.prompt}]}],
            "inferenceConfig": {"maxTokens": request.max_tokens, "temperature": request.temperature},
        }
        if request.system:
            params["system"] = [{"text": request.system}]
        start = self.clock()
        try:
            answer = self._client().converse(**params)
        except Exception as exc:
            raise _classify(exc, f"bedrock {self.model_id}") from exc
        latency_ms = (self.clock() - start) * 1000
        blocks = answer.get("output", {}).get("message", {}).get("content", [])
        text = "".join(block.get("text", "") for block in blocks)
        usage = answer.get("usage", {})
        return ModelResponse(text, latency_ms, usage.get("inputTokens"), usage.get("outputTokens"))


PayloadFormat = Literal["tgi", "messages"]


def build_sagemaker_payload(payload_format: PayloadFormat, request: ModelRequest) -> dict[str, Any]:
    """TGI / LMI text generation ("tgi") or the OpenAI-style chat schema LMI and TGI also serve."""
    if payload_format == "tgi":
        prompt = f"{request.system}\n\n{request.prompt}" if request.system else request.prompt
        parameters: dict[str, Any] = {"max_new_tokens": request.max_tokens, "details": True}
        if request.temperature > 0:
            parameters["temperature"] = request.temperature
        else:
            parameters["do_sample"] = False
        return {"inputs": prompt, "parameters": parameters}
    messages = [{"role": "user", "content": request.prompt}]
    if request.system:
        messages.insert(0, {"role": "system", "content": request.system})
    return {"messages": messages, "max_tokens": request.max_tokens, "temperature": request.temperature}


def parse_sagemaker_answer(payload_format: PayloadFormat, body: Any) -> tuple[str, int | None, int | None]:
    """Return (text, input tokens, output tokens) from a container's JSON answer."""
    if payload_format == "tgi":
        item = body[0] if isinstance(body, list) and body else body
        if not isinstance(item, dict) or "generated_text" not in item:
            raise ModelInvocationError("sagemaker: answer has no 'generated_text'")
        details = item.get("details") or {}
        return str(item["generated_text"]), None, details.get("generated_tokens")
    try:
        text = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise ModelInvocationError("sagemaker: answer has no 'choices[0].message.content'") from None
    usage = body.get("usage") or {}
    return str(text), usage.get("prompt_tokens"), usage.get("completion_tokens")


@dataclass
class SageMakerEndpointModel:
    """A model behind a SageMaker real-time endpoint; `target_model` selects one of a multi-model endpoint,
    `inference_component` one adapter component of an endpoint with inference components."""

    name: str
    endpoint_name: str
    target_model: str | None = None
    inference_component: str | None = None
    payload_format: PayloadFormat = "tgi"
    client: Any = None
    clock: Callable[[], float] = time.perf_counter

    def _client(self) -> Any:
        if self.client is None:
            import boto3

            self.client = boto3.client("sagemaker-runtime")
        return self.client

    def invoke(self, request: ModelRequest) -> ModelResponse:
        params: dict[str, Any] = {
            "EndpointName": self.endpoint_name,
            "ContentType": "application/json",
            "Accept": "application/json",
            "Body": json.dumps(build_sagemaker_payload(self.payload_format, request)).encode(),
        }
        if self.target_model:
            params["TargetModel"] = self.target_model
        if self.inference_component:
            params["InferenceComponentName"] = self.inference_component
        start = self.clock()
        try:
            answer = self._client().invoke_endpoint(**params)
            raw = answer["Body"].read()
        except Exception as exc:
            raise _classify(exc, f"sagemaker {self.endpoint_name}") from exc
        latency_ms = (self.clock() - start) * 1000
        try:
            body = json.loads(raw)
        except ValueError:
            raise ModelInvocationError("sagemaker: answer is not JSON") from None
        text, tokens_in, tokens_out = parse_sagemaker_answer(self.payload_format, body)
        return ModelResponse(text, latency_ms, tokens_in, tokens_out)


@dataclass
class PrecomputedModel:
    """Outputs a team already has: no model call, latency 0, looked up by record id."""

    name: str
    outputs: Mapping[str, str] = field(default_factory=dict)

    def invoke(self, request: ModelRequest) -> ModelResponse:
        if request.record_id is None or request.record_id not in self.outputs:
            raise ModelInvocationError(f"precomputed {self.name}: no output for record {request.record_id!r}")
        return ModelResponse(self.outputs[request.record_id], 0.0)


def load_precomputed(lines: Iterable[str]) -> dict[str, PrecomputedModel]:
    """Parse JSON lines of `{"id", "model", "output"}` into one PrecomputedModel per model name."""
    by_model: dict[str, dict[str, str]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            record_id, model, output = row["id"], row["model"], row["output"]
        except (ValueError, KeyError, TypeError):
            raise ValueError(
                f"line {number}: expected a JSON object with 'id', 'model' and 'output'"
            ) from None
        if not all(isinstance(v, str) for v in (record_id, model, output)):
            raise ValueError(f"line {number}: 'id', 'model' and 'output' must be strings")
        by_model.setdefault(model, {})[record_id] = output
    return {name: PrecomputedModel(name, outputs) for name, outputs in by_model.items()}


def invoke_with_retry(
    model: ModelClient,
    request: ModelRequest,
    *,
    max_attempts: int = 5,
    base_delay_s: float = 0.5,
    max_delay_s: float = 20.0,
    sleep: Callable[[float], None] = time.sleep,
) -> ModelResponse:
    """Call the model, retrying throttling with exponential backoff and full jitter."""
    for attempt in range(1, max_attempts + 1):
        try:
            return model.invoke(request)
        except ModelThrottledError:
            if attempt == max_attempts:
                raise
            sleep(random.uniform(0, min(max_delay_s, base_delay_s * 2 ** (attempt - 1))))  # noqa: S311
    raise AssertionError("unreachable")  # pragma: no cover
