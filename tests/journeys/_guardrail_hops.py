"""Hops between the application backend and its business unit's guardrail function, read from the synthesized
templates (for the journeys of the input guardrail: split PII, chain steps): the backend's environment
(GUARDRAIL_FUNCTION, GUARDRAIL_SETTINGS) resolved through the guardrail stack's exports, the backend role's
policy, the guardrail function's environment; a Lambda client double that checks the caller's policy and runs
the real guardrail handler; and the backend in moto with its guardrail built by its own wiring."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from moto import mock_aws

from tests.conftest import SynthesizedPlatform
from tests.journeys._consumer import LambdaContext, resources
from tests.stacks.policy_eval import Request, decide_identity, resolve

APPLICATION_STACK = "exco-retail-prod-application"
GUARDRAIL_STACK = "exco-retail-prod-guardrail"
PROD = "333333333333"
REGION = "eu-west-1"
GUARDRAIL_NAME = "exco-retail-prod-guardrail-filter"  # what Ref of the function resolves to at deploy time
GUARDRAIL_ARN = f"arn:aws:lambda:{REGION}:{PROD}:function:{GUARDRAIL_NAME}"


def function_with(template: dict[str, Any], variable: str) -> tuple[str, dict[str, Any]]:
    [found] = [
        (logical_id, function["Properties"])
        for logical_id, function in resources(template, "AWS::Lambda::Function").items()
        if variable in function["Properties"].get("Environment", {}).get("Variables", {})
    ]
    return found


def role_statements(template: dict[str, Any], role_logical_id: str) -> list[dict[str, Any]]:
    return [
        statement
        for policy in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role_logical_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def imported(value: Any, exporter: dict[str, Any], guardrail_logical_id: str) -> Any:
    """Fn::ImportValue of the guardrail stack's exports, as deployed: Ref -> the function's name,
    GetAtt Arn -> its ARN. An export of anything else stays unresolved (and matches nothing)."""
    if isinstance(value, list):
        return [imported(v, exporter, guardrail_logical_id) for v in value]
    if isinstance(value, dict) and "Fn::ImportValue" in value:
        for output in exporter.get("Outputs", {}).values():
            if output.get("Export", {}).get("Name") != value["Fn::ImportValue"]:
                continue
            if output["Value"] == {"Ref": guardrail_logical_id}:
                return GUARDRAIL_NAME
            if output["Value"] == {"Fn::GetAtt": [guardrail_logical_id, "Arn"]}:
                return GUARDRAIL_ARN
        return f"<unresolved {value['Fn::ImportValue']}>"
    if isinstance(value, dict):
        return {k: imported(v, exporter, guardrail_logical_id) for k, v in value.items()}
    return value


@dataclass
class Hops:
    backend_env: dict[str, Any]
    guardrail_env: dict[str, Any]
    backend_statements: list[dict[str, Any]]
    other_role_statements: list[dict[str, Any]]


def hops_of(platform: SynthesizedPlatform) -> Hops:
    """The hops between the prod application stack and its guardrail stack, read from their templates."""
    application, guardrail = platform.template(APPLICATION_STACK), platform.template(GUARDRAIL_STACK)
    guardrail_id, guardrail_function = function_with(guardrail, "FILTER_DECISIONS_BUCKET")
    _, backend = function_with(application, "APP_SETTINGS")
    backend_role = backend["Role"]["Fn::GetAtt"][0]
    others = [
        logical_id
        for logical_id in resources(application, "AWS::IAM::Role")
        if logical_id != backend_role and role_statements(application, logical_id)
    ]
    return Hops(
        backend_env=imported(backend["Environment"]["Variables"], guardrail, guardrail_id),
        guardrail_env=dict(guardrail_function["Environment"]["Variables"]),
        backend_statements=[
            resolve(imported(s, guardrail, guardrail_id), application)
            for s in role_statements(application, backend_role)
        ],
        other_role_statements=[
            resolve(imported(s, guardrail, guardrail_id), application)
            for logical_id in others
            for s in role_statements(application, logical_id)
        ],
    )


class GuardrailFunction:
    """Lambda Invoke of the guardrail function: the caller's policy must allow it, then the real handler
    runs with the function's environment from its template."""

    def __init__(self, hops: Hops, monkeypatch: pytest.MonkeyPatch, *, fail: bool = False) -> None:
        from guardrail import handler as guardrail_handler
        from guardrail.engine import GuardrailEngine, default_layers
        from guardrail.settings import GuardrailSettings

        self.hops, self.fail = hops, fail
        self.events: list[dict[str, Any]] = []
        self.records: list[Any] = []
        for name in ("BUSINESS_UNIT", "GUARDRAIL_SETTINGS"):
            monkeypatch.setenv(name, hops.guardrail_env[name])
        settings = GuardrailSettings.model_validate_json(hops.guardrail_env["GUARDRAIL_SETTINGS"])
        layers = default_layers(
            settings, comprehend=NothingFound(), bedrock_runtime=NothingFound(), bedrock_ref=("gr-1", "1")
        )
        sink = ListSink(self.records)
        monkeypatch.setattr(
            guardrail_handler, "_engine", GuardrailEngine(settings, layers=layers, sink=sink, metrics=False)
        )
        self.handler = guardrail_handler

    def invoke(self, *, FunctionName: str, InvocationType: str, Payload: bytes) -> dict[str, Any]:  # noqa: N803
        arn = (
            FunctionName
            if FunctionName.startswith("arn:")
            else GUARDRAIL_ARN.replace(GUARDRAIL_NAME, FunctionName)
        )
        allowed = decide_identity(self.hops.backend_statements, Request(PROD, "lambda:InvokeFunction", arn))
        assert allowed == "allow", f"the backend role may not invoke {arn}"
        assert FunctionName == GUARDRAIL_NAME and InvocationType == "RequestResponse"
        event = json.loads(Payload)
        self.events.append(event)
        if self.fail:
            return {"FunctionError": "Unhandled", "Payload": io.BytesIO(b'{"errorMessage": "boom"}')}
        answer = self.handler.lambda_handler(event, LambdaContext())
        return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(answer).encode())}


class NothingFound:
    """Comprehend and Bedrock runtime clients that find nothing (the journey's finding is the local rules')."""

    def detect_toxic_content(self, TextSegments: list[Any], LanguageCode: str) -> dict[str, Any]:  # noqa: N803
        return {"ResultList": [{"Labels": [], "Toxicity": 0.0} for _ in TextSegments]}

    def detect_pii_entities(self, Text: str, LanguageCode: str) -> dict[str, Any]:  # noqa: N803
        return {"Entities": []}

    def apply_guardrail(self, **_: Any) -> dict[str, Any]:
        return {"action": "NONE", "outputs": [], "assessments": []}


class ListSink:
    def __init__(self, records: list[Any]) -> None:
        self.records = records

    def append(self, record: Any) -> None:
        self.records.append(record)


JOURNEY_ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",  # moto's buckets of the backend double (no location constraint)
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "POWERTOOLS_TRACE_DISABLED": "1",
    "POWERTOOLS_METRICS_NAMESPACE": "test",
    "POWERTOOLS_SERVICE_NAME": "journey",
}


@contextmanager
def backend_with(hops: Hops, catalog: Any, offered: Mapping[str, list[str]]) -> Iterator[Any]:
    """The real API handler over a backend in moto (tests/lambdas/app_backend/conftest.py) serving `catalog`,
    with its guardrail exactly as its wiring builds it from the synthesized environment."""
    from app_backend import handler as app_handler
    from app_backend.settings import ApplicationSettings
    from app_backend.wiring import guard_from_env

    from tests.lambdas.app_backend.conftest import ROOMY, build_backend

    with mock_aws():
        settings = {"end_user_catalog": dict(offered), "tenant_limits": ROOMY}
        built = build_backend(ApplicationSettings.model_validate(settings))
        built.service.catalog = catalog
        built.service.guard = guard_from_env(
            {k: v for k, v in hops.backend_env.items() if isinstance(v, str)}
        )
        app_handler.use_service(built.service)
        try:
            yield built
        finally:
            app_handler.use_service(None)
