"""Call the guardrail the way the business unit's settings say: invoke its Lambda or run it in-process.

    guard = guardrail_client(settings, business_unit="retail", function_name=os.environ["GUARDRAIL_FUNCTION"])
    verdict = guard.check({"direction": "input", "content": [...], "business_unit": "retail", ...})

Both return the verdict dict of `Verdict.to_dict()` and raise `InvalidRequestError` (message names the
field) for a request the guardrail refuses. When the Lambda cannot be reached or fails, the direction's
failure policy decides, as it does for a failing layer: block (fail_closed) or allow (fail_open), and
the verdict says so in `errors` and `failure_policy_applied`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cached_property
from typing import Any, Protocol

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from guardrail.engine import GuardrailEngine, InvalidRequestError
from guardrail.handler import parse_event
from guardrail.settings import GuardrailSettings

__all__ = [
    "GuardrailCaller",
    "InProcessGuardrail",
    "InvalidRequestError",
    "LambdaGuardrail",
    "guardrail_client",
]


class GuardrailCaller(Protocol):
    def check(self, event: Mapping[str, Any]) -> dict[str, Any]: ...


class InProcessGuardrail:
    """Runs the engine inside the caller's process: no network hop, the caller's role needs the
    permissions the function role would have (Comprehend, ApplyGuardrail, the lake prefix)."""

    def __init__(
        self,
        settings: GuardrailSettings,
        *,
        business_unit: str,
        engine: GuardrailEngine | None = None,
        bedrock_ref: tuple[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.business_unit = business_unit
        self._engine = engine
        self._bedrock_ref = bedrock_ref  # (id, version) of a guardrail the stack provisioned

    @cached_property
    def engine(self) -> GuardrailEngine:
        return self._engine or GuardrailEngine(self.settings, bedrock_ref=self._bedrock_ref)

    def check(self, event: Mapping[str, Any]) -> dict[str, Any]:
        request = parse_event(dict(event), self.settings, self.business_unit)
        return self.engine.check(request).to_dict()


class LambdaGuardrail:
    """Invokes the guardrail function synchronously (the caller's role needs `grant_invoke`)."""

    def __init__(
        self,
        settings: GuardrailSettings,
        *,
        business_unit: str,
        function_name: str,
        lambda_client: Any = None,
    ) -> None:
        self.settings = settings
        self.business_unit = business_unit
        self.function_name = function_name
        self._lambda_client = lambda_client

    @cached_property
    def lambda_client(self) -> Any:
        return self._lambda_client or boto3.client("lambda")

    def check(self, event: Mapping[str, Any]) -> dict[str, Any]:
        # Refuse bad requests here, with the same rules as the handler, and save the round trip.
        request = parse_event(dict(event), self.settings, self.business_unit)
        try:
            response = self.lambda_client.invoke(
                FunctionName=self.function_name,
                InvocationType="RequestResponse",
                Payload=json.dumps(dict(event)).encode(),
            )
            payload = json.loads(response["Payload"].read())
        except (BotoCoreError, ClientError, ValueError) as err:
            return self._unavailable(request.direction, event, f"{type(err).__name__}: {err}")
        if "FunctionError" in response or not isinstance(payload, dict):
            return self._unavailable(request.direction, event, f"function error: {str(payload)[:300]}")
        if payload.get("statusCode") == 400:
            raise InvalidRequestError(str(payload.get("error", "request refused")))
        verdict = payload.get("verdict")
        if payload.get("statusCode") != 200 or not isinstance(verdict, dict):
            return self._unavailable(request.direction, event, f"unexpected response: {str(payload)[:300]}")
        return verdict

    def _unavailable(self, direction: str, event: Mapping[str, Any], reason: str) -> dict[str, Any]:
        return unavailable_verdict(
            self.settings, direction, [item["text"] for item in event["content"]], reason
        )


def unavailable_verdict(
    settings: GuardrailSettings, direction: str, texts: list[str], reason: str
) -> dict[str, Any]:
    """The verdict when the guardrail itself could not run: the direction's failure policy decides."""
    policy = settings.for_direction("output" if direction == "output" else "input").failure_policy
    return {
        "action": "block" if policy == "fail_closed" else "allow",
        "text": "\n\n".join(texts),
        "texts": texts,
        "findings": [],
        "latency_ms": {},
        "errors": {"guardrail": reason[:500]},
        "failure_policy_applied": policy,
    }


def guardrail_client(
    settings: GuardrailSettings,
    *,
    business_unit: str,
    function_name: str | None = None,
    lambda_client: Any = None,
    engine: GuardrailEngine | None = None,
    bedrock_ref: tuple[str, str] | None = None,
) -> GuardrailCaller:
    """The caller `settings.packaging` asks for."""
    if settings.packaging == "in_process":
        return InProcessGuardrail(
            settings, business_unit=business_unit, engine=engine, bedrock_ref=bedrock_ref
        )
    if not function_name:
        raise ValueError("function_name: required when guardrails.packaging is 'lambda'")
    return LambdaGuardrail(
        settings, business_unit=business_unit, function_name=function_name, lambda_client=lambda_client
    )
